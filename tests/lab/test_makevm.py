"""sre.ganeti.makevm on the real lab, run as an operator types it; results checked in Ganeti, NetBox and DNS.

Every test uses a fresh host name (random suffix) and removes whatever it may have left, even on
failure. Faults for the rollback tests are injected at the real boundaries: a NetBox token the
server refuses, a TSIG secret Knot rejects, a file that makes Ganeti's disk creation fail on the
nodes, a NetBox user not allowed to create VM interfaces, SIGINT during the create job.

The lab is shared with other test runs, so global counters (NetBox change log, zone serials,
Ganeti job queue) may move for reasons of their own: "nothing changed" is checked as "none of the
new entries concerns this VM" (and the counters are compared exactly when nobody else moved them).
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import pytest
import requests
import yaml

from cookbook_lab import topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster import config as config_module
from libcluster import ganeti
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.dns.diff import compute
from libcluster.dns.protection import owns_everything
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.netbox import NetBox
from tests.lab.service_hang import hung

REPO = Path(__file__).resolve().parents[2]
COOKBOOK = REPO / ".venv" / "bin" / "cookbook"
GROUP = "A"
NIC_LINK = topology.NODE_BRIDGE
TIMEOUT = 600
ALLOCATED = re.compile(r"Allocated (\S+) in NetBox")


@dataclass
class Env:
    """The lab configuration and clients to check and clean up with (independent of the cookbook's)."""

    config_path: Path
    raw: dict[str, Any]
    ganeti: GanetiCluster
    netbox: NetBox
    dns: DNS
    group_nodes: list[str]

    def fqdn(self, hostname: str) -> str:
        """The FQDN makevm gives hostname."""
        return f"{hostname}.{topology.DOMAIN}"

    def config_copy(self, tmp_path: Path, **sections: dict[str, Any]) -> Path:
        """A copy of the lab configuration with some keys of some sections replaced (mode 0600)."""
        data = json.loads(json.dumps(self.raw))
        for section, values in sections.items():
            data[section].update(values)
        path = tmp_path / "config.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return path


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path) -> Env:
    """Clients on the lab, for checks and cleanup; skips unless Ganeti, NetBox, DNS and etcd are up."""
    for part in ("ganeti", "netbox", "dns", "etcd"):
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    root = config_module.load(lab_config)
    changes = ChangeLog(dry_run=False)
    return Env(
        config_path=lab_config,
        raw=yaml.safe_load(lab_config.read_text()),
        ganeti=ganeti.connect(root, topology.CLUSTER, dry_run=False, changes=changes, remote=None),
        netbox=NetBox(root.section("netbox"), read_write=True, dry_run=False, changes=changes),
        dns=DNS(root.section("dns"), dry_run=False, changes=changes),
        group_nodes=list(lab["ganeti"]["groups"][GROUP]),
    )


def remove_everything(env: Env, fqdn: str, addresses: list[str]) -> None:
    """Remove fqdn from Ganeti, NetBox and DNS whatever state it is in (test cleanup)."""
    try:
        env.ganeti.instance(fqdn)
        env.ganeti.remove_instance(fqdn).wait(progress=lambda entry: None)
    except RapiNotFoundError:
        pass
    for vm in env.netbox.objects("vm", name=fqdn):
        env.netbox.delete("vm", [vm])
    ips = env.netbox.objects("ip-address", dns_name=fqdn)
    addresses = addresses + [str(ip["address"]) for ip in ips]
    if ips:
        env.netbox.release_ips(ips)
    env.dns.remove_host(fqdn, owns=owns_everything)
    stale = {key for key in ptr_keys(addresses) if pointing_to(env, key, fqdn)}
    env.dns.apply(compute({}, env.dns.current(stale), env.dns.zones, scope=stale))


def ptr_keys(addresses: list[str]) -> set[tuple[dns.name.Name, dns.rdatatype.RdataType]]:
    """The PTR rrset keys of addresses (masks allowed)."""
    return {(dns.reversename.from_address(address.split("/")[0]), dns.rdatatype.PTR) for address in addresses}


def pointing_to(env: Env, key: tuple[dns.name.Name, dns.rdatatype.RdataType], fqdn: str) -> bool:
    """Whether the server's PTR at key names fqdn."""
    rrset = env.dns.current([key]).get(key)
    return rrset is not None and any(rdata.target == dns.name.from_text(fqdn) for rdata in rrset)


@pytest.fixture
def hostname(env: Env) -> Iterator[str]:
    """A fresh host name; everything named after it is removed after the test, pass or fail."""
    name = f"mkv-{secrets.token_hex(3)}"
    yield name
    remove_everything(env, env.fqdn(name), [])


LOCATION = ("--cluster", topology.CLUSTER, "--group", GROUP)


def makevm(env: Env, *args: str, config: Path | None = None, dry_run: bool = False,
           location: tuple[str, ...] = LOCATION) -> subprocess.CompletedProcess[str]:
    """Run the cookbook as an operator would, answering its confirmation with -y."""
    command = [str(COOKBOOK), "-c", str(config or env.config_path), "-y", *(["-d"] if dry_run else []),
               "sre.ganeti.makevm", *location, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def assert_nothing_left(env: Env, fqdn: str, addresses: list[str]) -> None:
    """No instance, no NetBox VM or IP named fqdn, no A/AAAA for fqdn, no PTR of addresses pointing to it."""
    with pytest.raises(RapiNotFoundError):
        env.ganeti.instance(fqdn)
    assert env.netbox.objects("vm", name=fqdn) == []
    assert env.netbox.objects("ip-address", dns_name=fqdn) == []
    assert env.dns.resolve(fqdn, "A") == [] and env.dns.resolve(fqdn, "AAAA") == []
    assert not [key for key in ptr_keys(addresses) if pointing_to(env, key, fqdn)]


def audit_record(env: Env, hostname: str) -> dict[str, Any]:
    """The newest audit record (the journal's end line) of a makevm run for hostname."""
    lines = Path(env.raw["audit_log"]).read_text().splitlines()
    records = [json.loads(line) for line in lines if hostname in line]
    found = [record for record in records if record.get("event", "end") == "end"
             and record.get("cookbook") == "sre.ganeti.makevm" and hostname in record.get("argv", [])]
    assert found, f"no audit record of makevm for {hostname}"
    return found[-1]


def test_makevm_creates_the_vm_with_its_netbox_and_dns_records(env: Env, hostname: str) -> None:
    """A real run: instance on a node of group A with the sizes and NIC link, NetBox VM/interface/IPs, DNS."""
    fqdn = env.fqdn(hostname)
    result = makevm(env, "--vcpus", "2", "--memory", "1.5", "--disk", "2", "-t", "T1234", hostname)
    assert result.returncode == 0, result.stderr
    instance = env.ganeti.instance(fqdn)
    assert instance["pnode"] in env.group_nodes
    assert (instance["beparams"]["vcpus"], instance["beparams"]["maxmem"]) == (2, 1536)
    assert instance["disk.sizes"] == [2048] and instance["disk_template"] == "file"
    assert instance["nic.links"] == [NIC_LINK]
    mac = instance["nic.macs"][0]
    prefix = env.ganeti.info()["mac_prefix"]
    assert re.fullmatch(rf"{prefix}(:[0-9a-f]{{2}}){{3}}", mac), "in the cluster's MAC prefix"
    assert f"interface eth0 with MAC {mac}; the IPs on it, primary" in result.stderr, "the MAC the plan picked"
    assert "corrected to what Ganeti made" not in result.stderr, "NetBox recorded during the job was right"

    vm = env.netbox.get("vm", name=fqdn)
    assert vm["cluster"]["name"] == GROUP and vm["status"]["value"] == "active"
    assert (float(vm["vcpus"]), vm["memory"], vm["disk"]) == (2.0, 1536, 2048)
    [iface] = env.netbox.objects("vm-interface", virtual_machine_id=vm["id"])
    assert iface["name"] == "eth0" and iface["mac_address"].lower() == mac
    ips = {ip["family"]["value"]: ip for ip in env.netbox.objects("ip-address", virtual_machine_id=vm["id"])}
    assert set(ips) == {4, 6}
    assert all(ip["dns_name"] == fqdn and ip["assigned_object_id"] == iface["id"] for ip in ips.values())
    assert (vm["primary_ip4"]["id"], vm["primary_ip6"]["id"]) == (ips[4]["id"], ips[6]["id"])

    v4, v6 = (ips[family]["address"].split("/")[0] for family in (4, 6))
    assert env.dns.resolve(fqdn, "A") == [v4] and env.dns.resolve(fqdn, "AAAA") == [v6]
    for address in (v4, v6):
        assert env.dns.resolve(dns.reversename.from_address(address).to_text(), "PTR") == [f"{fqdn}."]

    record = audit_record(env, hostname)
    assert record["exit_code"] == 0 and not record["dry_run"]
    actions = [(change["system"], change["action"]) for change in record["changes"]]
    assert actions.count(("netbox", "ip-address-allocate")) == 2
    assert actions.count(("dns", "record-add")) == 4
    assert ("ganeti", "instance-create") in actions and ("netbox", "vm-create") in actions
    assert ("netbox", "vm-interface-create") in actions
    assert "Ganeti jobs: " in result.stderr and vm["display_url"] in result.stderr


@dataclass
class Snapshot:
    """Global counters of the three systems, and what concerns one VM."""

    change_id: int
    serials: dict[str, int]
    jobs: set[int]


def snapshot(env: Env) -> Snapshot:
    """The newest NetBox change id, every zone serial and the Ganeti job ids."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env.raw['netbox']['ro_token']}"
    newest = session.get(f"{env.netbox.url}/api/core/object-changes/", params={"ordering": "-id", "limit": 1},
                         timeout=30).json()["results"]
    return Snapshot(
        change_id=newest[0]["id"] if newest else 0,
        serials={str(zone): env.dns.serial(zone) for zone in env.dns.zones.names},
        jobs={int(job["id"]) for job in env.ganeti.jobs()},
    )


def assert_unchanged_for(env: Env, before: Snapshot, fqdn: str, addresses: list[str]) -> dict[str, int]:
    """Nothing new in NetBox's change log, the zones or Ganeti concerns fqdn or addresses; returns the deltas."""
    after = snapshot(env)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env.raw['netbox']['ro_token']}"
    new = session.get(f"{env.netbox.url}/api/core/object-changes/",
                      params={"id__gt": before.change_id, "limit": 1000}, timeout=30).json()["results"]
    needles = [fqdn, *(address.split("/")[0] for address in addresses)]
    assert not [change for change in new if any(needle in json.dumps(change) for needle in needles)]
    changed_zones = [zone for zone, serial in after.serials.items() if serial != before.serials[zone]]
    for zone in changed_zones:
        text = json.dumps({str(key): str(rrset) for key, rrset in env.dns.zone_records(zone).items()})
        assert not any(needle in text for needle in needles), f"zone {zone} holds records of {fqdn}"
    for job_id in after.jobs - before.jobs:
        job = env.ganeti.job(job_id)
        if any(fqdn in str(summary) for summary in job.get("summary") or []):
            assert all(op.get("dry_run") for op in job["ops"]), f"job {job_id} changed {fqdn}"
    return {"netbox_changes": len(new), "zones_changed": len(changed_zones), "jobs": len(after.jobs - before.jobs)}


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env, hostname: str) -> None:
    """-d: the plan names a node of group A, the next free IPs and the DNS records; no system changes."""
    fqdn = env.fqdn(hostname)
    before = snapshot(env)
    result = makevm(env, hostname, dry_run=True)
    assert result.returncode == 0, result.stderr
    plan = re.search(r"create on (\S+) \(chosen by hail\).*?allocate (\S+) \(from .*?\), (\S+) \(from", result.stderr,
                     re.S)
    assert plan, result.stderr
    node, v4, v6 = plan.groups()
    assert node in env.group_nodes
    assert f"+ {fqdn}. 300 A {v4.split('/')[0]}" in result.stderr
    assert f"+ {fqdn}. 300 AAAA {v6.split('/')[0]}" in result.stderr
    assert f"VM {fqdn} in cluster {GROUP}" in result.stderr and "interface eth0" in result.stderr
    for address in (v4, v6):
        assert env.netbox.objects("ip-address", address=address) == []
    assert_nothing_left(env, fqdn, [v4, v6])
    assert_unchanged_for(env, before, fqdn, [v4, v6])
    record = audit_record(env, hostname)
    assert record["dry_run"] and record["changes"] and all(change["dry_run"] for change in record["changes"])


def test_a_vm_that_does_not_fit_stops_before_any_change(env: Env, hostname: str) -> None:
    """30 GB: inside the instance policy (32 GB max) but more than any node of the lab has free."""
    fqdn = env.fqdn(hostname)
    before = snapshot(env)
    result = makevm(env, "--memory", "30", hostname)
    assert result.returncode == 11, result.stderr
    assert "does not fit: short of memory on 2 nodes in group A" in result.stderr
    assert "Allocated" not in result.stderr
    assert_nothing_left(env, fqdn, [])
    assert_unchanged_for(env, before, fqdn, [])


@pytest.fixture
def existing_instance(env: Env) -> Iterator[str]:
    """A host name whose instance already exists in Ganeti (created here, removed after the test)."""
    name = f"mkv-{secrets.token_hex(3)}"
    fqdn = env.fqdn(name)
    env.ganeti.create_instance(fqdn, disk_template="diskless", disks=[], os_type="noop", memory=128, vcpus=1,
                               pnode=env.group_nodes[0], name_check=False, no_install=True).wait(lambda entry: None)
    yield name
    remove_everything(env, fqdn, [])


@pytest.mark.parametrize(("args", "exit_code", "message"), [
    (("vm1.lab.example",), 96, "looks like an FQDN"),
    (("bad_name",), 96, "is not a valid DNS label"),
    (("--vcpus", "0", "{host}"), 96, "must be greater than zero"),
    (("--memory", "-1", "{host}"), 96, "must be a number greater than zero"),
    (("--disk", "0", "{host}"), 96, "must be greater than zero"),
    (("--disk-template", "plain", "{host}"), 10, "disk template plain is not enabled in cluster lab"),
    (("--memory", "64", "{host}"), 10, "memory 65536 MiB is outside [128, 32768] MiB"),
    (("--network", "public", "{host}"), 94, "unknown network 'public' (configured: lab, private)"),
])
def test_bad_input_fails_clearly_without_change(env: Env, hostname: str, args: tuple[str, ...], exit_code: int,
                                                message: str) -> None:
    """Invalid names, sizes, templates or networks: a clear error, the documented exit code, nothing created."""
    before = snapshot(env)
    result = makevm(env, *(arg.format(host=hostname) for arg in args))
    assert result.returncode == exit_code, result.stderr
    assert message in result.stderr
    assert_nothing_left(env, env.fqdn(hostname), [])
    assert_unchanged_for(env, before, env.fqdn(hostname), [])


@pytest.mark.parametrize(("location", "exit_code", "message"), [
    (("--cluster", "nope", "--group", GROUP), 94, "unknown Ganeti cluster 'nope'"),
    (("--cluster", topology.CLUSTER, "--group", "Z"), 94, "unknown node group 'Z'"),
])
def test_unknown_cluster_or_group_fails_clearly(env: Env, hostname: str, location: tuple[str, ...], exit_code: int,
                                               message: str) -> None:
    """A cluster or group missing from the configuration is refused before anything is read."""
    result = makevm(env, hostname, location=location)
    assert result.returncode == exit_code, result.stderr
    assert message in result.stderr
    assert_nothing_left(env, env.fqdn(hostname), [])


def test_a_name_taken_in_ganeti_is_refused_without_change(env: Env, existing_instance: str) -> None:
    """The instance exists: pre-check failure naming Ganeti, no IP allocated, no DNS record."""
    fqdn = env.fqdn(existing_instance)
    before = snapshot(env)
    result = makevm(env, existing_instance)
    assert result.returncode == 10, result.stderr
    assert f"Ganeti: instance {fqdn} already exists" in result.stderr
    assert env.netbox.objects("ip-address", dns_name=fqdn) == []
    assert env.dns.resolve(fqdn, "A") == []
    assert_unchanged_for(env, before, fqdn, [])


@pytest.fixture
def file_in_the_way(env: Env, hostname: str) -> Iterator[None]:
    """A regular file where Ganeti creates the instance's file-storage directory, on every node of group A."""
    paths = ClusterPaths.of(Lab())
    files = [paths.node_path(topology.node(node.split(".")[0]), f"/srv/ganeti/file-storage/{env.fqdn(hostname)}")
             for node in env.group_nodes]
    for path in files:
        path.write_text("not a directory: makes the disk creation of the Ganeti create job fail\n")
    yield
    for path in files:
        path.unlink(missing_ok=True)


@pytest.fixture
def restricted_netbox_token(env: Env, request: pytest.FixtureRequest) -> Iterator[str]:
    """A NetBox user and token allowed to manage IPs and what request.param names, read the rest; removed after."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env.raw['netbox']['token']}"
    api = f"{env.netbox.url}/api/users"
    name = f"mkv-test-{secrets.token_hex(3)}"
    created: list[str] = []

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = session.post(f"{api}/{path}/", json=body, timeout=30)
        answer.raise_for_status()
        created.append(f"{api}/{path}/{answer.json()['id']}/")
        return dict(answer.json())

    try:
        # NetBox wants a numeral, an upper- and a lower-case letter; a random token lacks one now and then
        user = post("users", {"username": name, "password": f"{secrets.token_urlsafe(24)}Aa1"})
        post("permissions", {"name": f"{name}-read", "actions": ["view"], "users": [user["id"]], "object_types": [
            "dcim.site", "virtualization.clustergroup", "virtualization.cluster", "ipam.prefix",
            "virtualization.virtualmachine", "virtualization.vminterface", "ipam.ipaddress"]})
        post("permissions", {"name": f"{name}-write", "actions": ["view", "add", "change", "delete"],
                             "users": [user["id"]], "object_types": ["ipam.ipaddress", *request.param]})
        token = post("tokens", {"user": user["id"], "write_enabled": True, "description": "makevm rollback test"})
        yield f"nbt_{token['key']}.{token['token']}"
    finally:
        for url in reversed(created):
            session.delete(url, timeout=30)


def allocated(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The addresses the run allocated, from its log."""
    return ALLOCATED.findall(result.stderr)


def run_journal(env: Env, run_id: str) -> list[dict[str, Any]]:
    """The journal lines of one run in the audit file."""
    lines = [json.loads(line) for line in Path(env.raw["audit_log"]).read_text().splitlines() if run_id in line]
    return [line for line in lines if line.get("id") == run_id]


def assert_undone(env: Env, hostname: str) -> list[dict[str, Any]]:
    """Every change of the newest makevm run of hostname that has an undo and was (maybe) made has an `undo` line
    saying it was undone (or was already gone); returns the run's intent lines."""
    lines = run_journal(env, audit_record(env, hostname)["id"])
    intents = {line["seq"]: line for line in lines if line["event"] == "intent"}
    results = {line["seq"]: line["status"] for line in lines if line["event"] == "result"}
    undone = {line["seq"]: line["status"] for line in lines if line["event"] == "undo"}
    made = [seq for seq, line in intents.items() if line.get("undo") and results.get(seq) in ("done", "maybe")]
    assert made, "the run journaled no change with an undo"
    not_undone = {seq: undone.get(seq) for seq in made if undone.get(seq) not in ("undone", "absent")}
    assert not not_undone, f"changes not undone (seq: undo status): {not_undone}\n{lines}"
    return list(intents.values())


def assert_rolled_back(env: Env, hostname: str, result: subprocess.CompletedProcess[str], exit_code: int,
                       failure: str) -> list[str]:
    """The run failed at the expected boundary, undid each change it journaled, and left nothing in Ganeti, NetBox
    or DNS."""
    assert result.returncode == exit_code, result.stderr
    assert failure in result.stderr
    assert "Running rollback" in result.stderr and "left behind:" not in result.stderr
    addresses = allocated(result)
    assert_nothing_left(env, env.fqdn(hostname), addresses)
    return addresses


def test_rollback_when_netbox_refuses_the_allocation(env: Env, hostname: str, tmp_path: Path) -> None:
    """Step 3 fails: the read-write token is the read-only one, NetBox answers 403 to the allocation."""
    config = env.config_copy(tmp_path, netbox={"token": env.raw["netbox"]["ro_token"]})
    result = makevm(env, hostname, config=config)
    assert_rolled_back(env, hostname, result, 1, "NetBoxAuthError")
    assert allocated(result) == []
    lines = run_journal(env, audit_record(env, hostname)["id"])
    assert {line["status"] for line in lines if line["event"] == "result"} == {"failed"}, "NetBox refused both"


def test_rollback_when_dns_refuses_the_update(env: Env, hostname: str, tmp_path: Path) -> None:
    """Step 4 fails: Knot rejects the TSIG signature; the two IPs allocated in step 3 are released."""
    config = env.config_copy(tmp_path, dns={"tsig_secret": "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA=="})
    result = makevm(env, hostname, config=config)
    addresses = assert_rolled_back(env, hostname, result, 1, "rejected the signature")
    assert len(addresses) == 2 and result.stderr.count("Undo: deleted netbox ip-address") == 2
    assert [line["action"] for line in assert_undone(env, hostname)][:2] == ["ip-address-allocate"] * 2


def test_rollback_when_the_ganeti_create_job_fails(env: Env, hostname: str, file_in_the_way: None) -> None:
    """Step 5 fails: the create job cannot make the instance's storage directory; DNS and IPs are undone."""
    result = makevm(env, hostname)
    addresses = assert_rolled_back(env, hostname, result, 1, "JobFailedError")
    assert len(addresses) == 2 and result.stderr.count(f"Undo: DNS {env.fqdn(hostname)}.") == 2  # A and AAAA
    assert "instance-create" in [line["action"] for line in assert_undone(env, hostname)]


@pytest.mark.parametrize("restricted_netbox_token", [
    pytest.param((), id="vm-refused"),
    pytest.param(("virtualization.virtualmachine",), id="interface-refused"),
], indirect=True)
def test_rollback_when_netbox_refuses_the_vm_records(env: Env, hostname: str, tmp_path: Path,
                                                    restricted_netbox_token: str) -> None:
    """Step 6 fails after the instance exists: NetBox refuses the VM (or its interface); all is removed."""
    config = env.config_copy(tmp_path, netbox={"token": restricted_netbox_token})
    result = makevm(env, hostname, config=config)
    assert_rolled_back(env, hostname, result, 1, "NetBoxAuthError")
    assert f"Undo: remove instance {env.fqdn(hostname)}" in result.stderr
    assert_undone(env, hostname)


def test_ctrl_c_during_the_create_job_rolls_back(env: Env, hostname: str) -> None:
    """SIGINT while the create job runs: exit 97, the job is waited for, then everything is removed."""
    command = [str(COOKBOOK), "-c", str(env.config_path), "-y", "sre.ganeti.makevm", "--cluster", topology.CLUSTER,
               "--group", GROUP, hostname]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    progress = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if re.search(r"job \d+: \* creating instance disks", line):
                progress.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert progress.wait(TIMEOUT), "".join(lines)
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    text = "".join(lines)
    assert exit_code == 97, text
    assert "Ctrl+C pressed" in text and f"Undo: remove instance {env.fqdn(hostname)}" in text
    assert_undone(env, hostname)
    assert_nothing_left(env, env.fqdn(hostname), ALLOCATED.findall(text))


def test_sync_of_the_created_vm_is_idempotent(env: Env, hostname: str) -> None:
    """After makevm, recording the instance again from its RAPI dict writes nothing."""
    from libcluster.sync import vm as sync_vm

    result = makevm(env, "--os", "none", hostname)
    assert result.returncode == 0, result.stderr
    fqdn = env.fqdn(hostname)
    instance = env.ganeti.instance(fqdn)
    vm = env.netbox.get("vm", name=fqdn)
    assert instance["admin_state"] == "down" and vm["status"]["value"] == "offline"
    ips = env.netbox.objects("ip-address", dns_name=fqdn)
    sent = env.netbox.request_count
    started = time.monotonic()
    recorded = sync_vm.record_instance(env.netbox, instance, cluster_id=vm["cluster"]["id"], addresses=ips)
    assert recorded.writes == [] and not recorded.created
    assert env.netbox.request_count - sent == 2, "a no-change record reads the VM and its interfaces only"
    assert time.monotonic() - started < 5


def _drain(stream: Any, into: list[str]) -> threading.Thread:
    """Read stream line by line into a list, in a thread (the run never blocks on a full pipe)."""
    def read() -> None:
        for line in stream:
            into.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _read_until(fd: int, marker: bytes, process: subprocess.Popen[str]) -> bytes:
    """Read a terminal's output until marker appears; fail if the run ends or TIMEOUT passes first."""
    seen, deadline = b"", time.monotonic() + TIMEOUT
    while marker not in seen:
        assert process.poll() is None and time.monotonic() < deadline, f"no {marker!r} on the terminal: {seen!r}"
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            seen += os.read(fd, 4096)
    return seen


LEFT_BEHIND = re.compile(r"left behind: (\S+) (.+?) \(id (\S+)\): ")


def test_netbox_hung_after_go_names_each_leftover_and_recover_removes_them(env: Env, hostname: str,
                                                                          tmp_path: Path) -> None:
    """NetBox stopped (SIGSTOP) after the plan, before the operator types "go" at the terminal: both allocations
    time out (their answer lost: 'maybe'), and their undo cannot reach NetBox either. Exit 93 with one line per
    address naming its kind, name and id, never "the IP addresses". Once NetBox resumes, the timed-out requests
    have made the addresses (the issue's leftover IPv6); `cookbook -y --recover RUN_ID` removes them all."""
    fqdn = env.fqdn(hostname)
    data = json.loads(json.dumps(env.raw))
    data["netbox"]["timeout"] = 5
    data["audit_log"] = str(tmp_path / "audit.jsonl")
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(data))
    terminal, its_end = pty.openpty()
    process = subprocess.Popen([str(COOKBOOK), "-c", str(config), "sre.ganeti.makevm", *LOCATION, hostname],
                               cwd=REPO, stdin=its_end, stdout=its_end, stderr=subprocess.PIPE, text=True)
    os.close(its_end)
    lines: list[str] = []
    reader = _drain(process.stderr, lines)
    try:
        _read_until(terminal, b'Type "go"', process)
        with hung("netbox"):
            os.write(terminal, b"go\n")
            while process.poll() is None:  # keep the terminal drained until the run ends, NetBox still stopped
                if select.select([terminal], [], [], 1)[0]:
                    try:
                        os.read(terminal, 4096)
                    except OSError:  # EIO: the run closed its terminal, it is ending
                        break
            exit_code = process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(terminal)
    reader.join(10)
    text = "".join(lines)
    print(text)
    assert exit_code == 93, text
    assert "the IP addresses" not in text
    left = LEFT_BEHIND.findall(text)
    prefixes = {*env.raw["ganeti"]["clusters"][topology.CLUSTER]["groups"][GROUP]["prefixes"]}
    assert sorted(left) == sorted(("ip-address", f"{fqdn} in {prefix}", "unknown") for prefix in prefixes), text
    journal = [json.loads(line) for line in Path(data["audit_log"]).read_text().splitlines()]
    [run_id] = {line["id"] for line in journal if line["event"] == "start"}
    allocations = {line["seq"] for line in journal if line.get("action") == "ip-address-allocate"}
    assert {line["status"] for line in journal if line["event"] == "result" and line["seq"] in allocations} == \
        {"maybe"}, "both answers were lost"

    made: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(made) < len(left) and time.monotonic() < deadline:  # NetBox works through the requests it held
        time.sleep(1)
        made = env.netbox.objects("ip-address", dns_name=fqdn)
    print(f"made by the timed-out requests once NetBox resumed: {[ip['address'] for ip in made]}")
    assert made, "the timed-out allocations made no address once NetBox resumed"
    recovered = subprocess.run([str(COOKBOOK), "-c", str(config), "-y", "--recover", run_id], cwd=REPO,
                               capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert_nothing_left(env, fqdn, [str(ip["address"]) for ip in made])
