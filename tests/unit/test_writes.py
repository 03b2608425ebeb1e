"""libcluster.writes: several writes of one request journaled each (intents first, results after, in order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from libcluster import audit
from libcluster.changes import ChangeLog
from libcluster.errors import LibclusterError
from libcluster.journal import Journal
from libcluster.undo import Undo
from libcluster.writes import Write, same_value, writing_all


def _journaled(tmp_path: Path, fence: Any = None) -> tuple[ChangeLog, Path]:
    path = tmp_path / "audit.jsonl"
    journal = Journal("unit", audit.AuditLog(path), None, dry_run=False)
    changes = ChangeLog(dry_run=False, journal=journal, **({"fence": fence} if fence else {}))
    return changes, path


def _lines(path: Path) -> list[tuple[str, int, str | None]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(line["event"], line["seq"], line.get("status")) for line in lines]


def _writes(count: int) -> list[Write]:
    return [Write("vm-create", f"vm{index}", Undo("netbox", "vm-delete", f"vm{index}", {"kind": "vm"}),
                  {"fields": {"name": f"vm{index}"}}) for index in range(count)]


def test_every_intent_is_written_before_the_request_and_every_result_after_in_order(tmp_path: Path) -> None:
    changes, path = _journaled(tmp_path)
    with writing_all(changes, "netbox", _writes(3)) as pendings:
        assert _lines(path) == [("intent", 1, None), ("intent", 2, None), ("intent", 3, None)]
        for number, pending in enumerate(pendings):
            pending.learn(id=100 + number)
    assert _lines(path)[3:] == [("result", 1, "done"), ("result", 2, "done"), ("result", 3, "done")]
    assert [(change.target, change.detail["id"]) for change in changes.changes] == [
        ("vm0", 100), ("vm1", 101), ("vm2", 102)]


@pytest.mark.parametrize(("error", "status"), [(requests.ReadTimeout("lost"), "maybe"),
                                                (LibclusterError("refused"), "failed")])
def test_the_outcome_of_the_request_is_the_result_of_each_write(tmp_path: Path, error: Exception,
                                                                 status: str) -> None:
    changes, path = _journaled(tmp_path)
    with pytest.raises(type(error)), writing_all(changes, "netbox", _writes(2)):
        raise error
    assert _lines(path)[2:] == [("result", 1, status), ("result", 2, status)]


def test_a_fence_that_refuses_before_the_request_journals_nothing_and_sends_nothing(tmp_path: Path) -> None:
    def fence() -> None:
        raise LibclusterError("lock lost")

    changes, path = _journaled(tmp_path, fence)
    sent = []
    with pytest.raises(LibclusterError, match="lock lost"), writing_all(changes, "netbox", _writes(3)):
        sent.append(True)
    assert sent == [] and not path.read_text() and changes.changes == []


def test_same_value_compares_numbers_by_value_and_the_rest_as_text() -> None:
    assert same_value(2, 2.0) and same_value("AA:bb", "aa:BB") and same_value(None, None)
    assert same_value(True, "true") and not same_value(True, 1)
    assert not same_value(None, "") and not same_value(1024, 2048) and not same_value("default", 3)
