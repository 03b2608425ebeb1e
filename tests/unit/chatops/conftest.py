"""Fixtures of the chatops unit tests: a config on the fixture cookbook tree, a core, and recording sinks."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from libcluster import audit, config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.core import Chatops, Reply
from libcluster.chatops.feed import Pace
from libcluster.chatops.permissions import Identity
from libcluster.chatops.runs import Door
from libcluster.chatops.slash import slack_signature

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
"""Base dir of the fixture cookbook trees (tests/fixtures/cookbooks/)."""
DOOR = Door(cookbook="!cookbook", approve="!approve", deny="!deny", help="!help", max_lines=15)
TIMEOUT = 20.0
"""Seconds a test waits for a chat message (a run starts a Python subprocess or two)."""


class RecordingSink:
    """A chat destination that keeps every batch with the time it was sent."""

    def __init__(self, pace: Pace | None = None) -> None:
        """Record batches; a fast pace unless one is given."""
        self.pace = pace or Pace(interval=0.01, max_lines=1000)
        self.batches: list[tuple[float, list[str]]] = []
        self._cond = threading.Condition()

    def send(self, lines: list[str]) -> None:
        """Keep the batch."""
        with self._cond:
            self.batches.append((time.monotonic(), list(lines)))
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        """Every line sent so far, in order."""
        return [line for _, batch in self.batches for line in batch]

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The first line matching pattern, waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((line for line in self.lines if regex.search(line)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
                self._cond.wait(remaining)


def run_id_in(text: str) -> str:
    """The run id of an "[ID] accepted..." line."""
    match = re.match(r"\[([0-9a-f]{6})\] accepted", text)
    assert match, text
    return match.group(1)


@dataclass
class Chat:
    """A core on the fixture tree, and helpers to talk to it as alice, bob, carol or mallory."""

    core: Chatops
    tmp: Path
    config_path: Path
    sinks: list[RecordingSink] = field(default_factory=list)

    def say(self, text: str, who: str = "alice", sink: RecordingSink | None = None) -> tuple[Reply, RecordingSink]:
        """Send a command as who (IRC identity who!who@test.example); return the reply and the run's sink."""
        sink = sink or RecordingSink()
        self.sinks.append(sink)
        reply = self.core.handle(text, Identity("irc", f"{who}!{who}@test.example", display=who), "irc:#test",
                                 DOOR, sink)
        return reply, sink

    def run_id(self, reply: Reply) -> str:
        """The run id in an "accepted" reply."""
        return run_id_in(reply.lines[0])

    def records(self) -> list[dict[str, Any]]:
        """Audit records written by the runs so far."""
        return audit.read_records(self.tmp / "logs" / "audit.jsonl")


def chatops_section(tmp: Path) -> dict[str, Any]:
    """People alice and bob (sre: run and approve, by PAM login), carol (viewer: dry-run only, by nick mask).

    chatops.slow needs approval.
    """
    return {
        "state_dir": str(tmp / "chatops"),
        "max_running": 2,
        "max_queued": 5,
        "max_per_user": 3,
        "need_approval": ["chatops.slow"],
        "roles": {
            "sre": {"run": ["demo.*", "chatops.*", "prompts.*"], "approve": ["chatops.*"]},
            "viewer": {"dry_run": ["chatops.*"]},
        },
        "people": {
            "alice": {"identities": ["irc:*!alice@test.example"], "roles": ["sre"]},
            "bob": {"identities": ["irc:*!bob@test.example", "slack:UBOB"], "roles": ["sre"]},
            "carol": {"identities": ["irc:carol!*@*"], "roles": ["viewer"]},
        },
        "irc": {"host": "127.0.0.1", "port": 6697, "channels": ["#test"], "authentication": "pam"},
    }


def write_config(tmp: Path, chatops: dict[str, Any]) -> Path:
    """A config on the fixture tree with logs, audit log and file locks under tmp."""
    path = tmp / "config.yaml"
    data = {
        "cookbooks_base_dirs": [str(FIXTURES)],
        "logs_base_dir": str(tmp / "logs"),
        "audit_log": str(tmp / "logs" / "audit.jsonl"),
        "locks": {"file_dir": str(tmp / "locks"), "ttl": 30, "wait_tries": 3, "wait_sleep": 0.05},
        "chatops": chatops,
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def _forget_cookbooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cookbook modules imported by a test (argcheck in-process) are forgotten after it; no audit env leaks in."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for variable in ("COOKBOOK_ORIGIN", "COOKBOOK_REQUESTER", "COOKBOOK_APPROVER", "COOKBOOK_CHANNEL", "SUDO_USER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cache-for-tests")
    yield
    for name in [name for name in sys.modules if name == "cookbooks" or name.startswith("cookbooks.")]:
        del sys.modules[name]


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    """A core serving the fixture tree, bob known by Mattermost too (opted in); closed (runs interrupted) after."""
    section = chatops_section(tmp_path)
    section["people"]["bob"]["identities"].append("mattermost:mmbob")
    section["http"] = {"port": 0, "slack_signing_secret": SECRET, "mattermost_token": TOKEN,
                       "mattermost_approvers": True}
    path = write_config(tmp_path, section)
    settings = chatops_settings.load(config.load(path))
    core = Chatops(settings, path, [FIXTURES])
    chat = Chat(core, tmp_path, path)
    yield chat
    core.close(grace=15)


# --- slash commands: signed request bodies and a stand-in for Slack's response URLs -----------------------

SECRET = "slack-signing-secret-for-tests"
TOKEN = "mattermost-token-for-tests"


class ResponseUrl(ThreadingHTTPServer):
    """A loopback server standing in for Slack's response URLs: keeps every JSON post."""

    def __init__(self) -> None:
        """Listen on a free port."""
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", 0), PostHandler)

    def url(self, name: str) -> str:
        """A response URL on this server."""
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/{name}"

    def wait_for(self, text: str) -> list[str]:
        """Texts posted so far, once one contains text."""
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not any(text in post["text"] for _, post in self.posts):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"no post containing {text!r} in {self.posts}")
            return [post["text"] for _, post in self.posts]


class PostHandler(BaseHTTPRequestHandler):
    """Records a POST and answers 200."""

    server: ResponseUrl

    def do_POST(self) -> None:  # noqa: N802
        """Keep the JSON body."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.cond:
            self.server.posts.append((self.path, body))
            self.server.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def form(text: str, response_url: str, **extra: str) -> bytes:
    """A slash command body from bob (Slack user UBOB) in #ops."""
    fields = {"team_id": "T1", "channel_id": "C1", "channel_name": "ops", "user_id": "UBOB", "user_name": "bob",
              "command": "/cookbook", "text": text, "response_url": response_url, **extra}
    return urlencode(fields).encode()


def signed(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """Slack's signature headers for body."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": slack_signature(secret, stamp, body),
            "Content-Type": "application/x-www-form-urlencoded"}
