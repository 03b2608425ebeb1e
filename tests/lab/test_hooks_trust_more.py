"""More trust holes of the Ganeti hooks, closed and tried on the real lab:

- forged keys that are no valid event (a field of the wrong type, a value speaking for another cluster than
  its key's, no JSON, a key under no cluster), written with the nodes' etcd user as a compromised node
  could, neither stop nor confuse the running cookbook-hooks-agent: it logs and deletes each, and still
  handles a good event written after them;

The fixtures (this module's config with its own event prefix, the nodes' etcd identity) come from
test_hooks_agent_trust; everything made here is removed at the end, pass or fail.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.lab.hooks_lab import Env
from tests.lab.test_hooks import AGENT, wait_for
from tests.lab.test_hooks_agent_trust import env, node_etcd, syncs  # noqa: F401 - fixtures used by name

from libcluster.etcd import Gateway
from libcluster.lab import topology


def put_raw(env: Env, node_etcd: Gateway, path: str, text: str) -> str:  # noqa: F811 - env is the fixture
    """Write text under this module's prefix + path as the nodes' etcd user; the key."""
    key = f"{env.store.prefix}{path}"
    node_etcd.call("writing a key", "/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                                 "value": base64.b64encode(text.encode()).decode()})
    return key


def event_text(instance: str, **fields: object) -> str:
    """A post-phase instance-modify event of the lab cluster as the hook script writes it, fields replaced."""
    return json.dumps({"version": 1, "cluster": topology.CLUSTER, "hook": "instance-modify", "phase": "post",
                       "op": "OP_INSTANCE_SET_PARAMS", "instance": instance, "new_name": "", "node": "nowhere",
                       "time": int(time.time()), **fields})


@pytest.fixture
def agent(env: Env) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    """cookbook-hooks-agent running on this module's prefix and instances (stopped by its PID at the end)."""
    env.agent_log.write_text("")
    with env.agent_log.open("a") as log:
        process = subprocess.Popen([str(AGENT), "-c", str(env.config), "--instances", f"{env.token}*"], stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(env.agent_log.read_text())


def keys(env: Env) -> list[str]:  # noqa: F811
    """Every key under this module's prefix (valid events or not)."""
    batch = env.store.read()
    return [event.key for event in batch.events] + [key for key, _ in batch.bad]


@pytest.fixture(autouse=True)
def no_key_left(env: Env) -> Iterator[None]:  # noqa: F811
    """Every key under this module's prefix is deleted after each test, pass or fail."""
    yield
    for key in keys(env):
        env.store.delete(key)


def test_malformed_forged_events_are_logged_and_deleted_and_the_agent_goes_on(
        env: Env, node_etcd: Gateway, agent: subprocess.Popen[bytes]) -> None:  # noqa: F811
    ghost = f"{env.token}-ghost-{secrets.token_hex(2)}.{topology.DOMAIN}"
    lab = f"{topology.CLUSTER}/{time.time_ns()}"
    bad = {
        put_raw(env, node_etcd, f"{lab}-1-time", event_text(ghost, time=[1])):
            "field 'time' must be int or float, not [1]",
        put_raw(env, node_etcd, f"{lab}-2-instance", event_text({"x": 1})):  # type: ignore[arg-type]
            "field 'instance' must be str, not {'x': 1}",
        put_raw(env, node_etcd, f"{lab}-3-cluster", event_text(ghost, cluster="prod")):
            "its value names cluster 'prod', its key 'lab' (a node may only speak for its own cluster)",
        put_raw(env, node_etcd, f"{lab}-4-json", "{not json"): "Expecting property name",
        put_raw(env, node_etcd, "stray", event_text(ghost)): "its value names cluster 'lab', its key 'stray'",
    }
    good = put_raw(env, node_etcd, f"{lab}-5-good", event_text(ghost))
    runs = len(syncs(env))
    wait_for(f"the agent to sync {ghost} after the bad keys",
             lambda: any(argv[3] == ghost for argv in syncs(env)[runs:]))
    assert agent.poll() is None, "the agent stopped"
    log = env.agent_log.read_text()
    for key, reason in bad.items():
        assert f"Deleting {key} under the hook events prefix: not a valid hook event (" in log, key
        assert reason in log.split(f"Deleting {key} ")[1].splitlines()[0], key
    assert syncs(env)[runs:] == [["--cluster", topology.CLUSTER, "--vm", ghost, "--delete"]]
    wait_for("every key deleted", lambda: keys(env) == [], 15)
    assert good not in keys(env) and "Unexpected error" not in log and "Traceback" not in log
