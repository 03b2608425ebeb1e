"""sre.ganeti.sync-netbox on the real lab: drift of several kinds is fixed exactly, nothing else is written, a
second run writes nothing, and a dry-run changes nothing.

The test's instances are named `t-<random>-<role>.lab.example` and the runs are limited to them with
--match, since other helpers create instances on the same cluster at the same time. "Nothing else" is
checked on NetBox's own change log: every entry after the run's start that concerns one of the test's
objects is listed and compared with the expected ones (other helpers' entries are not the test's to judge).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from tests.lab.cookbook_lab import ganeti, netbox, remove_test_instance, run_cookbook

from libcluster import audit
from libcluster.ganeti import GanetiCluster
from cookbook_lab import topology
from libcluster.netbox import NetBox
from libcluster.sync import addresses

ROLES = ("keep", "memory", "down", "missing")


@dataclass
class Env:
    """The test's configuration, clients and names."""

    config: Path
    raw: dict[str, Any]
    token: str
    ganeti: GanetiCluster
    netbox: NetBox

    def name(self, role: str) -> str:
        """The FQDN of the test's instance (or NetBox VM) of a role."""
        return f"{self.token}-{role}.{topology.DOMAIN}"

    def sync(self, *args: str, dry_run: bool = False) -> Any:
        """Run the cookbook on the test's VMs only."""
        return run_cookbook(self.config, "sre.ganeti.sync-netbox", "--cluster", topology.CLUSTER,
                            "--match", f"{self.token}-*", *args, dry_run=dry_run)

    def vm(self, role: str) -> dict[str, Any] | None:
        """The NetBox VM of a role, None if none."""
        found = self.netbox.objects("vm", name=self.name(role))
        return found[0] if found else None

    def changes_since(self, mark: int) -> list[dict[str, Any]]:
        """NetBox change log entries after entry mark made by requests that changed the test's objects.

        An entry names the test's token (VM name, dns_name) or comes from the same HTTP request as one that
        does (NetBox makes MAC address objects of its own when an interface's MAC is set)."""
        headers = {"Authorization": f"Bearer {self.raw['netbox']['token']}", "Accept": "application/json"}
        url, params, found = f"{self.raw['netbox']['url']}/api/core/object-changes/", {"id__gt": mark,
                                                                                         "limit": 1000}, []
        while url:
            page = requests.get(url, params=params, headers=headers, timeout=30).json()
            found += page["results"]
            url, params = page["next"], None
        requests_of_mine = {entry["request_id"] for entry in found if self.token in json.dumps(entry)}
        return [entry for entry in found if entry["request_id"] in requests_of_mine]

    def audit(self, dry_run: bool) -> dict[str, Any]:
        """The newest audit record of a sync-netbox run of this test."""
        records = audit.read_records(self.raw["audit_log"])
        mine = [r for r in records if r["cookbook"] == "sre.ganeti.sync-netbox" and r["dry_run"] == dry_run
                and f"{self.token}-*" in r["argv"]]
        return mine[-1]


def mark(env: Env) -> int:
    """Id of the newest NetBox change log entry."""
    headers = {"Authorization": f"Bearer {env.raw['netbox']['token']}", "Accept": "application/json"}
    page = requests.get(f"{env.raw['netbox']['url']}/api/core/object-changes/", params={"ordering": "-id", "limit": 1},
                        headers=headers, timeout=30).json()
    return int(page["results"][0]["id"]) if page["results"] else 0


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Four instances in group A; everything named after the token removed at the end, pass or fail."""
    for part in ("ganeti", "netbox", "etcd"):
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    tmp = tmp_path_factory.mktemp("sync")
    raw = yaml.safe_load(lab_config.read_text())
    raw.update(logs_base_dir=str(tmp / "logs"), audit_log=str(tmp / "audit.jsonl"))
    config = tmp / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(raw))
    environment = Env(config=config, raw=raw, token=f"t-{secrets.token_hex(4)}", ganeti=ganeti(config),
                      netbox=netbox(config))
    pnode = sorted(environment.ganeti.group("A")["node_list"])[0]
    try:
        for role in ROLES:
            environment.ganeti.create_instance(environment.name(role), disk_template="file", disks=[1024],
                                               os_type="noop", memory=128, vcpus=1, pnode=pnode,
                                               name_check=False).wait(timeout=300)
        yield environment
    finally:
        for role in (*ROLES, "extra"):
            remove_test_instance(environment.ganeti, environment.netbox, environment.name(role))


def summary(entries: list[dict[str, Any]], env: Env, ids: dict[int, str]) -> set[tuple[str, str, str]]:
    """(object type, action, role of the VM it concerns) of change log entries.

    The role comes from the VM's name in the entry, else its VM id, else the one role of its HTTP request."""
    roles: dict[str, str] = {}
    for entry in entries:
        text = json.dumps(entry)
        role = next((r for r in (*ROLES, "extra") if env.name(r) in text), None)
        data = entry["postchange_data"] or entry["prechange_data"] or {}
        role = role or ids.get(int(data.get("virtual_machine") or 0))
        if role:
            roles[entry["id"]] = role
    by_request: dict[str, set[str]] = {}
    for entry in entries:
        if entry["id"] in roles:
            by_request.setdefault(entry["request_id"], set()).add(roles[entry["id"]])
    found = set()
    for entry in entries:
        role = roles.get(entry["id"]) or "/".join(sorted(by_request.get(entry["request_id"], {"?"})))
        found.add((entry["changed_object_type"], entry["action"]["value"], role))
    return found


def test_drift_is_fixed_exactly_a_second_run_writes_nothing_and_dry_run_changes_nothing(env: Env) -> None:
    first = env.sync()
    assert first.returncode == 0, first.stderr
    baseline = {role: env.vm(role) for role in ROLES}
    assert all(baseline.values())
    assert {int(float(vm["vcpus"])) for vm in baseline.values()} == {1}

    assert env.sync().returncode == 0
    assert env.audit(dry_run=False)["changes"] == []

    cluster_a = env.netbox.get("cluster", name="A", group_id=env.netbox.get("cluster-group", name="lab")["id"])
    env.netbox.create("vm", [{"name": env.name("extra"), "cluster": cluster_a["id"], "status": "active"}])
    env.netbox.delete("vm", [baseline["missing"]])
    env.ganeti.modify_instance(env.name("memory"), beparams={"maxmem": 256, "minmem": 256}).wait(timeout=300)
    env.ganeti.shutdown_instance(env.name("down"), timeout=0).wait(timeout=300)
    ids = {int(vm["id"]): role for role, vm in baseline.items()}

    before = mark(env)
    dry = env.sync("--delete", dry_run=True)
    assert dry.returncode == 0, dry.stderr
    for row in (f"update    vm  {env.name('memory')}", f"update    vm  {env.name('down')}",
                f"create    vm  {env.name('missing')}", f"delete    vm  {env.name('extra')}",
                f"missing ip-address {env.name('missing')} no address: the Ganeti NIC has no IP and "
                "sync.allocate_ips is false"):
        assert " ".join(row.split()) in " ".join(dry.stderr.split())
    assert env.changes_since(before) == []
    assert env.vm("missing") is None and env.vm("extra") is not None and env.vm("memory")["memory"] == 128

    before = mark(env)
    fixed = env.sync("--delete")
    assert fixed.returncode == 0, fixed.stderr
    after = env.vm("missing")
    ids[int(after["id"])] = "missing"
    assert summary(env.changes_since(before), env, ids) == {
        ("virtualization.virtualmachine", "create", "missing"),
        ("virtualization.vminterface", "create", "missing"),
        ("virtualization.vminterface", "update", "missing"),
        ("virtualization.virtualmachine", "update", "memory"),
        ("virtualization.virtualmachine", "update", "down"),
        ("virtualization.virtualmachine", "delete", "extra"),
        ("dcim.macaddress", "create", "missing"),
    }
    written = {(change["action"], change["target"]) for change in env.audit(dry_run=False)["changes"]}
    assert {target for _, target in written if target.endswith(topology.DOMAIN)} == {
        env.name("missing"), env.name("memory"), env.name("down"), env.name("extra")}
    assert env.vm("memory")["memory"] == 256 and env.vm("down")["status"]["value"] == "offline"
    assert env.vm("extra") is None
    assert not after["primary_ip4"] and not after["primary_ip6"]
    assert env.netbox.objects("ip-address", dns_name=env.name("missing")) == []
    [iface] = env.netbox.objects("vm-interface", virtual_machine_id=after["id"])
    assert str(iface["mac_address"]).lower() == env.ganeti.instance(env.name("missing"))["nic.macs"][0].lower()
    assert env.vm("keep") == baseline["keep"]

    before = mark(env)
    again = env.sync("--delete")
    assert again.returncode == 0 and "Written: nothing written" in again.stderr
    assert [" ".join(line.split()) for line in again.stderr.splitlines() if line.startswith(("create", "update",
                                                                                              "delete", "missing"))] \
        == [f"missing ip-address {env.name(role)} {addresses.NO_ADDRESS}" for role in sorted(ROLES)]
    assert env.audit(dry_run=False)["changes"] == []
    assert env.changes_since(before) == []
