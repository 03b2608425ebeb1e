"""HTTP layer of the Ganeti RAPI: two users, TLS verified per request, safe retries, typed errors.

Reads go out as the read-only user and writes as the read-write user. `verify=` is passed on
every request because REQUESTS_CA_BUNDLE silently overrides `Session.verify`. Only idempotent
requests are retried after a failure; a write is retried only when the connection failed
before anything was sent, so a job can never be submitted twice.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3.exceptions
from requests.adapters import BaseAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from libcluster import redact
from libcluster.errors import AnswerLostError
from libcluster.ganeti.errors import (
    CLASSIFICATIONS,
    RapiAuthError,
    RapiBadRequestError,
    RapiConnectionError,
    RapiError,
    RapiNotFoundError,
)

logger = logging.getLogger(__name__)

TRIES = 4
"""Attempts of a retryable request (the first one and three retries)."""
RS_NORMAL = 0
"""Status of a field Ganeti answered normally in a /2/query row."""

BACKOFF = 0.5
"""Seconds before the first retry, doubled before each next one."""

RETRY_STATUSES = frozenset({502, 503, 504})
"""HTTP statuses after which an idempotent request is tried again (master failover, overload)."""

_ERROR_CLASSES: dict[int, type[RapiError]] = {
    400: RapiBadRequestError,
    401: RapiAuthError,
    403: RapiAuthError,
    404: RapiNotFoundError,
}
_TRAILING_CLASSIFICATION = re.compile(r"'([a-z_]+)'\)\s*$")


class RapiTimeoutError(RapiConnectionError):
    """The RAPI did not answer in time (connect or read timeout), after the retries allowed."""


class RapiAnswerLostError(RapiConnectionError, AnswerLostError):
    """A write was sent and its answer lost (read timeout, connection reset): Ganeti may have made the job."""


@dataclass(frozen=True)
class Credentials:
    """A RAPI user and password; the password never appears in repr()."""

    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        """Register the password for redaction, so no log line or message can show it."""
        redact.register(self.password)


def path_segment(value: str) -> str:
    """A name (instance, node, group) as one URL path segment."""
    return quote(value, safe="")


def _boolean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters with booleans as 0/1, the form the RAPI parses."""
    if params is None:
        return None
    return {key: int(value) if isinstance(value, bool) else value for key, value in params.items() if value is not None}


def _not_sent(exc: requests.RequestException) -> bool:
    """Whether a connection failure happened before the request left (so retrying a write is safe)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def http_error(method: str, path: str, status: int, text: str) -> RapiError:
    """Build the typed error for an HTTP error answer `{"code","message","explain"}` (message unescaped)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = str(data.get("message")) if isinstance(data, dict) and data.get("message") else text.strip()[:500]
    message = html.unescape(message)
    match = _TRAILING_CLASSIFICATION.search(message)
    classification = match.group(1) if match and match.group(1) in CLASSIFICATIONS else None
    return _ERROR_CLASSES.get(status, RapiError)(method, path, status, message, classification)


class RapiClient:
    """A session with one Ganeti RAPI endpoint (the cluster's master address)."""

    def __init__(
        self,
        url: str,
        *,
        read_write: Credentials,
        read_only: Credentials,
        ca_file: str | None,
        timeout: float,
        adapter: BaseAdapter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Talk to `url` (https://host:5080), verifying TLS against ca_file (the system bundle if None).

        `timeout` bounds each connect and each read, in seconds. `adapter` replaces the network
        (tests replay recorded answers through it); `sleep` is the pause between retries.
        """
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._verify: str = ca_file or DEFAULT_CA_BUNDLE_PATH
        self._sleep = sleep
        self._sessions = {False: self._session(read_only, adapter), True: self._session(read_write, adapter)}

    def _session(self, credentials: Credentials, adapter: BaseAdapter | None) -> requests.Session:
        session = requests.Session()
        session.auth = (credentials.user, credentials.password)
        session.headers["User-Agent"] = "ganeti-cookbooks libcluster"
        session.trust_env = False
        if adapter is not None:
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return session

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a resource as the read-only user; retried on connection failures and 502/503/504."""
        return self._request("GET", path, params=params, write=False, idempotent=True)

    def query(self, resource: str, fields: Sequence[str], *, names: Sequence[str] | None = None
              ) -> list[dict[str, Any]]:
        """Chosen fields of every object of a resource (`GET /2/query/RESOURCE`), or only of the objects named
        (`PUT` with a name filter: Ganeti then asks only their nodes for live fields such as bootid; a name it
        does not know is RapiNotFoundError).

        Ganeti serves /2/query to the read-write user only; it is still a read and retried as one.
        A field Ganeti could not give (status not RS_NORMAL) is None in the row.
        """
        if names is None:
            answer = self._request("GET", f"/2/query/{resource}", params={"fields": ",".join(fields)}, write=True,
                                   idempotent=True)
        else:
            qfilter = ["|", *(["=", "name", str(name)] for name in names)]
            try:
                answer = self._request("PUT", f"/2/query/{resource}", body={"fields": list(fields),
                                                                           "qfilter": qfilter},
                                       write=True, idempotent=True)
            except RapiError as exc:  # Ganeti answers a name it does not know with HTTP 500 unknown_entity
                if exc.classification != "unknown_entity":
                    raise
                raise RapiNotFoundError(exc.method, exc.path, exc.status, exc.message, exc.classification) from None
        columns = [field["name"] for field in answer["fields"]]
        return [
            {name: value if status == RS_NORMAL else None for name, (status, value) in zip(columns, row, strict=True)}
            for row in answer["data"]
        ]

    def write(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """Send a write as the read-write user and return Ganeti's answer; never retried once sent.

        A write whose answer was lost raises RapiAnswerLostError (it may have been made).
        """
        return self._request(method, path, params=params, body=body, write=True, idempotent=False)

    def submit(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> int:
        """Send a write as the read-write user and return the id of the job Ganeti created."""
        answer = self.write(method, path, params=params, body=body)
        try:
            return int(answer)
        except (TypeError, ValueError):
            raise RapiError(method, path, 200, f"expected a job id, got {answer!r}") from None

    def wait_for_job_change(
        self, job_id: int, body: Mapping[str, Any], *, deadline: float | None = None
    ) -> dict[str, Any] | None:
        """Long-poll `/2/jobs/ID/wait`: the job's fields and new log entries, or None if nothing changed.

        Ganeti holds the request up to 10 s and answers as soon as the job changes. This resource
        needs the read-write user. `deadline` (time.monotonic()) caps the read timeout and retries.
        """
        answer: dict[str, Any] | None = self._request(
            "GET", f"/2/jobs/{int(job_id)}/wait", body=body, write=True, idempotent=True, deadline=deadline
        )
        return answer

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        write: bool,
        idempotent: bool,
        deadline: float | None = None,
    ) -> Any:
        session = self._sessions[write]
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(1, TRIES + 1):
            read_timeout = self.timeout
            if deadline is not None:
                read_timeout = max(0.001, min(self.timeout, deadline - time.monotonic()))
            started = time.monotonic()
            try:
                response = session.request(
                    method,
                    self.url + path,
                    params=_boolean_params(params),
                    data=data,
                    headers=headers,
                    timeout=(self.timeout, read_timeout),
                    verify=self._verify,
                )
            except requests.exceptions.SSLError as exc:
                raise RapiConnectionError(redact.redact(f"RAPI {method} {path}: TLS failed: {exc}")) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                retry = (idempotent or _not_sent(exc)) and self._may_retry(attempt, deadline)
                logger.debug("RAPI %s %s attempt %d failed: %s", method, path, attempt, exc)
                if retry:
                    self._backoff(attempt)
                    continue
                error = RapiTimeoutError if isinstance(exc, requests.Timeout) else RapiConnectionError
                if not idempotent and not _not_sent(exc):
                    error = RapiAnswerLostError
                raise error(redact.redact(f"RAPI {method} {self.url}{path}: {type(exc).__name__}: {exc}")) from None
            logger.debug(
                "RAPI %s %s -> %d in %.3fs", method, path, response.status_code, time.monotonic() - started
            )
            if response.status_code == 200:
                return response.json()
            if idempotent and response.status_code in RETRY_STATUSES and self._may_retry(attempt, deadline):
                self._backoff(attempt)
                continue
            raise http_error(method, path, response.status_code, response.text)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _may_retry(attempt: int, deadline: float | None) -> bool:
        delay = BACKOFF * 2 ** (attempt - 1)
        return attempt < TRIES and (deadline is None or time.monotonic() + delay < deadline)

    def _backoff(self, attempt: int) -> None:
        self._sleep(BACKOFF * 2 ** (attempt - 1))
