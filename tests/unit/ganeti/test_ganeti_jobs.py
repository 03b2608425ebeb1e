"""Job results of the real transcript: failures with Ganeti's classification, sub-jobs, the long-poll body."""

from __future__ import annotations

from typing import Any

import pytest

from libcluster.ganeti.errors import JobFailedError
from libcluster.ganeti.jobs import SKIPPED, SkippedJob, job_failure, long_poll_body, sub_job_ids, timestamp


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
