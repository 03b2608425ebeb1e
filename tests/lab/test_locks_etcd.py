"""Locks against a real etcd started by these tests, secured as the lab's (TLS from the lab CA, users with roles):
serialization, leases of killed holders, dry-run, counts; the runner's user takes locks, the nodes' user and
unauthenticated clients cannot write or delete them; a run whose lease is lost while etcd is stopped (SIGSTOP,
longer than the lease: this test's own etcd, not the lab's shared one) stops before its next change and rolls
back."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cookbook_lab import etcd as lab_etcd
from cookbook_lab import tls
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.etcd import EtcdAccess, Gateway
from libcluster.locks import EtcdBackend, Holder, LockError
from tests.labmode import BRINGS_UP

ETCD = Path("/usr/bin/etcd")
"""Binary of the Debian package etcd-server."""
COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
"""Base dir of the fixture cookbook tree (locking.exclusive, locking.custom)."""
PREFIX = "/test/locks/"
"""Key prefix of the locks written by these tests."""
HOOKS = "/test/hooks/"
ROLES = {lab_etcd.RUNNER_USER: (("READWRITE", PREFIX), ("READWRITE", HOOKS)), lab_etcd.NODE_USER: (("WRITE", HOOKS),)}
"""The lab's roles, on this module's prefixes."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class SecuredEtcd:
    """The test etcd: its URL, CA and the passwords of its users."""

    url: str
    ca_file: str
    passwords: dict[str, str]
    pid: int
    """Of the etcd process (SIGSTOP/SIGCONT make it unreachable for a while)."""

    def access(self, user: str | None = lab_etcd.RUNNER_USER) -> EtcdAccess:
        """Access as user (None: no user)."""
        return EtcdAccess(self.url, self.ca_file, user, self.passwords[user] if user else None)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredEtcd]:
    """A one-member etcd on free loopback ports, data in a temp dir, secured like the lab's (certificate from the lab
    CA, root, runner and node users; locks under PREFIX for the runner, HOOKS for the nodes), stopped by PID."""
    if not ETCD.exists():
        if os.geteuid() != 0:
            if os.environ.get("COOKBOOK_LAB") in BRINGS_UP:
                pytest.fail("etcd tests need /usr/bin/etcd or root to install etcd-server")
            pytest.skip("etcd-server not installed and not root")
        Lab().apt_install("etcd", ["etcd-server", "etcd-client"])
    lab = Lab()
    paths = ClusterPaths.of(lab)
    if not tls.ca_file(paths).exists():
        pytest.skip("the lab CA (cluster part) is missing: `cookbook-lab up` first")
    workdir = tmp_path_factory.mktemp("etcd")
    stem = workdir / "etcd"
    tls.issue_certificate(lab, paths, stem, "etcd-test", ["IP:127.0.0.1"], "serverAuth")
    client, peer = f"https://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    with (workdir / "etcd.log").open("w") as log:
        process = subprocess.Popen(lab_etcd.command(workdir / "data", [client], peer, stem, name="locktest"),
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not lab_etcd.healthy(client, tls.ca_file(paths), timeout=1):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"etcd did not start: {(workdir / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        passwords = {user: secrets.token_urlsafe(16) for user in (lab_etcd.ROOT_USER, *ROLES)}
        lab_etcd.secure(client, tls.ca_file(paths), passwords, ROLES)
        yield SecuredEtcd(client, str(tls.ca_file(paths)), passwords, process.pid)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def config(etcd: SecuredEtcd, tmp_path: Path) -> Path:
    """A `cookbook -c` file using the fixture tree and the test etcd as the runner's user."""
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({
        "cookbooks_base_dirs": [str(FIXTURES)],
        "logs_base_dir": str(tmp_path / "logs"),
        "audit_log": str(tmp_path / "logs" / "audit.jsonl"),
        "locks": {"etcd_url": etcd.url, "etcd_ca_file": etcd.ca_file, "etcd_user": lab_etcd.RUNNER_USER,
                  "etcd_password": etcd.passwords[lab_etcd.RUNNER_USER], "etcd_prefix": PREFIX, "ttl": 30,
                  "wait_tries": 60, "wait_sleep": 0.05},
    }))
    return path


def _backend(etcd: SecuredEtcd, user: str | None = lab_etcd.RUNNER_USER) -> EtcdBackend:
    return EtcdBackend(etcd.access(user), PREFIX)


Acquire = Callable[[EtcdBackend, str, Holder], "list[Holder] | None"]


@pytest.fixture
def acquire() -> Iterator[Acquire]:
    """try_acquire that releases, at the end of the test, every lock it got (stopping their keep-alive threads)."""
    held: list[tuple[EtcdBackend, str, Holder]] = []
    lock = threading.Lock()

    def take(backend: EtcdBackend, key: str, holder: Holder) -> list[Holder] | None:
        result = backend.try_acquire(key, holder)
        if result is None:
            with lock:
                held.append((backend, key, holder))
        return result

    yield take
    for backend, key, holder in held:
        if holder.id in backend._leases:  # not released by the test itself
            backend.release(key, holder)


def _holder(concurrency: int, ttl: int = 30) -> Holder:
    return Holder(uuid.uuid4().hex, "test@host [1]", concurrency, ttl, time.time())


def _revision(etcd: SecuredEtcd) -> int:
    return int(Gateway(etcd.access(), 5, RuntimeError).call("reading", "/kv/range", {"key": _b64(PREFIX)})
               ["header"]["revision"])


def _cookbook(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(COOKBOOK), "-c", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run_intervals(log: str) -> list[tuple[datetime, datetime]]:
    times: dict[str, dict[str, datetime]] = {}
    for match in re.finditer(r"^(\S+ \S+) \S+ (\d+) \[INFO\] (START|END)", log, re.M):
        stamp, pid, what = match.groups()
        times.setdefault(pid, {})[what] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    return sorted((seen["START"], seen["END"]) for seen in times.values())


def test_two_exclusive_runs_started_together_serialize(config: Path) -> None:
    processes = [_cookbook(config, "locking.exclusive", "--seconds", "2") for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    log = (config.parent / "logs" / "locking" / "exclusive.log").read_text()
    (_, first_end), (second_start, _) = _run_intervals(log)
    assert first_end <= second_start
    waited = [err for _, err in outputs if "Unable to acquire lock cookbooks/locking.exclusive" in err]
    assert len(waited) == 1
    assert re.search(r"\[1/60, retrying in 0\.05s\] Unable to acquire lock cookbooks/locking\.exclusive: "
                     r"1 holder\(s\), at most 1 allowed: \S+@\S+ \[\d+\]", waited[0])


def test_a_sigkilled_holder_frees_its_lock_when_the_lease_expires(config: Path, etcd: SecuredEtcd) -> None:
    name = f"instance:{uuid.uuid4().hex[:8]}"
    ttl = 3
    process = _cookbook(config, "locking.custom", name, "--ttl", str(ttl), "--seconds", "120")
    try:
        assert process.stdout is not None and process.stdout.readline() == "LOCKED\n"
        time.sleep(ttl + 1)  # the live holder keeps its lease beyond the TTL
        assert [holder.ttl for holder in _backend(etcd).holders(f"custom/{name}")] == [ttl]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed = time.monotonic()
    assert len(_backend(etcd).holders(f"custom/{name}")) == 1
    while _backend(etcd).holders(f"custom/{name}"):
        assert time.monotonic() - killed < ttl + 5, "the lease of the killed holder did not expire"
        time.sleep(0.1)
    assert time.monotonic() - killed > 0.5
    second = _cookbook(config, "locking.custom", name)
    assert second.wait(timeout=60) == 0


def test_dry_run_takes_no_lock(config: Path, etcd: SecuredEtcd) -> None:
    automatic = {holder.id for holder in _backend(etcd).holders("cookbooks/locking.custom")}  # killed runs' leases
    before = _revision(etcd)
    process = _cookbook(config, "-d", "locking.custom", "dry-lock", "--seconds", "1")
    assert process.stdout is not None and process.stdout.readline() == "LOCKED\n"
    assert _backend(etcd).holders("custom/dry-lock") == []
    assert {holder.id for holder in _backend(etcd).holders("cookbooks/locking.custom")} <= automatic
    assert process.wait(timeout=60) == 0
    assert _revision(etcd) == before


def test_concurrency_n_allows_n_holders_and_refuses_the_next(etcd: SecuredEtcd, acquire: Acquire) -> None:
    backend = _backend(etcd)
    key = f"custom/n-{uuid.uuid4().hex}"
    holders = [_holder(3) for _ in range(3)]
    assert [acquire(backend, key, holder) for holder in holders] == [None, None, None]
    refused = acquire(backend, key, _holder(3))
    assert refused is not None and sorted(h.id for h in refused) == sorted(h.id for h in holders)
    backend.release(key, holders[0])
    assert acquire(backend, key, _holder(3)) is None
    assert len(backend.holders(key)) == 3


def test_racing_newcomers_never_exceed_the_concurrency(etcd: SecuredEtcd, acquire: Acquire) -> None:
    key = f"custom/race-{uuid.uuid4().hex}"
    barrier = threading.Barrier(12)
    results: list[Any] = []

    def contend() -> None:
        backend = _backend(etcd)
        barrier.wait()
        results.append(acquire(backend, key, _holder(3)))

    threads = [threading.Thread(target=contend) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is None for result in results) == 3
    assert len(_backend(etcd).holders(key)) == 3


def test_strictest_holder_wins(etcd: SecuredEtcd, acquire: Acquire) -> None:
    backend = _backend(etcd)
    exclusive = f"custom/strict-{uuid.uuid4().hex}"
    assert acquire(backend, exclusive, _holder(1)) is None
    assert acquire(backend, exclusive, _holder(10)) is not None
    shared = f"custom/shared-{uuid.uuid4().hex}"
    assert acquire(backend, shared, _holder(5)) is None
    assert acquire(backend, shared, _holder(5)) is None
    assert acquire(backend, shared, _holder(2)) is not None
    assert acquire(backend, shared, _holder(1)) is not None
    assert acquire(backend, shared, _holder(3)) is None


def test_released_locks_leave_no_thread_and_no_key(etcd: SecuredEtcd) -> None:
    backend = _backend(etcd)
    key = f"custom/clean-{uuid.uuid4().hex}"
    before = threading.active_count()
    holder = _holder(1, ttl=2)
    assert backend.try_acquire(key, holder) is None
    assert threading.active_count() == before + 1
    time.sleep(3)  # longer than the TTL: the keep-alive thread holds it
    assert [h.id for h in backend.holders(key)] == [holder.id]
    backend.release(key, holder)
    assert backend.holders(key) == []
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_unauthenticated_writes_are_refused_and_plain_http_is_not_served(etcd: SecuredEtcd) -> None:
    key = f"{PREFIX}planted-{uuid.uuid4().hex}"
    session = requests.Session()
    session.trust_env = False
    answer = session.post(f"{etcd.url}/v3/kv/put", json={"key": _b64(key), "value": _b64("x")}, verify=etcd.ca_file,
                          timeout=5)
    assert answer.status_code == 400 and "user name is empty" in answer.json()["error"]
    with pytest.raises(LockError, match="user name is empty"):
        EtcdBackend(etcd.access(None), PREFIX).try_acquire(f"custom/{key}", _holder(1))
    with pytest.raises(requests.RequestException):
        session.post(etcd.url.replace("https:", "http:") + "/v3/kv/put", json={"key": _b64(key), "value": "eA=="},
                     timeout=5)
    with pytest.raises(LockError) as failed:
        EtcdBackend(EtcdAccess(etcd.url, etcd.ca_file, lab_etcd.RUNNER_USER, "wrong-password"), PREFIX).holders("x")
    assert "authentication failed" in str(failed.value) and "wrong-password" not in str(failed.value)
    assert _backend(etcd).holders(f"custom/{key}") == []
    assert Gateway(etcd.access(), 5, RuntimeError).call("reading", "/kv/range", {"key": _b64(key)}).get("kvs") is None


def test_the_nodes_user_can_neither_take_plant_nor_delete_a_lock(etcd: SecuredEtcd, acquire: Acquire) -> None:
    key = f"custom/node-{uuid.uuid4().hex}"
    runner = _backend(etcd)
    holder = _holder(1)
    assert acquire(runner, key, holder) is None
    node = _backend(etcd, lab_etcd.NODE_USER)
    with pytest.raises(LockError, match="permission denied"):
        node.try_acquire(f"custom/other-{uuid.uuid4().hex}", _holder(1))
    gateway = Gateway(etcd.access(lab_etcd.NODE_USER), 5, RuntimeError)
    prefix = runner.key_prefix(key)
    for what, path, payload in (
            ("deleting", "/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + "0")}),
            ("planting", "/kv/put", {"key": _b64(prefix + "planted"), "value": _b64(_holder(1).to_json())})):
        with pytest.raises(RuntimeError, match="permission denied"):
            gateway.call(what, path, payload)
    assert [found.id for found in runner.holders(key)] == [holder.id]
    assert gateway.call("writing an event", "/kv/put", {"key": _b64(f"{HOOKS}lab/1-node-1"), "value": _b64("{}")})


def test_a_run_whose_lease_is_lost_stops_before_its_next_change_and_rolls_back(config: Path, etcd: SecuredEtcd,
                                                                              tmp_path: Path) -> None:
    ttl, stopped_for = 6, 10
    data = yaml.safe_load(config.read_text())
    data["locks"]["ttl"] = ttl
    config.write_text(yaml.safe_dump(data))
    made = tmp_path / "made"
    made.mkdir()
    process = _cookbook(config, "locking.fenced", str(made), "--pause", str(stopped_for + 4))
    try:
        assert process.stdout is not None and process.stdout.readline() == "CHANGED\n"
        os.kill(etcd.pid, signal.SIGSTOP)  # etcd unreachable for longer than the lease
        try:
            time.sleep(stopped_for)
        finally:
            os.kill(etcd.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 99, err
    assert out == "ROLLED BACK\n", "rollback ran"
    assert sorted(path.name for path in made.iterdir()) == [], "the second change was not made, the first undone"
    assert re.search(r"LockLostError: lock cookbooks/locking\.fenced (is lost: etcd at \S+ says its lease expired|"
                     r"may be lost: its lease \(6s\) was not renewed for \d+s)", err), err
    lines = [json.loads(line) for line in (config.parent / "logs" / "audit.jsonl").read_text().splitlines()]
    intents = [line["target"] for line in lines if line["event"] == "intent"]
    assert intents == [str(made / "first")], "no intent journaled for the change the fence stopped"
    assert [line["exit_code"] for line in lines if line["event"] == "end"] == [99]
    assert _backend(etcd).holders("cookbooks/locking.fenced") == []
