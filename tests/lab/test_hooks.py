"""Ganeti hooks on the real lab: instances changed by hand with gnt-instance on the master (no cookbook) are
followed into NetBox and DNS by the hook script (logging in to the lab's TLS etcd as the nodes' etcd user) and
cookbook-hooks-agent; the script spools first, so a hung etcd loses nothing, and any node sends its spool.

The module installs the hooks on every node with `sre.ganeti.install-hooks` (events under a prefix of its
own below the hooks prefix, spools in a per-node directory of its own), starts the agent as a subprocess
limited to this module's instance names (other helpers change instances on the same cluster), and at the end stops the agent by its PID, removes the hooks and the
events, and whatever the tests left in Ganeti, NetBox and DNS, pass or fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.reversename
import pytest
from tests.lab.cookbook_lab import run_cookbook
from tests.lab.hooks_lab import Env, hooks_env, remove_everything, running_agent

from libcluster import config as config_module
from cookbook_lab import topology
from libcluster.locks import from_config

FOLLOW_TIMEOUT = 60
"""Seconds for a hand-made change to reach NetBox and DNS (hook, etcd, agent, sync): about 3 s when idle."""


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


@pytest.fixture(scope="module")
def hooks_to_ourselves(lab_config: Path) -> Iterator[None]:
    """The hooks are one set per node: another run of this module (helpers share the lab) waits until this one
    removed its own, through a lock in the lab's etcd."""
    locks = from_config(config_module.load(lab_config), owner=f"tests/lab/test_hooks.py [{os.getpid()}]",
                        dry_run=False)
    with locks.acquired("custom/lab-tests:ganeti-hooks", concurrency=1):
        yield


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory,
        hooks_to_ourselves: None) -> Iterator[Env]:
    """Hooks installed, the agent running; everything removed at the end."""
    token = f"t-{secrets.token_hex(4)}"
    spool_dir = f"/var/lib/ganeti/cookbook-event-spool-{token}"  # per node (/var/spool is shared)
    environment = hooks_env(lab, lab_config, tmp_path_factory.mktemp("hooks"), token, poll=1, spool_dir=spool_dir)
    config, raw, remote = environment.config, environment.raw, environment.remote
    assert run_cookbook(config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER).returncode == 0
    try:
        with running_agent(config, token, environment.agent_log):
            wait_for("the agent to watch", lambda: "Watching hook events" in environment.agent_log.read_text(), 30)
            yield environment
    finally:
        run_cookbook(config, "sre.ganeti.install-hooks", "--cluster", topology.CLUSTER, "--remove")
        nodes = sorted(node.name for node in environment.ganeti.nodes())
        remote.hosts(nodes).run_sync(f"rm -rf {shlex.quote(raw['hooks']['spool_dir'])}", timeout=60)
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
    taken = {str(ip["address"]).split("/")[0] for ip in env.netbox.objects("ip-address", parent="198.18.16.0/24")}
    v4 = next(f"198.18.16.{n}" for n in range(150, 200) if f"198.18.16.{n}" not in taken)
    rc, output, took = env.gnt(f"gnt-instance add -t file --disk 0:size=1024 -o noop --no-ip-check --no-name-check "
                               f"-n {pnode} -B memory=256,vcpus=2 --net 0:link={topology.NODE_BRIDGE},ip={v4} {first}")
    assert rc == 0, output
    print(f"gnt-instance add with the hooks installed: {took:.1f}s")

    vm = wait_for(f"NetBox VM {first} with its NIC's address as primary",
                  lambda: (found := netbox_vm(env, first)) and found.get("primary_ip4") and found)
    mac = env.ganeti.instance(first)["nic.macs"][0]
    assert (vm["cluster"]["name"], int(float(vm["vcpus"])), vm["memory"], vm["disk"], vm["status"]["value"]) == (
        "A", 2, 256, 1024, "active")
    [iface] = env.netbox.objects("vm-interface", virtual_machine_id=vm["id"])
    assert (iface["name"], str(iface["mac_address"]).lower()) == ("eth0", mac.lower())
    ips = {ip["id"]: ip for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"])}
    assert str(ips[vm["primary_ip4"]["id"]]["address"]).split("/")[0] == v4
    assert {ip["dns_name"] for ip in ips.values()} == {first}
    wait_for(f"A of {first}", lambda: env.dns.resolve(first, "A") == [v4])
    assert env.dns.resolve(dns_reverse(v4), "PTR") == [f"{first}."]

    assert env.gnt(f"gnt-instance stop {first}")[0] == 0
    rc, output, _ = env.gnt(f"gnt-instance rename -f --no-ip-check --no-name-check {first} {second}")
    assert rc == 0, output
    renamed = wait_for(f"NetBox VM renamed to {second}, offline",
                       lambda: (found := netbox_vm(env, second)) and found["status"]["value"] == "offline" and found)
    assert renamed["id"] == vm["id"] and netbox_vm(env, first) is None
    assert {ip["dns_name"] for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"])} == {second}
    wait_for(f"DNS of {second} and none of {first}", lambda: env.dns.resolve(second, "A") == [v4]
             and env.dns.resolve(first, "A") == [] and env.dns.resolve(first, "AAAA") == [])
    assert env.dns.resolve(dns_reverse(v4), "PTR") == [f"{second}."]

    assert env.gnt(f"gnt-instance modify -B memory=512 {second}")[0] == 0
    wait_for("memory 512 in NetBox", lambda: (found := netbox_vm(env, second)) and found["memory"] == 512)

    assert env.gnt(f"gnt-instance remove -f {second}")[0] == 0
    wait_for(f"{second} gone from NetBox", lambda: netbox_vm(env, second) is None)
    assert env.netbox.objects("ip-address", dns_name=second) == []
    wait_for(f"DNS of {second} gone", lambda: env.dns.resolve(second, "A") == [] and
             env.dns.resolve(second, "AAAA") == [])
    assert env.dns.resolve(dns_reverse(v4), "PTR") == []
    runs = [record for record in env.audit() if record["cookbook"] == "sre.ganeti.sync-netbox"]
    assert runs and all(record["origin"] == "hook" and record["exit_code"] == 0 for record in runs)
    assert {record["argv"][3] for record in runs} == {first, second}


@pytest.fixture
def hung_etcd() -> Iterator[str]:
    """An https URL on the lab bridge where a socket accepts connections and never answers (a hung etcd)."""
    with socket.socket() as sock:
        sock.bind((topology.HOST_IP, 0))
        sock.listen(64)
        yield f"https://{topology.HOST_IP}:{sock.getsockname()[1]}"


def spooltest(env: Env) -> list[Any]:
    """Events of the stand-in cluster "spooltest" in this module's prefix, oldest first."""
    return [event for event in env.store.pending() if event.cluster == "spooltest"]


def test_with_etcd_hung_the_hook_returns_at_once_spools_in_order_and_sends_all_in_order_later(
        env: Env, hung_etcd: str) -> None:
    spool, log = f"/tmp/{env.token}-spool", f"/tmp/{env.token}-hook.log"
    conf, installed = f"/tmp/{env.token}-hook.conf", "/etc/ganeti/hooks/cookbook-event.conf"
    overrides = f"CLUSTER=spooltest LOG={log} SPOOL={spool}"

    def hook(number: int) -> str:
        return (f"env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin COOKBOOK_EVENT_CONF={conf} GANETI_MASTER=$(hostname) "
                f"GANETI_INSTANCE_NAME={env.token}-x{number}.{topology.DOMAIN} GANETI_HOOKS_PATH=instance-add "
                f"GANETI_HOOKS_PHASE=post /etc/ganeti/hooks/cookbook-event")

    def use(url: str) -> str:  # the installed settings (the nodes' user and CA), another URL, spool and log
        return f"cp {installed} {conf} && printf '%s\\n' {overrides} ETCD_URL={url} >> {conf}"

    try:
        for number in (1, 2):
            rc, output, _ = env.gnt(f"{use(hung_etcd)} && s=$(date +%s%N); {hook(number)}; "
                                    f"echo rc=$? ns=$(( $(date +%s%N) - s ))")
            assert rc == 0 and "rc=0" in output, output
            hook_ns = int(output.split("ns=")[1].split()[0])
            print(f"hook run with etcd hung: {hook_ns / 1e6:.1f} ms")
            assert hook_ns < 1e9
        assert env.gnt(f"ls {spool} | wc -l")[1].strip() == "2"  # both spooled before any sending
        wait_for("both senders to give up on the hung etcd",
                 lambda: env.gnt(f"grep -c 'did not log in' {log}")[1].strip() == "2", 40)
        assert env.gnt(f"ls {spool} | wc -l")[1].strip() == "2" and spooltest(env) == []
        assert env.gnt(f"{use(env.raw['hooks']['node_etcd_url'])} && {hook(3)}")[0] == 0
        sent = wait_for("the three events in etcd", lambda: len(found := spooltest(env)) == 3 and found, 30)
        assert [event.instance for event in sent] == [f"{env.token}-x{n}.{topology.DOMAIN}" for n in (1, 2, 3)]
        assert env.gnt(f"ls {spool} | wc -l")[1].strip() == "0"
        assert "spooled /" in env.gnt(f"cat {log}")[1]
        assert env.raw["hooks"]["node_etcd_password"] not in env.gnt(f"cat {log}")[1]
    finally:
        env.gnt(f"rm -rf {spool} {log} {conf}")
        for event in spooltest(env):
            env.store.delete(event.key)


def test_a_spool_left_on_a_node_that_is_not_the_master_is_sent_by_its_next_hook_run(
        env: Env, names: list[str]) -> None:
    master = env.ganeti.master()
    node = sorted(set(env.ganeti.group("A")["node_list"]) - {master})[0]
    spool = env.raw["hooks"]["spool_dir"]
    left = f"{env.token}-former.{topology.DOMAIN}"
    key = f"{env.store.prefix}spooltest/{time.time_ns()}-{node.split('.')[0]}-1"
    value = json.dumps({"version": 1, "cluster": "spooltest", "hook": "instance-add", "phase": "post", "op": "OP",
                        "instance": left, "new_name": "", "node": node, "time": int(time.time())})
    try:
        spooled = f"{spool}/{key.rsplit('/', 1)[1]}"
        result = env.remote.hosts([node]).run_sync(
            f"mkdir -p {spool} && printf '%s\\n' {shlex.quote(key)} {shlex.quote(value)} > {spooled}", timeout=30)
        assert next(iter(result.hosts.values())).rc == 0
        name = f"{env.token}-d.{topology.DOMAIN}"
        names.append(name)
        rc, output, _ = env.gnt(f"gnt-instance add -t diskless -o noop --no-ip-check --no-name-check -n {node} "
                                f"-B memory=128 --net 0:link={topology.NODE_BRIDGE} {name}")
        assert rc == 0, output
        [sent] = wait_for(f"the event spooled on {node} in etcd", lambda: spooltest(env), 30)
        assert (sent.key, sent.instance) == (key, left)
        listing = env.remote.hosts([node]).run_sync(f"ls {spool} | wc -l", timeout=30)
        assert next(iter(listing.hosts.values())).output.strip() == "0"
    finally:
        for event in spooltest(env):
            env.store.delete(event.key)


def test_the_node_credentials_are_root_only_on_every_node_and_never_shown(env: Env) -> None:
    nodes = sorted(node.name for node in env.ganeti.nodes() if not node.offline)
    files = "/etc/ganeti/hooks/cookbook-event.conf /etc/ganeti/hooks/cookbook-event-ca.crt"
    result = env.remote.hosts(nodes).run_sync(f"stat -c '%a %U' {files}", timeout=30)
    for node in nodes:
        assert result[node].output.split("\n") == ["600 root", "600 root"], node
    password = env.raw["hooks"]["node_etcd_password"]
    shown = "".join(path.read_text() for path in Path(env.raw["logs_base_dir"]).rglob("install-hooks*.log"))
    shown += json.dumps([record for record in env.audit() if record["cookbook"] == "sre.ganeti.install-hooks"])
    assert "cookbook-event.conf 600 *****" in shown  # the conf's encoding is masked
    assert password not in shown
