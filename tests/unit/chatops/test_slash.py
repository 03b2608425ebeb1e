"""The slash-command endpoint over real HTTP on loopback: signatures, timestamps, replays, tokens, response URLs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from libcluster.chatops.settings import HttpSettings
from libcluster.chatops.slash import SlashServer
from tests.unit.chatops.conftest import SECRET, TIMEOUT, TOKEN, Chat, ResponseUrl, form, run_id_in, signed


@pytest.fixture
def hooks() -> Iterator[ResponseUrl]:
    """The response URL server."""
    server = ResponseUrl()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def endpoint(chat: Chat) -> Iterator[str]:
    """The slash endpoint of the chat core on a free loopback port; its URL."""
    settings = HttpSettings(listen="127.0.0.1", port=0, path="/cookbook", slack_signing_secret=SECRET,
                            mattermost_token=TOKEN, post_interval=0.05)
    server = SlashServer(chat.core, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cookbook"
    server.shutdown()


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST the body."""
    return requests.post(url, data=body, headers=headers, timeout=TIMEOUT)


def test_signed_command_is_acknowledged_and_its_result_posted_to_the_response_url(
        chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("run1"))
    started = time.monotonic()
    answer = post(endpoint, body, signed(body))
    assert time.monotonic() - started < 1.0, "the acknowledgement is immediate"
    assert answer.status_code == 200 and answer.json()["response_type"] == "in_channel"
    run_id = run_id_in(answer.json()["text"])
    texts = hooks.wait_for(f"[{run_id}] PASS: demo.hello world")
    joined = "\n".join(texts)
    assert f"[{run_id}] START - Cookbook demo.hello for world" in joined
    assert f"[{run_id}] Hello world from bob" in joined
    assert {path for path, _ in hooks.posts} == {"/hooks/run1"} and len(hooks.posts) <= 5
    [record] = chat.records()
    assert (record["origin"], record["requester"], record["channel"]) == ("chat", "bob", "slack:#ops")


def refused(chat: Chat, hooks: ResponseUrl, answer: requests.Response, status: int, reason: str) -> None:
    """The request was refused with status and reason, and nothing ran or was posted."""
    assert answer.status_code == status
    assert answer.json() == {"response_type": "ephemeral", "text": f"refused: {reason}"}
    time.sleep(0.2)
    assert chat.core.runs == {} and hooks.posts == [] and chat.records() == []


def test_bad_signature_is_refused(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("x"))
    refused(chat, hooks, post(endpoint, body, signed(body, secret="not-the-secret")), 401, "bad request signature")


def test_body_changed_after_signing_is_refused(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("x"))
    headers = signed(body)
    refused(chat, hooks, post(endpoint, body.replace(b"world", b"earth"), headers), 401, "bad request signature")


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_old_or_future_timestamp_is_refused(chat: Chat, endpoint: str, hooks: ResponseUrl, age: int) -> None:
    body = form("demo.hello world", hooks.url("x"))
    refused(chat, hooks, post(endpoint, body, signed(body, int(time.time()) - age)), 401,
            "request timestamp missing or more than 5 minutes off")


def test_missing_signature_is_refused(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("x"))
    refused(chat, hooks, post(endpoint, body, {"X-Slack-Request-Timestamp": str(int(time.time()))}), 401,
            "missing X-Slack-Request-Timestamp or X-Slack-Signature")


def test_replayed_request_is_refused(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("-d demo.hello world", hooks.url("once"))
    headers = signed(body)
    assert post(endpoint, body, headers).status_code == 200
    replay = post(endpoint, body, headers)
    assert replay.status_code == 401 and replay.json()["text"] == "refused: request already received (replay)"
    hooks.wait_for("PASS")
    assert len(chat.core.runs) == 1 and len(chat.records()) == 1


def test_unknown_cookbook_is_rejected_without_a_run(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.nonexistent x", hooks.url("x"))
    answer = post(endpoint, body, signed(body))
    assert answer.status_code == 200
    assert answer.json() == {"response_type": "ephemeral",
                             "text": "no cookbook demo.nonexistent (`/cookbook list` shows them)"}
    time.sleep(0.2)
    assert chat.core.runs == {} and hooks.posts == [] and chat.records() == []


def test_unknown_user_is_refused_without_a_run(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("x"), user_id="UNOBODY")
    answer = post(endpoint, body, signed(body))
    assert answer.json()["text"] == ("refused: slack:UNOBODY is not a known user (chatops.people): ask an admin "
                                     "to add you")
    assert chat.core.runs == {}


def test_mattermost_token_is_checked(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = form("demo.hello world", hooks.url("x"), token="wrong", user_id="mmbob")
    refused(chat, hooks, post(endpoint, bad, headers), 401, "bad or missing token")
    good = form("demo.hello world", hooks.url("mm"), token=TOKEN, user_id="mmbob")
    answer = post(endpoint, good, headers)
    assert answer.status_code == 200 and "accepted" in answer.json()["text"]
    hooks.wait_for("PASS: demo.hello world")
    [record] = chat.records()
    assert (record["requester"], record["channel"]) == ("bob", "mattermost:#ops")


def test_response_url_must_be_http_and_allowed(chat: Chat, hooks: ResponseUrl) -> None:
    settings = HttpSettings(listen="127.0.0.1", port=0, path="/cookbook", slack_signing_secret=SECRET,
                            response_url_prefixes=("https://hooks.slack.com/",))
    server = SlashServer(chat.core, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cookbook"
        for response_url in (hooks.url("x"), "file:///etc/passwd", ""):
            body = form("demo.hello world", response_url)
            refused(chat, hooks, post(url, body, signed(body)), 400, "response_url missing or not allowed")
    finally:
        server.shutdown()


def test_wrong_path_and_oversized_body_are_refused(chat: Chat, endpoint: str, hooks: ResponseUrl) -> None:
    body = form("demo.hello world", hooks.url("x"))
    refused(chat, hooks, post(endpoint + "/other", body, signed(body)), 404, "no such path")
    big = form("demo.hello " + "x" * 70000, hooks.url("x"))
    refused(chat, hooks, post(endpoint, big, signed(big)), 413, "body missing or over 65536 bytes")


def test_approval_through_slash_commands(chat: Chat, endpoint: str, hooks: ResponseUrl, tmp_path: Any) -> None:
    reply, sink = chat.say(f"chatops.slow --state {tmp_path} --steps 1")
    run_id = chat.run_id(reply)
    sink.wait_for("needs an approval")
    body = form(f"approve {run_id}", hooks.url("approve"))
    answer = post(endpoint, body, signed(body))
    assert answer.json()["text"].startswith(f"[{run_id}] approved: chatops.slow")
    sink.wait_for(rf"^\[{run_id}\] PASS: .* requested by alice, approved by bob")
    assert hooks.posts == [], "the run reports where it was asked for (IRC), not to the approver's response URL"


@pytest.mark.parametrize("sends", [b"", b"POST /cookbook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort"])
def test_a_silent_connection_is_closed_after_the_timeout(chat: Chat, sends: bytes) -> None:
    settings = HttpSettings(listen="127.0.0.1", port=0, path="/cookbook", slack_signing_secret=SECRET, timeout=0.5)
    server = SlashServer(chat.core, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as client:
            client.sendall(sends)  # then nothing: no request, or a body shorter than announced
            started = time.monotonic()
            while client.recv(4096):  # whatever the server says before it closes
                pass
            waited = time.monotonic() - started
    finally:
        server.shutdown()
    assert 0.4 <= waited < 3, f"closed after {waited:.2f}s"


def test_a_trickling_client_is_cut_off_at_the_request_deadline(chat: Chat) -> None:
    settings = HttpSettings(listen="127.0.0.1", port=0, path="/cookbook", slack_signing_secret=SECRET, timeout=1,
                            request_deadline=1.5)
    server = SlashServer(chat.core, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as client:
            client.sendall(b"POST /cookbook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            started = time.monotonic()
            try:
                while time.monotonic() - started < 6:  # one byte every 0.3 s: never silent for the 1 s timeout
                    client.sendall(b"a")
                    time.sleep(0.3)
            except OSError:
                pass
            closed_after = time.monotonic() - started
    finally:
        server.shutdown()
    assert 1.3 <= closed_after < 4, f"the trickling connection was still taken after {closed_after:.2f}s"


def test_connections_beyond_max_connections_are_answered_503_at_once(chat: Chat) -> None:
    settings = HttpSettings(listen="127.0.0.1", port=0, path="/cookbook", slack_signing_secret=SECRET, timeout=5,
                            max_connections=2)
    server = SlashServer(chat.core, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = server.server_address[:2]
    try:
        idle = [socket.create_connection(address, timeout=5) for _ in range(2)]  # hold both slots
        time.sleep(0.3)
        with socket.create_connection(address, timeout=5) as third:
            third.sendall(b"GET / HTTP/1.0\r\n\r\n")
            started = time.monotonic()
            answer = third.recv(4096)
            assert time.monotonic() - started < 1.5 and answer.startswith(b"HTTP/1.0 503"), answer
        for client in idle:
            client.close()
        time.sleep(0.3)  # their threads end and free the slots
        body = form("demo.hello world", "http://127.0.0.1:1/unused")
        assert post(f"http://{address[0]}:{address[1]}/cookbook", body, {"X-Slack-Signature": "v0=0"}).status_code \
            == 401, "a slot is free again"
    finally:
        server.shutdown()
