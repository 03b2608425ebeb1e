"""Ganeti jobs: the handle every write returns, and waiting for it with the RAPI long-poll.

`Job.wait()` uses `GET /2/jobs/ID/wait`, which Ganeti answers as soon as the job changes,
so a finished job is noticed within milliseconds, not at the next poll. Log lines are passed to
a callback as they arrive, sub-jobs (node migrate/evacuate) are followed, a deadline applies,
and a failed job becomes a JobFailedError with Ganeti's classification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libcluster.ganeti.errors import (
    CLASSIFICATIONS,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    RapiError,
)
from libcluster.ganeti.rapi import RapiClient, RapiTimeoutError

logger = logging.getLogger(__name__)

FINALIZED = frozenset({"success", "error", "canceled"})
"""Job statuses after which nothing changes any more."""

WAIT_FIELDS = ("status", "opstatus", "opresult", "summary", "received_ts", "start_ts", "end_ts")
"""Job fields the long-poll returns; enough to build the final result without another request."""

SKIPPED = "skipped (dry-run)"
"""Status of a write that dry-run did not send to Ganeti."""

Progress = Callable[["LogEntry"], None]
"""Receives each log line of a job (and of its sub-jobs) as it arrives."""


@dataclass(frozen=True)
class LogEntry:
    """One line of a job's log, e.g. "* creating instance disks..."."""

    job_id: int
    serial: int
    timestamp: float
    kind: str
    message: Any

    @property
    def text(self) -> str:
        """The message as one line of text (some kinds carry structured data)."""
        return self.message if isinstance(self.message, str) else repr(self.message)


@dataclass(frozen=True)
class JobResult:
    """The final state of a job: status, per-opcode results, timestamps, its log and its sub-jobs."""

    job_id: int | None
    status: str
    summary: tuple[str, ...] = ()
    opstatus: tuple[str, ...] = ()
    opresult: tuple[Any, ...] = ()
    received_ts: float | None = None
    start_ts: float | None = None
    end_ts: float | None = None
    log: tuple[LogEntry, ...] = ()
    sub_results: tuple[JobResult, ...] = ()
    value: Any = None
    """The job's answer: the first opcode's result, or what the write's parser made of it."""

    @property
    def skipped(self) -> bool:
        """True for a write dry-run did not send."""
        return self.status == SKIPPED


def timestamp(value: Any) -> float | None:
    """Convert Ganeti's `[seconds, microseconds]` timestamp to a float, None when absent."""
    if not value:
        return None
    seconds, micros = value
    return float(seconds) + float(micros) / 1e6


def long_poll_body(previous_job_info: list[Any] | None, previous_log_serial: int | None) -> dict[str, Any]:
    """The JSON body of `GET /2/jobs/ID/wait`: fields wanted and what the client already saw."""
    return {
        "fields": list(WAIT_FIELDS),
        "previous_job_info": previous_job_info,
        "previous_log_serial": previous_log_serial,
    }


def log_entries(job_id: int, raw: Sequence[Sequence[Any]]) -> list[LogEntry]:
    """Parse log entries `[serial, [sec, usec], type, message]` of a long-poll answer or a job's oplog."""
    return [
        LogEntry(job_id=job_id, serial=int(serial), timestamp=timestamp(stamp) or 0.0, kind=str(kind), message=message)
        for serial, stamp, kind, message in raw
    ]


def _op_error(entry: Any) -> tuple[str | None, str, str | None] | None:
    """(error type, message, classification) of one failed opcode's result, None if it is no error."""
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
        return None
    error_type, args = entry
    if not isinstance(args, (list, tuple)):
        return error_type, str(args), None
    message = str(args[0]) if args else ""
    classification = args[1] if len(args) > 1 and args[1] in CLASSIFICATIONS else None
    return error_type, message, classification


def job_failure(job_id: int, info: Mapping[str, Any], parent_id: int | None = None) -> JobFailedError | None:
    """The error a finished job stands for, or None if it succeeded.

    The failed opcode is the first whose opstatus is "error" (later ones only say "Preceding
    opcode failed"); without opstatus, the first result shaped like an error is taken.
    """
    status = info.get("status")
    if status == "success":
        return None
    opresult = list(info.get("opresult") or [])
    summaries = list(info.get("summary") or [])
    opstatus = list(info.get("opstatus") or [])
    index = next((i for i, op in enumerate(opstatus) if op in ("error", "canceled")), None)
    if index is None:
        index = next((i for i, entry in enumerate(opresult) if _op_error(entry)), None)
    parsed = _op_error(opresult[index]) if index is not None and index < len(opresult) else None
    error_type, message, classification = parsed or (None, f"job {status}", None)
    summary = summaries[index] if index is not None and index < len(summaries) else ", ".join(summaries) or None
    return JobFailedError(
        job_id,
        status=str(status),
        error_type=error_type,
        message=message,
        classification=classification,
        summary=summary,
        parent_id=parent_id,
    )


def sub_job_ids(job_id: int, opresult: Sequence[Any]) -> list[int]:
    """Ids of the jobs a job submitted (node migrate/evacuate: `{"jobs": [[true, id], ...]}`).

    A sub-job that Ganeti refused to submit (`[false, message]`) raises JobFailedError.
    """
    ids: list[int] = []
    for result in opresult:
        if not isinstance(result, Mapping):
            continue
        for submitted, detail in result.get("jobs") or []:
            if not submitted:
                raise JobFailedError(
                    job_id,
                    status="error",
                    error_type=None,
                    message=f"a sub-job could not be submitted: {detail}",
                    classification=None,
                    summary=None,
                )
            ids.append(int(detail))
    return ids


def log_progress(entry: LogEntry) -> None:
    """Default progress callback: each log line at INFO, prefixed with its job id."""
    logger.info("job %d: %s", entry.job_id, entry.text)


class Job:
    """A job Ganeti accepted; `wait()` follows it to the end."""

    def __init__(
        self,
        rapi: RapiClient,
        job_id: int,
        *,
        description: str,
        default_timeout: float,
        parse: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        """Follow job `job_id`; `parse` turns the opresult of a successful job into `JobResult.value`."""
        self.id = job_id
        self.description = description
        self._rapi = rapi
        self._default_timeout = default_timeout
        self._parse = parse

    def __repr__(self) -> str:
        """Show the job id and what it does."""
        return f"Job({self.id}, {self.description!r})"

    def status(self) -> dict[str, Any]:
        """The job's current fields from `GET /2/jobs/ID` (one request, no waiting)."""
        info: dict[str, Any] = self._rapi.get(f"/2/jobs/{self.id}")
        if info.get("status") is None:
            raise JobNotFoundError(self.id, f"Ganeti job {self.id} not found")
        return info

    def wait(self, progress: Progress | None = None, timeout: float | None = None) -> JobResult:
        """Wait for the job and its sub-jobs to finish and return the result.

        Raises JobFailedError (with Ganeti's classification) if the job or a sub-job failed, and
        JobTimeoutError if they are not finished `timeout` seconds from now (the cluster's
        job_timeout by default); the job is not canceled then.
        """
        limit = self._default_timeout if timeout is None else timeout
        waiter = _Waiter(self._rapi, progress or log_progress, time.monotonic() + limit, limit)
        return waiter.follow(self.id, parent_id=None, parse=self._parse)


class SkippedJob:
    """What a write returns in dry-run when it was only described, not sent: waits for nothing."""

    id = None

    def __init__(self, description: str) -> None:
        """Remember what would have been done."""
        self.description = description

    def __repr__(self) -> str:
        """Show that nothing was sent."""
        return f"SkippedJob({self.description!r})"

    def wait(self, progress: Progress | None = None, timeout: float | None = None) -> JobResult:
        """Return a result with status "skipped (dry-run)" at once."""
        del progress, timeout
        return JobResult(job_id=None, status=SKIPPED, summary=(self.description,))


JobHandle = Job | SkippedJob
"""What every write returns."""


class _Waiter:
    """Follows one job and its sub-jobs under one deadline, feeding one progress callback."""

    def __init__(self, rapi: RapiClient, progress: Progress, deadline: float, limit: float) -> None:
        self.rapi = rapi
        self.progress = progress
        self.deadline = deadline
        self.limit = limit

    def follow(self, job_id: int, *, parent_id: int | None, parse: Callable[[list[Any]], Any] | None) -> JobResult:
        """Long-poll one job to its end, then follow its sub-jobs; raise on failure."""
        previous_info: list[Any] | None = None
        previous_serial: int | None = None
        entries: list[LogEntry] = []
        info: dict[str, Any] = {}
        while True:
            if time.monotonic() >= self.deadline:
                raise JobTimeoutError(job_id, info.get("status"), self.limit)
            body = long_poll_body(previous_info, previous_serial)
            try:
                answer = self.rapi.wait_for_job_change(job_id, body, deadline=self.deadline)
            except RapiTimeoutError:
                if time.monotonic() >= self.deadline:
                    raise JobTimeoutError(job_id, info.get("status"), self.limit) from None
                raise
            except RapiError:
                self._raise_if_unknown(job_id)
                raise
            if answer is None:
                continue
            previous_info = list(answer["job_info"])
            info = dict(zip(WAIT_FIELDS, previous_info, strict=True))
            if info.get("status") is None:
                raise JobNotFoundError(job_id, f"Ganeti job {job_id} not found")
            for entry in log_entries(job_id, answer.get("log_entries") or []):
                previous_serial = max(previous_serial or 0, entry.serial)
                entries.append(entry)
                self.progress(entry)
            if info["status"] in FINALIZED:
                break
        failure = job_failure(job_id, info, parent_id)
        if failure is not None:
            raise failure
        opresult = list(info.get("opresult") or [])
        subs = self._follow_all(job_id, sub_job_ids(job_id, opresult))
        return JobResult(
            job_id=job_id,
            status=str(info["status"]),
            summary=tuple(info.get("summary") or ()),
            opstatus=tuple(info.get("opstatus") or ()),
            opresult=tuple(opresult),
            received_ts=timestamp(info.get("received_ts")),
            start_ts=timestamp(info.get("start_ts")),
            end_ts=timestamp(info.get("end_ts")),
            log=tuple(entries),
            sub_results=subs,
            value=parse(opresult) if parse else (opresult[0] if opresult else None),
        )

    def _raise_if_unknown(self, job_id: int) -> None:
        """Raise JobNotFoundError if Ganeti has no such job (its wait resource then answers HTTP 500)."""
        if self.rapi.get(f"/2/jobs/{job_id}").get("status") is None:
            raise JobNotFoundError(job_id, f"Ganeti job {job_id} not found")

    def _follow_all(self, parent_id: int, job_ids: list[int]) -> tuple[JobResult, ...]:
        """Follow every sub-job to its end, then raise the first failure (the others are logged)."""
        results: list[JobResult] = []
        failures: list[JobFailedError] = []
        for job_id in job_ids:
            try:
                results.append(self.follow(job_id, parent_id=parent_id, parse=None))
            except JobFailedError as error:
                failures.append(error)
        for other in failures[1:]:
            logger.error("%s", other)
        if failures:
            raise failures[0]
        return tuple(results)
