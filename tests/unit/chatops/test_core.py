"""The core through real `cookbook` subprocesses on the fixture tree: runs, refusals, approvals, cancel, audit."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.core import Chatops
from libcluster.chatops.permissions import Identity
from libcluster.chatops.settings import Person
from tests.unit.chatops.conftest import DOOR, FIXTURES, Chat, RecordingSink, chatops_section, write_config


def test_allowed_user_runs_a_cookbook_and_sees_its_output_and_result(chat: Chat) -> None:
    reply, sink = chat.say("demo.hello world")
    run_id = chat.run_id(reply)
    assert reply.public
    sink.wait_for(rf"^\[{run_id}\] PASS: demo.hello world in [0-9.]+s, requested by alice")
    lines = sink.lines
    start = lines.index(f"[{run_id}] START - Cookbook demo.hello for world")
    assert lines.index(f"[{run_id}] Hello world from alice") > start
    assert lines.index(f"[{run_id}] END (PASS) - Cookbook demo.hello (exit_code=0) for world") < len(lines) - 1
    [record] = chat.records()
    assert (record["cookbook"], record["origin"], record["requester"], record["approver"], record["channel"],
            record["user"], record["dry_run"]) == ("demo.hello", "chat", "alice", "", "irc:#test", "alice", False)
    log = chat.core.runs[run_id].log_path
    assert log is not None and "Hello world from alice" in log.read_text()


def test_unknown_user_is_refused_with_a_reason_and_nothing_runs(chat: Chat) -> None:
    reply, sink = chat.say("demo.hello world", who="mallory")
    assert reply.lines == ["refused: irc:mallory!mallory@test.example is not a known user (chatops.people): ask an "
                           "admin to add you"]
    assert chat.core.runs == {} and sink.batches == [] and chat.records() == []


def test_dry_run_only_user_is_refused_a_real_run_with_a_hint_and_may_dry_run(chat: Chat, tmp_path: Path) -> None:
    reply, _ = chat.say(f"chatops.slow --state {tmp_path}", who="carol")
    assert reply.lines == ["refused: carol may not run chatops.slow for real (roles: viewer); dry-run is allowed: "
                           "add -d"]
    reply, _ = chat.say("demo.hello world", who="carol")
    assert reply.lines == ["refused: carol may not run demo.hello for real (roles: viewer)"]
    reply, _ = chat.say("-d demo.hello world", who="carol")
    assert reply.lines == ["refused: carol may not run demo.hello, not even in dry-run (roles: viewer)"]
    reply, sink = chat.say(f"-d chatops.slow --state {tmp_path}", who="carol")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] PASS: -d chatops.slow")
    assert f"[{run_id}] DRY-RUN would create {tmp_path / 'change'}" in sink.lines
    assert not (tmp_path / "change").exists()
    assert not any("needs an approval" in line for line in sink.lines), "dry-runs never need an approval"
    [record] = chat.records()
    assert record["dry_run"] is True and record["requester"] == "carol"


def test_unknown_cookbook_and_group_are_refused_without_a_run(chat: Chat) -> None:
    reply, sink = chat.say("demo.nope x")
    assert reply.lines == ["no cookbook demo.nope (`!cookbook list` shows them)"]
    reply, _ = chat.say("demo")
    assert reply.lines == ["demo is a group of cookbooks: `!cookbook list demo` shows them"]
    assert chat.core.runs == {} and sink.batches == []


@pytest.mark.parametrize("alias", ["chatops.slow.Slow", "chatops/slow.py", "./chatops.slow", "chatops.slow."])
def test_aliases_of_a_cookbook_are_refused_so_no_pattern_can_be_escaped(chat: Chat, tmp_path: Path,
                                                                        alias: str) -> None:
    reply, _ = chat.say(f"{alias} --state {tmp_path}")
    assert reply.lines == [f"no cookbook {alias} (`!cookbook list` shows them)"]
    assert chat.core.runs == {}


def test_real_run_needing_approval_waits_refuses_self_approval_and_runs_once_approved(chat: Chat,
                                                                                      tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 1")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] chatops.slow needs an approval: .* `!approve {run_id}`")
    assert chat.core.runs[run_id].state == "awaiting-approval"
    time.sleep(0.3)
    assert not (tmp_path / "change").exists(), "nothing runs before the approval"
    assert chat.say(f"approve {run_id}")[0].lines == [
        f"refused: alice asked for [{run_id}]; someone else with the approve right must approve it"]
    assert chat.say(f"approve {run_id}", who="carol")[0].lines == ["refused: carol may not approve chatops.slow"]
    assert chat.say(f"approve {run_id}", who="mallory")[0].lines[0].startswith("refused: irc:mallory")
    reply, _ = chat.say(f"approve {run_id}", who="bob")
    assert reply.lines[0].startswith(f"[{run_id}] approved: chatops.slow --state") and reply.public
    sink.wait_for(rf"^\[{run_id}\] PASS: chatops.slow .* requested by alice, approved by bob")
    assert (tmp_path / "change").exists()
    [record] = chat.records()
    assert (record["requester"], record["approver"], record["origin"]) == ("alice", "bob", "chat")


def test_invalid_arguments_are_rejected_before_an_approval_is_asked(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps many")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] rejected: ")
    assert any("argument --steps: invalid int value: 'many'" in line for line in sink.lines)
    assert not any("needs an approval" in line for line in sink.lines)
    assert chat.core.runs[run_id].state == "rejected" and chat.records() == []


def test_invalid_arguments_of_a_run_without_approval_fail_in_the_runner_parser(chat: Chat) -> None:
    reply, sink = chat.say("demo.hello world --exit-code x")
    run_id = chat.run_id(reply)
    result = sink.wait_for(rf"^\[{run_id}\] INVALID ARGUMENTS")
    assert "demo.hello world --exit-code x" in result
    assert any("argument --exit-code: invalid int value: 'x'" in line for line in sink.lines)
    assert not any("START" in line for line in sink.lines) and chat.records() == []


def test_help_of_a_cookbook_is_shown_and_nothing_runs(chat: Chat) -> None:
    reply, sink = chat.say("demo.hello -h")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] help: ")
    assert f"[{run_id}] usage: cookbook [GLOBAL_ARGS] demo.hello [-h] [--exit-code EXIT_CODE] who" in sink.lines
    assert chat.records() == []


def test_deny_ends_the_request(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path}")
    run_id = chat.run_id(reply)
    sink.wait_for("needs an approval")
    assert chat.say(f"deny {run_id}", who="carol")[0].lines == ["refused: carol may not approve or deny chatops.slow"]
    assert chat.say(f"deny {run_id}", who="bob")[0].lines == [f"[{run_id}] denied: not run"]
    sink.wait_for(rf"^\[{run_id}\] denied: .*: denied by bob$")
    assert chat.say(f"approve {run_id}", who="bob")[0].lines == [f"[{run_id}] is not waiting for an approval (denied)"]
    assert not (tmp_path / "change").exists() and chat.records() == []


def test_cancel_during_the_run_interrupts_it_and_the_cookbook_rolls_back(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 100 --step-seconds 0.1")
    run_id = chat.run_id(reply)
    sink.wait_for("needs an approval")
    chat.say(f"approve {run_id}", who="bob")
    sink.wait_for(rf"^\[{run_id}\] step 2 of 100")
    assert (tmp_path / "change").exists()
    assert chat.say(f"cancel {run_id}", who="carol")[0].lines == [
        "refused: only alice or someone who may approve chatops.slow can cancel it"]
    reply, _ = chat.say(f"cancel {run_id}")
    assert reply.lines == [f"[{run_id}] interrupt sent (SIGINT): it rolls back, its result follows"]
    result = sink.wait_for(rf"^\[{run_id}\] INTERRUPTED")
    assert "interrupted by alice" in result
    assert not (tmp_path / "change").exists() and (tmp_path / "rolled-back").exists()
    assert f"[{run_id}] rolled back: removed {tmp_path / 'change'}" in sink.lines
    [record] = chat.records()
    assert record["exit_code"] == 97
    assert chat.core.runs[run_id].state == "cancelled"


def test_cancel_of_a_waiting_request_drops_it(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path}")
    run_id = chat.run_id(reply)
    sink.wait_for("needs an approval")
    assert chat.say(f"cancel {run_id}")[0].lines == [f"[{run_id}] cancelled: not run"]
    sink.wait_for(rf"^\[{run_id}\] cancelled: .*cancelled by alice before it ran")
    assert chat.say(f"approve {run_id}", who="bob")[0].lines[0].endswith("(cancelled)")


@pytest.mark.parametrize("text", [
    "demo.hello 'a\x00b'", "demo.hello a\nb", "demo.hello a\rb", "demo.hello \x1b[31m"])
def test_control_characters_are_refused(chat: Chat, text: str) -> None:
    reply, _ = chat.say(text)
    assert reply.lines == ["refused: control characters (NUL, newlines...) are not allowed in a request"]
    assert chat.core.runs == {}


def test_shell_metacharacters_reach_the_cookbook_as_plain_arguments(chat: Chat, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = tmp_path / "argv.json"
    words = ["; rm -rf /", "$(id)", "`id`", "&&", "touch", str(marker), "|", "cat", "/etc/passwd", ">", "x",
             "$HOME", "*", "'quoted'", "--no-locks", "-c", "/etc/other.yaml"]
    request = shlex.join(["chatops.echo", "--out", str(out), "--", *words])
    reply, sink = chat.say(request)
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] PASS")
    recorded = json.loads(out.read_text())
    assert recorded["argv"][-(len(words) + 4):] == ["chatops.echo", "--out", str(out), "--", *words]
    assert recorded["argv"][1:5] == ["-c", str(chat.config_path), "-y", "--"]
    assert recorded["words"] == ["--", *words]
    assert not marker.exists() and not (tmp_path / "x").exists()
    [record] = chat.records()
    assert record["argv"] == ["--out", str(out), "--", *words]


def test_unbalanced_quotes_are_refused(chat: Chat) -> None:
    reply, _ = chat.say("demo.hello 'unterminated")
    assert reply.lines == ["refused: cannot split the request with shell rules: No closing quotation"]


def test_global_options_other_than_dry_run_are_refused(chat: Chat) -> None:
    reply, _ = chat.say("--no-locks demo.hello x")
    assert reply.lines == ["unknown option --no-locks: usage: !cookbook [-d] NAME ARGS... (!help for more)"]


def test_a_prompt_needing_a_typed_answer_fails_the_run_with_its_message(chat: Chat) -> None:
    reply, sink = chat.say("prompts.ask")
    run_id = chat.run_id(reply)
    result = sink.wait_for(rf"^\[{run_id}\] (ERROR|FAIL)")
    assert any("no terminal to ask for an answer: Which node?" in line for line in sink.lines), sink.lines
    assert "prompts.ask" in result


def test_confirmations_are_answered_by_the_service(chat: Chat) -> None:
    reply, sink = chat.say("prompts.confirm")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] PASS")
    assert f"[{run_id}] ==> Reboot vm1.example.org?: confirmed by -y" in sink.lines


def test_limits_per_user_and_overall(chat: Chat, tmp_path: Path) -> None:
    ids = []
    for index in range(3):
        reply, sink = chat.say(f"chatops.slow --state {tmp_path / str(index)}")
        ids.append(chat.run_id(reply))
        sink.wait_for("needs an approval")
    assert chat.say(f"chatops.slow --state {tmp_path}")[0].lines == [
        "refused: alice has 3 runs not finished yet (limit 3)"]
    for index in range(2):
        reply, sink = chat.say(f"chatops.slow --state {tmp_path / str(index)}", who="bob")
        sink.wait_for("needs an approval")
    assert chat.say(f"chatops.slow --state {tmp_path}", who="carol")[0].lines[0].startswith("refused: carol may")
    assert chat.say(f"-d chatops.slow --state {tmp_path}", who="carol")[0].lines == [
        "refused: 5 runs are waiting already (limit 5): try again later"]
    status = chat.say("status")[0].lines
    assert len(status) == 5 and all("awaiting-approval" in line for line in status)


def test_queue_runs_at_most_max_running_at_once(chat: Chat, tmp_path: Path) -> None:
    sinks = []
    for who in ("alice", "bob", "alice"):
        reply, sink = chat.say(f"demo.hello {who}", who=who)
        sinks.append((chat.run_id(reply), sink))
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 3 and time.monotonic() < deadline:
        running = [run for run in chat.core.runs.values() if run.state in ("running", "cancelling")]
        assert len(running) <= 2
        seen |= {run.id for run in chat.core.runs.values() if run.state == "passed"}
        time.sleep(0.01)
    for run_id, sink in sinks:
        sink.wait_for(rf"^\[{run_id}\] PASS")


def test_status_log_list_and_help(chat: Chat) -> None:
    reply, sink = chat.say("demo.hello world")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] PASS")
    [status] = chat.say(f"status {run_id}")[0].lines
    assert status.startswith(f"[{run_id}] PASS: demo.hello world, requested by alice in irc:#test")
    log = chat.say(f"log {run_id}")[0].lines
    assert log[0].startswith(f"[{run_id}] full log: {chat.core.runs[run_id].log_path}")
    assert f"[{run_id}] Hello world from alice" in log
    assert chat.say(f"log {run_id}", who="mallory")[0].lines[0].startswith("refused: ")
    assert chat.say("log ffffff")[0].lines == ["no run ffffff you may see (`!cookbook status` lists the active ones)"]
    listing = chat.say("list chatops")[0].lines
    assert listing == ["chatops.echo [run]: Record the arguments exactly as they arrived.",
                       "chatops.slow [run, needs approval]: Create a marker file, then take a while"]
    assert chat.say("list chatops", who="carol")[0].lines[1] == (
        "chatops.slow [dry-run only]: Create a marker file, then take a while")
    assert chat.say("list demo.hello", who="carol")[0].lines == ["demo.hello [no access]: Say hello to someone"]
    assert chat.say("help")[0].lines == chat.say("")[0].lines
    assert any(line.startswith("!approve ID / !deny ID") for line in chat.say("help")[0].lines)


def test_close_interrupts_running_cookbooks_which_roll_back(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 100")
    run_id = chat.run_id(reply)
    sink.wait_for("needs an approval")
    chat.say(f"approve {run_id}", who="bob")
    sink.wait_for(rf"^\[{run_id}\] step 1 of 100")
    chat.core.close(grace=15)
    sink.wait_for(rf"^\[{run_id}\] INTERRUPTED")
    assert (tmp_path / "rolled-back").exists()
    assert chat.say("demo.hello x")[0].lines == ["refused: the chatops service is stopping"]


def test_secrets_given_as_arguments_are_masked_in_replies(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.echo --out {tmp_path / 'o.json'} -- --api-token s3cret-value-123")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] PASS")
    assert not any("s3cret-value-123" in line for line in [*reply.lines, *sink.lines])
    assert "--api-token '*****'" in reply.lines[0]
    assert json.loads((tmp_path / "o.json").read_text())["words"] == ["--", "--api-token", "s3cret-value-123"]


def test_a_request_not_approved_in_time_expires(tmp_path: Path) -> None:
    section = chatops_section(tmp_path)
    section["approval_timeout"] = 1
    path = write_config(tmp_path, section)
    chat = Chat(Chatops(chatops_settings.load(config.load(path)), path, [FIXTURES]), tmp_path, path)
    try:
        reply, sink = chat.say(f"chatops.slow --state {tmp_path}")
        run_id = chat.run_id(reply)
        sink.wait_for("needs an approval")
        sink.wait_for(rf"^\[{run_id}\] expired: chatops.slow .*: no approval within 1s, not run$")
        assert chat.say(f"approve {run_id}", who="bob")[0].lines == [
            f"[{run_id}] is not waiting for an approval (expired)"]
        assert not (tmp_path / "change").exists() and chat.records() == []
    finally:
        chat.core.close(grace=5)


def test_status_and_log_answer_known_people_about_runs_they_may_see(chat: Chat, tmp_path: Path) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 1")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] chatops.slow needs an approval")
    for verb in ("status", f"status {run_id}", f"log {run_id}"):
        assert chat.say(verb, who="mallory")[0].lines[0].startswith("refused: irc:mallory!mallory@test.example is "
                                                                    "not a known user"), verb
    elsewhere = Identity("irc", "carol!carol@test.example", display="carol")
    assert chat.core.handle("status", elsewhere, "irc:#other", DOOR, RecordingSink()).lines == [
        "no active runs you may see"]
    assert chat.core.handle(f"status {run_id}", elsewhere, "irc:#other", DOOR, RecordingSink()).lines == [
        f"no run {run_id} you may see"]
    assert chat.core.handle(f"log {run_id}", elsewhere, "irc:#other", DOOR, RecordingSink()).lines[0].startswith(
        f"no run {run_id} you may see")
    [line] = chat.say("status", who="carol")[0].lines  # carol asks in the run's channel: she saw it there
    assert line.startswith(f"[{run_id}] awaiting-approval")
    bob = Identity("irc", "bob!bob@test.example", display="bob")  # may approve chatops.*: sees it anywhere
    assert chat.core.handle("status", bob, "irc:#other", DOOR, RecordingSink()).lines[0].startswith(f"[{run_id}]")


def test_approving_needs_an_identity_proving_an_account(chat: Chat, tmp_path: Path) -> None:
    bob = next(person for person in chat.core.policy.people if person.name == "bob")
    chat.core.policy.people = tuple(person for person in chat.core.policy.people if person is not bob) + (
        Person("bob", ("irc:bob!*@*", "slack:UBOB"), bob.roles),)  # what the settings refuse at start
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 1")
    run_id = chat.run_id(reply)
    sink.wait_for(rf"^\[{run_id}\] chatops.slow needs an approval")
    assert chat.say(f"approve {run_id}", who="bob")[0].lines == [
        "refused: approving needs an identity proving an account (irc:bob!bob@test.example does not): log in (e.g. "
        "PASS with your login on IRC) or use the slash command"]
    assert chat.core.runs[run_id].state == "awaiting-approval"
    slack = chat.core.handle(f"approve {run_id}", Identity("slack", "UBOB", display="bob"), "slack:#ops", DOOR,
                             RecordingSink())
    assert slack.lines[0].startswith(f"[{run_id}] approved")

