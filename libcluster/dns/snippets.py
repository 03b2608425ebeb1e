"""Zone file snippets of records (for setups that keep zones in git), validated by parsing them back.

A snippet starts with `$ORIGIN zone.` and holds the zone's rrsets relative to it, sorted, so
that a hand-written zone file can include it (`$INCLUDE`) and diffs in git stay small. Files are
replaced atomically (temporary file in the same directory, fsync, rename) and never through a
symbolic link; in dry-run they are only shown.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from libcluster.changes import ChangeLog
from libcluster.dns.errors import DNSSnippetError, DNSZoneError
from libcluster.dns.records import Records
from libcluster.dns.zones import Zones

logger = logging.getLogger(__name__)

NEW_FILE_MODE = 0o644
"""Mode of a new snippet file (before the umask); a replaced file keeps its own mode."""

DIFF_LINES = 200
"""Lines of a snippet's diff shown in the log; the rest is counted."""


def render(zone: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> str:
    """The snippet text of rrsets of zone: $ORIGIN line, then one line per record, sorted by name and type.

    Owners are relative to the origin; record data keeps absolute names, which read unambiguously.
    """
    lines = [f"$ORIGIN {zone.to_text()}"]
    for rrset in sorted(rrsets, key=lambda rrset: (rrset.name, rrset.rdtype)):
        owner = rrset.name.relativize(zone).to_text()
        kind = f"{dns.rdataclass.to_text(rrset.rdclass)} {dns.rdatatype.to_text(rrset.rdtype)}"
        lines.extend(sorted(f"{owner} {rrset.ttl} {kind} {rdata.to_text()}" for rdata in rrset))
    return "\n".join(lines) + "\n"


def parse(zone: dns.name.Name, text: str) -> Records:
    """The rrsets of a snippet, parsed by dnspython's zone file reader (no SOA or NS needed)."""
    try:
        parsed = dns.zone.from_text(text, origin=zone, relativize=False, check_origin=False)
    except dns.exception.DNSException as exc:
        raise DNSSnippetError(f"snippet of zone {zone} does not parse: {exc}") from None
    records: Records = {}
    for name, rdataset in parsed.iterate_rdatasets():
        rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
        rrset.update(rdataset)
        records[(name, rdataset.rdtype)] = rrset
    return records


def validate(zone: dns.name.Name, text: str, expected: Records) -> None:
    """Raise DNSSnippetError unless text parses back to exactly expected (records and TTLs)."""
    parsed = parse(zone, text)
    if set(parsed) != set(expected):
        missing = sorted(str(name) for name, _ in set(expected) - set(parsed))
        extra = sorted(str(name) for name, _ in set(parsed) - set(expected))
        raise DNSSnippetError(f"snippet of zone {zone}: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, rrset in expected.items():
        if parsed[key] != rrset or parsed[key].ttl != rrset.ttl:
            raise DNSSnippetError(f"snippet of zone {zone}: {key[0]} parses back as {parsed[key]}, not {rrset}")


def snippets(records: Records, zones: Zones) -> dict[dns.name.Name, str]:
    """One validated snippet per zone holding some of records."""
    by_zone: dict[dns.name.Name, Records] = {}
    for key, rrset in records.items():
        zone = zones.zone_of(key[0])
        if zone is None:
            raise DNSZoneError(f"{key[0]}: no configured zone holds this name")
        by_zone.setdefault(zone, {})[key] = rrset
    texts = {}
    for zone, zone_records in sorted(by_zone.items()):
        text = render(zone, zone_records.values())
        validate(zone, text, zone_records)
        texts[zone] = text
    return texts


@dataclass(frozen=True)
class _Planned:
    """One snippet file: its name in the directory (the zone's), what it holds now (None: absent), its new text."""

    name: str
    old: bytes | None
    new: bytes
    mode: int


def write(directory: Path, texts: Mapping[dns.name.Name, str], *, dry_run: bool, changes: ChangeLog) -> list[Path]:
    """Make directory/<zone> hold each zone's snippet (in dry-run only show the diffs).

    Returns the files changed (in dry-run: to be changed).

    Files already holding their text are left alone. A symbolic link at the directory or at a snippet
    path is refused before anything is written: a link we did not make must not redirect a write.
    Every file written (or, in dry-run, to be written) is recorded in changes.
    """
    dir_fd = _open_directory(directory, create=not dry_run)
    try:
        plan = [_plan(directory, dir_fd, zone, text) for zone, text in sorted(texts.items())]
        changed = [planned for planned in plan if planned.old != planned.new]
        for planned in changed:
            path = directory / planned.name
            _show(path, planned)
            if dir_fd is not None and not dry_run:  # opened (created if missing) when not in dry-run
                _replace(directory, dir_fd, planned)
            changes.record("dns", "snippet-write", str(path), zone=planned.name, bytes=len(planned.new),
                           created=planned.old is None)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    verb = "Would write" if dry_run else "Wrote"
    logger.info("%s %d snippet file(s) in %s, %d unchanged", verb, len(changed), directory, len(plan) - len(changed))
    return [directory / planned.name for planned in changed]


def _refuse_link(path: Path) -> DNSSnippetError:
    return DNSSnippetError(f"{path} is a symbolic link: refusing to write snippets through it, nothing written "
                           "(give the real path, or remove the link)")


def _open_directory(directory: Path, *, create: bool) -> int | None:
    """A descriptor of directory opened without following a link (None if it does not exist and create is False)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(directory, flags)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and directory.is_symlink():
            raise _refuse_link(directory) from None
        raise DNSSnippetError(f"cannot open the snippet directory {directory}: {exc.strerror}") from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return os.open(directory, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse_link(directory) from None
        raise DNSSnippetError(f"cannot create the snippet directory {directory}: {exc.strerror}") from None


def _plan(directory: Path, dir_fd: int | None, zone: dns.name.Name, text: str) -> _Planned:
    """What the snippet file of zone holds now, read without following a link; refuse a link or a non-file."""
    name = zone.to_text(omit_final_dot=True)
    planned = _Planned(name=name, old=None, new=text.encode("utf-8"), mode=NEW_FILE_MODE)
    if dir_fd is None:
        return planned
    path = directory / name
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return planned
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_link(path)
    if not stat.S_ISREG(info.st_mode):
        raise DNSSnippetError(f"{path} exists and is not a regular file: nothing written")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as current:
            old = current.read()
    except OSError as exc:
        raise DNSSnippetError(f"cannot read {path}: {exc.strerror}") from None
    return _Planned(name=name, old=old, new=planned.new, mode=stat.S_IMODE(info.st_mode))


def _show(path: Path, planned: _Planned) -> None:
    """Log the unified diff of a snippet file (against /dev/null for a new one), cut after DIFF_LINES lines."""
    old = planned.old.decode("utf-8", errors="replace").splitlines() if planned.old is not None else []
    lines = list(difflib.unified_diff(old, planned.new.decode("utf-8").splitlines(),
                                      "/dev/null" if planned.old is None else str(path), str(path), lineterm=""))
    more = f"\n... {len(lines) - DIFF_LINES} more diff lines" if len(lines) > DIFF_LINES else ""
    logger.info("Snippet %s:\n%s%s", path, "\n".join(lines[:DIFF_LINES]), more)


def _replace(directory: Path, dir_fd: int, planned: _Planned) -> None:
    """Write a temporary file in the directory, fsync it, rename it over the snippet, fsync the directory.

    rename() replaces whatever is at the name (even a link planted since the plan) and never writes through it.
    """
    path = directory / planned.name
    temporary = f".{planned.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, planned.mode,
                     dir_fd=dir_fd)
        try:
            if planned.old is not None:
                os.fchmod(fd, planned.mode)
            view = memoryview(planned.new)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, planned.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise DNSSnippetError(f"cannot write {path}: {exc.strerror}") from None
