"""A run SIGKILLed after its N-th change leaves an exact journal, in the audit file and in etcd, and
`cookbook --recover` lists it and undoes its real Ganeti changes, from etcd once the local file is gone."""

from __future__ import annotations

import signal
import time

from tests.lab.journal_lab import JournalEnv, journal_env_fixture  # noqa: F401 - the journal_env fixture


def test_a_killed_run_is_listed_and_recovered_from_its_etcd_journal(journal_env: JournalEnv) -> None:
    env = journal_env
    process = env.start_tags("--count", "3", "--sleep", "600")
    run_id = env.wait_for_intent(2, process)
    while len(env.etcd_journal(run_id)) < 4:  # the intent is in etcd too before the write is sent
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(30)

    # The journal: start (with the runner's lock) and one intent per change begun, the first one done.
    mine = [line for line in env.lines() if line["id"] == run_id]
    assert [(line["event"], line.get("seq")) for line in mine][:4] == [("start", None), ("intent", 1),
                                                                       ("result", 1), ("intent", 2)]
    assert mine[0]["locks"] == [{"key": "cookbooks/journaltest.tags", "concurrency": 20}]
    assert not [line for line in mine if line["event"] == "end"]
    assert [line["event"] for line in env.etcd_journal(run_id)] == [line["event"] for line in mine]
    first = f"{env.token}-0"
    assert first in env.tags()

    listed = env.cookbook("--recover")
    assert listed.returncode == 0
    assert f"{run_id} journaltest.tags by " in listed.stdout and "(dead)" in listed.stdout
    assert f"seq 1 done: ganeti test-tag-add {first} (to undo)" in listed.stdout
    assert f"seq 2 {'done' if len(mine) > 4 else 'no result'}: ganeti test-tag-add {env.token}-1" in listed.stdout

    # Another host has no local audit file: everything comes from etcd.
    env.audit.unlink()
    env.settle()
    before = (env.tags(), env.etcd_journal(run_id))
    planned = env.cookbook("-d", "--recover", run_id)
    assert planned.returncode == 0, planned.stderr
    assert f"undo seq 2: cookbook tag-remove {env.token}-1" in planned.stdout
    assert f"undo seq 1: cookbook tag-remove {first} (id=" in planned.stdout
    assert planned.stdout.index("undo seq 2") < planned.stdout.index("undo seq 1")
    assert (env.tags(), env.etcd_journal(run_id)) == before and env.lines() == []

    done = env.cookbook("-y", "--recover", run_id)
    assert done.returncode == 0, done.stderr
    assert env.tags() == set()
    assert env.etcd_journal(run_id) == []
    lines = env.lines()
    recovery = [line for line in lines if line.get("recovers") == run_id]
    assert [line["event"] for line in recovery] == ["start", "end"] and recovery[1]["exit_code"] == 0
    assert recovery[0]["locks"] == [{"key": f"cookbooks/recover:{run_id}", "concurrency": 1},
                                    {"key": "cookbooks/journaltest.tags", "concurrency": 20}]
    on_dead = [(line["event"], line.get("seq"), line.get("status"), line["by"]) for line in lines
               if line["id"] == run_id]
    by = recovery[0]["id"]
    assert on_dead[-1] == ("recovered", None, "done", by)
    assert [entry[:2] for entry in on_dead[:-1]] == [("undo", 2), ("undo", 1)]
    assert on_dead[1][2] == "undone"
    assert env.etcd_journal(by) == []  # the recovery's own journal is gone after its clean end
    assert "No run to recover." in env.cookbook("--recover").stdout


def test_recover_runs_the_ganeti_clients_own_undo(journal_env: JournalEnv) -> None:
    env = journal_env
    process = env.start_tags("--count", "2", "--sleep", "600", "--library")
    run_id = env.wait_for_intent(2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    env.settle()
    intents = [line for line in env.lines() if line["id"] == run_id and line["event"] == "intent"]
    assert [(line["action"], line["undo"]["system"], line["undo"]["action"]) for line in intents] == [
        ("tags-add", "ganeti", "tags-remove")] * 2
    assert f"{env.token}-0" in env.tags()  # the second may or may not have been sent when the run was killed

    done = env.cookbook("-y", "--recover", run_id)
    assert done.returncode == 0, done.stderr
    assert "undo seq 2: ganeti tags-remove cluster lab" in done.stdout
    assert env.tags() == set()
    undone = [(line["seq"], line["status"]) for line in env.lines() if line["id"] == run_id and line["event"] == "undo"]
    assert undone[0][0] == 2 and undone[0][1] in ("undone", "absent") and undone[1] == (1, "undone")
