"""The record of changes a run makes, kept for the audit record, the journal and the dry-run plan.

Every client writes one entry per write it makes (or, in dry-run, would make): Ganeti job
ids, NetBox objects, DNS records, commands run on hosts. :meth:`ChangeLog.writing` wraps a write:
the run's fence is checked, an ``intent`` line is journaled (fsynced) before it and a ``result`` line
after it, and its undo goes on the run's undo stack when the write was made or may have been made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from libcluster.errors import is_answer_lost

if TYPE_CHECKING:
    from libcluster.journal import Journal
    from libcluster.undo import Undo, UndoStack

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One write made by a client, or planned in dry-run."""

    system: str
    """Which integration: ganeti, netbox, dns, remote."""
    action: str
    """What was done, e.g. instance-create, ip-allocate, record-add, command."""
    target: str
    """The object changed: instance name, NetBox object URL, DNS name, host list."""
    dry_run: bool
    """True when the change was only planned and nothing was changed."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Identifiers of the change: job id, NetBox id, record data."""

    def as_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-ready dict."""
        return asdict(self)

    def describe(self) -> str:
        """One human line, used for the dry-run plan."""
        verb = "Would" if self.dry_run else "Did"
        extra = " ".join(f"{key}={value}" for key, value in self.detail.items())
        return f"{verb} {self.system} {self.action} {self.target}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Write:
    """One of the writes a request makes: what :meth:`ChangeLog.writing_batch` takes for each."""

    action: str
    target: str
    undo: Undo | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class Pending:
    """A write in progress inside :meth:`ChangeLog.writing`: collects the ids learnt before it ends."""

    def __init__(self, seq: int, *, planned: bool = False) -> None:
        """seq: the change's number in the run; planned: a dry-run write, whose calls are ignored."""
        self.seq = seq
        self.planned = planned
        self.learnt: dict[str, Any] = {}

    def learn(self, **detail: Any) -> None:
        """Ids learnt (job id, NetBox id): they go into the result line and the undo's args."""
        if not self.planned:
            self.learnt.update(detail)


def no_fence() -> None:
    """The fence of a run whose locks cannot be lost (file locks, --no-locks, tests)."""


class ChangeLog:
    """Thread-safe list of the changes of one run; shared by all clients of the run; journals real writes."""

    def __init__(self, *, dry_run: bool, journal: Journal | None = None,
                 fence: Callable[[], None] = no_fence) -> None:
        """Start an empty log; in dry-run every entry is marked as planned only.

        journal receives the intent/result lines of real writes; fence raises when the run may no longer
        write (its lock is lost), checked before each intent.
        """
        self.dry_run = dry_run
        self.journal = journal
        self.fence = fence
        self.undo: UndoStack | None = None
        """The run's undo stack (set by the Context): ``writing(undo=...)`` pushes on it."""
        self._changes: list[Change] = []
        self._seq = 0
        self._lock = threading.Lock()

    def _next_seqs(self, count: int) -> list[int]:
        with self._lock:
            self._seq += count
            return list(range(self._seq - count + 1, self._seq + 1))

    def _add(self, change: Change) -> Change:
        with self._lock:
            self._changes.append(change)
        logger.info(change.describe())
        return change

    def record(self, system: str, action: str, target: str, **detail: Any) -> Change:
        """Add one change and log it; returns the entry. A real write is journaled after the fact (no undo)."""
        change = Change(system=system, action=action, target=target, dry_run=self.dry_run, detail=detail)
        if self.journal is not None and not self.dry_run:
            self._journal_done(system, action, target, detail, None)
        return self._add(change)

    def _journal_done(self, system: str, action: str, target: str, detail: dict[str, Any],
                      undo: Undo | None) -> int:
        """Journal a change already made (its intent and result lines, in one write); its seq."""
        assert self.journal is not None
        seq = self._next_seqs(1)[0]
        self.journal.write_many([
            ("intent", {"seq": seq, "system": system, "action": action, "target": target, "detail": detail,
                        "undo": undo.as_dict() if undo else None}),
            ("result", {"seq": seq, "status": "done", "detail": {}})])
        return seq

    @contextmanager
    def writing(self, system: str, action: str, target: str, *, undo: Undo | None = None,
                **detail: Any) -> Iterator[Pending]:
        """Wrap one write: fence, intent line, the write (the with body), result line, undo pushed.

        The result is ``done``, ``maybe`` when the body raised an error meaning the answer was lost
        (:func:`libcluster.errors.is_answer_lost`) or was interrupted (KeyboardInterrupt, SystemExit), else
        ``failed``; the undo (its args completed with
        :meth:`Pending.learn`) is pushed on the run's undo stack when done or maybe. The exception goes on.
        In dry-run it only records the planned change and yields a Pending that ignores calls.
        """
        with self.writing_batch(system, [Write(action, target, undo, detail)]) as pendings:
            yield pendings[0]

    @contextmanager
    def writing_batch(self, system: str, writes: Sequence[Write]) -> Iterator[list[Pending]]:
        """Wrap several writes made by one request (a DNS update message, a NetBox bulk request) as writing()
        wraps one: each keeps its own seq, result and undo, but all intent lines are journaled in one write
        and one fsync before the request, and all result lines in one after it, with the request's outcome."""
        if self.dry_run:
            for write in writes:
                self._add(Change(system=system, action=write.action, target=write.target, dry_run=True,
                                 detail=dict(write.detail)))
            yield [Pending(0, planned=True) for _ in writes]
            return
        self.fence()
        stack = self.undo if self.undo is not None and self.undo.enabled else None
        pendings = [Pending(seq) for seq in self._next_seqs(len(writes))]
        if self.journal is not None:
            self.journal.intents(system, [
                (pending.seq, write.action, write.target, write.detail,
                 write.undo.as_dict() if write.undo is not None and stack is not None else None)
                for pending, write in zip(pendings, writes, strict=True)])
        try:
            yield pendings
        except BaseException as exc:
            # Ctrl+C (or SIGTERM's exit) in the middle of a write: the request may have been sent, so "maybe"
            timed_out = isinstance(exc, Exception) and is_answer_lost(exc)
            lost = timed_out or not isinstance(exc, Exception)
            self._finish(system, writes, pendings, "maybe" if lost else "failed", stack, unsure=timed_out)
            raise
        self._finish(system, writes, pendings, "done", stack)

    def _finish(self, system: str, writes: Sequence[Write], pendings: Sequence[Pending], status: str,
                stack: UndoStack | None, *, unsure: bool = False) -> None:
        """Push the undo of each write that was (maybe) made, list it in the record, journal the results; unsure:
        the server did not answer in time, so it may act on the request late (the undo looks twice)."""
        for pending, write in zip(pendings, writes, strict=True):
            if status == "failed":
                break
            if write.undo is not None and stack is not None:
                stack.push(write.undo.with_args(**pending.learnt), seq=pending.seq, unsure=unsure)
            extra = {"status": status} if status == "maybe" else {}
            self._add(Change(system=system, action=write.action, target=write.target, dry_run=False,
                             detail={**write.detail, **pending.learnt, **extra}))
        if self.journal is not None:
            self.journal.results([(pending.seq, status, pending.learnt) for pending in pendings])

    def register_undo(self, undo: Undo) -> int:
        """Journal an undo pushed by cookbook code without a change of its own (``ctx.undo.push``); its seq."""
        if self.journal is None:
            return self._next_seqs(1)[0]
        return self._journal_done(undo.system, "undo-registered", undo.target, {}, undo)

    @property
    def changes(self) -> list[Change]:
        """A copy of the changes recorded so far, in order."""
        with self._lock:
            return list(self._changes)

    def as_list(self) -> list[dict[str, Any]]:
        """The changes as JSON-ready dicts, for the audit record."""
        return [change.as_dict() for change in self.changes]
