"""sre.dns.netbox --snippets DIR on the real lab NetBox: a dry-run leaves DIR exactly as it was (names, contents,
mtimes; a missing DIR is not created) and shows the diffs it would write; a real run replaces files by rename
(a reader holding the old file keeps it whole), lists every file written in the audit record, and a symbolic
link planted at DIR or at a snippet file is refused without writing anything anywhere. The lab's NetBox is
plain http on loopback: without netbox.allow_insecure_http the same run is refused before anything is written.

Only the forward zone is written (--zone), and the dns.netbox scope holds only the test's own NetBox address, so
the content does not depend on what other helpers do in NetBox at the same time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cookbook_lab import topology
from tests.lab.cookbook_lab import Run, netbox, planned_only, run_cookbook

ZONE = topology.DOMAIN


@pytest.fixture(scope="module")
def record(lab: dict[str, Any], lab_config: Path) -> Iterator[tuple[str, str]]:
    """A NetBox address t-<random>-snip.lab.example -> a free 198.18.17.x, removed at the end."""
    if not (isinstance(lab.get("netbox"), dict) and lab["netbox"].get("up")):
        pytest.skip("lab part netbox is not up")
    client = netbox(lab_config)
    used = {str(ip["address"]).split("/")[0] for ip in client.objects("ip-address", parent="198.18.17.0/24")}
    address = secrets.choice([f"198.18.17.{n}" for n in range(200, 251) if f"198.18.17.{n}" not in used])
    name = f"t-{secrets.token_hex(4)}-snip.{ZONE}"
    created = client.create("ip-address", [{"address": f"{address}/24", "dns_name": name, "status": "active"}])
    try:
        yield name, address
    finally:
        client.release_ips(created)


@pytest.fixture
def config(record: tuple[str, str], lab_config: Path, tmp_path: Path) -> Path:
    """The lab configuration with this test's own logs and audit file, scoped to the test's record."""
    raw = yaml.safe_load(lab_config.read_text())
    raw.update(logs_base_dir=str(tmp_path / "logs"), audit_log=str(tmp_path / "audit.jsonl"))
    raw["dns"]["netbox"] = {"names": [record[0]], "networks": [f"{record[1]}/32"]}
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(raw))
    return path


def snippets(config: Path, directory: Path, dry_run: bool = False) -> Run:
    """`cookbook [-d] -y sre.dns.netbox --zone ZONE --snippets DIR`."""
    return run_cookbook(config, "sre.dns.netbox", "--zone", ZONE, "--snippets", str(directory), dry_run=dry_run)


def tree(top: Path) -> dict[str, tuple[str, str, int]]:
    """Every entry under top, links not followed: kind, content (or link target), mtime in ns."""
    found = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(root) / name
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            content = os.readlink(path) if kind == "link" else path.read_text() if kind == "file" else ""
            found[str(path.relative_to(top))] = (kind, content, path.lstat().st_mtime_ns)
    return found


def test_dry_run_leaves_the_directory_untouched_and_shows_what_it_would_write(config: Path, tmp_path: Path) -> None:
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / ZONE).write_text(f"$ORIGIN {ZONE}.\nstale-t-snippet 300 IN A 198.18.17.254\n")
    (directory / "README").write_text("hand-written, not ours\n")
    before = tree(tmp_path / "zones")
    dry = snippets(config, directory, dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert tree(tmp_path / "zones") == before
    assert f"Would dns snippet-write {directory / ZONE}" in dry.stderr
    assert "-stale-t-snippet 300 IN A 198.18.17.254" in dry.stderr
    assert "Would write 1 snippet file(s)" in dry.stderr
    assert planned_only(dry) and [c["target"] for c in dry.audit["changes"]] == [str(directory / ZONE)]

    absent = tmp_path / "absent" / "zones"
    new = snippets(config, absent, dry_run=True)
    assert new.returncode == 0, new.stderr
    assert not (tmp_path / "absent").exists()
    assert f"--- /dev/null\n+++ {absent / ZONE}" in new.stderr and f"+$ORIGIN {ZONE}." in new.stderr


def test_a_real_run_replaces_the_file_and_records_it(config: Path, record: tuple[str, str], tmp_path: Path
                                                     ) -> None:
    directory = tmp_path / "zones"
    directory.mkdir()
    target = directory / ZONE
    target.write_text(f"$ORIGIN {ZONE}.\n")
    reader = target.open()  # a reader of the old file (named-checkconf, git) sees it whole, never half-written
    done = snippets(config, directory)
    assert done.returncode == 0, done.stderr
    assert reader.read() == f"$ORIGIN {ZONE}.\n"
    reader.close()
    assert sorted(os.listdir(directory)) == [ZONE]  # no temporary file left
    assert target.read_text() == f"$ORIGIN {ZONE}.\n{record[0].removesuffix('.' + ZONE)} 300 IN A {record[1]}\n"
    assert done.audit is not None and not done.audit["dry_run"]
    assert [(c["system"], c["action"], c["target"], c["dry_run"], c["detail"]["created"])
            for c in done.audit["changes"]] == [("dns", "snippet-write", str(target), False, False)]
    again = snippets(config, directory)
    assert again.returncode == 0 and "Wrote 0 snippet file(s)" in again.stderr
    assert again.audit is not None and again.audit["changes"] == []


def test_a_planted_symlink_is_refused_and_nothing_is_written(config: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("root:x:0:0:precious\n")
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / ZONE).symlink_to(outside / "victim")
    (tmp_path / "linked").symlink_to(outside)
    before = (tree(outside), tree(directory))
    planted = snippets(config, directory)
    assert planted.returncode == 2
    assert f"{directory / ZONE} is a symbolic link: refusing to write snippets through it" in planted.stderr
    linked = snippets(config, tmp_path / "linked")
    assert linked.returncode == 2
    assert f"{tmp_path / 'linked'} is a symbolic link: refusing to write snippets through it" in linked.stderr
    assert (tree(outside), tree(directory)) == before
    assert planted.audit is not None and planted.audit["changes"] == []
    assert linked.audit is not None and linked.audit["changes"] == []


def test_plain_http_netbox_without_the_opt_in_is_refused_and_nothing_is_written(config: Path, tmp_path: Path
                                                                               ) -> None:
    raw = yaml.safe_load(config.read_text())
    assert raw["netbox"]["url"].startswith("http://") and raw["netbox"].pop("allow_insecure_http") is True
    insecure = tmp_path / "insecure.yaml"
    insecure.touch(mode=0o600)
    insecure.write_text(yaml.safe_dump(raw))
    directory = tmp_path / "zones"
    refused = snippets(insecure, directory)
    assert refused.returncode != 0
    assert f"{insecure}: key 'netbox.url' is a plain http:// URL ({raw['netbox']['url']})" in refused.stderr
    assert "set 'netbox.allow_insecure_http: true'" in refused.stderr
    assert raw["netbox"]["token"] not in refused.stderr + refused.stdout
    assert not directory.exists()
    assert refused.audit is not None and refused.audit["changes"] == []
    allowed = snippets(config, directory)  # the same run with the opt-in writes the file: the probe can see a write
    assert allowed.returncode == 0, allowed.stderr
    assert os.listdir(directory) == [ZONE]
