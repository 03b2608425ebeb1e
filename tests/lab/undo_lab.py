"""What the client undo lab tests share: a journaled change log with an undo stack, and answers lost on purpose.

`Journaled` is a run's ChangeLog writing a real journal (audit file under tmp_path) with an UndoStack,
as the runner sets it up; `lines()` reads the journal back. `from_journal()` rebuilds each undo the way
`cookbook --recover` does in another process: the intent's undo completed with its result's ids.
`LosingAdapter` sends each write for real and then drops its answer, as a timeout or a reset would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

from libcluster import audit
from libcluster.changes import ChangeLog
from libcluster.journal import Journal
from libcluster.undo import Undo, UndoStack

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Clients:
    """The clients undo steps run on (what a Context gives), each made on demand by a factory."""

    def __init__(self, **factories: Callable[[], Any]) -> None:
        """factories: ganeti (called with the cluster name), netbox, dns, remote."""
        self._factories = factories

    def ganeti(self, cluster: str) -> Any:
        """The Ganeti client of cluster."""
        return self._factories["ganeti"](cluster)

    def netbox(self, read_write: bool = False) -> Any:
        """The read-write NetBox client."""
        del read_write
        return self._factories["netbox"]()

    def dns(self) -> Any:
        """The DNS client."""
        return self._factories["dns"]()

    def remote(self) -> Any:
        """The Remote client."""
        return self._factories["remote"]()


class Journaled:
    """A run's change log journaling to tmp_path/audit.jsonl, with an undo stack over clients."""

    def __init__(self, tmp_path: Path, clients: Clients) -> None:
        """Journal run 'undo-test' into tmp_path."""
        self.path = tmp_path / "audit.jsonl"
        self.journal = Journal("undo-test", audit.AuditLog(self.path), None, dry_run=False)
        self.changes = ChangeLog(dry_run=False, journal=self.journal)
        self.stack = UndoStack(clients, recorder=lambda seq, status, error: self.journal.undo(seq, status, error,
                                                                                               "undo-test"))
        self.changes.undo = self.stack

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """The journal's lines (of one event), in order."""
        found = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [line for line in found if event is None or line["event"] == event]

    def from_journal(self) -> list[Undo]:
        """Every journaled undo, its args completed with the ids of its result line, in the order written."""
        results = {line["seq"]: line for line in self.lines("result")}
        return [Undo.from_dict(line["undo"]).with_args(**results.get(line["seq"], {}).get("detail", {}))
                for line in self.lines("intent") if line["undo"]]


class LosingAdapter(BaseAdapter):
    """Sends every request for real through inner; the answer of the next `lose` writes is dropped (ReadTimeout)."""

    def __init__(self, inner: BaseAdapter | None = None, lose: int = 1) -> None:
        """Drop the answers of the next lose writes sent through inner (a plain HTTPAdapter by default)."""
        super().__init__()
        self.inner = inner or HTTPAdapter()
        self.lose = lose
        self.lost: list[str] = []

    def close(self) -> None:
        """Close the inner adapter."""
        self.inner.close()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send; for a write still to lose, raise ReadTimeout once the server has answered."""
        response = self.inner.send(request, **kwargs)
        if request.method in WRITES and self.lose > 0:
            self.lose -= 1
            self.lost.append(f"{request.method} {request.path_url}")
            raise requests.ReadTimeout(f"test: answer of {request.method} {request.path_url} dropped")
        return response
