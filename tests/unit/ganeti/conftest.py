"""Fixtures of the Ganeti client's unit tests: the recorded transcripts and a cluster replaying them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from libcluster.changes import ChangeLog
from libcluster.ganeti.cluster import GanetiCluster
from libcluster.ganeti.rapi import RapiClient
from tests.unit.ganeti.ganeti_replay import (
    CA_FILE,
    FIXTURES,
    RO,
    RW,
    URL,
    RecordedRapi,
    load_jsonl,
)


@pytest.fixture(scope="session")
def transcript(recorded_dir: Path) -> list[dict[str, Any]]:
    """The shared RAPI transcript (Ganeti 3.0.2): requests, answers and job notes."""
    return load_jsonl(recorded_dir / "ganeti" / "rapi-transcript-3.0.2.jsonl")


@pytest.fixture(scope="session")
def job_notes(transcript: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Final state of each job of the transcript, by job id (status, opresult, summary)."""
    return {entry["job"]: entry for entry in transcript if "job" in entry}


@pytest.fixture(scope="session")
def lab_exchanges() -> list[dict[str, Any]]:
    """RAPI exchanges recorded from the lab: long-polls, job fields, info."""
    return load_jsonl(FIXTURES / "rapi-lab-3.0.2.jsonl")


@pytest.fixture
def make_cluster() -> Callable[..., tuple[GanetiCluster, RecordedRapi, ChangeLog]]:
    """Build a GanetiCluster on a RecordedRapi: make_cluster(exchanges, dry_run=False)."""

    def make(exchanges: Iterable[dict[str, Any]], *, dry_run: bool = False, job_timeout: float = 60.0) -> Any:
        adapter = RecordedRapi(exchanges)
        rapi = RapiClient(URL, read_write=RW, read_only=RO, ca_file=CA_FILE, timeout=5.0, adapter=adapter,
                          sleep=lambda _seconds: None)
        changes = ChangeLog(dry_run=dry_run)
        cluster = GanetiCluster("lab", rapi, dry_run=dry_run, changes=changes, job_timeout=job_timeout, remote=None)
        return cluster, adapter, changes

    return make
