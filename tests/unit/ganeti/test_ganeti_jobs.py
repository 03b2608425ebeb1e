"""Jobs: failures with Ganeti's classification, sub-jobs, and long-poll waits replayed from real recordings."""

from __future__ import annotations

import time
from typing import Any

import pytest

from libcluster.ganeti.errors import JobFailedError, JobNotFoundError, JobTimeoutError
from libcluster.ganeti.jobs import (
    SKIPPED,
    Job,
    LogEntry,
    SkippedJob,
    job_failure,
    long_poll_body,
    sub_job_ids,
    timestamp,
)
from tests.unit.ganeti.ganeti_replay import FIXTURES, load_jsonl


@pytest.mark.parametrize(
    ("job_id", "error_type", "classification", "text"),
    [
        (25, "OpPrereqError", "resolver_error", "does not resolve"),
        (26, "OpPrereqError", "unknown_entity", "Node 'nosuchnode.gl.test' not known"),
        (27, "OpPrereqError", "wrong_input", "violates policy: memory-size value 10000000"),
        (24, "OpExecError", None, "Directory for OS nosuchos not found"),
        (23, "OpPrereqError", None, "Disk template 'plain' is not enabled in cluster"),
    ],
)
def test_failed_jobs_keep_type_classification_and_message(
    job_notes: dict[int, dict[str, Any]], job_id: int, error_type: str, classification: str | None, text: str
) -> None:
    note = job_notes[job_id]
    error = job_failure(job_id, note)
    assert isinstance(error, JobFailedError)
    assert error.job_id == job_id
    assert error.status == "error"
    assert error.error_type == error_type
    assert error.classification == classification
    assert text in error.message
    assert error.summary == note["summary"][0]
    assert text in str(error)


def test_multi_opcode_failure_names_the_opcode_that_failed(job_notes: dict[int, dict[str, Any]]) -> None:
    error = job_failure(29, job_notes[29])
    assert error is not None
    assert error.summary == "INSTANCE_REINSTALL(inst6.gl.test)"
    assert error.classification == "wrong_input"
    assert error.message == "Instance 'inst6.gl.test' has no disks"


def test_multi_opcode_failure_uses_opstatus_when_present(job_notes: dict[int, dict[str, Any]]) -> None:
    info = {**job_notes[29], "opstatus": ["success", "error", "error"]}
    error = job_failure(29, info)
    assert error is not None and error.summary == "INSTANCE_REINSTALL(inst6.gl.test)"


def test_successful_jobs_are_no_failure(job_notes: dict[int, dict[str, Any]]) -> None:
    successes = [note for note in job_notes.values() if note["status"] == "success"]
    assert successes
    assert all(job_failure(note["job"], note) is None for note in successes)


@pytest.mark.parametrize(("job_id", "expected"), [(42, [43, 44]), (47, [48]), (28, [])])
def test_sub_jobs_of_node_migrate_and_evacuate(
    job_notes: dict[int, dict[str, Any]], job_id: int, expected: list[int]
) -> None:
    assert sub_job_ids(job_id, job_notes[job_id]["opresult"]) == expected


def test_a_sub_job_ganeti_refused_to_submit_is_a_failure(job_notes: dict[int, dict[str, Any]]) -> None:
    opresult = [{"jobs": [*job_notes[42]["opresult"][0]["jobs"], [False, "Instance inst9 is locked"]]}]
    with pytest.raises(JobFailedError, match="could not be submitted: Instance inst9 is locked"):
        sub_job_ids(42, opresult)


def test_long_poll_body_has_the_documented_keys() -> None:
    first = long_poll_body(None, None)
    assert set(first) == {"fields", "previous_job_info", "previous_log_serial"}
    assert first["fields"][0] == "status"
    assert first["previous_job_info"] is None and first["previous_log_serial"] is None
    later = long_poll_body(["running", None], 7)
    assert later["previous_job_info"] == ["running", None] and later["previous_log_serial"] == 7


def test_unknown_job_fields_are_null(transcript: list[dict[str, Any]]) -> None:
    unknown = next(e for e in transcript if e.get("path") == "/2/jobs/999999")["response"]
    assert unknown["status"] is None
    assert timestamp(unknown["end_ts"]) is None
    assert timestamp([1763786400, 250000]) == 1763786400.25


def test_a_skipped_job_waits_for_nothing() -> None:
    result = SkippedJob("instance-remove web1").wait(timeout=0)
    assert result.skipped and result.status == SKIPPED
    assert result.job_id is None
    assert result.summary == ("instance-remove web1",)


# Long-poll replays of jobs recorded on the lab (tests/unit/ganeti/fixtures/rapi-lab-3.0.2.jsonl).


def _polls(exchanges: list[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    return [e for e in exchanges if e["path"] == f"/2/jobs/{job_id}/wait"]


def _logged(exchanges: list[dict[str, Any]], job_id: int) -> list[str]:
    return [entry[3] for poll in _polls(exchanges, job_id) for entry in poll["response"]["log_entries"]]


def test_wait_streams_log_lines_and_returns_the_final_fields(
    make_cluster: Any, lab_exchanges: list[dict[str, Any]]
) -> None:
    cluster, adapter, _ = make_cluster(lab_exchanges)
    seen: list[LogEntry] = []
    result = Job(cluster.rapi, 12, description="instance-create", default_timeout=60).wait(progress=seen.append)
    final = _polls(lab_exchanges, 12)[-1]["response"]["job_info"]
    assert result.status == "success" == final[0]
    assert result.value == final[2][0]
    assert result.end_ts == timestamp(final[6]) and result.start_ts == timestamp(final[5])
    assert [entry.text for entry in seen] == _logged(lab_exchanges, 12) != []
    assert [entry.serial for entry in seen] == sorted(entry.serial for entry in seen)
    assert [s.path for s in adapter.seen] == [e["path"] for e in _polls(lab_exchanges, 12)]
    assert all(s.user == "cookbooks" for s in adapter.seen)
    first, second = adapter.seen[0].body, adapter.seen[1].body
    assert first == long_poll_body(None, None)
    assert second["previous_job_info"] == _polls(lab_exchanges, 12)[0]["response"]["job_info"]


@pytest.mark.parametrize(("job_id", "classification"), [(15, None), (16, "unknown_entity")])
def test_wait_raises_the_failure_of_a_real_job(
    make_cluster: Any, lab_exchanges: list[dict[str, Any]], job_id: int, classification: str | None
) -> None:
    cluster, _, _ = make_cluster(lab_exchanges)
    with pytest.raises(JobFailedError) as caught:
        Job(cluster.rapi, job_id, description="instance-create", default_timeout=60).wait()
    assert caught.value.error_type == "OpPrereqError"
    assert caught.value.classification == classification
    assert caught.value.job_id == job_id and caught.value.parent_id is None


def test_node_migrate_wait_follows_each_sub_job(make_cluster: Any, lab_exchanges: list[dict[str, Any]]) -> None:
    cluster, _, _ = make_cluster(lab_exchanges)
    seen: list[LogEntry] = []
    result = Job(cluster.rapi, 19, description="node-migrate", default_timeout=60).wait(progress=seen.append)
    expected = sub_job_ids(19, _polls(lab_exchanges, 19)[-1]["response"]["job_info"][2])
    assert [sub.job_id for sub in result.sub_results] == expected and len(expected) == 2
    assert all(sub.status == "success" for sub in result.sub_results)
    assert {entry.job_id for entry in seen} == set(expected)
    for sub in result.sub_results:
        assert [entry.text for entry in sub.log] == _logged(lab_exchanges, sub.job_id)


def test_dry_run_create_names_the_node_hail_chose(make_cluster: Any, lab_exchanges: list[dict[str, Any]]) -> None:
    query = [e for e in load_jsonl(FIXTURES / "rapi-query-lab-3.0.2.jsonl") if e["status"] == 200]
    cluster, adapter, changes = make_cluster(lab_exchanges + query, dry_run=True)
    job = cluster.create_instance("rec-dry.lab.example", disk_template="file", disks=[1024], os_type="noop",
                                  memory=128, vcpus=1, iallocator="hail", name_check=False)
    result = job.wait()
    chosen_uuid = _polls(lab_exchanges, job.id)[-1]["response"]["job_info"][2][0][0]
    nodes = next(e for e in lab_exchanges if e["path"] == "/2/nodes")["response"]
    assert result.value == [next(node["name"] for node in nodes if node["uuid"] == chosen_uuid)]
    assert any("dry-run mode requested" in entry.text for entry in result.log)
    assert adapter.seen[0].params == {"dry-run": ["1"]}
    assert changes.changes[0].dry_run and changes.changes[0].detail["checked"] is True


def test_deadline_raises_job_timeout(make_cluster: Any, lab_exchanges: list[dict[str, Any]]) -> None:
    cluster, _, _ = make_cluster(lab_exchanges)

    def slow(entry: LogEntry) -> None:
        time.sleep(0.2)

    with pytest.raises(JobTimeoutError) as caught:
        Job(cluster.rapi, 12, description="instance-create", default_timeout=60).wait(progress=slow, timeout=0.1)
    assert caught.value.status == "running" and caught.value.timeout == 0.1
    assert "not canceled" in str(caught.value)


def test_no_change_answer_is_polled_again(make_cluster: Any, lab_exchanges: list[dict[str, Any]]) -> None:
    """Ganeti answers null when the job did not change within its 10 s (rlib2 R_2_jobs_id_wait)."""
    polls = _polls(lab_exchanges, 12)
    unchanged = {**polls[1], "response": None}
    cluster, adapter, _ = make_cluster([polls[0], unchanged, *polls[1:]])
    assert Job(cluster.rapi, 12, description="x", default_timeout=60).wait().status == "success"
    assert len(adapter.seen) == len(polls) + 1


def test_status_of_an_unknown_job(make_cluster: Any, transcript: list[dict[str, Any]]) -> None:
    cluster, _, _ = make_cluster([e for e in transcript if e.get("path") == "/2/jobs/999999"])
    with pytest.raises(JobNotFoundError):
        Job(cluster.rapi, 999999, description="x", default_timeout=60).status()


def test_waiting_on_an_unknown_job(make_cluster: Any, lab_exchanges: list[dict[str, Any]]) -> None:
    """Ganeti 3.0.2 answers the wait of an unknown job with HTTP 500 "Can't load job file"."""
    cluster, adapter, _ = make_cluster(lab_exchanges)
    with pytest.raises(JobNotFoundError):
        Job(cluster.rapi, 9999999, description="x", default_timeout=60).wait()
    assert [seen.path for seen in adapter.seen] == ["/2/jobs/9999999/wait", "/2/jobs/9999999"]
