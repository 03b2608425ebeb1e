"""The audit trail: JSON lines appended to the configured ``audit_log``; a run's record is its ``end`` line.

A run's lines are its journal (:mod:`libcluster.journal`: start, lock, intent, result, undo, end),
each with the run's ``id`` and an ``event``. The record says who ran what (and, for chat runs, who
asked and who approved), with which arguments (secrets masked), in dry-run or not, when, with which
exit code, for which ticket (``task_id``, from ``-t``), and every change the run made or planned. Each
line is written with one ``write()`` on an ``O_APPEND`` file and fsynced, so concurrent runs never
interleave their lines and a crash loses none, and the file is reopened for every line, so a rotated
file is never written to. Secrets are masked before a line is serialised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libcluster import redact
from libcluster.errors import ConfigError, LibclusterError

if TYPE_CHECKING:
    from libcluster.config import Section

ORIGIN_ENV = "COOKBOOK_ORIGIN"
"""``terminal`` (default) or ``chat``: who started the run."""
CHAT_ENV = {"requester": "COOKBOOK_REQUESTER", "approver": "COOKBOOK_APPROVER", "channel": "COOKBOOK_CHANNEL"}
"""Audit fields of a chat run and the environment variables the chat service sets them with."""
ORIGINS = ("terminal", "chat")
"""Accepted values of COOKBOOK_ORIGIN."""
DEFAULT_NAME = "audit.jsonl"
"""The audit log's file name under ``logs_base_dir`` when the configuration has no ``audit_log``."""


class AuditError(LibclusterError):
    """The audit log cannot be opened or written."""


def path_from_config(root: Section) -> Path:
    """``audit_log``, by default ``logs_base_dir``/audit.jsonl: the audit trail next to the logs unless named."""
    if root.has("audit_log"):
        return Path(root.str("audit_log"))
    return Path(root.str("logs_base_dir")) / DEFAULT_NAME


def origin_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The origin fields of the record: ``{"origin": "terminal"}`` or the chat requester/approver/channel."""
    origin = environ.get(ORIGIN_ENV, "") or "terminal"
    if origin not in ORIGINS:
        raise ConfigError(f"environment variable {ORIGIN_ENV}={origin!r}: expected one of {', '.join(ORIGINS)}")
    fields = {"origin": origin}
    if origin == "chat":
        if not environ.get(CHAT_ENV["requester"]):
            raise ConfigError(f"{ORIGIN_ENV}=chat needs {CHAT_ENV['requester']} (who asked for the run)")
        fields.update({name: environ.get(variable, "") for name, variable in CHAT_ENV.items()})
    return fields


def _secret_option(arg: str) -> bool:
    return arg.startswith("-") and redact.is_secret_key(arg.partition("=")[0].replace("-", "_"))


def secret_values(argv: Sequence[str]) -> list[str]:
    """Values given to secret-looking options: ``--token X``, ``--root-password=X``, ``--api-key X``."""
    values = []
    for position, arg in enumerate(argv):
        if _secret_option(arg):
            _, sep, value = arg.partition("=")
            if sep:
                values.append(value)
            elif position + 1 < len(argv):
                values.append(argv[position + 1])
    return values


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Arguments with the values of secret-looking options and every registered secret masked."""
    hidden = set(secret_values(argv))
    masked = []
    for arg in argv:
        if _secret_option(arg) and "=" in arg:
            masked.append(f"{arg.partition('=')[0]}={redact.MASK}")
        else:
            masked.append(redact.MASK if arg in hidden else redact.redact(arg))
    return masked


def new_run_id() -> str:
    """A new run's id: 32 random hex digits (what ``cookbook --recover RUN_ID`` takes)."""
    return os.urandom(16).hex()


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 with milliseconds and the UTC offset, as used in the record."""
    return moment.isoformat(timespec="milliseconds")


def start_record(
    *,
    run_id: str,
    cookbook: str,
    argv: Sequence[str],
    user: str,
    origin: Mapping[str, str],
    dry_run: bool,
    start: datetime,
    parent: str | None = None,
    task_id: str = "",
) -> dict[str, Any]:
    """Who runs what, from where, since when: the fields of the ``start`` line, and the first of the record.

    parent is the id of the run that called this one with run_cookbook(); task_id the run's ticket (-t), kept
    as ``task_id`` when given.
    """
    fields: dict[str, Any] = {
        "id": run_id,
        "cookbook": cookbook,
        "argv": redact_argv(argv),
        "user": user,
        **origin,
        "dry_run": dry_run,
        "start": iso(start),
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket
        "pid": os.getpid(),
    }
    if parent:
        fields["parent"] = parent
    if task_id:
        fields["task_id"] = task_id
    return fields


def record(
    *,
    run_id: str,
    cookbook: str,
    argv: Sequence[str],
    user: str,
    origin: Mapping[str, str],
    dry_run: bool,
    start: datetime,
    end: datetime,
    exit_code: int,
    changes: list[dict[str, Any]],
    parent: str | None = None,
    task_id: str = "",
) -> dict[str, Any]:
    """The audit record of one run (the ``end`` line): the start fields, end, duration, exit code, changes."""
    fields = start_record(run_id=run_id, cookbook=cookbook, argv=argv, user=user, origin=origin, dry_run=dry_run,
                          start=start, parent=parent, task_id=task_id)
    fields.update({"end": iso(end), "duration": round((end - start).total_seconds(), 3), "exit_code": exit_code,
                   "changes": changes})
    return fields


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The record of each finished run in the audit file: its ``end`` line (lines without event predate the journal).

    Other journal lines (start, intent, result...) are skipped; a missing file has no records.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        data = json.loads(line)
        if isinstance(data, dict) and data.get("event", "end") == "end":
            records.append(data)
    return records


class AuditLog:
    """The append-only audit file, reopened for every record so that a rotated (moved) file is never written to."""

    def __init__(self, path: str | Path) -> None:
        """Check path can be opened for appending (created, mode 0640) so a bad path fails before any run."""
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}") from None
        os.close(self._open())

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}") from None

    def write_line(self, text: str) -> None:
        """Append one serialised line in one write() and fsync it, so it survives a crash of the host."""
        self.write_lines([text])

    def write_lines(self, texts: Sequence[str]) -> None:
        """Append serialised lines in one write() and one fsync of the file, so they survive a crash of the host
        together (the directory is not fsynced: its entry is new only for the first line after a rotation).

        The file is opened at the configured path for each write: after logrotate moved it away, the
        next line starts a new file there.
        """
        data = "".join(text + "\n" for text in texts).encode("utf-8")
        fd = self._open()
        try:
            written = os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if written != len(data):
            raise AuditError(f"short write to the audit log {self.path}: {written} of {len(data)} bytes")
