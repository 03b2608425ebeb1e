"""The record of changes a run makes, kept for the audit record, the journal and the dry-run plan.

Every client writes one entry per write it makes (or, in dry-run, would make): Ganeti job
ids, NetBox objects, DNS records, commands run on hosts. :meth:`ChangeLog.writing` wraps a write:
the run's fence is checked, an ``intent`` line is journaled (fsynced) before it and a ``result`` line
after it, and its undo goes on the run's undo stack when the write was made or may have been made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
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

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _add(self, change: Change) -> Change:
        with self._lock:
            self._changes.append(change)
        logger.info(change.describe())
        return change

    def record(self, system: str, action: str, target: str, **detail: Any) -> Change:
        """Add one change and log it; returns the entry. A real write is journaled after the fact (no undo)."""
        change = Change(system=system, action=action, target=target, dry_run=self.dry_run, detail=detail)
        if self.journal is not None and not self.dry_run:
            seq = self._next_seq()
            self.journal.intent(seq, system, action, target, detail, None)
            self.journal.result(seq, "done", {})
        return self._add(change)

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
        if self.dry_run:
            self._add(Change(system=system, action=action, target=target, dry_run=True, detail=detail))
            yield Pending(0, planned=True)
            return
        self.fence()
        seq = self._next_seq()
        stack = self.undo if self.undo is not None and self.undo.enabled else None
        journaled = undo if stack is not None else None
        if self.journal is not None:
            self.journal.intent(seq, system, action, target, detail, journaled.as_dict() if journaled else None)
        pending = Pending(seq)
        try:
            yield pending
        except BaseException as exc:
            # Ctrl+C (or SIGTERM's exit) in the middle of a write: the request may have been sent, so "maybe"
            lost = not isinstance(exc, Exception) or is_answer_lost(exc)
            status = "maybe" if lost else "failed"
            self._finish(pending, status, system, action, target, detail, journaled, stack)
            raise
        self._finish(pending, "done", system, action, target, detail, journaled, stack)

    def _finish(self, pending: Pending, status: str, system: str, action: str, target: str,
                detail: dict[str, Any], undo: Undo | None, stack: UndoStack | None) -> None:
        """Journal the result, push the undo of a write that was (maybe) made, and list it in the record."""
        if undo is not None and stack is not None and status != "failed":
            stack.push(undo.with_args(**pending.learnt), seq=pending.seq)
        if status != "failed":
            extra = {"status": status} if status == "maybe" else {}
            self._add(Change(system=system, action=action, target=target, dry_run=False,
                             detail={**detail, **pending.learnt, **extra}))
        if self.journal is not None:
            self.journal.result(pending.seq, status, pending.learnt)

    def register_undo(self, undo: Undo) -> int:
        """Journal an undo pushed by cookbook code without a change of its own (``ctx.undo.push``); its seq."""
        seq = self._next_seq()
        if self.journal is not None:
            self.journal.intent(seq, undo.system, "undo-registered", undo.target, {}, undo.as_dict())
            self.journal.result(seq, "done", {})
        return seq

    @property
    def changes(self) -> list[Change]:
        """A copy of the changes recorded so far, in order."""
        with self._lock:
            return list(self._changes)

    def as_list(self) -> list[dict[str, Any]]:
        """The changes as JSON-ready dicts, for the audit record."""
        return [change.as_dict() for change in self.changes]
