"""The journal and undo stack as pure logic: lines around each write, lost answers, fences, rollback, recovery plan."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from libcluster.audit import AuditError, AuditLog
from libcluster.changes import ChangeLog
from libcluster.errors import AnswerLostError, is_answer_lost
from libcluster.journal import Journal, JournalError
from libcluster.recover import RunJournal, checked, lock_order
from libcluster.undo import Undo, UndoFailure, UndoStack

RUN = "0123456789abcdef0123456789abcdef"


class Client:
    """Stands for every client: undo() answers from a script, raising for targets in fail."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        """fail: targets whose undo raises."""
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def undo(self, action: str, args: dict[str, Any]) -> str:
        """Record the call; raise for a target in fail."""
        self.calls.append((action, dict(args)))
        if args.get("name") in self.fail:
            raise RuntimeError(f"{args['name']} is not ours")
        return "absent" if args.get("gone") else "undone"


class Clients:
    """Stands for a Context: every system answers with the same Client."""

    def __init__(self, client: Client) -> None:
        """Serve client for every system."""
        self.client = client

    def ganeti(self, cluster: str) -> Client:
        """The client."""
        return self.client

    def netbox(self, read_write: bool = False) -> Client:
        """The client."""
        return self.client

    def dns(self) -> Client:
        """The client."""
        return self.client

    def remote(self) -> Client:
        """The client."""
        return self.client

    def cookbook_module(self, name: str) -> Any:
        """No cookbook undo here."""
        raise AssertionError("not used")


def lines(path: Path) -> list[dict[str, Any]]:
    """The journal lines written to path."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[ChangeLog, Client, Path]]:
    """A real run's change log journaling into tmp_path/audit.jsonl, with an undo stack on a scripted client."""
    path = tmp_path / "audit.jsonl"
    journal = Journal(RUN, AuditLog(path), None, dry_run=False)
    changes = ChangeLog(dry_run=False, journal=journal)
    client = Client(fail=("vm-bad",))
    changes.undo = UndoStack(Clients(client), recorder=lambda seq, status, error: journal.undo(seq, status, error, RUN),
                             registrar=changes.register_undo)
    yield changes, client, path


def undo_of(name: str, **args: Any) -> Undo:
    """An instance-remove undo of name."""
    return Undo("ganeti", "instance-remove", name, {"cluster": "c1", "name": name, **args})


def test_a_write_is_journaled_before_and_after_and_its_undo_learns_the_id(run: tuple[ChangeLog, Client, Path]) -> None:
    changes, client, path = run
    seen_before: list[list[dict[str, Any]]] = []
    with changes.writing("ganeti", "instance-create", "vm1", undo=undo_of("vm1"), cluster="c1") as pending:
        seen_before.append(lines(path))
        pending.learn(job_id=7)
    assert [(line["event"], line["seq"]) for line in seen_before[0]] == [("intent", 1)]
    intent, result = lines(path)
    assert intent["undo"] == {"system": "ganeti", "action": "instance-remove", "target": "vm1",
                              "args": {"cluster": "c1", "name": "vm1"}}
    assert (intent["id"], intent["detail"], result["status"], result["detail"]) == (RUN, {"cluster": "c1"}, "done",
                                                                                    {"job_id": 7})
    assert changes.undo is not None
    assert [(seq, undo.args["job_id"]) for seq, undo in changes.undo.steps] == [(1, 7)]
    assert changes.as_list()[0]["detail"] == {"cluster": "c1", "job_id": 7}
    assert client.calls == []


def test_a_lost_answer_is_maybe_and_undone_a_refused_connection_is_failed(run: tuple[ChangeLog, Client, Path]) -> None:
    changes, _, path = run
    with pytest.raises(AnswerLostError), changes.writing("netbox", "ip-create", "10.0.0.5/24",
                                                          undo=undo_of("ip", dns_name="vm1")):
        raise AnswerLostError("read timed out")
    with pytest.raises(ConnectionRefusedError), changes.writing("netbox", "ip-create", "10.0.0.6/24",
                                                                 undo=undo_of("ip2")):
        raise ConnectionRefusedError
    assert [(line["event"], line["seq"], line.get("status")) for line in lines(path)] == [
        ("intent", 1, None), ("result", 1, "maybe"), ("intent", 2, None), ("result", 2, "failed")]
    assert changes.undo is not None and [seq for seq, _ in changes.undo.steps] == [1]
    assert [change["detail"].get("status") for change in changes.as_list()] == ["maybe"]


def test_a_journal_that_cannot_be_written_stops_the_change(tmp_path: Path) -> None:
    class Broken(AuditLog):
        def write_lines(self, texts: Sequence[str]) -> None:
            raise AuditError("cannot write the audit log: No space left on device")

    changes = ChangeLog(dry_run=False, journal=Journal(RUN, Broken(tmp_path / "a.jsonl"), None, dry_run=False))
    made = []
    with (pytest.raises(JournalError, match="intent line not written: cannot write the audit log"),
          changes.writing("dns", "rrset-replace", "vm1.example.org")):
        made.append(1)
    assert made == [] and changes.as_list() == []


def test_the_fence_is_checked_before_the_intent(run: tuple[ChangeLog, Client, Path]) -> None:
    changes, _, path = run

    def lost() -> None:
        raise RuntimeError("lock cookbooks/x is lost")

    changes.fence = lost
    with pytest.raises(RuntimeError, match="is lost"), changes.writing("ganeti", "instance-create", "vm1"):
        pytest.fail("the write must not be made")
    assert lines(path) == []


def test_dry_run_writes_no_line_and_pending_ignores_calls(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    changes = ChangeLog(dry_run=True, journal=Journal(RUN, AuditLog(path), None, dry_run=True))
    with changes.writing("ganeti", "instance-create", "vm1", undo=undo_of("vm1"), cluster="c1") as pending:
        pending.learn(job_id=1)
    changes.record("dns", "record-add", "vm1.example.org")
    assert lines(path) == []
    assert [(c["action"], c["dry_run"], c["detail"]) for c in changes.as_list()] == [
        ("instance-create", True, {"cluster": "c1"}), ("record-add", True, {})]


def test_rollback_runs_in_reverse_each_step_independent_and_names_what_is_left(
        run: tuple[ChangeLog, Client, Path]) -> None:
    changes, client, path = run
    for name in ("vm-a", "vm-bad", "vm-c"):
        with changes.writing("ganeti", "instance-create", name, undo=undo_of(name, id=f"id-{name}")):
            pass
    assert changes.undo is not None
    changes.undo.push(Undo("remote", "command", "node1", {"name": "pool", "gone": True}))
    failures = changes.undo.rollback()
    assert [args["name"] for _, args in client.calls] == ["pool", "vm-c", "vm-bad", "vm-a"]
    assert failures == [UndoFailure("instance", "vm-bad", "id-vm-bad", "RuntimeError: vm-bad is not ours")]
    assert failures[0].describe() == "left behind: instance vm-bad (id id-vm-bad): RuntimeError: vm-bad is not ours"
    undo_lines = [(line["seq"], line["status"], line["by"]) for line in lines(path) if line["event"] == "undo"]
    assert undo_lines == [(4, "absent", RUN), (3, "undone", RUN), (2, "failed", RUN), (1, "undone", RUN)]
    registered = [line for line in lines(path) if line.get("action") == "undo-registered"]
    assert [(line["seq"], line["undo"]["action"]) for line in registered] == [(4, "command")]
    assert changes.undo.rollback() == []  # the steps ran once


class LateServer(Client):
    """A server that was hung: the first lookup of a write finds nothing, the queued write lands right after."""

    def undo(self, action: str, args: dict[str, Any]) -> str:
        """Absent the first time a name is looked up, undone the next."""
        self.calls.append((action, dict(args)))
        return "undone" if sum(call[1]["name"] == args["name"] for call in self.calls) > 1 else "absent"


@pytest.fixture
def late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ChangeLog, LateServer, list[float], Path]:
    """A run journaling into tmp_path whose undo stack talks to a LateServer, rechecking after 7 s for "ip" and 3 s
    for the others; the seconds slept are listed (nothing is slept for real)."""
    path = tmp_path / "audit.jsonl"
    journal = Journal(RUN, AuditLog(path), None, dry_run=False)
    changes = ChangeLog(dry_run=False, journal=journal)
    client, slept = LateServer(), []
    monkeypatch.setattr("libcluster.undo.time.sleep", slept.append)
    changes.undo = UndoStack(Clients(client), recorder=lambda seq, status, error: journal.undo(seq, status, error, RUN),
                             recheck=lambda undo: 7.0 if undo.target == "ip" else 3.0)
    return changes, client, slept, path


def test_a_maybe_change_found_absent_is_looked_up_again_after_its_request_timeout(
        late: tuple[ChangeLog, LateServer, list[float], Path]) -> None:
    changes, client, slept, path = late
    assert changes.undo is not None
    with changes.writing("ganeti", "instance-create", "vm", undo=undo_of("vm")):
        pass
    for name in ("ip", "ip2"):
        with pytest.raises(AnswerLostError), changes.writing("netbox", "ip-create", name, undo=undo_of(name)):
            raise AnswerLostError("read timed out")
    assert changes.undo.rollback() == []
    assert [args["name"] for _, args in client.calls] == ["ip2", "ip", "vm", "ip2", "ip"]
    assert slept == [7.0]  # once, the longest request timeout of the unsure steps
    undo_lines = [(line["seq"], line["status"]) for line in lines(path) if line["event"] == "undo"]
    assert undo_lines == [(1, "absent"), (3, "undone"), (2, "undone")]  # "vm" was sure: its absent is final


def test_a_write_cut_short_by_ctrl_c_is_maybe_but_looked_up_once(
        late: tuple[ChangeLog, LateServer, list[float], Path]) -> None:
    changes, client, slept, path = late
    assert changes.undo is not None
    with pytest.raises(KeyboardInterrupt), changes.writing("netbox", "ip-create", "ip", undo=undo_of("ip")):
        raise KeyboardInterrupt
    assert [line.get("status") for line in lines(path) if line["event"] == "result"] == ["maybe"]
    assert changes.undo.rollback() == []
    assert len(client.calls) == 1 and slept == []  # its server was answering: one lookup is the truth


def test_a_disabled_stack_journals_changes_without_undo(run: tuple[ChangeLog, Client, Path]) -> None:
    changes, client, path = run
    assert changes.undo is not None
    changes.undo.enabled = False
    with changes.writing("netbox", "vm-update", "vm1", undo=undo_of("vm1")):
        pass
    assert [line["undo"] for line in lines(path) if line["event"] == "intent"] == [None]
    assert changes.undo.rollback() == [] and client.calls == []


def test_unknown_undo_system_is_refused() -> None:
    with pytest.raises(Exception, match="unknown system 'ldap'"):
        Undo("ldap", "entry-delete", "cn=x")


def _journal(*events: dict[str, Any]) -> RunJournal:
    run = RunJournal(RUN)
    for event in events:
        line = checked({"id": RUN, **event})
        assert line is not None, event
        run.add(line)
    return run


def test_recovery_plan_takes_done_maybe_and_unfinished_writes_newest_first() -> None:
    undo = {"system": "netbox", "action": "ip-address-delete", "target": "10.0.0.5/24", "args": {"dns_name": "vm1"}}
    intents = [{"event": "intent", "seq": seq, "system": "netbox", "action": "ip-create", "target": f"t{seq}",
                "undo": undo if seq != 5 else None} for seq in range(1, 8)]
    run = _journal({"event": "start", "locks": [{"key": "cookbooks/x", "concurrency": 1}], "user": "u", "host": "h",
                    "pid": 1}, *intents,
                   {"event": "result", "seq": 1, "status": "done", "detail": {"id": 12}},
                   {"event": "result", "seq": 2, "status": "failed", "detail": {}},
                   {"event": "result", "seq": 3, "status": "maybe", "detail": {}},
                   {"event": "result", "seq": 4, "status": "done", "detail": {}},
                   {"event": "undo", "seq": 4, "status": "undone", "error": "", "by": RUN},
                   {"event": "result", "seq": 5, "status": "done", "detail": {}},
                   {"event": "result", "seq": 6, "status": "done", "detail": {}},
                   {"event": "undo", "seq": 6, "status": "failed", "error": "x", "by": RUN},
                   {"event": "lock", "key": "ganeti/c1/instance/vm1", "concurrency": 1})
    assert [step.seq for step in run.pending] == [7, 6, 3, 1]
    assert run.pending[-1].as_undo().args == {"dns_name": "vm1", "id": 12}
    assert run.locks == [("cookbooks/x", 1), ("ganeti/c1/instance/vm1", 1)]
    assert (run.needs_recovery, run.owner) == (True, "u@h [1]")
    run.add({"id": RUN, "event": "recovered", "status": "done", "by": RUN})
    assert run.needs_recovery is False
    assert not _journal({"event": "start", "dry_run": True}).needs_recovery  # a killed dry-run changed nothing
    assert _journal({"event": "start", "dry_run": False}).needs_recovery


@pytest.mark.parametrize("line", [
    {"id": RUN, "event": "intent", "seq": "1", "system": "s", "action": "a", "target": "t"},
    {"id": RUN, "event": "intent", "seq": 1, "system": "s", "action": "a", "target": "t",
     "undo": {"system": "ldap", "action": "x", "target": "y"}},
    {"id": RUN, "event": "result", "seq": True, "status": "done"},
    {"id": "../../x", "event": "start"},
    {"id": RUN, "event": "start", "locks": ["cookbooks/x"]},
    {"id": RUN, "event": "shutdown"},
    ["not", "an", "object"],
])
def test_lines_that_are_not_what_the_runner_writes_are_refused(line: Any) -> None:
    assert checked(line) is None


def _server(behaviour: str) -> tuple[str, threading.Thread]:
    """A local HTTP server that closes the connection after reading the request, or answers too late."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if behaviour == "slow":
            threading.Event().wait(1.5)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/", thread


@pytest.mark.parametrize(("behaviour", "lost"), [("close", True), ("slow", True), ("refused", False)])
def test_is_answer_lost_tells_a_sent_request_from_one_never_sent(behaviour: str, lost: bool) -> None:
    if behaviour == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
        probe.close()
    else:
        url, _ = _server(behaviour)
    with pytest.raises(requests.RequestException) as caught:
        requests.post(url, data=b"x", timeout=0.5)
    assert is_answer_lost(caught.value) is lost


def test_journal_text_shown_on_a_terminal_has_no_control_characters() -> None:
    run = _journal({"event": "intent", "seq": 1, "system": "dns", "action": "rrset-add", "target": "x\x1b[2Jy\n",
                    "undo": None})
    assert run.steps[1].describe() == "seq 1 no result: dns rrset-add x?[2Jy?"


def test_a_recovery_takes_its_own_lock_then_the_runs_in_the_global_order() -> None:
    run = _journal({"event": "start", "locks": [{"key": "cookbooks/sre.x:vm1", "concurrency": 1}]},
                   *({"event": "lock", "key": key, "concurrency": 1} for key in (
                       "ganeti/c1/instance/vm1", "ganeti/c1/node/n1", "custom/pool", "ganeti/c1/node/n1",
                       "ganeti/c1")))
    assert lock_order(run) == [(f"cookbooks/recover:{RUN}", 1), ("cookbooks/sre.x:vm1", 1), ("custom/pool", 1),
                               ("ganeti/c1", 1), ("ganeti/c1/node/n1", 1), ("ganeti/c1/instance/vm1", 1)]
