"""Typed errors of the Ganeti client: HTTP failures, failed jobs and failed `gnt-*` commands.

Callers branch on the class (auth, not found, bad request, job failed) and on Ganeti's own
classification of a failed job (``wrong_state``, ``insufficient_resources``...), never on text.
"""

from __future__ import annotations

from libcluster import redact
from libcluster.errors import ConfigError, LibclusterError

CLASSIFICATIONS = (
    "resolver_error",
    "insufficient_resources",
    "temp_insufficient_resources",
    "wrong_input",
    "wrong_state",
    "unknown_entity",
    "already_exists",
    "resource_not_unique",
    "internal_error",
    "environment_error",
)
"""Ganeti's error classifications (ECODE_* in Ganeti's errors module), as found in job results."""


class GanetiError(LibclusterError):
    """Base class of every error raised by libcluster.ganeti."""


class UnknownClusterError(GanetiError, ConfigError):
    """The cluster name is not under `ganeti.clusters` in the configuration."""


class RapiConnectionError(GanetiError):
    """The RAPI could not be reached (refused, timed out, TLS verification failed), after retries."""


class RapiError(GanetiError):
    """The RAPI answered with an HTTP error; `message` is Ganeti's message, HTML-unescaped."""

    def __init__(self, method: str, path: str, status: int, message: str, classification: str | None = None) -> None:
        """Keep the request, the HTTP status and Ganeti's message (and classification when it gave one)."""
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.classification = classification
        suffix = f" [{classification}]" if classification else ""
        super().__init__(redact.redact(f"RAPI {method} {path}: HTTP {status}: {message}{suffix}"))


class RapiAuthError(RapiError):
    """HTTP 401 (wrong user or password) or 403 (a read-only user tried to write)."""


class RapiNotFoundError(RapiError):
    """HTTP 404: unknown instance, node, group or path; also a filtered /2/query naming an unknown object (Ganeti
    answers it with HTTP 500 unknown_entity)."""


class RapiBadRequestError(RapiError):
    """HTTP 400: the body or a parameter was refused before any job was created."""


class JobError(GanetiError):
    """Base class of errors about one Ganeti job."""

    def __init__(self, job_id: int, message: str) -> None:
        """Keep the job id; the message says what went wrong."""
        self.job_id = job_id
        super().__init__(message)


class JobNotFoundError(JobError):
    """Ganeti does not know the job (never existed, or archived)."""


class JobTimeoutError(JobError):
    """The deadline passed while the job was still unfinished; it keeps running in Ganeti."""

    def __init__(self, job_id: int, status: str | None, timeout: float) -> None:
        """Keep the last status seen and the timeout that was exceeded."""
        self.status = status
        self.timeout = timeout
        super().__init__(
            job_id, f"Ganeti job {job_id} not finished after {timeout:g}s (status {status}); it was not canceled"
        )


class JobFailedError(JobError):
    """A job ended in error or was canceled; keeps Ganeti's error type, classification and message."""

    def __init__(
        self,
        job_id: int,
        *,
        status: str,
        error_type: str | None,
        message: str,
        classification: str | None,
        summary: str | None,
        parent_id: int | None = None,
    ) -> None:
        """Describe the failed opcode (`summary`, e.g. INSTANCE_CREATE(x)) and why it failed."""
        self.status = status
        self.error_type = error_type
        self.message = message
        self.classification = classification
        self.summary = summary
        self.parent_id = parent_id
        what = f" {summary}" if summary else ""
        via = f" (sub-job of {parent_id})" if parent_id is not None else ""
        kind = f" {error_type}" if error_type else ""
        label = f" [{classification}]" if classification else ""
        super().__init__(job_id, f"Ganeti job {job_id}{via}{what} {status}:{kind}: {message}{label}")


class GntCommandError(GanetiError):
    """A `gnt-*` (or htools) command run on the master over SSH failed or could not be run."""

    def __init__(self, command: str, host: str, rc: int | None, output: str) -> None:
        """Keep the command line, the host, the exit code (None: not run or unreachable) and the output."""
        self.command = command
        self.host = host
        self.rc = rc
        self.output = output
        tail = output.strip().splitlines()[-5:]
        shown = ("\n" + "\n".join(tail)) if tail else ""
        super().__init__(redact.redact(f"'{command}' on {host} failed (exit code {rc}){shown}"))
