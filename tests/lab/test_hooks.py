"""Ganeti hooks on the real lab: instances changed by hand with gnt-instance on the master (no cookbook) are
followed into NetBox and DNS by the hook script and cookbook-hooks-agent.

The module installs the hooks on every node with `sre.ganeti.install-hooks` (events under a prefix of its
own), starts the agent as a subprocess limited to this module's instance names (other helpers change
instances on the same cluster), and at the end stops the agent by its PID, removes the hooks and the
events, and whatever the tests left in Ganeti, NetBox and DNS, pass or fail.
"""

from __future__ import annotations

import json
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.reversename
import pytest
import yaml
from tests.lab.cookbook_lab import run_cookbook

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.ganeti import GanetiCluster, RapiNotFoundError, connect
from libcluster.hooks.events import EventStore
from libcluster.lab import etcd, topology
from libcluster.netbox import NetBox
from libcluster.remote import Remote

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / ".venv" / "bin" / "cookbook-hooks-agent"
FOLLOW_TIMEOUT = 60
"""Seconds for a hand-made change to reach NetBox and DNS (hook, etcd, agent, sync): about 3 s when idle."""


@dataclass
class Env:
    """This module's configuration, clients, token and running agent."""

    config: Path
    raw: dict[str, Any]
    token: str
    ganeti: GanetiCluster
    remote: Remote
    netbox: NetBox
    dns: DNS
    store: EventStore
    agent_log: Path

    def gnt(self, command: str, timeout: float = 300) -> tuple[int, str, float]:
        """A gnt-* command line on the master over SSH: exit code, output, seconds."""
        started = time.monotonic()
        result = self.remote.hosts([self.ganeti.master()]).run_sync(command, timeout=timeout)
        host = next(iter(result.hosts.values()))
        return host.rc if host.rc is not None else -1, host.output, time.monotonic() - started

    def audit(self) -> list[dict[str, Any]]:
        """Audit records written by the agent's runs."""
        path = Path(self.raw["audit_log"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(what: str, check: Callable[[], Any], timeout: float = FOLLOW_TIMEOUT) -> Any:
    """check()'s first truthy value, polled every 0.5 s; fails naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def remove_everything(env: Env, name: str) -> None:
    """Whatever exists of name in Ganeti, NetBox and DNS goes (cleanup)."""
    try:
        env.ganeti.instance(name)
        env.ganeti.remove_instance(name, shutdown_timeout=0).wait(timeout=300)
    except RapiNotFoundError:
        pass
    vms = env.netbox.objects("vm", name=name)
    if vms:
        env.netbox.delete("vm", vms)
    ips = env.netbox.objects("ip-address", dns_name=name)
    if ips:
        env.netbox.release_ips(ips)
    env.dns.remove_host(name)


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Hooks installed, the agent running; everything removed at the end."""
    for part in ("ganeti", "netbox", "dns", "etcd", "ssh"):
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    token = f"t-{secrets.token_hex(4)}"
    tmp = tmp_path_factory.mktemp("hooks")
    raw = yaml.safe_load(lab_config.read_text())
    raw.update(logs_base_dir=str(tmp / "logs"), audit_log=str(tmp / "audit.jsonl"),
               hooks={"node_etcd_url": etcd.NODES_URL, "etcd_prefix": f"/ganeti-cookbooks/hooks-{token}/", "poll": 1})
    config = tmp / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(raw))
    root = config_module.load(config)
    changes = ChangeLog(dry_run=False)
    remote = Remote(root.section("remote"), dry_run=False, changes=changes)
    environment = Env(
        config=config, raw=raw, token=token,
        ganeti=connect(root, topology.CLUSTER, dry_run=False, changes=changes, remote=remote), remote=remote,
        netbox=NetBox(root.section("netbox"), read_write=True, dry_run=False, changes=changes),
        dns=DNS(root.section("dns"), dry_run=False, changes=changes),
        store=EventStore(raw["locks"]["etcd_url"], raw["hooks"]["etcd_prefix"]), agent_log=tmp / "agent.log",
    )
    assert run_cookbook(config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER).returncode == 0
    with environment.agent_log.open("w") as log:
        agent = subprocess.Popen([str(AGENT), "-c", str(config), "--instances", f"{token}*"], stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for("the agent to watch", lambda: "Watching hook events" in environment.agent_log.read_text(), 30)
        yield environment
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        print(environment.agent_log.read_text())
        run_cookbook(config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER, "--remove")
        for event in environment.store.pending():
            environment.store.delete(event.key)


@pytest.fixture
def names(env: Env) -> Iterator[list[str]]:
    """Instance names of one test (under the module's token); removed everywhere afterwards."""
    used: list[str] = []
    yield used
    for name in used:
        remove_everything(env, name)


def dns_reverse(address: str) -> str:
    """The PTR owner name of an address."""
    return dns.reversename.from_address(address).to_text()


def netbox_vm(env: Env, name: str) -> dict[str, Any] | None:
    found = env.netbox.objects("vm", name=name)
    return found[0] if found else None


def test_hand_made_instance_is_followed_into_netbox_and_dns_through_add_rename_modify_remove(
        env: Env, names: list[str]) -> None:
    first, second = f"{env.token}-a.{topology.DOMAIN}", f"{env.token}-b.{topology.DOMAIN}"
    names += [first, second]
    pnode = sorted(env.ganeti.group("A")["node_list"])[0]
    rc, output, took = env.gnt(f"gnt-instance add -t file --disk 0:size=1024 -o noop --no-ip-check --no-name-check "
                               f"-n {pnode} -B memory=256,vcpus=2 --net 0:link={topology.NODE_BRIDGE} {first}")
    assert rc == 0, output
    print(f"gnt-instance add with the hooks installed: {took:.1f}s")

    vm = wait_for(f"NetBox VM {first} with its primary addresses",
                  lambda: (found := netbox_vm(env, first)) and found.get("primary_ip6") and found)
    mac = env.ganeti.instance(first)["nic.macs"][0]
    assert (vm["cluster"]["name"], int(float(vm["vcpus"])), vm["memory"], vm["disk"], vm["status"]["value"]) == (
        "A", 2, 256, 1024, "active")
    [iface] = env.netbox.objects("vm-interface", virtual_machine_id=vm["id"])
    assert (iface["name"], str(iface["mac_address"]).lower()) == ("eth0", mac.lower())
    ips = {ip["id"]: ip for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"])}
    v4, v6 = (str(ips[vm[key]["id"]]["address"]).split("/")[0] for key in ("primary_ip4", "primary_ip6"))
    assert v4.startswith("198.18.16.") and v6.startswith("2001:2:0:a:")
    assert {ip["dns_name"] for ip in ips.values()} == {first}
    wait_for(f"A and AAAA of {first}", lambda: env.dns.resolve(first, "A") == [v4] and
             env.dns.resolve(first, "AAAA") == [v6])
    for address in (v4, v6):
        assert env.dns.resolve(dns_reverse(address), "PTR") == [f"{first}."]

    assert env.gnt(f"gnt-instance stop {first}")[0] == 0
    rc, output, _ = env.gnt(f"gnt-instance rename -f --no-ip-check --no-name-check {first} {second}")
    assert rc == 0, output
    renamed = wait_for(f"NetBox VM renamed to {second}, offline",
                       lambda: (found := netbox_vm(env, second)) and found["status"]["value"] == "offline" and found)
    assert renamed["id"] == vm["id"] and netbox_vm(env, first) is None
    assert {ip["dns_name"] for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"])} == {second}
    wait_for(f"DNS of {second} and none of {first}", lambda: env.dns.resolve(second, "A") == [v4]
             and env.dns.resolve(first, "A") == [] and env.dns.resolve(first, "AAAA") == [])
    assert env.dns.resolve(dns_reverse(v6), "PTR") == [f"{second}."]

    assert env.gnt(f"gnt-instance modify -B memory=512 {second}")[0] == 0
    wait_for("memory 512 in NetBox", lambda: (found := netbox_vm(env, second)) and found["memory"] == 512)

    assert env.gnt(f"gnt-instance remove -f {second}")[0] == 0
    wait_for(f"{second} gone from NetBox", lambda: netbox_vm(env, second) is None)
    assert env.netbox.objects("ip-address", dns_name=second) == []
    wait_for(f"DNS of {second} gone", lambda: env.dns.resolve(second, "A") == [] and
             env.dns.resolve(second, "AAAA") == [])
    for address in (v4, v6):
        assert env.dns.resolve(dns_reverse(address), "PTR") == []
    runs = [record for record in env.audit() if record["cookbook"] == "sre.ganeti.sync-netbox"]
    assert runs and all(record["origin"] == "hook" and record["exit_code"] == 0 for record in runs)
    assert {record["argv"][3] for record in runs} == {first, second}


def test_the_hook_returns_at_once_when_etcd_is_unreachable_and_sends_the_spooled_event_later(env: Env) -> None:
    spool, log = f"/tmp/{env.token}-spool", f"/tmp/{env.token}-hook.log"
    base = f"CLUSTER=spooltest PREFIX={env.store.prefix} TTL=600 LOG={log} SPOOL={spool}"
    script = "/etc/ganeti/hooks/cookbook-event"
    conf = f"/tmp/{env.token}-hook.conf"
    hook = (f"env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin COOKBOOK_EVENT_CONF={conf} GANETI_MASTER=$(hostname) "
            f"GANETI_INSTANCE_NAME={env.token}-x.{topology.DOMAIN} GANETI_HOOKS_PATH=instance-add "
            f"GANETI_HOOKS_PHASE=post {script}")
    try:
        unreachable = f"{base} ETCD_URL=http://{topology.HOST_IP}:1"
        rc, output, took = env.gnt(f"printf '%s\\n' {shlex.join(unreachable.split())} > {conf}; "
                                   f"s=$(date +%s%N); {hook}; echo rc=$? ns=$(( $(date +%s%N) - s ))")
        assert rc == 0 and "rc=0" in output, output
        hook_ns = int(output.split("ns=")[1].split()[0])
        print(f"hook run with etcd unreachable: {hook_ns / 1e6:.1f} ms")
        assert hook_ns < 1e9
        wait_for("the event in the spool", lambda: env.gnt(f"ls {spool} 2>/dev/null | wc -l")[1].strip() == "1", 20)
        reachable = f"{base} ETCD_URL={etcd.NODES_URL}"
        assert env.gnt(f"printf '%s\\n' {shlex.join(reachable.split())} > {conf}; {hook}")[0] == 0
        sent = wait_for("both events in etcd", lambda: (found := [e for e in env.store.pending()
                                                                   if e.cluster == "spooltest"]) and
                        len(found) == 2 and found, 20)
        assert [event.instance for event in sent] == [f"{env.token}-x.{topology.DOMAIN}"] * 2
        assert env.gnt(f"ls {spool} | wc -l")[1].strip() == "0"
        assert "spooled as" in env.gnt(f"cat {log}")[1]
    finally:
        env.gnt(f"rm -rf {spool} {log} {conf}")
