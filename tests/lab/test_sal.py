"""The server admin log on the lab's ngircd: START/END lines reach the channel, an IRC outage costs nothing.

Terminal and chat runs announce START and END in the SAL channel over TLS verified by the lab CA
(the lab's ngircd speaks only TLS); a SAL that cannot verify the server announces nothing; with
IRC down (closed port, silent server) a cookbook still passes without noticeable delay. A real IRC client joins
topology.SAL_CHANNEL; the runs use a copy of the lab configuration with the fixture cookbooks
added, and their own logs and audit log.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.argcheck import cookbook_dirs
from libcluster.chatops.core import Chatops
from libcluster.chatops.feed import Pace
from libcluster.chatops.permissions import Identity
from libcluster.chatops.probe import IrcProbe
from libcluster.chatops.runs import Door
from cookbook_lab import topology
from libcluster.sal import CLOSE_TIMEOUT
from tests.lab.chatops_lab import lab_tls

REPO = Path(__file__).resolve().parents[2]
COOKBOOK = REPO / ".venv" / "bin" / "cookbook"
FIXTURES = REPO / "tests" / "fixtures"
TIMEOUT = 30.0


def lab_copy(lab_config: Path, tmp: Path, **changes: Any) -> Path:
    """The lab configuration with the fixture tree, logs under tmp, and top-level keys replaced (None removes)."""
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [*data["cookbooks_base_dirs"], str(FIXTURES)]
    data["logs_base_dir"] = str(tmp / "logs")
    data["audit_log"] = str(tmp / "logs" / "audit.jsonl")
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def cookbook(config_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A terminal run of the runner."""
    return subprocess.run([str(COOKBOOK), "-c", str(config_path), *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})})


@pytest.fixture
def sal_watcher(lab_part: Any) -> Iterator[IrcProbe]:
    """A real IRC client in the lab's SAL channel."""
    irc = lab_part("irc")
    client = IrcProbe(irc["host"], irc["port"], f"salwatch-{secrets.token_hex(3)}", tls=lab_tls(irc))
    client.join(topology.SAL_CHANNEL)
    yield client
    client.close()


def test_terminal_run_announces_start_and_end_in_the_sal_channel(sal_watcher: IrcProbe, lab_config: Path,
                                                                  tmp_path: Path) -> None:
    who = f"op{secrets.token_hex(3)}"
    result = cookbook(lab_copy(lab_config, tmp_path), "demo.hello", who, env={"SUDO_USER": who})
    assert result.returncode == 0, result.stderr
    host = socket.gethostname()
    start = sal_watcher.expect(rf"^{who}@{host} START - Cookbook demo.hello for {who}$", timeout=TIMEOUT)
    end = sal_watcher.expect(rf"^{who}@{host} END \(PASS\) - Cookbook demo.hello \(exit_code=0\) for {who}$",
                             timeout=TIMEOUT)
    assert start.at <= end.at and start.nick.startswith("cookbook-sal")


@pytest.mark.parametrize("sal", [{"tls": True}, {"tls": False}], ids=["CA that does not verify", "plain text"])
def test_a_sal_that_cannot_verify_the_server_announces_nothing(sal_watcher: IrcProbe, lab_config: Path,
                                                                tmp_path: Path, sal: dict[str, Any]) -> None:
    section = {**yaml.safe_load(lab_config.read_text())["sal"], **sal}
    section.pop("ca_file")  # the system CAs do not know the lab CA
    who = f"op{secrets.token_hex(3)}"
    result = cookbook(lab_copy(lab_config, tmp_path, sal=section), "demo.hello", who, env={"SUDO_USER": who})
    assert result.returncode == 0, result.stderr
    if sal["tls"]:
        assert "SAL: the certificate of IRC server 127.0.0.1" in result.stderr and "does not verify" in result.stderr
    sal_watcher.drain(quiet=1.0)
    assert not [message for message in sal_watcher.messages if who in message.text]


def test_failing_run_announces_end_fail(sal_watcher: IrcProbe, lab_config: Path, tmp_path: Path) -> None:
    who = f"op{secrets.token_hex(3)}"
    result = cookbook(lab_copy(lab_config, tmp_path), "demo.hello", who, "--exit-code", "3", env={"SUDO_USER": who})
    assert result.returncode == 3
    sal_watcher.expect(rf"^{who}@\S+ END \(FAIL\) - Cookbook demo.hello \(exit_code=3\) for {who}$", timeout=TIMEOUT)


class ListSink:
    """Collects a chat run's messages."""

    pace = Pace(interval=0.01, max_lines=100)

    def __init__(self) -> None:
        """No messages yet."""
        self.lines: list[str] = []
        self.done = threading.Event()

    def send(self, lines: list[str]) -> None:
        """Keep the lines; note the result."""
        self.lines += lines
        if any(" PASS: " in line for line in lines):
            self.done.set()


def test_chat_run_announces_the_requester_in_the_sal_channel(sal_watcher: IrcProbe, lab_config: Path,
                                                             tmp_path: Path) -> None:
    person = f"chat{secrets.token_hex(3)}"
    chatops = {"irc": {"host": "127.0.0.1", "channels": ["#unused"]},
               "roles": {"all": {"run": ["demo.*"]}},
               "people": {person: {"identities": [f"irc:{person}!*@*"], "roles": ["all"]}}}
    path = lab_copy(lab_config, tmp_path, chatops=chatops)
    root = config.load(path)
    core = Chatops(chatops_settings.load(root), path, cookbook_dirs(root))
    sink = ListSink()
    try:
        core.handle("demo.hello sal", Identity("irc", f"{person}!u@h"), "irc:#ops",
                    Door("!cookbook", "!approve", "!deny", "!help", 10), sink)
        assert sink.done.wait(TIMEOUT), sink.lines
    finally:
        core.close(grace=TIMEOUT)
    sal_watcher.expect(rf"^{person}@\S+ START - Cookbook demo.hello for sal$", timeout=TIMEOUT)
    sal_watcher.expect(rf"^{person}@\S+ END \(PASS\) - Cookbook demo.hello \(exit_code=0\) for sal$", timeout=TIMEOUT)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def fastest(config_path: Path, runs: int = 3) -> float:
    """Seconds of the fastest of a few terminal runs of a trivial cookbook (each must pass)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        result = cookbook(config_path, "top")
        assert result.returncode == 0, result.stderr
        times.append(time.monotonic() - started)
    return min(times)


@pytest.mark.parametrize("outage", ["closed port", "silent server"])
def test_with_irc_down_a_cookbook_still_passes_without_delay(lab_part: Any, lab_config: Path, tmp_path: Path,
                                                              outage: str) -> None:
    lab_part("irc")
    silent = socket.create_server(("127.0.0.1", 0)) if outage == "silent server" else None  # accepts, never answers
    port = silent.getsockname()[1] if silent else closed_port()
    try:
        baseline = fastest(lab_copy(lab_config, tmp_path / "no-sal", sal=None))
        sal = {"irc_host": "127.0.0.1", "irc_port": port, "channel": topology.SAL_CHANNEL, "nick": "cookbook-sal"}
        down = fastest(lab_copy(lab_config, tmp_path / "sal-down", sal=sal))
    finally:
        if silent is not None:
            silent.close()
    assert down - baseline < CLOSE_TIMEOUT + 0.5, f"IRC {outage}: {down:.2f}s against {baseline:.2f}s without SAL"
    log = (tmp_path / "sal-down" / "logs" / "top.log").read_text()
    assert log.rstrip().endswith("END (PASS) - Cookbook top (exit_code=0)")
