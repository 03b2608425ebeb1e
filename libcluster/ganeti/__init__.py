"""Ganeti for cookbooks: connect() to a configured cluster, then read, write and follow jobs.

Reads return typed models (Instance, Node, Group, JobInfo; the RAPI answer in ``.raw``). Writes go through
the RAPI and return job handles waited on with the long-poll; what the RAPI lacks runs as gnt-* commands
on the master over SSH (``cluster.commands``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.ganeti.cluster import GanetiCluster
from libcluster.ganeti.errors import (
    GanetiError,
    GntCommandError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    RapiAuthError,
    RapiBadRequestError,
    RapiConnectionError,
    RapiError,
    RapiNotFoundError,
    UnknownClusterError,
)
from libcluster.ganeti.jobs import Job, JobHandle, JobResult, LogEntry, SkippedJob
from libcluster.ganeti.models import Group, Instance, JobInfo, Node
from libcluster.ganeti.rapi import Credentials, RapiAnswerLostError, RapiClient

if TYPE_CHECKING:
    from libcluster.remote import Remote

__all__ = [
    "GanetiCluster",
    "GanetiError",
    "GntCommandError",
    "Group",
    "Instance",
    "Job",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "JobNotFoundError",
    "JobResult",
    "JobTimeoutError",
    "LogEntry",
    "Node",
    "RapiAnswerLostError",
    "RapiAuthError",
    "RapiBadRequestError",
    "RapiConnectionError",
    "RapiError",
    "RapiNotFoundError",
    "SkippedJob",
    "UnknownClusterError",
    "connect",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds per RAPI request when the cluster's `timeout` is not set."""

DEFAULT_JOB_TIMEOUT = 1800.0
"""Seconds to wait for a job (and for a gnt-* command) when `job_timeout` is not set."""


def connect(
    config: Section, name: str, *, dry_run: bool, changes: ChangeLog, remote: Remote | Callable[[], Remote] | None
) -> GanetiCluster:
    """The cluster configured at `ganeti.clusters.<name>` of the root configuration `config`.

    `remote` (or a function returning it, called when a gnt-* command is first needed) runs the
    commands the RAPI lacks on the master. Raises UnknownClusterError (listing the configured
    names) for an unknown name and ConfigError for a missing or mistyped key. No request is made here.
    """
    clusters = config.section("ganeti").section("clusters")
    if name not in set(clusters):
        known = ", ".join(sorted(clusters)) or "none"
        raise UnknownClusterError(
            f"{config.source}: unknown Ganeti cluster '{name}' (configured under ganeti.clusters: {known})"
        )
    section = clusters.section(name)
    url = section.str("rapi_url")
    if urlsplit(url).scheme != "https":
        raise ConfigError(f"{section.source}: key '{section.where}.rapi_url' must be an https:// URL, got {url!r}")
    rapi = RapiClient(
        url,
        read_write=Credentials(section.str("rapi_user"), section.str("rapi_password")),
        read_only=Credentials(section.str("rapi_ro_user"), section.str("rapi_ro_password")),
        ca_file=section.str("ca_file", None),
        timeout=section.float("timeout", DEFAULT_TIMEOUT),
    )
    return GanetiCluster(
        name,
        rapi,
        dry_run=dry_run,
        changes=changes,
        job_timeout=section.float("job_timeout", DEFAULT_JOB_TIMEOUT),
        remote=remote,
        verify_ignore=[str(code) for code in section.list("verify_ignore", [])],
    )
