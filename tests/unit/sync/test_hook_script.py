"""hooks/cookbook-event, run with sh as Ganeti runs it (cleared environment, GANETI_* variables), against a
stand-in of etcd's v3 JSON gateway: it returns at once with exit 0, sends the event in the background, spools
it when etcd does not take it and sends the spool at its next run, and records nothing off the master."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "hooks" / "cookbook-event"


class Etcd(ThreadingHTTPServer):
    """Answers /v3/lease/grant and /v3/kv/put like etcd 3.4, keeping the puts."""

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        self.puts: list[dict[str, Any]] = []
        self.leases: list[int] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_puts(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The decoded (key, value) puts, once count arrived."""
        deadline = time.monotonic() + timeout
        while len(self.puts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return [{"key": base64.b64decode(p["key"]).decode(), "value": json.loads(base64.b64decode(p["value"])),
                 "lease": p["lease"]} for p in self.puts]


class Handler(BaseHTTPRequestHandler):
    server: Etcd

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v3/lease/grant":
            self.server.leases.append(int(body["TTL"]))
            answer = {"header": {"revision": "1"}, "ID": "7587870000000001", "TTL": str(body["TTL"])}
        else:
            self.server.puts.append(body)
            answer = {"header": {"revision": "2"}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    server = Etcd()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_log(tmp_path: Path, text: str, timeout: float = 10) -> str:
    """The hook's log once it holds text (the script logs after its request or its spool write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = (tmp_path / "hook.log").read_text() if (tmp_path / "hook.log").exists() else ""
        if text in log:
            return log
        time.sleep(0.05)
    pytest.fail(f"{text!r} not logged within {timeout}s")


def run_hook(tmp_path: Path, etcd_url: str, *, master: str | None = None, instance: str = "vm1.lab.example",
             **extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    conf = tmp_path / "cookbook-event.conf"
    conf.write_text(f"CLUSTER=lab\nETCD_URL={etcd_url}\nPREFIX=/test/hooks/\nTTL=60\nLOG={tmp_path}/hook.log\n"
                    f"SPOOL={tmp_path}/spool\n")
    env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "COOKBOOK_EVENT_CONF": str(conf),
           "GANETI_MASTER": master or socket.gethostname(), "GANETI_INSTANCE_NAME": instance,
           "GANETI_HOOKS_PATH": "instance-add", "GANETI_HOOKS_PHASE": "post", "GANETI_OP_CODE": "OP_INSTANCE_CREATE",
           **extra}
    started = time.monotonic()
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=10, check=False)
    return done, time.monotonic() - started


def test_the_event_is_sent_in_the_background_and_the_hook_returns_at_once(tmp_path: Path, etcd: Etcd) -> None:
    done, took = run_hook(tmp_path, etcd.url, instance="vm1.lab.example;rm -rf /",
                          GANETI_INSTANCE_NEW_NAME="vm2.lab.example")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert took < 1.0
    [put] = etcd.wait_puts(1)
    node = socket.gethostname()
    assert put["key"].startswith(f"/test/hooks/lab/") and put["key"].endswith(f"-{node}-" + put["key"].split("-")[-1])
    assert put["value"] == {"version": 1, "cluster": "lab", "hook": "instance-add", "phase": "post",
                            "op": "OP_INSTANCE_CREATE", "instance": "vm1.lab.examplerm-rf", "new_name":
                            "vm2.lab.example", "node": node, "time": put["value"]["time"]}
    assert put["lease"] == "7587870000000001" and etcd.leases == [60]
    wait_log(tmp_path, "recorded /test/hooks/lab/")


def test_off_the_master_nothing_is_recorded(tmp_path: Path, etcd: Etcd) -> None:
    done, _ = run_hook(tmp_path, etcd.url, master="another-node.lab.example")
    assert done.returncode == 0
    time.sleep(1)
    assert etcd.puts == []


def test_an_unreachable_etcd_spools_the_event_and_the_next_run_sends_it_first(tmp_path: Path, etcd: Etcd) -> None:
    done, took = run_hook(tmp_path, f"http://127.0.0.1:{closed_port()}", instance="first.lab.example")
    assert done.returncode == 0 and took < 1.0
    wait_log(tmp_path, "did not take the event: spooled")
    assert len(list((tmp_path / "spool").glob("*"))) == 1
    run_hook(tmp_path, etcd.url, instance="second.lab.example")
    puts = etcd.wait_puts(2)
    assert [put["value"]["instance"] for put in puts] == ["first.lab.example", "second.lab.example"]
    deadline = time.monotonic() + 5
    while list((tmp_path / "spool").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((tmp_path / "spool").glob("*")) == []


def test_without_cluster_or_etcd_settings_the_hook_logs_and_exits_zero(tmp_path: Path) -> None:
    conf = tmp_path / "cookbook-event.conf"
    conf.write_text(f"LOG={tmp_path}/hook.log\n")
    env = {"PATH": "/usr/bin:/bin", "COOKBOOK_EVENT_CONF": str(conf), "GANETI_INSTANCE_NAME": "vm1.lab.example"}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert "no CLUSTER or ETCD_URL in" in (tmp_path / "hook.log").read_text()
