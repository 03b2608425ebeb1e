"""What the clients share to journal their writes and undo them: several writes in one request, and "not ours".

A NetBox bulk request or a DNS update message makes several changes at once; each is journaled as its
own write (intent before the request, result after, its own undo), so that an undo or a failure names
one object. An undo that finds an object its write did not make raises NotOursError and removes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from libcluster.changes import ChangeLog, Pending, Write
from libcluster.errors import LibclusterError

__all__ = ["NotOursError", "Write", "same_value", "undoing", "writing_all"]


class NotOursError(LibclusterError):
    """An undo found an object its write did not make, or someone changed it since: it is left alone."""


def undoing(changes: ChangeLog) -> bool:
    """Whether the undo of a write is kept (a real run with an enabled undo stack): only then are old values read."""
    return not changes.dry_run and changes.undo is not None and changes.undo.enabled


def writing_all(changes: ChangeLog, system: str, writes: Sequence[Write]) -> AbstractContextManager[list[Pending]]:
    """ChangeLog.writing() for each of several changes made by one request (:meth:`ChangeLog.writing_batch`):
    every intent is journaled before it, every result after it (in the same order, each set in one write),
    with the outcome of the request."""
    return changes.writing_batch(system, writes)


def same_value(current: Any, wanted: Any) -> bool:
    """Whether a value read back is the one written: numbers by value (2 == 2.0), the rest as text, any case."""
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (current, wanted)):
        return float(current) == float(wanted)
    if current is None or wanted is None:
        return current is wanted
    return str(current).lower() == str(wanted).lower()
