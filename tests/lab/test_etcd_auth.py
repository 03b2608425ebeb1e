"""The lab's etcd refuses whoever is not one of its users: unauthenticated writes (plain curl, etcd3gw without a
user, from this host or from a Ganeti node) are refused, plain http is not served, the nodes' user can write hook
events but can neither take, plant nor delete a lock, and the runner's user (the lab config) takes locks."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.etcd import EtcdAccess, Gateway
from libcluster.hooks.events import HookSettings
from cookbook_lab import etcd as lab_etcd
from libcluster.locks import EtcdBackend, Holder, LockError, from_config
from libcluster.remote import Remote

TIMEOUT = 5


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def secured(lab_part: Any, lab_config: Path) -> dict[str, Any]:
    """The lab's etcd part, its config (loaded) and a key under the locks' prefix nobody holds."""
    part = lab_part("etcd")
    root = config_module.load(lab_config)
    return {"part": part, "root": root, "lock": f"custom/etcd-auth-{uuid.uuid4().hex[:8]}"}


def _runner(root: config_module.Section) -> EtcdBackend:
    backend = from_config(root, owner="test", dry_run=False).backend
    assert isinstance(backend, EtcdBackend)
    return backend


def _absent(runner: EtcdBackend, key: str) -> bool:
    found = Gateway(runner.access, TIMEOUT, RuntimeError).call("reading", "/kv/range", {"key": _b64(key)})
    return not found.get("kvs")


def test_unauthenticated_writes_are_refused_from_this_host(secured: dict[str, Any]) -> None:
    part, runner = secured["part"], _runner(secured["root"])
    key = f"{runner.key_prefix(secured['lock'])}planted"
    put = json.dumps({"key": _b64(key), "value": _b64('{"id": "planted"}')})
    curl = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", part["ca_file"], "-X", "POST",
                           f"{part['url']}/v3/kv/put", "-d", put], capture_output=True, text=True, timeout=30)
    assert "user name is empty" in curl.stdout, curl
    plain = subprocess.run(["curl", "-sS", "--max-time", "5", "-X", "POST",
                            f"{part['url'].replace('https:', 'http:')}/v3/kv/put", "-d", put],
                           capture_output=True, text=True, timeout=30)
    assert '"header"' not in plain.stdout, plain  # no plain-http gateway
    with pytest.raises(LockError, match="user name is empty"):
        EtcdBackend(EtcdAccess(part["url"], part["ca_file"]), runner.prefix).try_acquire(
            secured["lock"], Holder("planted", "nobody", 1, 30, 0.0))
    assert _absent(runner, key) and runner.holders(secured["lock"]) == []


def test_unauthenticated_writes_are_refused_from_a_ganeti_node(secured: dict[str, Any]) -> None:
    part, root = secured["part"], secured["root"]
    settings = HookSettings.from_config(root)
    key = f"{settings.prefix}etcd-auth/{uuid.uuid4().hex}"
    put = json.dumps({"key": _b64(key), "value": _b64("{}")})
    remote = Remote(root.section("remote"), dry_run=False, changes=ChangeLog(dry_run=False))
    node = "node2.lab.example"
    result = remote.hosts([node]).run_sync(
        f"curl -sS --max-time 5 --cacert {shlex.quote(part['ca_file'])} -X POST "
        f"{settings.node_etcd.url}/v3/kv/put -d {shlex.quote(put)}", timeout=30)
    assert "user name is empty" in next(iter(result.hosts.values())).output
    assert _absent(_runner(root), key)


def test_the_nodes_user_writes_events_but_cannot_take_plant_or_delete_a_lock(secured: dict[str, Any]) -> None:
    root = secured["root"]
    settings = HookSettings.from_config(root)
    assert settings.node_etcd.user == lab_etcd.NODE_USER and settings.etcd.user == lab_etcd.RUNNER_USER
    node = Gateway(EtcdAccess(secured["part"]["url"], settings.node_etcd.ca_file, settings.node_etcd.user,
                              settings.node_etcd.password), TIMEOUT, RuntimeError)
    event = f"{settings.prefix}etcd-auth/{uuid.uuid4().hex}"
    assert node.call("writing an event", "/kv/put", {"key": _b64(event), "value": _b64("{}")})["header"]
    runner = _runner(root)
    Gateway(runner.access, TIMEOUT, RuntimeError).call("deleting the event", "/kv/deleterange", {"key": _b64(event)})
    locks = from_config(root, owner="test@lab", dry_run=False)
    with locks.acquired(secured["lock"], concurrency=1, ttl=30):
        [holder] = runner.holders(secured["lock"])
        prefix = runner.key_prefix(secured["lock"])
        for what, path, payload in (
                ("deleting the lock", "/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + "0")}),
                ("planting a holder", "/kv/put", {"key": _b64(prefix + "planted"), "value": _b64("{}")}),
                ("reading the locks", "/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + "0")})):
            with pytest.raises(RuntimeError, match="permission denied"):
                node.call(what, path, payload)
        assert [found.id for found in runner.holders(secured["lock"])] == [holder.id]
    assert runner.holders(secured["lock"]) == []


def test_the_lab_config_carries_tls_and_users_and_the_status_says_so(secured: dict[str, Any]) -> None:
    part, root = secured["part"], secured["root"]
    locks = root.section("locks")
    assert locks.str("etcd_url").startswith("https://") and locks.str("etcd_ca_file") == part["ca_file"]
    assert (locks.str("etcd_user"), root.section("hooks").str("node_etcd_user")) == (
        lab_etcd.RUNNER_USER, lab_etcd.NODE_USER)
    assert part["nodes_url"].startswith("https://") and lab_etcd.healthy(part["url"], Path(part["ca_file"]))
    with pytest.raises(requests.RequestException):
        requests.get(part["url"].replace("https:", "http:") + "/health", timeout=TIMEOUT)
