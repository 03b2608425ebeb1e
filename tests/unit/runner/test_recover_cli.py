"""`cookbook --recover` on a journal in the local audit file (file locks, no etcd): listing, the dry-run plan that
writes nothing, an undo that fails (exit 93, named, the run still listed), and bad run ids."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from tests.unit.runner.runner_env import Env

RUN = "ab" * 16


def _dead_run(env: Env) -> None:
    """Journal lines of a run that was killed after its first write, by a process that no longer exists."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    undo = {"system": "cookbook", "action": "thing-remove", "target": "t1",
            "args": {"cookbook": "demo.hello", "kind": "thing"}}
    lines = [
        {"id": RUN, "event": "start", "cookbook": "demo.hello", "argv": [], "user": "alice", "host": "elsewhere",
         "pid": gone.pid, "dry_run": False, "start": "2026-01-01T00:00:00.000+00:00",
         "locks": [{"key": "cookbooks/demo.hello", "concurrency": 1}]},
        {"id": RUN, "event": "intent", "seq": 1, "system": "ganeti", "action": "thing-add", "target": "t1",
         "detail": {}, "undo": undo},
        {"id": RUN, "event": "result", "seq": 1, "status": "done", "detail": {"id": 5}},
        {"id": RUN, "event": "intent", "seq": 2, "system": "ganeti", "action": "thing-add", "target": "t2",
         "detail": {}, "undo": None},
    ]
    env.audit.parent.mkdir(parents=True, exist_ok=True)
    env.audit.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_recover_lists_plans_and_names_what_it_could_not_undo(cookbook: Callable[..., int], env: Env,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _dead_run(env)
    assert cookbook("--recover") == 0
    out = capsys.readouterr().out
    assert f"{RUN} demo.hello by alice on elsewhere pid" in out and "unknown (other host)" in out
    assert "seq 1 done: ganeti thing-add t1 (to undo)" in out
    assert "seq 2 no result: ganeti thing-add t2 (no undo)" in out

    before = env.audit.read_text()
    assert cookbook("-d", "--recover", RUN) == 0
    assert "undo seq 1: cookbook thing-remove t1 (id=5)" in capsys.readouterr().out
    assert env.audit.read_text() == before

    assert cookbook("-y", "--recover", RUN) == 93
    err = capsys.readouterr().err
    assert ("left behind: thing t1 (id 5): UndoError: undo cookbook thing-remove t1 (id=5): args name no cookbook "
            "with an undo(ctx, action, args) function") in err
    lines = env.lines()
    [start, end] = [line for line in lines if line.get("recovers") == RUN]
    assert (start["event"], start["cookbook"], end["event"], end["exit_code"]) == ("start", "recover", "end", 93)
    assert start["locks"] == [{"key": f"cookbooks/recover:{RUN}", "concurrency": 1},
                              {"key": "cookbooks/demo.hello", "concurrency": 1}]
    on_dead = [(line["event"], line.get("seq"), line["status"], line["by"]) for line in lines
               if line["id"] == RUN and line["event"] in ("undo", "recovered")]
    assert on_dead == [("undo", 1, "failed", start["id"]), ("recovered", None, "partial", start["id"])]
    assert cookbook("--recover") == 0 and RUN in capsys.readouterr().out  # still to recover


@pytest.mark.parametrize(("argv", "code", "message"), [
    (("--recover", "12345"), 98, "Invalid run id '12345': expected the 32 hexadecimal digits of a run"),
    (("--recover", "cd" * 16), 98, f"No journal of run {'cd' * 16} in etcd nor in "),
    (("--recover", RUN, "demo.hello"), 2, "--recover takes a run id, not a cookbook nor -l"),
])
def test_bad_recover_arguments_are_named(cookbook: Callable[..., int], env: Env, capsys: pytest.CaptureFixture[str],
                                         argv: tuple[str, ...], code: int, message: str) -> None:
    assert cookbook(*argv) == code
    assert message in capsys.readouterr().err
    assert env.lines() == []


def test_nothing_to_recover(cookbook: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("--recover") == 0
    assert capsys.readouterr().out == "No run to recover.\n"


def test_locks_taken_by_cookbook_code_are_journaled_for_recover(cookbook: Callable[..., int], env: Env) -> None:
    assert cookbook("locking.custom", "instance:vm1", "--concurrency", "2") == 0
    assert cookbook("locking.resources", "c1", "--node", "n1", "--instance", "vm1.example.org") == 0
    assert cookbook("-d", "locking.custom", "instance:vm2") == 0
    locks = [(line["key"], line["concurrency"]) for line in env.lines() if line["event"] == "lock"]
    assert locks == [("custom/instance:vm1", 2), ("ganeti/c1/node/n1", 1), ("ganeti/c1/instance/vm1.example.org", 1)]
    starts = [line["locks"] for line in env.lines() if line["event"] == "start"]
    assert starts == [[{"key": "cookbooks/locking.custom", "concurrency": 0}],
                      [{"key": "cookbooks/locking.resources", "concurrency": 0}], []]  # dry-run takes none
