"""hooks/cookbook-event, run with sh as Ganeti runs it (cleared environment, GANETI_* variables), against a
stand-in of etcd's v3 JSON gateway with authentication: it returns at once with exit 0, spools the event first
and sends the spool in the background as the nodes' etcd user (password and token never on a command line),
oldest first and stopping at the first failure, so a hung, refusing or unreachable etcd loses nothing and
changes no order; any node sends a spool left there; off the master nothing is recorded."""

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
USER, PASSWORD, TOKEN = "cookbook-node", "pass word\"with'quotes\\", "tok3n.42"


class Etcd(ThreadingHTTPServer):
    """Answers /v3/auth/authenticate, /v3/lease/grant and /v3/kv/put like etcd 3.4 with authentication on.

    mode: "ok"; "hang" (answers after 5 s, longer than the script's curl --max-time); "refuse" (403 on puts).
    """

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        self.puts: list[dict[str, Any]] = []
        self.leases: list[int] = []
        self.logins: list[dict[str, str]] = []
        self.mode = "ok"
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
        status, answer = 200, {"header": {"revision": "2"}}
        if self.server.mode == "hang":
            time.sleep(5)
        if self.path == "/v3/auth/authenticate":
            self.server.logins.append(body)
            if body == {"name": USER, "password": PASSWORD}:
                answer = {"header": {"revision": "1"}, "token": TOKEN}
            else:
                status, answer = 400, {"error": "etcdserver: authentication failed, invalid user ID or password"}
        elif self.headers.get("Authorization") != TOKEN:
            status, answer = 400, {"error": "etcdserver: user name is empty"}
        elif self.path == "/v3/lease/grant":
            self.server.leases.append(int(body["TTL"]))
            answer = {"header": {"revision": "1"}, "ID": "7587870000000001", "TTL": str(body["TTL"])}
        elif self.server.mode == "refuse":
            status, answer = 403, {"error": "etcdserver: permission denied"}
        else:
            self.server.puts.append(body)
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the script's curl gave up (hang mode)
            pass

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


@pytest.fixture
def spy(tmp_path: Path) -> Path:
    """A directory with a curl that logs its command line (one line per call) before running the real one."""
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "curl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/curl-argv\n'
                                    'exec /usr/bin/curl "$@"\n')
    (directory / "curl").chmod(0o755)
    return directory


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout}s")


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "hook.log").read_text() if (tmp_path / "hook.log").exists() else ""


def spooled(tmp_path: Path) -> list[str]:
    """Instances of the spooled events, oldest first."""
    files = sorted(path for path in (tmp_path / "spool").glob("*") if not path.name.startswith("."))
    return [json.loads(path.read_text().splitlines()[1])["instance"] for path in files]


def run_hook(tmp_path: Path, etcd_url: str, *, master: str | None = None, instance: str = "vm1.lab.example",
             password: str = PASSWORD, path: str = "/sbin:/bin:/usr/sbin:/usr/bin",
             **extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    conf = tmp_path / "cookbook-event.conf"
    quoted = password.replace("'", "'\\''")
    conf.write_text(f"CLUSTER=lab\nETCD_URL={etcd_url}\nETCD_USER={USER}\nETCD_PASSWORD='{quoted}'\n"
                    f"PREFIX=/test/hooks/\nTTL=60\nLOG={tmp_path}/hook.log\nSPOOL={tmp_path}/spool\n")
    env = {"PATH": path, "COOKBOOK_EVENT_CONF": str(conf),
           "GANETI_MASTER": master or socket.gethostname(), "GANETI_INSTANCE_NAME": instance,
           "GANETI_HOOKS_PATH": "instance-add", "GANETI_HOOKS_PHASE": "post", "GANETI_OP_CODE": "OP_INSTANCE_CREATE",
           **extra}
    started = time.monotonic()
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=10, check=False)
    return done, time.monotonic() - started


def test_the_event_is_sent_in_the_background_as_the_nodes_user_and_the_hook_returns_at_once(
        tmp_path: Path, etcd: Etcd, spy: Path) -> None:
    done, took = run_hook(tmp_path, etcd.url, instance="vm1.lab.example;rm -rf /",
                          GANETI_INSTANCE_NEW_NAME="vm2.lab.example", path=f"{spy}:/sbin:/bin:/usr/sbin:/usr/bin")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert took < 1.0
    [put] = etcd.wait_puts(1)
    node = socket.gethostname()
    assert put["key"].startswith("/test/hooks/lab/") and put["key"].endswith(f"-{node}-" + put["key"].split("-")[-1])
    assert put["value"] == {"version": 1, "cluster": "lab", "hook": "instance-add", "phase": "post",
                            "op": "OP_INSTANCE_CREATE", "instance": "vm1.lab.examplerm-rf", "new_name":
                            "vm2.lab.example", "node": node, "time": put["value"]["time"]}
    assert put["lease"] == "7587870000000001" and etcd.leases == [60]
    assert etcd.logins == [{"name": USER, "password": PASSWORD}]
    log = wait_for("the recorded line",
                   lambda: "recorded /test/hooks/lab/" in log_text(tmp_path) and log_text(tmp_path))
    argv = (tmp_path / "curl-argv").read_text()
    assert len(argv.splitlines()) == 3 and "auth/authenticate" in argv
    for secret in (PASSWORD, TOKEN, "pass word"):
        assert secret not in argv and secret not in log
    wait_for("an empty spool", lambda: spooled(tmp_path) == [])


def test_off_the_master_nothing_is_recorded(tmp_path: Path, etcd: Etcd) -> None:
    done, _ = run_hook(tmp_path, etcd.url, master="another-node.lab.example")
    assert done.returncode == 0
    time.sleep(1)
    assert etcd.puts == [] and spooled(tmp_path) == []


def test_a_hung_etcd_loses_nothing_and_the_spool_is_sent_in_order_once_it_answers(tmp_path: Path, etcd: Etcd) -> None:
    etcd.mode = "hang"
    for name in ("first", "second"):
        done, took = run_hook(tmp_path, etcd.url, instance=f"{name}.lab.example")
        assert done.returncode == 0 and took < 1.0
    assert spooled(tmp_path) == ["first.lab.example", "second.lab.example"]  # spooled before anything is sent
    wait_for("both senders to give up", lambda: log_text(tmp_path).count("did not log in") == 2)
    assert etcd.puts == [] and spooled(tmp_path) == ["first.lab.example", "second.lab.example"]
    etcd.mode = "ok"
    run_hook(tmp_path, etcd.url, instance="third.lab.example")
    puts = etcd.wait_puts(3)
    assert [put["value"]["instance"] for put in puts] == ["first.lab.example", "second.lab.example",
                                                           "third.lab.example"]
    wait_for("an empty spool", lambda: spooled(tmp_path) == [])


def test_a_refused_event_stops_the_sending_so_no_later_one_overtakes_it(tmp_path: Path, etcd: Etcd) -> None:
    etcd.mode = "refuse"
    run_hook(tmp_path, etcd.url, instance="first.lab.example")
    wait_for("the refusal logged", lambda: "permission denied" in log_text(tmp_path))
    [first] = [path.name for path in (tmp_path / "spool").glob("*") if not path.name.startswith(".")]
    run_hook(tmp_path, etcd.url, instance="second.lab.example")
    wait_for("the second refusal", lambda: log_text(tmp_path).count("permission denied") == 2)
    assert etcd.puts == [] and spooled(tmp_path) == ["first.lab.example", "second.lab.example"]
    refusals = [line for line in log_text(tmp_path).splitlines() if "did not take" in line]
    assert len(refusals) == 2 and all(f"/test/hooks/lab/{first} (etcdserver: permission denied)" in line
                                      for line in refusals)
    etcd.mode = "ok"
    run_hook(tmp_path, etcd.url, instance="third.lab.example")
    assert [put["value"]["instance"] for put in etcd.wait_puts(3)] == [
        "first.lab.example", "second.lab.example", "third.lab.example"]


def test_an_unreachable_etcd_spools_and_a_non_master_node_sends_the_spool_it_holds(tmp_path: Path, etcd: Etcd) -> None:
    done, took = run_hook(tmp_path, f"http://127.0.0.1:{closed_port()}", instance="first.lab.example")
    assert done.returncode == 0 and took < 1.0
    wait_for("the failed login logged", lambda: "did not log in" in log_text(tmp_path))
    assert spooled(tmp_path) == ["first.lab.example"]
    # a failover later: this node is no longer the master, the next hook run here still sends its spool
    run_hook(tmp_path, etcd.url, master="new-master.lab.example", instance="second.lab.example")
    assert [put["value"]["instance"] for put in etcd.wait_puts(1)] == ["first.lab.example"]
    wait_for("an empty spool", lambda: spooled(tmp_path) == [])
    time.sleep(0.5)
    assert len(etcd.puts) == 1


def test_a_wrong_password_sends_nothing_keeps_the_spool_and_logs_no_password(tmp_path: Path, etcd: Etcd) -> None:
    run_hook(tmp_path, etcd.url, password="wrong-password")
    log = wait_for("the failed login", lambda: "did not log in" in log_text(tmp_path) and log_text(tmp_path))
    assert "authentication failed" in log and "wrong-password" not in log
    assert etcd.puts == [] and spooled(tmp_path) == ["vm1.lab.example"]


def test_without_cluster_or_etcd_settings_the_hook_logs_and_exits_zero(tmp_path: Path) -> None:
    conf = tmp_path / "cookbook-event.conf"
    conf.write_text(f"LOG={tmp_path}/hook.log\n")
    env = {"PATH": "/usr/bin:/bin", "COOKBOOK_EVENT_CONF": str(conf), "GANETI_INSTANCE_NAME": "vm1.lab.example"}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert "no CLUSTER or ETCD_URL in" in (tmp_path / "hook.log").read_text()


def test_a_spool_file_that_is_no_event_is_set_aside_and_does_not_block_the_others(tmp_path: Path, etcd: Etcd) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "0000000000000000000-node-1").write_text("/elsewhere/key\n{}\n")
    run_hook(tmp_path, etcd.url, instance="after.lab.example")
    assert [put["value"]["instance"] for put in etcd.wait_puts(1)] == ["after.lab.example"]
    wait_for("an empty spool", lambda: spooled(tmp_path) == [])
    assert (tmp_path / "spool" / ".unsendable-0000000000000000000-node-1").exists()
    assert "set aside" in log_text(tmp_path)
