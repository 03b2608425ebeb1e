"""A rollback that cannot remove a real object exits 93 naming its kind, name and id; the run stays
recoverable (its etcd journal is kept) and `cookbook --recover` removes the object once it may."""

from __future__ import annotations

from tests.lab.journal_lab import JournalEnv, journal_env_fixture  # noqa: F401 - the journal_env fixture


def test_a_rollback_that_leaves_an_object_exits_93_naming_it_and_recover_finishes(journal_env: JournalEnv) -> None:
    env = journal_env
    kept = f"{env.token}-0"
    env.tag("PUT", f"{kept}-keep")  # someone else wants the first tag kept: its undo must refuse
    process = env.start_tags("--count", "2", "--fail")
    output, _ = process.communicate(timeout=600)
    print(output)
    assert process.returncode == 93
    lines = env.lines()
    [start] = [line for line in lines if line["event"] == "start" and line["pid"] == process.pid]
    run_id = start["id"]
    [job_id] = [line["detail"]["job_id"] for line in lines
                if line["id"] == run_id and line["event"] == "result" and line["seq"] == 1]
    assert (f"left behind: ganeti cluster tag {kept} (id {job_id}): RuntimeError: tag {kept}-keep asks to keep it: "
            "not removed") in output
    assert f"`cookbook --recover {run_id}` retries" in output
    assert env.tags() == {kept, f"{kept}-keep"}
    [end] = [line for line in lines if line["id"] == run_id and line["event"] == "end"]
    assert end["exit_code"] == 93
    assert [line["event"] for line in env.etcd_journal(run_id)][-1] == "end"  # kept: something is left

    listed = env.cookbook("--recover")
    assert f"{run_id} journaltest.tags" in listed.stdout and "ended with exit 93" in listed.stdout
    assert f"seq 1 done, failed: ganeti test-tag-add {kept} (to undo)" in listed.stdout
    assert f"seq 2 done, undone: ganeti test-tag-add {env.token}-1 (nothing to undo)" in listed.stdout

    refused = env.cookbook("-y", "--recover", run_id)
    assert refused.returncode == 93 and f"left behind: ganeti cluster tag {kept} (id {job_id})" in refused.stderr

    env.tag("DELETE", f"{kept}-keep")
    done = env.cookbook("-y", "--recover", run_id)
    assert done.returncode == 0, done.stderr
    assert env.tags() == set() and env.etcd_journal(run_id) == []
    assert "No run to recover." in env.cookbook("--recover").stdout


def test_an_unknown_run_id_is_98_and_a_bad_one_is_named(journal_env: JournalEnv) -> None:
    unknown = journal_env.cookbook("-y", "--recover", "0" * 32)
    assert unknown.returncode == 98 and f"No journal of run {'0' * 32}" in unknown.stderr
    bad = journal_env.cookbook("-y", "--recover", "../etc")
    assert bad.returncode == 98 and "Invalid run id '../etc'" in bad.stderr
    assert journal_env.lines() == []  # nothing journaled


def test_a_run_still_alive_is_not_recovered(journal_env: JournalEnv) -> None:
    env = journal_env
    process = env.start_tags("--count", "1", "--sleep", "600")
    try:
        run_id = env.wait_for_intent(1, process)
        listed = env.cookbook("--recover")
        assert f"{run_id} journaltest.tags" in listed.stdout and "(alive)" in listed.stdout
        refused = env.cookbook("-y", "--recover", run_id)
        assert refused.returncode == 99
        assert f"Run {run_id} is still running (pid {process.pid} on this host): not recovered" in refused.stderr
        assert not [line for line in env.lines() if line["event"] == "undo"]
    finally:
        process.kill()
        process.wait(30)
    env.settle()
    assert env.cookbook("-y", "--recover", run_id).returncode == 0
    assert env.tags() == set()
