"""The `cookbook-chatops` command: help, check, probe without a bot, and serve as a real subprocess."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from libcluster.chatops import cli
from tests.unit.chatops.conftest import SECRET, TIMEOUT, ResponseUrl, chatops_section, form, signed, write_config

SERVICE = str(Path(sys.executable).with_name("cookbook-chatops"))


def test_help_reads_like_a_man_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for heading in ("commands:", "configuration (section chatops of CONFIG):", "audit:", "exit codes:", "examples:"):
        assert heading in text
    assert "!cookbook [-d] NAME ARGS..." in text and "!approve ID, !deny ID" in text


def test_check_prints_the_setup_without_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    section = chatops_section(tmp_path)
    section["http"] = {"port": 8087, "slack_signing_secret": SECRET}
    assert cli.main(["-c", str(write_config(tmp_path, section)), "check"]) == 0
    out = capsys.readouterr().out
    assert "irc: cookbook-bot on 127.0.0.1:6697 (TLS" in out and "in #test; authentication pam" in out
    assert "http: 127.0.0.1:8087/cookbook (Slack signatures)" in out
    assert "person carol: roles viewer; 1 identities" in out
    assert SECRET not in out


def test_config_error_exits_1_naming_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    section = chatops_section(tmp_path)
    section["max_running"] = "many"
    assert cli.main(["-c", str(write_config(tmp_path, section)), "check"]) == 1
    assert "key 'chatops.max_running' must be an integer" in caplog.text


def test_probe_without_a_server_fails(tmp_path: Path) -> None:
    section = chatops_section(tmp_path)
    section["irc"]["port"] = 1  # nothing listens there
    assert cli.main(["-c", str(write_config(tmp_path, section)), "probe", "--timeout", "2"]) == 1


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`cookbook-chatops serve` with only the HTTP door (port 0), its URL and its log lines so far."""
    section = chatops_section(tmp_path)
    del section["irc"]
    section["people"] = {"bob": {"identities": ["slack:UBOB"], "roles": ["sre"]}}  # no IRC: no IRC identities
    section["need_approval"] = []
    section["http"] = {"port": 0, "slack_signing_secret": SECRET, "post_interval": 0.1}
    process = subprocess.Popen([SERVICE, "-c", str(write_config(tmp_path, section)), "serve"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "Slash commands on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(TIMEOUT), lines
        url = re.search(r"Slash commands on (\S+)", "".join(lines)).group(1)  # type: ignore[union-attr]
        yield process, url, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_answers_slash_commands_and_sigterm_rolls_back_running_cookbooks(
        service: tuple[subprocess.Popen[str], str, list[str]], tmp_path: Path) -> None:
    process, url, lines = service
    hooks = ResponseUrl()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    try:
        body = form("demo.hello world", hooks.url("hello"))
        answer = requests.post(url, data=body, headers=signed(body), timeout=TIMEOUT)
        assert answer.status_code == 200
        assert "accepted" in answer.json()["text"]
        hooks.wait_for("PASS: demo.hello world")
        body = form(f"chatops.slow --state {tmp_path} --steps 600", hooks.url("slow"))
        answer = requests.post(url, data=body, headers=signed(body), timeout=TIMEOUT)
        assert "accepted" in answer.json()["text"]
        hooks.wait_for("step 1 of 600")
        assert (tmp_path / "change").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        texts = hooks.wait_for("INTERRUPTED (rollback run): chatops.slow")
    finally:
        hooks.shutdown()
    assert not (tmp_path / "change").exists() and (tmp_path / "rolled-back").exists()
    assert "interrupted by the chatops service (stopping)" in texts[-1]
    assert any("Stopping: no new requests" in line for line in lines)
