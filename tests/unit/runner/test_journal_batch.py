"""The writes of one request journaled together: one write() and one fsync for their intents, one for their results."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from libcluster import redact
from libcluster.audit import AuditLog
from libcluster.changes import ChangeLog, Write
from libcluster.errors import LibclusterError
from libcluster.journal import VALUE_BYTES, EtcdMirror, Journal, JournalError
from libcluster.undo import Undo, UndoStack

RUN = "fedcba9876543210fedcba9876543210"


class Calls:
    """Counts os.write and os.fsync calls (the real ones are made)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap os.write and os.fsync for the test."""
        self.writes = 0
        self.fsyncs = 0
        real_write, real_fsync = os.write, os.fsync

        def write(fd: int, data: bytes) -> int:
            self.writes += 1
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            self.fsyncs += 1
            real_fsync(fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)

    def counts(self) -> tuple[int, int]:
        """(writes, fsyncs) so far."""
        return self.writes, self.fsyncs


class Gateway:
    """Stands for etcd's gateway: keeps what is put, answers ranges; fails when told."""

    def __init__(self) -> None:
        """No calls yet."""
        self.calls: list[str] = []
        self.kv: dict[str, str] = {}
        self.fail = False

    def call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record the path; store a put; answer a range from what was stored; raise when fail is set."""
        if self.fail:
            raise LibclusterError(f"{what}: etcd unavailable")
        self.calls.append(path)
        if path == "/kv/put":
            self.kv[payload["key"]] = payload["value"]
            return {}
        assert path == "/kv/range"
        start, end = _text(payload["key"]), _text(payload["range_end"])
        return {"kvs": [{"key": key, "value": value} for key, value in self.kv.items()
                        if start <= _text(key) < end]}


def lines(path: Path) -> list[dict[str, Any]]:
    """The journal lines in path."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def writes(count: int) -> list[Write]:
    """count creations of VMs, each with its undo."""
    return [Write("vm-create", f"vm{number}", Undo("netbox", "vm-delete", f"vm{number}", {"name": f"vm{number}"}),
                  {"fields": ["name"]}) for number in range(count)]


@pytest.fixture
def changes(tmp_path: Path) -> Iterator[ChangeLog]:
    """A real run's change log journaling into tmp_path/audit.jsonl, with an enabled undo stack."""
    log = ChangeLog(dry_run=False, journal=Journal(RUN, AuditLog(tmp_path / "audit.jsonl"), None, dry_run=False))
    log.undo = UndoStack(clients=None)  # type: ignore[arg-type]  # nothing is rolled back here
    yield log


def test_a_batch_has_one_write_and_one_fsync_for_its_intents_before_and_one_for_its_results_after(
        changes: ChangeLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    calls = Calls(monkeypatch)
    with changes.writing_batch("netbox", writes(3)) as pendings:
        assert calls.counts() == (1, 1)
        assert [(line["event"], line["seq"], line["target"], line["undo"]["args"]) for line in lines(path)] == [
            ("intent", 1, "vm0", {"name": "vm0"}), ("intent", 2, "vm1", {"name": "vm1"}),
            ("intent", 3, "vm2", {"name": "vm2"})]
        for number, pending in enumerate(pendings):
            pending.learn(id=100 + number)
    assert calls.counts() == (2, 2)
    assert [(line["event"], line["seq"], line["status"], line["detail"]) for line in lines(path)[3:]] == [
        ("result", 1, "done", {"id": 100}), ("result", 2, "done", {"id": 101}), ("result", 3, "done", {"id": 102})]
    assert changes.undo is not None
    assert [(seq, undo.args) for seq, undo in changes.undo.steps] == [
        (1, {"name": "vm0", "id": 100}), (2, {"name": "vm1", "id": 101}), (3, {"name": "vm2", "id": 102})]
    assert [(change.target, change.detail) for change in changes.changes] == [
        ("vm0", {"fields": ["name"], "id": 100}), ("vm1", {"fields": ["name"], "id": 101}),
        ("vm2", {"fields": ["name"], "id": 102})]


def test_the_seqs_of_a_batch_follow_the_writes_before_it(changes: ChangeLog, tmp_path: Path) -> None:
    with changes.writing("netbox", "vm-update", "vm-a"):
        pass
    with changes.writing_batch("netbox", writes(2)):
        pass
    with changes.writing("netbox", "vm-update", "vm-b"):
        pass
    assert [(line["event"], line["seq"]) for line in lines(tmp_path / "audit.jsonl")] == [
        ("intent", 1), ("result", 1), ("intent", 2), ("intent", 3), ("result", 2), ("result", 3),
        ("intent", 4), ("result", 4)]


@pytest.mark.parametrize(("error", "status", "undone"), [(requests.ReadTimeout("lost"), "maybe", [1, 2]),
                                                         (LibclusterError("refused"), "failed", [])])
def test_the_outcome_of_the_request_is_each_writes_result_in_one_write(
        changes: ChangeLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, status: str,
        undone: list[int]) -> None:
    calls = Calls(monkeypatch)
    with pytest.raises(type(error)), changes.writing_batch("netbox", writes(2)):
        raise error
    assert calls.counts() == (2, 2)
    assert [(line["seq"], line["status"]) for line in lines(tmp_path / "audit.jsonl")[2:]] == [
        (1, status), (2, status)]
    assert changes.undo is not None and [seq for seq, _ in changes.undo.steps] == undone


def test_intent_lines_that_cannot_be_written_stop_the_request(tmp_path: Path) -> None:
    gateway = Gateway()
    gateway.fail = True
    journal = Journal(RUN, AuditLog(tmp_path / "audit.jsonl"), EtcdMirror(gateway, "/cookbooks/"), dry_run=False)
    changes = ChangeLog(dry_run=False, journal=journal)
    sent = []
    with (pytest.raises(JournalError, match="3 intent lines not written: writing the journal: etcd unavailable"),
          changes.writing_batch("dns", writes(3))):
        sent.append(True)
    assert sent == [] and changes.changes == []


def test_the_etcd_copy_of_a_batch_is_one_put_per_value_bytes_of_lines_read_back_in_order(tmp_path: Path) -> None:
    gateway = Gateway()
    mirror = EtcdMirror(gateway, "/cookbooks/")
    journal = Journal(RUN, AuditLog(tmp_path / "audit.jsonl"), mirror, dry_run=False)
    journal.start({"cookbook": "test"})
    changes = ChangeLog(dry_run=False, journal=journal)
    big = [Write("vm-create", f"vm{number}", None, {"blob": "x" * (VALUE_BYTES // 3)}) for number in range(4)]
    with changes.writing_batch("dns", writes(300)):
        assert gateway.calls == ["/kv/put", "/kv/put"]
    with changes.writing_batch("dns", big):
        pass
    # start; 300 intents share a key, so do 300 results; 4 intents of a third of VALUE_BYTES go two by two
    assert gateway.calls == ["/kv/put"] * 6
    assert sorted(_text(key) for key in gateway.kv) == [mirror.key(RUN, number) for number in (0, 1, 301, 601, 603,
                                                                                                 605)]
    assert mirror.runs(RUN) == {RUN: (tmp_path / "audit.jsonl").read_text().splitlines()}


def test_a_dry_run_batch_only_plans_its_writes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    changes = ChangeLog(dry_run=True, journal=Journal(RUN, AuditLog(path), None, dry_run=True))
    with changes.writing_batch("netbox", writes(2)) as pendings:
        for pending in pendings:
            pending.learn(id=1)
    assert lines(path) == []
    assert [(change.target, change.dry_run, change.detail) for change in changes.changes] == [
        ("vm0", True, {"fields": ["name"]}), ("vm1", True, {"fields": ["name"]})]


def test_a_change_recorded_after_the_fact_is_one_write(changes: ChangeLog, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch)
    changes.record("ganeti", "instance-tags", "vm1", tags=["a"])
    assert calls.counts() == (1, 1)
    assert [(line["event"], line["seq"], line.get("status")) for line in lines(tmp_path / "audit.jsonl")] == [
        ("intent", 1, None), ("result", 1, "done")]


def _text(value: str) -> str:
    return base64.b64decode(value).decode()


@pytest.mark.parametrize("value", ['pa"ss\\wörd-4', "plain-secret-5"])
def test_a_secret_in_a_batch_is_masked_in_its_lines_escaped_or_not(tmp_path: Path, value: str) -> None:
    redact.register(value)
    path = tmp_path / "audit.jsonl"
    changes = ChangeLog(dry_run=False, journal=Journal(RUN, AuditLog(path), None, dry_run=False))
    with changes.writing_batch("netbox", [Write("vm-update", "vm1", None, {"comment": f"key={value}"}),
                                          Write("vm-update", "vm2", None, {"tags": {"a"}})]):
        pass
    text = path.read_text()
    assert value not in text and json.dumps(value)[1:-1] not in text
    assert [line["detail"] for line in lines(path)[:2]] == [{"comment": f"key={redact.MASK}"}, {"tags": ["a"]}]
