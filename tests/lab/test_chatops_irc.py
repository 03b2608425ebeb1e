"""The chatops IRC bot on the lab's ngircd, driven by real IRC clients: runs, refusals, approvals, dry-run, cancel.

The bot runs in-process on a copy of the lab configuration (its own channel, logs and audit log,
the fixture cookbooks of tests/fixtures added to the tree) and, like the users, speaks TLS to the
lab's ngircd, verified by the lab CA. Users alice and bob may run and approve (known by their PAM
login on ngircd), carol may only dry-run (known by a nick mask), mallory is unknown; every nick,
login and the channel carry a random tag so that parallel test runs on the shared lab do not meet. The makevm tests create and remove real
VMs (Ganeti, NetBox, DNS) with a fresh host name, cleaned up whatever happens.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libcluster import audit
from libcluster.chatops.core import Chatops
from libcluster.chatops.probe import IrcProbe, Message
from libcluster.ganeti import RapiNotFoundError
from cookbook_lab import topology
from tests.lab.chatops_lab import REPO, client, irc_part, irc_section, pam_logins, running_bot, write_config
from tests.lab.test_makevm import Env, assert_nothing_left, env, remove_everything  # noqa: F401 - env is a fixture

TAG = secrets.token_hex(3)
CHANNEL = f"#chatops-{TAG}"
BOT = f"cookbook-bot-{TAG}"
USERS = ("alice", "bob", "carol", "mallory")
SHORT = 30.0
"""Seconds to wait for a quick cookbook's messages."""
LONG = 600.0
"""Seconds to wait for makevm."""


@dataclass
class Service:
    """The bot on the lab, its configuration, and one IRC client per user."""

    core: Chatops
    config_path: Path
    tmp: Path
    clients: dict[str, IrcProbe]

    def say(self, who: str, text: str) -> dict[str, int]:
        """Make who say text in the channel; return the marks of every client for expect() and bot_lines()."""
        for client in self.clients.values():
            client.drain(quiet=0.05)  # earlier tests' messages land before the marks
        marks = {name: len(client.messages) for name, client in self.clients.items()}
        self.clients[who].say(CHANNEL, text)
        return marks

    def expect(self, pattern: str, *, after: dict[str, int], who: str = "alice", timeout: float = SHORT) -> Message:
        """The bot's first message since the marks matching pattern, as seen by who."""
        return self.clients[who].expect(pattern, after=after[who], nick=BOT, timeout=timeout)

    def bot_lines(self, after: dict[str, int], who: str = "alice") -> list[str]:
        """Every bot message who saw since the marks."""
        self.clients[who].drain()
        return [message.text for message in self.clients[who].messages[after[who]:] if message.nick == BOT]

    def accepted(self, mark: dict[str, int], who: str = "alice") -> str:
        """The run id of the "accepted" reply to who's request."""
        return self.expect(rf"^{who}{TAG}: \[[0-9a-f]{{6}}\] accepted", after=mark, who=who).text.split("[")[1][:6]

    def records(self) -> list[dict[str, Any]]:
        """Audit records of the runs so far."""
        return audit.read_records(self.tmp / "logs" / "audit.jsonl")


def chatops_section(tmp: Path, irc: dict[str, Any]) -> dict[str, Any]:
    """The chatops configuration of the tests (people tagged with TAG, in CHANNEL; approvers by PAM login)."""
    return {
        "state_dir": str(tmp / "chatops"),
        "need_approval": ["sre.ganeti.makevm", "chatops.slow"],
        "roles": {
            "sre": {"run": ["sre.*", "chatops.*", "demo.*", "prompts.*"],
                    "approve": ["sre.ganeti.makevm", "chatops.*"]},
            "viewer": {"dry_run": ["sre.ganeti.resource-report", "chatops.*"]},
        },
        "people": {"alice": {"identities": [f"irc:*!alice{TAG}@*"], "roles": ["sre"]},
                   "bob": {"identities": [f"irc:*!bob{TAG}@*"], "roles": ["sre"]},
                   "carol": {"identities": [f"irc:carol{TAG}!*@*"], "roles": ["viewer"]}},
        "irc": irc_section(irc, BOT, CHANNEL, flood_burst=10, flood_interval=0.1),
    }


@pytest.fixture(scope="module")
def service(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The bot on a copy of the lab config, joined to CHANNEL, and the four users' clients joined too."""
    irc = irc_part(lab)
    tmp = tmp_path_factory.mktemp("chatops-irc")
    path = write_config(lab_config, tmp, chatops_section(tmp, irc))
    clients: dict[str, IrcProbe] = {}
    with pam_logins([f"alice{TAG}", f"bob{TAG}"]) as passwords, running_bot(path, grace=LONG) as (core, bot):
        try:
            assert bot.joined.wait(SHORT), "the bot did not join its channel"
            for name in USERS:
                login = f"{name}{TAG}"
                clients[name] = client(irc, login, CHANNEL, password=passwords.get(login, ""))
            yield Service(core, path, tmp, clients)
        finally:
            for probe in clients.values():
                probe.close()


def test_allowed_user_runs_a_cookbook_and_sees_its_output_and_result(service: Service) -> None:
    mark = service.say("alice", "!cookbook demo.hello world")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] PASS: demo.hello world in [0-9.]+s, requested by alice", after=mark)
    lines = service.bot_lines(mark)
    assert lines.index(f"[{run_id}] START - Cookbook demo.hello for world") < lines.index(
        f"[{run_id}] Hello world from alice") < lines.index(
        f"[{run_id}] END (PASS) - Cookbook demo.hello (exit_code=0) for world")
    assert service.bot_lines(mark, who="bob") == lines, "everyone in the channel sees the run"


def test_allowed_user_runs_resource_report_and_sees_the_table(service: Service, lab: dict[str, Any]) -> None:
    if not (isinstance(lab.get("ganeti"), dict) and lab["ganeti"].get("up")):
        pytest.skip("lab part ganeti is not up")
    mark = service.say("alice", f"!cookbook sre.ganeti.resource-report {topology.CLUSTER}")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] PASS: sre.ganeti.resource-report", after=mark, timeout=120)
    terminal = subprocess.run([str(REPO / ".venv" / "bin" / "cookbook"), "-c", str(service.config_path),
                               "sre.ganeti.resource-report", topology.CLUSTER], capture_output=True, text=True,
                              timeout=120, check=True).stdout.splitlines()
    shown = [line.removeprefix(f"[{run_id}] ").rstrip() for line in service.bot_lines(mark)]
    header, rule, *rows = [line.rstrip() for line in terminal if line.strip()]
    assert header in shown and rule in shown
    table = shown[shown.index(header) + 2:][:len(rows)]
    assert [row.split()[:2] for row in table] == [row.split()[:2] for row in rows]
    assert len(rows) == len(lab["ganeti"]["groups"]) + 1  # one row per node group and the TOTAL


def test_user_without_the_right_is_refused_with_a_reason(service: Service, tmp_path: Path) -> None:
    mark = service.say("carol", f"!cookbook chatops.slow --state {tmp_path}")
    service.expect(rf"^carol{TAG}: refused: carol may not run chatops.slow for real \(roles: viewer\); dry-run is "
                   "allowed: add -d$", after=mark, who="carol")
    mark = service.say("mallory", "!cookbook demo.hello world")
    service.expect(rf"^mallory{TAG}: refused: irc:mallory{TAG}!\S+ is not a known user", after=mark, who="mallory")
    assert not (tmp_path / "change").exists()
    assert not any(record["cookbook"] == "chatops.slow" and str(tmp_path) in record["argv"]
                   for record in service.records())


def test_real_run_needing_approval_waits_for_another_person(service: Service, tmp_path: Path) -> None:
    mark = service.say("alice", f"!cookbook chatops.slow --state {tmp_path} --steps 1")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] chatops.slow needs an approval: .*`!approve {run_id}`", after=mark)
    mark = service.say("alice", f"!approve {run_id}")
    service.expect(rf"^alice{TAG}: refused: alice asked for \[{run_id}\]; someone else", after=mark)
    assert not (tmp_path / "change").exists() and service.core.runs[run_id].state == "awaiting-approval"
    mark = service.say("bob", f"!approve {run_id}")
    service.expect(rf"^bob{TAG}: \[{run_id}\] approved", after=mark, who="bob")
    service.expect(rf"^\[{run_id}\] PASS: .* requested by alice, approved by bob", after=mark)
    assert (tmp_path / "change").exists()
    [record] = [record for record in service.records() if str(tmp_path) in record["argv"]]
    assert (record["origin"], record["requester"], record["approver"], record["channel"], record["exit_code"]) == (
        "chat", "alice", "bob", f"irc:{CHANNEL}", 0)


def test_cancel_mid_run_interrupts_and_the_cookbook_rolls_back(service: Service, tmp_path: Path) -> None:
    mark = service.say("alice", f"!cookbook chatops.slow --state {tmp_path} --steps 600 --step-seconds 0.1")
    run_id = service.accepted(mark)
    service.expect("needs an approval", after=mark)
    service.say("bob", f"!approve {run_id}")
    service.expect(rf"^\[{run_id}\] step 3 of 600", after=mark)
    assert (tmp_path / "change").exists()
    cancel = service.say("alice", f"!cookbook cancel {run_id}")
    service.expect(rf"^alice{TAG}: \[{run_id}\] interrupt sent", after=cancel)
    service.expect(rf"^\[{run_id}\] INTERRUPTED \(rollback run\): .* interrupted by alice", after=cancel)
    assert f"[{run_id}] rolled back: removed {tmp_path / 'change'}" in service.bot_lines(mark)
    assert not (tmp_path / "change").exists() and (tmp_path / "rolled-back").exists()


def test_dry_run_from_chat_changes_nothing(service: Service, tmp_path: Path) -> None:
    mark = service.say("carol", f"!cookbook -d chatops.slow --state {tmp_path} --steps 1")
    run_id = service.accepted(mark, who="carol")
    service.expect(rf"^\[{run_id}\] PASS: -d chatops.slow", after=mark, who="carol")
    lines = service.bot_lines(mark, who="carol")
    assert f"[{run_id}] DRY-RUN would create {tmp_path / 'change'}" in lines
    assert not any("needs an approval" in line for line in lines if run_id in line)
    assert list(tmp_path.iterdir()) == []
    [record] = [record for record in service.records() if str(tmp_path) in record["argv"]]
    assert record["dry_run"] is True and record["changes"] == []


def test_shell_metacharacters_cannot_escape_into_a_shell(service: Service, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = tmp_path / "argv.json"
    words = ["; rm -rf /", f"$(touch {marker})", f"`touch {marker}`", "&&", "touch", str(marker), "|", "sh", "$HOME"]
    mark = service.say("alice", "!cookbook " + shlex.join(["chatops.echo", "--out", str(out), "--", *words]))
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] PASS", after=mark)
    recorded = json.loads(out.read_text())
    assert recorded["argv"][-(len(words) + 4):] == ["chatops.echo", "--out", str(out), "--", *words]
    assert recorded["words"] == ["--", *words]
    assert not marker.exists()


def test_a_command_truncated_by_the_server_is_not_run(service: Service) -> None:
    runs_before = len(service.core.runs)
    text = "!cookbook demo.hello " + "x" * 460  # fits the client's line; not once the server adds the sender
    mark = service.say("alice", text)
    service.expect(rf"^alice{TAG}: refused: the server truncated your line", after=mark)
    assert len(service.core.runs) == runs_before


def test_a_prompt_needing_a_typed_answer_fails_the_run_with_its_message(service: Service) -> None:
    mark = service.say("alice", "!cookbook prompts.ask")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] ERROR: prompts.ask", after=mark)
    assert any("no terminal to ask for an answer: Which node?" in line for line in service.bot_lines(mark))


# --- makevm through chat: approval, real creation, dry-run, cancel during the Ganeti job ---------------------


@pytest.fixture
def vm(env: Env) -> Iterator[str]:  # noqa: F811 - env is the fixture imported from test_makevm
    """A fresh host name; everything named after it is removed after the test, pass or fail."""
    name = f"chatops-{secrets.token_hex(3)}"
    yield name
    remove_everything(env, env.fqdn(name), [])


MAKEVM = f"!cookbook sre.ganeti.makevm --cluster {topology.CLUSTER} --group A"


def test_makevm_waits_for_a_second_user_and_creates_the_vm(service: Service, env: Env, vm: str) -> None:  # noqa: F811
    mark = service.say("alice", f"{MAKEVM} {vm}")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] sre.ganeti.makevm needs an approval", after=mark, timeout=60)
    with pytest.raises(RapiNotFoundError):
        env.ganeti.instance(env.fqdn(vm))
    service.say("bob", f"!approve {run_id}")
    service.expect(rf"^\[{run_id}\] PASS: sre.ganeti.makevm .* requested by alice, approved by bob", after=mark,
                   timeout=LONG)
    assert env.ganeti.instance(env.fqdn(vm))["name"] == env.fqdn(vm)
    lines = service.bot_lines(mark)
    assert any(line.startswith(f"[{run_id}] START - Cookbook sre.ganeti.makevm") for line in lines)
    assert any(f"[{run_id}] Ganeti job" in line for line in lines), "Ganeti job lines reach the channel"
    [record] = [record for record in service.records() if record["cookbook"] == "sre.ganeti.makevm"
                and vm in record["argv"]]
    assert (record["requester"], record["approver"], record["origin"], record["exit_code"]) == (
        "alice", "bob", "chat", 0)
    assert {(change["system"], change["target"]) for change in record["changes"]} >= {("ganeti", env.fqdn(vm))}


def test_makevm_dry_run_from_chat_changes_nothing(service: Service, env: Env, vm: str) -> None:  # noqa: F811
    mark = service.say("carol", f"!cookbook -d sre.ganeti.makevm --cluster {topology.CLUSTER} --group A {vm}")
    assert service.expect(rf"^carol{TAG}: ", after=mark, who="carol").text.startswith(f"carol{TAG}: refused: carol")
    mark = service.say("alice", f"!cookbook -d sre.ganeti.makevm --cluster {topology.CLUSTER} --group A {vm}")
    run_id = service.accepted(mark)
    service.expect(rf"^\[{run_id}\] PASS: -d sre.ganeti.makevm", after=mark, timeout=LONG)
    lines = service.bot_lines(mark)
    assert any(f"Plan for new VM {env.fqdn(vm)}" in line for line in lines)
    assert not any("needs an approval" in line for line in lines if run_id in line)
    assert_nothing_left(env, env.fqdn(vm), [])


def test_cancel_makevm_during_the_ganeti_job_leaves_nothing(service: Service, env: Env, vm: str) -> None:  # noqa: F811
    mark = service.say("alice", f"{MAKEVM} {vm}")
    run_id = service.accepted(mark)
    service.expect("needs an approval", after=mark, timeout=60)
    service.say("bob", f"!approve {run_id}")
    # right after the create job is submitted: the run records NetBox, then follows the job
    service.expect(rf"^\[{run_id}\] Ganeti job \d+ creates {env.fqdn(vm)}", after=mark, timeout=LONG)
    cancel = service.say("bob", f"!cookbook cancel {run_id}")
    service.expect(rf"^bob{TAG}: \[{run_id}\] interrupt sent", after=cancel, who="bob")
    service.expect(rf"^\[{run_id}\] INTERRUPTED \(rollback run\): .* interrupted by bob", after=mark, timeout=LONG)
    assert any(f"Undo: remove instance {env.fqdn(vm)}" in line for line in service.bot_lines(mark))
    assert_nothing_left(env, env.fqdn(vm), [])
