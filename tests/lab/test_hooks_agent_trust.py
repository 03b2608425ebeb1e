"""cookbook-hooks-agent on the real lab does not believe forged events: events written straight into etcd with
a node's etcd identity (as a compromised node could) about live lab instances are checked against the cluster's
domain and Ganeti.

- a forged rename between two live instances (both in NetBox, or the new name not yet in NetBox) is dropped
  and logged, its key deleted; both instances keep their NetBox VM, addresses and DNS records;
- an event naming an instance outside the cluster's domain is dropped and logged, nothing is run;
- a removal event for an instance Ganeti still has only syncs it (no --delete): nothing is deleted.

The instances are made by hand on the master (with their addresses on the Ganeti NICs) and recorded with
`sre.ganeti.sync-netbox --vm`; the agent runs once (`--once`) on this module's own event prefix (under the
hooks prefix nodes may write to), limited to this module's instance names; everything is removed at the end,
pass or fail.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.lab.cookbook_lab import run_cookbook
from tests.lab.hooks_lab import Env, hooks_env, remove_everything

from libcluster import config as config_module
from libcluster.etcd import Gateway
from libcluster.hooks.events import HookSettings
from cookbook_lab import topology

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Clients and a config with this module's own event prefix, logs and audit file; events removed at the end."""
    token = f"tr-{secrets.token_hex(3)}"
    environment = hooks_env(lab, lab_config, tmp_path_factory.mktemp("agent-trust"), token)
    try:
        yield environment
    finally:
        for event in environment.store.pending():
            environment.store.delete(event.key)


@pytest.fixture(scope="module")
def node_etcd(env: Env) -> Gateway:
    """etcd as a node's hook reaches it: the nodes' etcd user, allowed to write under the hooks prefix only."""
    return Gateway(HookSettings.from_config(config_module.load(env.config)).node_etcd, 5, RuntimeError)


@pytest.fixture(scope="module")
def live(env: Env) -> Iterator[dict[str, dict[str, Any]]]:
    """Three live instances: a and b recorded in NetBox and DNS, c (made just now) not yet; what each has."""
    names = {short: f"{env.token}-{short}.{topology.DOMAIN}" for short in ("a", "b", "c")}
    taken = {str(ip["address"]).split("/")[0] for ip in env.netbox.objects("ip-address", parent="198.18.16.0/24")}
    free = [f"198.18.16.{n}" for n in range(200, 250) if f"198.18.16.{n}" not in taken]
    pnode = sorted(env.ganeti.group("A")["node_list"])[0]
    try:
        for (short, name), address in zip(names.items(), free):
            rc, output, _ = env.gnt(f"gnt-instance add -t diskless -o noop --no-ip-check --no-name-check -n {pnode} "
                                    f"-B memory=128 --net 0:link={topology.NODE_BRIDGE},ip={address} {name}")
            assert rc == 0, output
            if short != "c":
                assert run_cookbook(env.config, "sre.ganeti.sync-netbox", "--cluster", topology.CLUSTER,
                                    "--vm", name).returncode == 0
        state = {name: recorded(env, name) for name in names.values()}
        for short in ("a", "b"):
            assert state[names[short]]["vm"] and state[names[short]]["ips"] and state[names[short]]["dns"], state
        yield {short: {"name": name, **state[name]} for short, name in names.items()}
    finally:
        for name in names.values():
            remove_everything(env, name)


def recorded(env: Env, name: str) -> dict[str, Any]:
    """What NetBox and DNS hold for name: VM id, its addresses with their DNS names, A/AAAA records."""
    vms = env.netbox.objects("vm", name=name)
    ips = sorted((str(ip["address"]), ip["dns_name"]) for vm in vms
                 for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"]))
    return {"vm": [vm["id"] for vm in vms], "ips": ips,
            "dns": sorted(env.dns.resolve(name, "A") + env.dns.resolve(name, "AAAA"))}


def forge(env: Env, node_etcd: Gateway, instance: str, hook: str, new_name: str = "") -> str:
    """Write a post-phase event into etcd as a node's etcd user, as the hook script would; its key."""
    key = f"{env.store.prefix}{topology.CLUSTER}/{time.time_ns()}-forged-{secrets.token_hex(2)}"
    value = {"version": 1, "cluster": topology.CLUSTER, "hook": hook, "phase": "post", "op": "OP_FORGED",
             "instance": instance, "new_name": new_name, "node": "nowhere", "time": int(time.time())}
    encoded = {name: base64.b64encode(text.encode()).decode() for name, text in (("key", key),
                                                                                  ("value", json.dumps(value)))}
    node_etcd.call("forging an event", "/kv/put", encoded)
    return key


def agent_once(env: Env) -> str:
    """Run the agent once on this module's prefix and instances; its output."""
    done = subprocess.run([sys.executable, "-m", "libcluster.hooks.agent", "-c", str(env.config), "--once",
                           "--instances", f"{env.token}*"], capture_output=True, text=True, timeout=300, cwd=REPO)
    print(done.stdout + done.stderr)
    assert done.returncode == 0
    return done.stdout + done.stderr


def syncs(env: Env) -> list[list[str]]:
    """Arguments of the sync runs the agent made."""
    return [record["argv"] for record in env.audit() if record["cookbook"] == "sre.ganeti.sync-netbox"
            and record.get("origin") == "hook"]


def test_forged_renames_between_live_instances_are_dropped(env: Env, node_etcd: Gateway,
                                                           live: dict[str, dict[str, Any]]) -> None:
    a, b, c = (live[short]["name"] for short in ("a", "b", "c"))
    before = {name: recorded(env, name) for name in (a, b, c)}
    runs = len(syncs(env))
    keys = [forge(env, node_etcd, a, "instance-rename", new_name=b),
            forge(env, node_etcd, b, "instance-rename", new_name=c)]
    output = agent_once(env)
    assert {name: recorded(env, name) for name in (a, b, c)} == before
    assert before[c] == {"vm": [], "ips": [], "dns": []}
    assert len(syncs(env)) == runs
    assert f"Dropping hook event {keys[0]} (instance-rename of {a}, from node nowhere): rename {a} -> {b} does not " \
        f"match Ganeti ({a} still exists, {b} exists)" in output
    assert f"Dropping hook event {keys[1]} (instance-rename of {b}, from node nowhere): rename {b} -> {c} does not " \
        f"match Ganeti ({b} still exists, {c} exists)" in output
    assert [event.key for event in env.store.pending()] == []


def test_an_event_outside_the_domain_is_dropped_and_logged(env: Env, node_etcd: Gateway,
                                                           live: dict[str, dict[str, Any]]) -> None:
    outside = f"{env.token}-a.example.org"
    runs = len(syncs(env))
    key = forge(env, node_etcd, outside, "instance-remove")
    output = agent_once(env)
    assert len(syncs(env)) == runs
    assert f"Dropping hook event {key} (instance-remove of {outside}, from node nowhere): instance name " \
        f"'{outside}' is not an FQDN in cluster lab's domain lab.example" in output
    assert [event.key for event in env.store.pending()] == []


def test_a_removal_event_for_a_live_instance_deletes_nothing(env: Env, node_etcd: Gateway,
                                                             live: dict[str, dict[str, Any]]) -> None:
    a = live["a"]["name"]
    before = recorded(env, a)
    runs = len(syncs(env))
    forge(env, node_etcd, a, "instance-remove")
    output = agent_once(env)
    assert recorded(env, a) == before
    assert syncs(env)[runs:] == [["--cluster", topology.CLUSTER, "--vm", a]]
    assert f"Removal event for {a}, but Ganeti still has it: syncing it, nothing deleted" in output
    assert [event.key for event in env.store.pending()] == []
