"""HTTP under pynetbox: per-request timeout and TLS verification, safe retries, counted requests, typed errors.

pynetbox sends every request through one `requests.Session` without a timeout; the adapter
mounted here adds the timeout and `verify=` to each request (a session-level `verify` is
silently replaced by REQUESTS_CA_BUNDLE), retries only what is safe, and counts requests so
callers (and benchmarks) can check that reads grow with pages, not objects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pynetbox
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from libcluster.errors import is_answer_lost
from libcluster.netbox.errors import (
    NetBoxAnswerLost,
    NetBoxAuthError,
    NetBoxConflict,
    NetBoxError,
    NetBoxNotFound,
    NetBoxUnavailable,
    NetBoxValidationError,
)

SAFE_RETRY = Retry(
    total=3,
    connect=3,
    read=2,
    status=2,
    backoff_factor=0.3,
    allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
    status_forcelist=(502, 503, 504),
    raise_on_status=False,
)
"""Connection failures are retried for every method (nothing was sent); read and gateway errors only for reads."""


class NetBoxAdapter(HTTPAdapter):
    """Transport adapter that forces timeout and verify on every request and counts requests sent."""

    def __init__(self, *, timeout: float, verify: bool | str, pool_size: int) -> None:
        """Use timeout seconds per request, verify (True or a CA file) and a pool of pool_size connections."""
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=SAFE_RETRY)
        self.timeout = timeout
        self.verify = verify
        self.sent = 0
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send with this adapter's timeout and verification, whatever the session or environment says."""
        kwargs["timeout"] = self.timeout
        kwargs["verify"] = self.verify
        with self._lock:
            self.sent += 1
        return super().send(request, **kwargs)


def _error_text(body: Any) -> str:
    """NetBox's error body as one line: field messages of one object, or of each object of a bulk call."""
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return str(body["detail"])
        parts = []
        for field, messages in body.items():
            shown = "; ".join(str(message) for message in messages) if isinstance(messages, list) else str(messages)
            parts.append(f"{field}: {shown}")
        return ", ".join(parts)
    if isinstance(body, list):
        return " | ".join(f"object {index + 1}: {_error_text(item)}" for index, item in enumerate(body) if item)
    return str(body)


def _from_response(action: str, response: requests.Response) -> NetBoxError:
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:300]
    text = _error_text(body)
    if status in (401, 403):
        return NetBoxAuthError(f"{action}: NetBox refused the token (HTTP {status}): {text}", status=status)
    if status == 404:
        return NetBoxNotFound(f"{action}: not found (HTTP 404)", status=status)
    if status == 400:
        return NetBoxValidationError(f"{action}: NetBox rejected the data (HTTP 400): {text}", errors=body)
    if status == 409:
        return NetBoxConflict(f"{action}: NetBox could not fulfil the request (HTTP 409): {text}", status=status)
    if status >= 500:
        return NetBoxUnavailable(f"{action}: NetBox server error (HTTP {status}): {text}", status=status)
    return NetBoxError(f"{action}: HTTP {status}: {text}", status=status)


def _write_lost(action: str, exc: requests.RequestException) -> bool:
    """Whether a write (action "METHOD path", not a GET) was sent and its answer lost: it may have been made."""
    return not action.startswith("GET ") and is_answer_lost(exc)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn pynetbox and requests errors raised inside into typed NetBox errors naming action.

    A write whose answer was lost raises NetBoxAnswerLost (journaled as "maybe": it may have been made).

    The originals are dropped (`from None`): they hold the prepared request, headers included.
    """
    try:
        yield
    except pynetbox.RequestError as exc:
        raise _from_response(action, exc.req) from None
    except pynetbox.AllocationError as exc:
        raise _from_response(action, exc.req) from None
    except pynetbox.ContentError as exc:
        raise NetBoxError(f"{action}: the answer is not JSON (HTTP {exc.req.status_code}): not a NetBox API URL?",
                          status=exc.req.status_code) from None
    except requests.Timeout as exc:
        lost = _write_lost(action, exc)
        raise (NetBoxAnswerLost if lost else NetBoxUnavailable)(
            f"{action}: NetBox did not answer in time{' (the request was sent)' if lost else ''}") from None
    except requests.exceptions.SSLError as exc:
        raise NetBoxUnavailable(f"{action}: TLS verification failed: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        if _write_lost(action, exc):
            raise NetBoxAnswerLost(f"{action}: the connection broke after the request was sent: "
                                   f"{type(exc).__name__}") from None
        raise NetBoxUnavailable(f"{action}: cannot reach NetBox: {type(exc).__name__}") from None
    except json.JSONDecodeError:
        raise NetBoxError(f"{action}: the answer is not JSON") from None
