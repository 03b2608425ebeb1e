"""Fixtures of the chatops unit tests: a config on the fixture cookbook tree, a core, and recording sinks."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.core import Chatops, Reply
from libcluster.chatops.feed import Pace
from libcluster.chatops.permissions import Identity
from libcluster.chatops.runs import Door

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
        path = self.tmp / "logs" / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def chatops_section(tmp: Path) -> dict[str, Any]:
    """People alice and bob (sre: run and approve), carol (viewer: dry-run only); chatops.slow needs approval."""
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
            "alice": {"identities": ["irc:alice!*@test.example"], "roles": ["sre"]},
            "bob": {"identities": ["irc:bob!*@test.example", "slack:UBOB", "mattermost:mmbob"], "roles": ["sre"]},
            "carol": {"identities": ["irc:carol!*@*"], "roles": ["viewer"]},
        },
        "irc": {"host": "127.0.0.1", "port": 6667, "channels": ["#test"]},
    }


def write_config(tmp: Path, chatops: dict[str, Any]) -> Path:
    """A config on the fixture tree with logs, audit log and file locks under tmp."""
    path = tmp / "config.yaml"
    data = {
        "cookbooks_base_dirs": [str(FIXTURES)],
        "logs_base_dir": str(tmp / "logs"),
        "audit_log": str(tmp / "logs" / "audit.jsonl"),
        "locks": {"file_dir": str(tmp / "locks"), "default_ttl": 60, "wait_tries": 3, "wait_sleep": 0.05},
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
    """A core serving the fixture tree; closed (running cookbooks interrupted) at the end."""
    path = write_config(tmp_path, chatops_section(tmp_path))
    settings = chatops_settings.load(config.load(path))
    core = Chatops(settings, path, [FIXTURES])
    chat = Chat(core, tmp_path, path)
    yield chat
    core.close(grace=15)
