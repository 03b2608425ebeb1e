"""The record of changes a run makes, kept for the audit record and the dry-run plan.

Every client writes one entry per write it makes (or, in dry-run, would make): Ganeti job
ids, NetBox objects, DNS records, commands run on hosts.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

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


class ChangeLog:
    """Thread-safe list of the changes of one run; shared by all clients of the run."""

    def __init__(self, *, dry_run: bool) -> None:
        """Start an empty log; in dry-run every entry is marked as planned only."""
        self.dry_run = dry_run
        self._changes: list[Change] = []
        self._lock = threading.Lock()

    def record(self, system: str, action: str, target: str, **detail: Any) -> Change:
        """Add one change and log it; returns the entry."""
        change = Change(system=system, action=action, target=target, dry_run=self.dry_run, detail=detail)
        with self._lock:
            self._changes.append(change)
        logger.info(change.describe())
        return change

    @property
    def changes(self) -> list[Change]:
        """A copy of the changes recorded so far, in order."""
        with self._lock:
            return list(self._changes)

    def as_list(self) -> list[dict[str, Any]]:
        """The changes as JSON-ready dicts, for the audit record."""
        return [change.as_dict() for change in self.changes]
