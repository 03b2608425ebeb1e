"""RAPI HTTP layer: typed errors from real answers, users, TLS verify per request, safe retries."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
import urllib3.exceptions
from requests.adapters import BaseAdapter

from libcluster.ganeti.errors import (
    RapiAuthError,
    RapiBadRequestError,
    RapiConnectionError,
    RapiError,
    RapiNotFoundError,
)
from libcluster.ganeti.rapi import TRIES, RapiClient, RapiTimeoutError, http_error
from tests.unit.ganeti.ganeti_replay import CA_FILE, RO, RW, URL, RecordedRapi


def _client(adapter: BaseAdapter, sleeps: list[float] | None = None) -> RapiClient:
    pauses = sleeps if sleeps is not None else []
    return RapiClient(URL, read_write=RW, read_only=RO, ca_file=CA_FILE, timeout=5.0, adapter=adapter,
                      sleep=pauses.append)


def _error_exchange(transcript: list[dict[str, Any]], status: int, path: str) -> dict[str, Any]:
    return next(e for e in transcript if e.get("status") == status and e.get("path") == path)


@pytest.mark.parametrize(
    ("status", "path", "error_class"),
    [
        (400, "/2/nodes/node1.gl.test/role", RapiBadRequestError),
        (401, "/2/info", RapiAuthError),
        (403, "/2/instances/inst1.gl.test/shutdown", RapiAuthError),
        (404, "/2/instances/nope.gl.test", RapiNotFoundError),
        (501, "/2/info", RapiError),
    ],
)
def test_http_errors_are_typed(transcript: list[dict[str, Any]], status: int, path: str, error_class: type) -> None:
    exchange = _error_exchange(transcript, status, path)
    error = http_error(exchange["method"], path, status, json.dumps(exchange["response"]))
    assert type(error) is error_class
    assert error.status == status
    assert error.message == exchange["response"]["message"].replace("&#x27;", "'")


def test_bad_request_message_is_unescaped_and_keeps_classification(transcript: list[dict[str, Any]]) -> None:
    exchange = next(e for e in transcript if e.get("status") == 400 and "fails validation" in str(e["response"]))
    adapter = RecordedRapi([exchange])
    with pytest.raises(RapiBadRequestError) as caught:
        _client(adapter).submit("POST", "/2/instances", body=exchange["body"])
    assert "&#x27;" not in caught.value.message and "&quot;" not in caught.value.message
    assert "'OP_INSTANCE_CREATE.instance_name' fails validation" in caught.value.message
    assert caught.value.classification == "wrong_input"


def test_unknown_role_is_bad_request_without_classification(transcript: list[dict[str, Any]]) -> None:
    exchange = _error_exchange(transcript, 400, "/2/nodes/node1.gl.test/role")
    with pytest.raises(RapiBadRequestError) as caught:
        _client(RecordedRapi([exchange])).submit("PUT", "/2/nodes/node1.gl.test/role", body="bogus")
    assert caught.value.message == "Can't set 'bogus' role"
    assert caught.value.classification is None


def test_reads_use_read_only_user_and_writes_the_read_write_user(transcript: list[dict[str, Any]]) -> None:
    features = next(e for e in transcript if e.get("path") == "/2/features")
    create = next(e for e in transcript if e.get("method") == "POST" and e.get("status") == 200)
    adapter = RecordedRapi([features, create])
    client = _client(adapter)
    assert client.get("/2/features") == features["response"]
    assert client.submit("POST", "/2/instances", body=create["body"]) == create["response"]
    assert [seen.user for seen in adapter.seen] == [RO.user, RW.user]


def test_verify_is_passed_on_every_request_despite_requests_ca_bundle(
    transcript: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/other-bundle.pem")
    adapter = RecordedRapi([e for e in transcript if e.get("path") == "/2/os"])
    _client(adapter).get("/2/os")
    assert adapter.seen[0].verify == CA_FILE


def test_without_ca_file_the_bundle_path_is_still_explicit(transcript: list[dict[str, Any]]) -> None:
    adapter = RecordedRapi([e for e in transcript if e.get("path") == "/2/os"])
    client = RapiClient(URL, read_write=RW, read_only=RO, ca_file=None, timeout=5.0, adapter=adapter)
    client.get("/2/os")
    assert isinstance(adapter.seen[0].verify, str) and adapter.seen[0].verify.endswith(".pem")


def test_passwords_do_not_show_in_repr_or_logs(
    transcript: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    assert RW.password not in repr(RW)
    exchange = _error_exchange(transcript, 401, "/2/info")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RapiAuthError) as caught:
        _client(RecordedRapi([exchange])).get("/2/info")
    assert RO.password not in str(caught.value) and RO.password not in caplog.text


class Failing(BaseAdapter):
    """Raises the given exceptions in turn, then answers from `then`."""

    def __init__(self, failures: list[Exception], then: RecordedRapi) -> None:
        super().__init__()
        self.failures = failures
        self.then = then
        self.calls = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: D102
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.then.send(request, **kwargs)

    def close(self) -> None:  # noqa: D102
        pass


def _refused() -> requests.ConnectionError:
    """What requests raises when the TCP connect is refused (nothing was sent)."""
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/2/instances", reason))  # type: ignore[arg-type]


def _dropped() -> requests.ConnectionError:
    """What requests raises when the connection drops after the request was sent."""
    reason = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    return requests.ConnectionError(reason)


def test_reads_are_retried_with_backoff(transcript: list[dict[str, Any]]) -> None:
    sleeps: list[float] = []
    adapter = Failing([_dropped(), requests.ReadTimeout("read timed out")],
                      RecordedRapi([e for e in transcript if e.get("path") == "/2/os"]))
    assert _client(adapter, sleeps).get("/2/os") == ["noop"]
    assert adapter.calls == 3
    assert sleeps == [0.5, 1.0]


def test_reads_give_up_after_the_last_try(transcript: list[dict[str, Any]]) -> None:
    sleeps: list[float] = []
    adapter = Failing([requests.ReadTimeout("read timed out") for _ in range(TRIES)], RecordedRapi([]))
    with pytest.raises(RapiTimeoutError):
        _client(adapter, sleeps).get("/2/os")
    assert adapter.calls == TRIES
    assert len(sleeps) == TRIES - 1


def test_write_is_retried_only_when_nothing_was_sent(transcript: list[dict[str, Any]]) -> None:
    create = next(e for e in transcript if e.get("method") == "POST" and e.get("status") == 200)
    adapter = Failing([_refused(), requests.ConnectTimeout("connect timed out")], RecordedRapi([create]))
    assert _client(adapter).submit("POST", "/2/instances", body=create["body"]) == create["response"]
    assert adapter.calls == 3


@pytest.mark.parametrize("failure", [_dropped, lambda: requests.ReadTimeout("read timed out")])
def test_write_is_not_retried_once_sent(transcript: list[dict[str, Any]], failure: Any) -> None:
    create = next(e for e in transcript if e.get("method") == "POST" and e.get("status") == 200)
    adapter = Failing([failure()], RecordedRapi([create]))
    with pytest.raises(RapiConnectionError):
        _client(adapter).submit("POST", "/2/instances", body=create["body"])
    assert adapter.calls == 1


def test_tls_failure_is_not_retried() -> None:
    adapter = Failing([requests.exceptions.SSLError("certificate verify failed")], RecordedRapi([]))
    with pytest.raises(RapiConnectionError, match="TLS failed"):
        _client(adapter).get("/2/info")
    assert adapter.calls == 1


def test_unavailable_answers_are_retried_for_reads(transcript: list[dict[str, Any]]) -> None:
    unavailable = {"method": "GET", "path": "/2/os", "params": None, "body": None, "status": 503,
                   "response": {"code": 503, "message": "Service Unavailable", "explain": ""}}
    recorded = [unavailable, *[e for e in transcript if e.get("path") == "/2/os"]]
    adapter = RecordedRapi(recorded)
    assert _client(adapter).get("/2/os") == ["noop"]
    assert len(adapter.seen) == 2


def test_submit_needs_a_job_id(transcript: list[dict[str, Any]]) -> None:
    os_list = next(e for e in transcript if e.get("path") == "/2/os")
    adapter = RecordedRapi([{**os_list, "method": "POST"}])
    with pytest.raises(RapiError, match="expected a job id"):
        _client(adapter).submit("POST", "/2/os")
