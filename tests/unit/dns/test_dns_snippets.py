"""Zone file snippets: rendered per zone, parsed back by dnspython, tampering detected; written atomically,
never through a symlink, and not at all in dry-run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dns.name
import pytest

from libcluster.changes import ChangeLog
from libcluster.dns import DNSSnippetError, Zones
from libcluster.dns.records import build
from libcluster.dns.snippets import parse, render, snippets, validate, write

ZONES = Zones(["example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"])
ENTRIES = [("web.example.org", "192.0.2.5"), ("web.example.org", "192.0.2.200"), ("db.example.org", "192.0.2.6"),
           ("web.example.org", "2001:db8::5"), ("example.org", "192.0.2.1")]


def test_snippets_round_trip_for_every_zone() -> None:
    records = build(ENTRIES, ZONES, 600).records
    texts = snippets(records, ZONES)
    zones = ("example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa")
    assert set(texts) == {dns.name.from_text(zone) for zone in zones}
    parsed = {}
    for zone, text in texts.items():
        assert text.startswith(f"$ORIGIN {zone}\n")
        parsed.update(parse(zone, text))
    assert parsed == records
    assert all(parsed[key].ttl == 600 for key in records)


def test_names_are_relative_to_the_origin() -> None:
    records = build([("web.example.org", "192.0.2.5"), ("example.org", "192.0.2.1")], ZONES, 600).records
    text = snippets(records, ZONES)[dns.name.from_text("example.org")]
    assert text.splitlines()[1:] == ["@ 600 IN A 192.0.2.1", "web 600 IN A 192.0.2.5"]
    reverse = snippets(records, ZONES)[dns.name.from_text("2.0.192.in-addr.arpa")]
    assert "5 600 IN CNAME 5.0-25.2.0.192.in-addr.arpa." in reverse.splitlines()


def test_validation_catches_a_snippet_that_says_something_else() -> None:
    zone = dns.name.from_text("example.org")
    records = {key: rrset for key, rrset in build(ENTRIES, ZONES, 600).records.items()
               if key[0].is_subdomain(zone)}
    text = render(zone, records.values())
    validate(zone, text, records)
    with pytest.raises(DNSSnippetError, match="parses back"):
        validate(zone, text.replace("192.0.2.6", "192.0.2.66"), records)
    with pytest.raises(DNSSnippetError, match="missing"):
        validate(zone, "\n".join(line for line in text.splitlines() if not line.startswith("db")), records)
    with pytest.raises(DNSSnippetError, match="does not parse"):
        validate(zone, text + "broken 600 IN A not-an-address\n", records)


def _texts() -> dict[dns.name.Name, str]:
    return snippets(build(ENTRIES, ZONES, 600).records, ZONES)


def _tree(directory: Path) -> dict[str, tuple[bool, bytes | str, int]]:
    """Every entry under directory: whether a link, its content (or link target), its mtime in ns."""
    return {str(path.relative_to(directory)): (path.is_symlink(),
                                               os.readlink(path) if path.is_symlink() else path.read_bytes(),
                                               path.lstat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_symlink() or path.is_file()}


def test_dry_run_writes_nothing_and_shows_the_diffs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    texts = _texts()
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / "example.org").write_text("$ORIGIN example.org.\nold 600 IN A 192.0.2.99\n")
    (directory / "notes").write_text("kept\n")
    before = _tree(directory)
    changes = ChangeLog(dry_run=True)
    shown = write(directory, texts, dry_run=True, changes=changes)
    assert _tree(directory) == before
    assert sorted(path.name for path in shown) == sorted(zone.to_text(omit_final_dot=True) for zone in texts)
    assert [(c.action, c.dry_run) for c in changes.changes] == [("snippet-write", True)] * len(texts)
    assert "-old 600 IN A 192.0.2.99" in caplog.text and "+web 600 IN A 192.0.2.5" in caplog.text
    assert f"Would write {len(texts)} snippet file(s) in {directory}, 0 unchanged" in caplog.text
    missing = tmp_path / "absent" / "zones"
    assert len(write(missing, texts, dry_run=True, changes=changes)) == len(texts)
    assert not (tmp_path / "absent").exists()


def test_a_real_write_replaces_files_by_rename_and_skips_unchanged_ones(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _texts()
    directory = tmp_path / "zones"
    directory.mkdir()
    target = directory / "example.org"
    target.write_text("$ORIGIN example.org.\n")
    target.chmod(0o640)
    (tmp_path / "old-inode").hardlink_to(target)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    changes = ChangeLog(dry_run=False)
    written = write(directory, texts, dry_run=False, changes=changes)
    assert sorted(path.name for path in written) == sorted(path.name for path in directory.iterdir())
    assert target.read_text() == texts[dns.name.from_text("example.org")]
    assert (tmp_path / "old-inode").read_text() == "$ORIGIN example.org.\n"  # replaced, never written in place
    assert target.stat().st_mode & 0o777 == 0o640
    assert len(synced) == 2 * len(texts)  # each file, then the directory
    assert {c.target: c.detail["created"] for c in changes.changes} == {
        str(path): path.name != "example.org" for path in written}
    mtimes = {path.name: path.stat().st_mtime_ns for path in directory.iterdir()}
    again = ChangeLog(dry_run=False)
    assert write(directory, texts, dry_run=False, changes=again) == [] and again.changes == []
    assert {path.name: path.stat().st_mtime_ns for path in directory.iterdir()} == mtimes


def test_a_planted_symlink_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    texts = _texts()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / "example.org").symlink_to(victim)
    before = _tree(tmp_path)
    changes = ChangeLog(dry_run=False)
    with pytest.raises(DNSSnippetError, match=f"{directory}/example.org is a symbolic link: refusing"):
        write(directory, texts, dry_run=False, changes=changes)
    with pytest.raises(DNSSnippetError, match="symbolic link"):
        write(directory, texts, dry_run=True, changes=changes)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linked").symlink_to(real)
    with pytest.raises(DNSSnippetError, match=f"{tmp_path}/linked is a symbolic link: refusing"):
        write(tmp_path / "linked", texts, dry_run=False, changes=changes)
    assert list(real.iterdir()) == []
    after = _tree(tmp_path)
    del after["linked"]
    assert after == before and changes.changes == []
