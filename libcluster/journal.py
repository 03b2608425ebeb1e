"""The journal of a run: its audit lines (start, lock, intent, result, undo, end, recovered), written as they happen.

Each line is one JSON object with the run's ``id`` and an ``event``, appended to the audit file with one
``write()`` and fsynced before the change it announces is made, so a killed run leaves an exact list of
what it did. The lines of the writes one request makes (a DNS update message, a NetBox bulk request) share
one ``write()`` and one fsync: all intents before the request, all results after it. When locks live in
etcd, each line is also put under ``{locks prefix}journal/{RUN_ID}/{NNNNNN}`` (start is 000000; the lines
of one write share the key of the first one's number) so that ``cookbook --recover`` on another host finds
it; a clean END deletes that copy.
In dry-run only the start and end lines are written, to the audit file only.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from libcluster import audit, redact
from libcluster.errors import LibclusterError

if TYPE_CHECKING:
    from libcluster.etcd import Gateway
    from libcluster.locks import Locks

logger = logging.getLogger(__name__)

EVENTS = ("start", "lock", "intent", "result", "undo", "end", "recovered")
"""The events of journal lines, in the order a run writes them."""
RESULTS = ("done", "failed", "maybe")
"""Status of a ``result`` line: made, not made, or unknown (the answer was lost)."""
UNDO_STATUSES = ("undone", "absent", "failed")
"""Status of an ``undo`` line."""
VALUE_BYTES = 256 * 1024
"""Most bytes of lines stored in one etcd key (a longer line has one of its own); etcd refuses requests over
1.5 MiB by default. One put of many lines costs about one of a line; a transaction of 128 puts, 50 times more."""


class JournalError(LibclusterError):
    """A journal line could not be written: the change it announces must not be made."""


class EtcdMirror:
    """The journals of running runs in etcd, one key per line, written as the runner's etcd user."""

    def __init__(self, gateway: Gateway, prefix: str) -> None:
        """gateway: etcd access (its errors become JournalError); prefix: the locks prefix, journals go under it."""
        self.gateway = gateway
        self.prefix = prefix.rstrip("/") + "/journal/"

    def key(self, run_id: str, number: int) -> str:
        """The etcd key of line number of run_id."""
        return f"{self.prefix}{run_id}/{number:06d}"

    def put(self, run_id: str, number: int, line: str) -> None:
        """Store one serialised line (no lease: it outlives the run until END or --recover deletes it)."""
        self.put_many(run_id, number, [line])

    def put_many(self, run_id: str, number: int, lines: Sequence[str]) -> None:
        """Store lines numbered from number: consecutive lines share a key named by its first line's number
        (joined by newlines, which JSON lines never hold; at most VALUE_BYTES a key): one put per key."""
        start = 0
        while start < len(lines):
            end, size = start + 1, len(lines[start])
            while end < len(lines) and size + 1 + len(lines[end]) <= VALUE_BYTES:
                size, end = size + 1 + len(lines[end]), end + 1
            self.gateway.call("writing the journal", "/kv/put", {"key": _b64(self.key(run_id, number + start)),
                                                                 "value": _b64("\n".join(lines[start:end]))})
            start = end

    def _range(self, prefix: str) -> dict[str, str]:
        answer = self.gateway.call("reading journals", "/kv/range", {"key": _b64(prefix),
                                                                     "range_end": _b64(_prefix_end(prefix))})
        return {_unb64(item["key"]): _unb64(item.get("value", "")) for item in answer.get("kvs", [])}

    def runs(self, run_id: str | None = None) -> dict[str, list[str]]:
        """Serialised lines per run id (of one run with run_id), in line order (a key's lines split)."""
        found: dict[str, list[str]] = {}
        for key, value in sorted(self._range(self.prefix + (f"{run_id}/" if run_id else "")).items()):
            run, _, _ = key[len(self.prefix):].partition("/")
            found.setdefault(run, []).extend(value.split("\n"))
        return found

    def delete(self, run_id: str) -> None:
        """Remove every line of run_id."""
        prefix = f"{self.prefix}{run_id}/"
        self.gateway.call("deleting a journal", "/kv/deleterange", {"key": _b64(prefix),
                                                                    "range_end": _b64(_prefix_end(prefix))})


def mirror_for(locks: Locks) -> EtcdMirror | None:
    """The etcd copy of the journals when locks are in etcd, under their prefix and through their (logged-in) client."""
    from libcluster.locks import EtcdBackend

    backend = locks.backend
    return EtcdMirror(backend.gateway, backend.prefix) if isinstance(backend, EtcdBackend) else None


class Journal:
    """The lines of one run, numbered in the order written; thread-safe (a pool of writers shares it)."""

    def __init__(self, run_id: str, audit_log: audit.AuditLog, mirror: EtcdMirror | None, *, dry_run: bool,
                 next_number: int = 0) -> None:
        """Lines of run_id go to audit_log and (not in dry-run) mirror; next_number continues a dead run's lines."""
        self.run_id = run_id
        self.audit = audit_log
        self.mirror = None if dry_run else mirror
        self.dry_run = dry_run
        self._number = next_number
        self._mirrored = False
        self._lock = threading.Lock()

    def write(self, event: str, fields: Mapping[str, Any], *, mirrored: bool = True) -> None:
        """Append one line (secrets masked) to the audit file (fsynced) and the mirror; JournalError if either fails."""
        self.write_many([(event, fields)], mirrored=mirrored)

    def write_many(self, lines: Sequence[tuple[str, Mapping[str, Any]]], *, mirrored: bool = True) -> None:
        """Append lines (event, fields) in one write() and one fsync, and to the mirror in one put (per
        VALUE_BYTES): the lines of the writes one request makes cost about one line's time. JournalError if
        the file or the mirror fails."""
        if not lines:
            return
        texts = [self._serialised(event, fields) for event, fields in lines]
        with self._lock:
            try:
                self.audit.write_lines(texts)
                if self.mirror is not None and mirrored:
                    self.mirror.put_many(self.run_id, self._number, texts)
                    self._mirrored = True
            except LibclusterError as exc:
                events = "/".join(dict.fromkeys(event for event, _ in lines))
                what = f"{events} line" if len(lines) == 1 else f"{len(lines)} {events} lines"
                raise JournalError(f"journal of run {self.run_id}: {what} not written: {exc}") from None
            self._number += len(texts)

    def _serialised(self, event: str, fields: Mapping[str, Any]) -> str:
        """The line as JSON, secrets masked: masked in the data when the text holds one (register() knows their
        JSON forms) or the data is not plain JSON, as json.dumps escapes past a mask put on the text."""
        line = {**fields, "id": self.run_id, "event": event}
        if event not in ("start", "end"):
            line.setdefault("time", audit.iso(audit.utc_now()))
        try:
            text = json.dumps(line, sort_keys=True)
        except (TypeError, ValueError):
            text = ""
        if not text or redact.redact(text) != text:
            text = json.dumps(redact.redact_data(line), sort_keys=True)
        return text

    def start(self, fields: Mapping[str, Any]) -> None:
        """The run's start: who, what, origin, its locks (written right after the runner's lock)."""
        self.write("start", fields)

    def lock(self, key: str, concurrency: int) -> None:
        """A lock taken by cookbook code after the start (``--recover`` takes it too)."""
        if not self.dry_run:
            self.write("lock", {"key": key, "concurrency": concurrency})

    def intent(self, seq: int, system: str, action: str, target: str, detail: Mapping[str, Any],
               undo: Mapping[str, Any] | None) -> None:
        """Before a write: what is about to change and how to take it back."""
        self.intents(system, [(seq, action, target, detail, undo)])

    def intents(self, system: str, writes: Sequence[tuple[int, str, str, Mapping[str, Any], Mapping[str, Any] | None]],
                ) -> None:
        """Before one request making several writes: the intent line of each (seq, action, target, detail, undo),
        all in one write and one fsync."""
        self.write_many([("intent", {"seq": seq, "system": system, "action": action, "target": target,
                                     "detail": dict(detail), "undo": undo})
                         for seq, action, target, detail, undo in writes])

    def result(self, seq: int, status: str, detail: Mapping[str, Any]) -> None:
        """After a write: done, failed or maybe, with the ids learnt."""
        self.results([(seq, status, detail)])

    def results(self, writes: Sequence[tuple[int, str, Mapping[str, Any]]]) -> None:
        """After one request making several writes: the result line of each (seq, status, detail), in one write."""
        self.write_many([("result", {"seq": seq, "status": status, "detail": dict(detail)})
                         for seq, status, detail in writes])

    def undo(self, seq: int, status: str, error: str, by: str) -> None:
        """A rollback or recovery step of change seq, run by run by."""
        self.write("undo", {"seq": seq, "status": status, "error": error, "by": by})

    def end(self, record: Mapping[str, Any], *, keep_mirror: bool = False) -> None:
        """The complete record; the etcd copy is deleted unless keep_mirror (something was left behind)."""
        self.write("end", record, mirrored=keep_mirror)
        if not keep_mirror:
            self.forget()

    def recovered(self, by: str, status: str) -> None:
        """Written on a dead run's id by the run that recovered it."""
        self.write("recovered", {"by": by, "status": status}, mirrored=status != "done")

    def forget(self) -> None:
        """Delete the etcd copy (the audit file keeps the record); a failure is only logged."""
        if self.mirror is None or not self._mirrored:
            return
        try:
            self.mirror.delete(self.run_id)
        except LibclusterError as exc:
            logger.warning("etcd journal of run %s not deleted: %s", self.run_id, exc)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with prefix (which ends with '/')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
