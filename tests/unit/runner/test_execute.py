"""Running a cookbook: every exit code, the START/END lines, the log files, the audit record and secrets."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import pytest
from tests.unit.runner.runner_env import Env

SECRET = "nbt_fixture_secret_token_value"
"""The NetBox token of the test config (a registered secret)."""


@pytest.mark.parametrize(("args", "code", "end"), [
    (["demo.hello", "world"], 0, "END (PASS) - Cookbook demo.hello (exit_code=0) for world"),
    (["demo.hello", "world", "--exit-code", "5"], 5, "END (FAIL) - Cookbook demo.hello (exit_code=5) for world"),
    (["demo.module_api", "--exit-code", "7"], 7, "END (FAIL) - Cookbook demo.module_api (exit_code=7)"),
    (["broken.failing", "--mode", "raise"], 99, "END (ERROR) - Cookbook broken.failing (exit_code=99)"),
    (["broken.failing", "--mode", "raise", "--rollback-raises"], 93,
     "END (ERROR) - Cookbook broken.failing (exit_code=93)"),
    (["broken.failing", "--mode", "return", "--rollback-raises"], 93,
     "END (FAIL) - Cookbook broken.failing (exit_code=93)"),
    (["broken.failing", "--mode", "exit", "--code", "9"], 9, "END (FAIL) - Cookbook broken.failing (exit_code=9)"),
    (["broken.failing", "--mode", "exit-none"], 0, "END (PASS) - Cookbook broken.failing (exit_code=0)"),
    (["broken.failing", "--mode", "exit-str"], 99, "END (ERROR) - Cookbook broken.failing (exit_code=99)"),
    (["broken.failing", "--mode", "interrupt"], 97, "END (ERROR) - Cookbook broken.failing (exit_code=97)"),
    (["broken.failing", "--mode", "bad-return"], 99, "END (ERROR) - Cookbook broken.failing (exit_code=99)"),
    (["demo.multiple.CookbookB"], 5, "END (FAIL) - Cookbook demo.multiple.CookbookB (exit_code=5)"),
])
def test_runs_end_with_the_exit_code_and_end_line(cookbook: Callable[..., int], env: Env, args: list[str], code: int,
                                                  end: str) -> None:
    assert cookbook(*args) == code
    log = env.log(args[0])
    assert f"START - Cookbook {args[0]}" in log
    assert log.rstrip().endswith(end)
    assert [record["exit_code"] for record in env.records()] == [code]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["broken.init_raises"], 94, "Unable to prepare cookbook broken.init_raises: ValueError: validation failed"),
    (["broken.parser_raises"], 95, "Unable to get the argument parser of cookbook broken.parser_raises"),
    (["broken.failing"], 96, "the following arguments are required: --mode"),
    (["broken.failing", "--mode", "nope"], 96, "invalid choice: 'nope'"),
    (["broken.syntax_error"], 98, "cannot be loaded: SyntaxError"),
    (["broken.import_error"], 98, "No module named 'libcluster.does_not_exist'"),
    (["broken.not_a_cookbook"], 98, "is not a cookbook"),
    (["demo.multiple"], 98, "holds several cookbooks"),
    (["demo.helo"], 98, "did you mean: demo.hello"),
])
def test_runs_that_never_start(cookbook: Callable[..., int], env: Env, capsys: pytest.CaptureFixture[str],
                               args: list[str], code: int, message: str) -> None:
    assert cookbook(*args) == code
    err = capsys.readouterr().err
    assert message in err
    assert "START -" not in err
    assert "Traceback" not in err


def test_init_failure_is_audited_and_logged_with_its_traceback_in_the_debug_log(cookbook: Callable[..., int],
                                                                                env: Env) -> None:
    assert cookbook("broken.init_raises") == 94
    assert [record["exit_code"] for record in env.records()] == [94]
    assert "Traceback (most recent call last)" in env.log("broken.init_raises", extended=True)
    assert "Traceback" not in env.log("broken.init_raises")


def test_help_of_a_cookbook_exits_zero_and_names_its_owner(cookbook: Callable[..., int], env: Env,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("demo.ganeti.makevm", "-h") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cookbook [GLOBAL_ARGS] demo.ganeti.makevm")
    assert "Cookbook owner team: Infrastructure Foundations" in out
    assert "-t TASK_ID, --task-id TASK_ID" in out
    assert env.records() == []


def test_init_success_exits_zero_before_lock_log_and_audit(cookbook: Callable[..., int], env: Env,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("broken.init_success") == 0
    captured = capsys.readouterr()
    assert captured.out == "report: all good\n"
    assert "START" not in captured.err
    assert env.records() == []
    assert not env.locks.exists()


def test_log_files_lines_and_levels(cookbook: Callable[..., int], env: Env, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    assert cookbook("demo.hello", "world") == 0
    info, debug = env.log("demo.hello"), env.log("demo.hello", extended=True)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.search(rf"^{stamp} alice \d+ \[INFO\] START - Cookbook demo.hello for world$", info, re.M)
    assert re.search(rf"^{stamp} alice \d+ \[INFO\] Hello world from alice$", info, re.M)
    assert re.search(rf"^{stamp} alice \d+ \[INFO\] END \(PASS\) - Cookbook demo.hello \(exit_code=0\) for world$",
                     info, re.M)
    assert "debug detail of hello" not in info
    assert re.search(rf"^{stamp} alice \d+ \[DEBUG cookbooks.demo.hello:\d+ in run\] debug detail of hello$", debug,
                     re.M)
    err = capsys.readouterr().err
    assert "START - Cookbook demo.hello for world\n" in err
    assert "debug detail" not in err
    assert cookbook("-v", "demo.hello", "world") == 0
    assert "debug detail of hello" in capsys.readouterr().err


def test_dry_run_is_marked_everywhere(cookbook: Callable[..., int], env: Env, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUDO_USER", "bob")
    assert cookbook("-d", "demo.ganeti.makevm", "vm1", "-r", "testing") == 0
    info = env.log("demo.ganeti.makevm")
    assert all(" DRY-RUN bob " in line for line in info.splitlines())
    assert "DRY-RUN START - Cookbook demo.ganeti.makevm for vm1 (testing)" in capsys.readouterr().err
    [record] = env.records()
    assert record["dry_run"] is True
    assert {change["dry_run"] for change in record["changes"]} == {True}
    assert not env.locks.exists()


def test_exception_traceback_goes_to_the_debug_log_only(cookbook: Callable[..., int], env: Env,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("broken.failing", "--mode", "raise") == 99
    err = capsys.readouterr().err
    assert "ERROR: Exception raised while running cookbook broken.failing: RuntimeError: boom in run" in err
    assert "Traceback" not in err
    assert "Traceback" not in env.log("broken.failing")
    debug = env.log("broken.failing", extended=True)
    assert "Traceback (most recent call last)" in debug
    assert 'raise RuntimeError("boom in run")' in debug
    assert "rollback of failing ran" in env.log("broken.failing")


def test_audit_record_fields(cookbook: Callable[..., int], env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "carol")
    assert cookbook("demo.ganeti.makevm", "vm7", "-r", "new VM", "-t", "T123") == 0
    [record] = env.records()
    assert set(record) == {"id", "event", "cookbook", "argv", "user", "origin", "dry_run", "start", "end", "duration",
                           "exit_code", "changes", "host", "pid", "task_id"}
    lines = env.lines()
    assert [(line["event"], line.get("seq"), line.get("status")) for line in lines] == [
        ("start", None, None), ("intent", 1, None), ("result", 1, "done"), ("intent", 2, None), ("result", 2, "done"),
        ("end", None, None)]
    assert {line["id"] for line in lines} == {record["id"]}
    assert lines[0]["locks"] == [{"key": "cookbooks/demo.ganeti.makevm:prod1", "concurrency": 1}]
    assert {key: lines[0][key] for key in ("cookbook", "argv", "user", "start", "task_id")} == {
        key: record[key] for key in ("cookbook", "argv", "user", "start", "task_id")}
    assert record["task_id"] == "T123"
    assert record["cookbook"] == "demo.ganeti.makevm"
    assert record["argv"] == ["vm7", "-r", "new VM", "-t", "T123"]
    assert (record["user"], record["origin"], record["dry_run"], record["exit_code"]) == ("carol", "terminal", False, 0)
    start, end = datetime.fromisoformat(record["start"]), datetime.fromisoformat(record["end"])
    assert start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert start <= end
    assert record["duration"] == pytest.approx((end - start).total_seconds(), abs=0.002)
    assert [(c["system"], c["action"], c["target"], c["dry_run"]) for c in record["changes"]] == [
        ("ganeti", "instance-create", "vm7", False), ("dns", "record-add", "vm7.example.org", False)]
    assert record["changes"][0]["detail"] == {"job_id": 42}
    assert len(record["id"]) == 32


def test_chat_origin_from_the_environment(cookbook: Callable[..., int], env: Env,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COOKBOOK_ORIGIN", "chat")
    monkeypatch.setenv("COOKBOOK_REQUESTER", "dave")
    monkeypatch.setenv("COOKBOOK_APPROVER", "erin")
    monkeypatch.setenv("COOKBOOK_CHANNEL", "#ops")
    assert cookbook("top") == 0
    [record] = env.records()
    assert {key: record[key] for key in ("origin", "requester", "approver", "channel")} == {
        "origin": "chat", "requester": "dave", "approver": "erin", "channel": "#ops"}
    monkeypatch.setenv("COOKBOOK_ORIGIN", "pager")
    assert cookbook("top") == 1
    assert "COOKBOOK_ORIGIN='pager'" in capsys.readouterr().err
    monkeypatch.setenv("COOKBOOK_ORIGIN", "chat")
    monkeypatch.delenv("COOKBOOK_REQUESTER")
    assert cookbook("top") == 1
    assert len(env.records()) == 1


def test_secrets_never_reach_logs_output_or_audit(cookbook: Callable[..., int], env: Env,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("-v", "broken.leak") == 99
    assert cookbook("demo.ganeti.makevm", "vm2", "-r", "x", "--root-password", "hunter2-secret") == 0
    assert cookbook("demo.ganeti.makevm", "vm3", "-r", "x", "--root-password=other-secret") == 0
    captured = capsys.readouterr()
    texts = {
        "stdout": captured.out, "stderr": captured.err, "audit": env.audit.read_text(),
        **{path.name: path.read_text() for path in env.logs.rglob("*.log")},
    }
    assert len(texts) == 7
    for where, text in texts.items():
        for secret in (SECRET, "hunter2-secret", "other-secret"):
            assert secret not in text, f"{secret} leaked into {where}"
    assert "failed with token *****" in captured.err
    assert "the token is *****" in env.log("broken.leak")
    assert '"--root-password", "*****"' in texts["audit"]
    assert '"--root-password=*****"' in texts["audit"]


def test_nested_run_shares_logs_takes_own_record_and_links_to_parent(cookbook: Callable[..., int], env: Env,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("nested.parent") == 0
    child, parent = env.records()
    assert (child["cookbook"], parent["cookbook"]) == ("nested.child", "nested.parent")
    assert child["parent"] == parent["id"]
    assert "parent" not in parent
    assert [change["action"] for change in child["changes"]] == ["record-add"]
    assert [change["action"] for change in parent["changes"]] == ["vm-update"]
    log = env.log("nested.parent")
    assert log.index("START - Cookbook nested.parent") < log.index("START - Cookbook nested.child") < \
        log.index("END (PASS) - Cookbook nested.child") < log.index("END (PASS) - Cookbook nested.parent")
    assert not (env.logs / "nested" / "child.log").exists()


def test_nested_failure_raises_in_the_parent_unless_told_not_to(cookbook: Callable[..., int], env: Env) -> None:
    assert cookbook("nested.parent", "--child-code", "4") == 99
    assert [(r["cookbook"], r["exit_code"]) for r in env.records()] == [("nested.child", 4), ("nested.parent", 99)]
    assert "CookbookFailed: cookbook nested.child failed with exit code 4" in env.log("nested.parent")
    assert cookbook("nested.parent", "--child-code", "4", "--no-raise") == 0
    assert env.records()[-1]["changes"][0]["detail"] == {"child_code": 4}


def test_ctrl_c_in_a_nested_run_interrupts_the_caller_too(cookbook: Callable[..., int], env: Env) -> None:
    assert cookbook("nested.parent", "--child-interrupt") == 97
    assert [(r["cookbook"], r["exit_code"]) for r in env.records()] == [("nested.child", 97), ("nested.parent", 97)]
    log = env.log("nested.parent")
    assert "END (ERROR) - Cookbook nested.child (exit_code=97)" in log
    assert "Running rollback of cookbook nested.parent (exit_code=97)" in log
    assert log.rstrip().endswith("END (ERROR) - Cookbook nested.parent (exit_code=97)")


def test_nested_run_inherits_dry_run(cookbook: Callable[..., int], env: Env) -> None:
    assert cookbook("-d", "nested.parent") == 0
    child, parent = env.records()
    assert child["dry_run"] and parent["dry_run"]
    assert child["changes"][0]["detail"] == {"dry": True}


def test_unwritable_log_dir_or_audit_log_stops_before_running(cookbook: Callable[..., int], env: Env,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    env.logs.mkdir()
    (env.logs / "demo").write_text("a file where the group's log folder should be")
    assert cookbook("demo.hello", "x") == 1
    assert "Cannot write the logs of demo.hello" in capsys.readouterr().err
    assert [record["cookbook"] for record in env.records()] == []
    env.write(audit_log=str(env.logs / "demo" / "audit.jsonl"))
    assert cookbook("top") == 1
    assert "cannot open the audit log" in capsys.readouterr().err


@pytest.mark.parametrize(("overrides", "message"), [
    ({"logs_base_dir": None}, "missing key 'logs_base_dir'"),
    ({"cookbooks_base_dirs": "/srv"}, "key 'cookbooks_base_dirs' must be a list"),
    ({"cookbooks_base_dirs": []}, "'cookbooks_base_dirs' must be a non-empty list"),
    ({"locks": {"etcd_url": "etcd.example.org:2379"}}, "key 'locks.etcd_url': invalid etcd URL"),
    ({"locks": {"wait_tries": "many"}}, "key 'locks.wait_tries' must be an integer"),
])
def test_configuration_errors_name_the_key(cookbook: Callable[..., int], env: Env,
                                           capsys: pytest.CaptureFixture[str], overrides: dict[str, object],
                                           message: str) -> None:
    env.write(**overrides)
    assert cookbook("top") == 1
    assert message in capsys.readouterr().err
