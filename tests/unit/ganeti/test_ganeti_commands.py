"""gnt-* commands over SSH: argv and quoting, safe/unsafe marking, exit codes, parsers on real output."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import pytest

from libcluster.changes import ChangeLog
from libcluster.ganeti.commands import (
    GntCommands,
    parse_hbal,
    parse_job_id,
    parse_verify,
    parse_verify_disks,
    verify_argv,
)
from libcluster.ganeti.errors import GntCommandError
from libcluster.remote import (
    HostResult,
    HostStatus,
    InvalidHostError,
    RunResult,
    command_line,
)
from tests.unit.ganeti.ganeti_replay import FIXTURES

MASTER = "node1.lab.example"


class ScriptedRemote:
    """Stands in for Remote: records each run and answers with the next scripted host result."""

    def __init__(self, answers: Sequence[HostResult], *, dry_run: bool = False) -> None:
        self.answers = list(answers)
        self.dry_run = dry_run
        self.changes = ChangeLog(dry_run=dry_run)
        self.runs: list[dict[str, Any]] = []

    def hosts(self, names: list[str]) -> ScriptedRemote:
        self.runs.append({"hosts": names})
        return self

    def run_sync(self, *commands: Any, is_safe: bool = False, **options: Any) -> RunResult:
        self.runs[-1].update(commands=[command_line(c) for c in commands], is_safe=is_safe, **options)
        if self.dry_run and not is_safe:
            result = HostResult(host=MASTER, status=HostStatus.SKIPPED)
        else:
            result = self.answers.pop(0)
        return RunResult(commands=tuple(command_line(c) for c in commands), hosts={MASTER: result})


def _commands(remote: ScriptedRemote, ignore: Sequence[str] = ("ENODESETUP",)) -> GntCommands:
    return GntCommands(remote, lambda: MASTER, verify_ignore=ignore, timeout=77)  # type: ignore[arg-type]


def _ok(output: str, rc: int = 0) -> HostResult:
    return HostResult(host=MASTER, status=HostStatus.OK, return_codes=(rc,), outputs=(output,))


def test_verify_argv_ignores_configured_codes_and_checks_them() -> None:
    assert verify_argv(["ENODESETUP", "ENODEHV"], "A") == [
        "gnt-cluster", "verify", "--error-codes", "-I", "ENODESETUP", "-I", "ENODEHV", "-g", "A"]
    with pytest.raises(ValueError, match="error code"):
        verify_argv(["ENODESETUP; reboot"], None)


def test_cluster_verify_is_safe_and_accepts_exit_1() -> None:
    remote = ScriptedRemote([_ok("", rc=1)])
    result = _commands(remote).cluster_verify()
    [run] = remote.runs
    assert run["commands"] == ["gnt-cluster verify --error-codes -I ENODESETUP"]
    assert run["is_safe"] is True and run["timeout"] == 77 and run["ok_codes"] == [0, 1]
    assert run["hosts"] == [MASTER]
    assert result.rc == 1 and not result.ok


def test_commands_on_a_given_master_never_ask_who_the_master_is() -> None:
    def refused() -> str:
        raise AssertionError("the master was asked (RAPI may not answer)")

    remote = ScriptedRemote([_ok("")])
    commands = GntCommands(remote, refused, verify_ignore=("ENODESETUP",), timeout=77)  # type: ignore[arg-type]
    pinned = commands.on(MASTER)
    assert pinned.cluster_verify().ok
    assert remote.runs[0]["hosts"] == [MASTER] and remote.runs[0]["timeout"] == 77
    assert pinned.verify_ignore == ("ENODESETUP",)


def test_unreachable_master_raises_without_exit_code() -> None:
    down = HostResult(host=MASTER, status=HostStatus.UNREACHABLE, return_codes=(255,),
                      outputs=("ssh: connect to host node1.lab.example port 22: No route to host",))
    with pytest.raises(GntCommandError) as caught:
        _commands(ScriptedRemote([down])).cluster_verify()
    assert caught.value.rc is None and caught.value.host == MASTER
    assert "unreachable" in str(caught.value)


def test_unexpected_exit_code_raises_with_output() -> None:
    failed = HostResult(host=MASTER, status=HostStatus.FAILED, return_codes=(2,), outputs=("Failure: locked\n",))
    with pytest.raises(GntCommandError) as caught:
        _commands(ScriptedRemote([failed])).node_add("node5.lab.example")
    assert caught.value.rc == 2 and "Failure: locked" in str(caught.value)


def test_node_add_quotes_and_validates() -> None:
    remote = ScriptedRemote([_ok("")])
    _commands(remote).node_add("node5.lab.example", group="B", ssh_key_check=False, vm_capable=True)
    assert shlex.split(remote.runs[0]["commands"][0]) == [
        "gnt-node", "add", "-g", "B", "--no-ssh-key-check", "--vm-capable=yes", "node5.lab.example"]
    assert remote.runs[0]["is_safe"] is False
    group = "B; reboot"
    _commands(remote := ScriptedRemote([_ok("")])).node_add("node5.lab.example", group=group)
    assert shlex.split(remote.runs[0]["commands"][0])[3] == group
    with pytest.raises(InvalidHostError):
        _commands(ScriptedRemote([])).node_add("node5;reboot")


def test_node_remove_validates_and_is_not_safe() -> None:
    remote = ScriptedRemote([_ok("")])
    assert _commands(remote).node_remove("node5.lab.example").rc == 0
    assert shlex.split(remote.runs[0]["commands"][0]) == ["gnt-node", "remove", "node5.lab.example"]
    assert remote.runs[0]["is_safe"] is False
    with pytest.raises(InvalidHostError):
        _commands(ScriptedRemote([])).node_remove("-node5")
    planned = _commands(ScriptedRemote([], dry_run=True)).node_remove("node5.lab.example")
    assert planned.skipped and planned.rc is None


def test_unsafe_commands_are_skipped_in_dry_run() -> None:
    remote = ScriptedRemote([], dry_run=True)
    added = _commands(remote).node_add("node5.lab.example")
    disks = _commands(remote).verify_disks()
    crypto = _commands(remote).renew_crypto(cluster_certificate=True)
    assert added.skipped and added.rc is None and added.output == "skipped (dry-run)"
    assert disks.skipped and crypto.skipped
    assert [run["is_safe"] for run in remote.runs] == [False, False, False]


def test_renew_crypto_flags() -> None:
    remote = ScriptedRemote([_ok("")])
    _commands(remote).renew_crypto(rapi_certificate="/root/rapi new.pem", confd_hmac_key=True)
    assert shlex.split(remote.runs[0]["commands"][0]) == [
        "gnt-cluster", "renew-crypto", "--force", "--new-confd-hmac-key", "--rapi-certificate=/root/rapi new.pem"]
    with pytest.raises(ValueError, match="confd_hmac_key"):
        _commands(remote).renew_crypto(rapi_certificate="/root/rapi.pem")
    with pytest.raises(ValueError, match="nothing to renew"):
        _commands(remote).renew_crypto()


def test_hbal_execute_in_dry_run_records_it_and_shows_the_plan() -> None:
    remote = ScriptedRemote([_ok("Initial score: 1.5\nNo solution found\n")], dry_run=True)
    plan = _commands(remote).hbal(group="A", execute=True)
    assert [(run["commands"], run["is_safe"]) for run in remote.runs] == [
        (["hbal -L -G A -X"], False), (["hbal -L -G A"], True)]
    assert not plan.executed and plan.moves == ()


def test_instance_move_dry_run_is_checked_by_ganeti() -> None:
    remote = ScriptedRemote([_ok("JobID: 57\n")])
    job_id = _commands(remote).submit_instance_move("vm1.lab.example", "node2.lab.example", dry_run=True)
    assert job_id == 57
    assert remote.runs[0]["is_safe"] is True
    assert shlex.split(remote.runs[0]["commands"][0]) == [
        "gnt-instance", "move", "--submit", "--force", "-n", "node2.lab.example", "--dry-run", "vm1.lab.example"]


def test_job_id_parsing() -> None:
    assert parse_job_id("JobID: 1234\n") == 1234
    assert parse_job_id("Failure: prerequisites not met\n") is None


@pytest.fixture(scope="module")
def recorded_outputs() -> dict[str, str]:
    """Real outputs of gnt-cluster verify, verify-disks and hbal on the lab (tests/lab records them)."""
    return {path.stem: path.read_text() for path in (FIXTURES / "commands").glob("*.txt")}


def test_verify_output_of_the_lab_parses(recorded_outputs: dict[str, str]) -> None:
    plain = parse_verify(recorded_outputs["gnt-cluster-verify"])
    ignored = parse_verify(recorded_outputs["gnt-cluster-verify-I-ENODESETUP"])
    assert plain and {issue.code for issue in plain if issue.level == "ERROR"} == {"ENODESETUP"}
    assert {issue.item_type for issue in plain} == {"node"}
    assert all(issue.item.endswith(".lab.example") and issue.message for issue in plain)
    assert ignored and all(issue.level == "WARNING" for issue in ignored)
    assert sorted((i.code, i.item) for i in ignored) == sorted((i.code, i.item) for i in plain)


def test_verify_disks_and_hbal_outputs_of_the_lab_parse(recorded_outputs: dict[str, str]) -> None:
    disks = parse_verify_disks(0, recorded_outputs["gnt-cluster-verify-disks"])
    assert disks.ok and disks.bad_nodes == {} and disks.missing == () and disks.activated == ()
    plan = parse_hbal(0, recorded_outputs["hbal-L-G-A"], executed=False)
    assert "Cluster is empty, exiting." in plan.output
    assert plan.moves == () and plan.final_score is None


def test_hbal_solution_lines_and_scores_parse() -> None:
    """hbal's own format strings (Hbal.hs): '  %3d. %-*s %-*s => %-*s %12.8f a=%s' and the score line."""
    output = ("Initial score: 12.50000000\nTrying to minimize the CV...\n"
              "    1. vm1.lab.example node1:node2 => node3:node2 3.10000000 a=f r:node3 f\n"
              "Cluster score improved from 12.50000000 to 3.10000000\nSolution length=1\n")
    plan = parse_hbal(0, output, executed=False)
    assert plan.initial_score == 12.5 and plan.final_score == 3.1
    assert plan.moves == ("1. vm1.lab.example node1:node2 => node3:node2 3.10000000 a=f r:node3 f",)
