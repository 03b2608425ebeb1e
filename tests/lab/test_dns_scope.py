"""Scope on the real lab: DNS records NetBox does not account for, zone apexes and name servers are never
changed by sre.ganeti.sync-netbox (one VM, as the hooks agent runs it, and whole cluster) or sre.dns.netbox;
a name in neither Ganeti nor NetBox changes nothing; a hand-made instance without NIC IP is recorded without
address unless sync.allocate_ips, and then its Ganeti NIC carries the allocated address. Dry-runs change
nothing (Ganeti, NetBox and DNS compared before and after).

Names are `t-<random>-*.lab.example`; the sync runs are limited to them (--vm, --match) and sre.dns.netbox
to them and the test's addresses (dns.netbox scope), since other helpers use the same lab at the same time.
Everything the tests make is removed at the end, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import pytest
from tests.lab import dns_scope_lab
from tests.lab.cookbook_lab import remove_test_instance, run_cookbook

from libcluster.dns.diff import compute
from libcluster.dns.protection import owns_everything
from libcluster.ganeti import RapiNotFoundError
from cookbook_lab import topology

NS = "ns1.lab.example"
"""The lab zones' name server (apex NS of every lab zone)."""


class Env(dns_scope_lab.Env):
    """The scope tests' environment, with the records and states they compare."""

    def dns_scoped(self, *names: str) -> Path:
        """A configuration whose sre.dns.netbox owns only the test's names (and names given) and addresses."""
        dns_section = {**self.raw["dns"], "netbox": {
            "names": [f"{self.token}-*.{topology.DOMAIN}", *names],
            "networks": [f"{address}/32" for address in self.free], "max_changes": 20, "max_percent": 0}}
        return self.config("dns-scoped", dns=dns_section)

    def records(self, *names: str) -> dict[str, list[str]]:
        """What the server answers for names (A, AAAA) and for the test's addresses (PTR)."""
        found = {}
        for name in names:
            for rdtype in ("A", "AAAA"):
                found[f"{name} {rdtype}"] = self.dns.resolve(name, rdtype)
        for address in self.free:
            found[f"{address} PTR"] = self.dns.resolve(dns.reversename.from_address(address).to_text(), "PTR")
        return found

    def netbox_state(self, *names: str) -> dict[str, Any]:
        """The NetBox VMs and addresses of names."""
        return {name: (sorted(str(vm["id"]) for vm in self.netbox.objects("vm", name=name)),
                       sorted(str(ip["address"]) for ip in self.netbox.objects("ip-address", dns_name=name)))
                for name in names}

    def ganeti_state(self, *names: str) -> dict[str, Any]:
        """Ganeti's NIC IPs of names (None when there is no such instance)."""
        found: dict[str, Any] = {}
        for name in names:
            try:
                found[name] = self.ganeti.instance(name).get("nic.ips")
            except RapiNotFoundError:
                found[name] = None
        return found


@pytest.fixture(scope="module")
def env(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The test's configuration and clients; its names removed from Ganeti, NetBox and DNS at the end."""
    base = dns_scope_lab.make_env(lab, lab_config, tmp_path_factory.mktemp("scope"),
                                  ("ganeti", "netbox", "dns", "etcd"), addresses=3)
    environment = Env(**vars(base))
    try:
        yield environment
    finally:
        for role in ("handmade", "gone", "owned", "bare", "alloc"):
            remove_test_instance(environment.ganeti, environment.netbox, environment.name(role))
            environment.dns.remove_host(environment.name(role), owns=owns_everything)
        for address in environment.free:
            environment.clear(address=address)


def sync(env: Env, *args: str, config: Path | None = None, dry_run: bool = False) -> Any:
    """sre.ganeti.sync-netbox on the lab cluster as the agent (--vm) or an operator (--match) runs it."""
    return run_cookbook(config or env.config(), "sre.ganeti.sync-netbox", "--cluster", topology.CLUSTER, *args,
                        dry_run=dry_run)


def test_a_hand_made_record_of_a_name_unknown_to_ganeti_and_netbox_is_kept_and_reported_a_deleted_vm_takes_its_own(
        env: Env) -> None:
    name = env.name("handmade")
    env.put([(name, env.free[0])])
    before = (env.records(name), env.netbox_state(name), env.ganeti_state(name))
    assert before[0][f"{name} A"] == [env.free[0]]

    for dry_run in (True, False):
        done = sync(env, "--vm", name, "--delete", dry_run=dry_run)
        assert done.returncode == 0, done.stderr
        assert (env.records(name), env.netbox_state(name), env.ganeti_state(name)) == before
        assert done.audit is not None and done.audit["changes"] == []
        output = " ".join(done.stderr.split())
        assert f"nothing vm {name} in neither Ganeti nor NetBox cluster group lab: nothing changed" in output
        assert f"kept rrset {name}. {name}. A: the server has {env.free[0]}, NetBox gives nothing; left as is" in \
            output
        assert "DNS record not ours, left as is" in done.stderr

    gone = env.name("gone")
    cluster = env.netbox.get("cluster", name="A", group_id=env.netbox.get("cluster-group", name="lab")["id"])
    [vm] = env.netbox.create("vm", [{"name": gone, "cluster": cluster["id"], "status": "active"}])
    [iface] = env.netbox.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
    env.netbox.create("ip-address", [{"address": f"{env.free[1]}/24", "dns_name": gone, "status": "active",
                                      "assigned_object_type": "virtualization.vminterface",
                                      "assigned_object_id": iface["id"]}])
    env.put([(gone, env.free[1])])
    both = (env.records(name, gone), env.netbox_state(name, gone))
    dry = sync(env, "--match", f"{env.token}-*", "--delete", dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert (env.records(name, gone), env.netbox_state(name, gone)) == both
    whole = sync(env, "--match", f"{env.token}-*", "--delete")
    assert whole.returncode == 0, whole.stderr
    after = env.records(name, gone)
    assert after[f"{gone} A"] == [] and after[f"{env.free[1]} PTR"] == []
    assert {key: value for key, value in after.items() if gone not in key and env.free[1] not in key} == \
        {key: value for key, value in before[0].items() if env.free[1] not in key}
    assert env.netbox_state(gone) == {gone: ([], [])}


def test_dns_netbox_changes_what_netbox_accounts_for_and_keeps_hand_made_apex_and_name_server_records(
        env: Env) -> None:
    handmade, owned = env.name("handmade"), env.name("owned")
    env.put([(handmade, env.free[0]), (owned, env.free[2])])
    cluster = env.netbox.get("cluster", name="A", group_id=env.netbox.get("cluster-group", name="lab")["id"])
    [vm] = env.netbox.create("vm", [{"name": owned, "cluster": cluster["id"], "status": "active"}])
    [iface] = env.netbox.create("vm-interface", [{"virtual_machine": vm["id"], "name": "eth0"}])
    assigned = {"assigned_object_type": "virtualization.vminterface", "assigned_object_id": iface["id"],
                "status": "active"}
    ips = env.netbox.create("ip-address", [
        {"address": f"{env.free[1]}/24", "dns_name": owned, **assigned},
        {"address": "198.18.16.253/24", "dns_name": topology.DOMAIN, **assigned},
        {"address": "198.18.16.254/24", "dns_name": NS, **assigned},
    ])
    try:
        config = env.dns_scoped(topology.DOMAIN, NS)
        names = (handmade, owned, topology.DOMAIN, NS)
        drifted = env.records(*names)
        assert drifted[f"{owned} A"] == [env.free[2]] and drifted[f"{handmade} A"] == [env.free[0]]

        dry = run_cookbook(config, "sre.dns.netbox", dry_run=True)
        assert dry.returncode == 0, dry.stderr
        assert env.records(*names) == drifted
        assert dry.audit is not None and all(change["dry_run"] for change in dry.audit["changes"])

        done = run_cookbook(config, "sre.dns.netbox")
        assert done.returncode == 0, done.stderr
        after = env.records(*names)
        assert after[f"{owned} A"] == [env.free[1]]
        assert after[f"{env.free[1]} PTR"] == [f"{owned}."]
        assert after[f"{env.free[2]} PTR"] == []
        assert after[f"{handmade} A"] == [env.free[0]] and after[f"{env.free[0]} PTR"] == [f"{handmade}."]
        assert after[f"{topology.DOMAIN} A"] == drifted[f"{topology.DOMAIN} A"] == []
        assert after[f"{NS} A"] == drifted[f"{NS} A"]
        output = " ".join(done.stderr.split())
        assert f"Not ours: {handmade}. A: the server has {env.free[0]}, NetBox gives nothing; left as is: NetBox " \
            "does not account for it" in output
        assert f"Not ours: {topology.DOMAIN}. A: the server has nothing, NetBox gives 198.18.16.253; left as is: " \
            "zone apex" in output
        assert f"Not ours: {NS}. A: the server has {' '.join(drifted[f'{NS} A'])}, NetBox gives 198.18.16.254; " \
            "left as is: address of a name server of the zone" in output
        assert {(c["action"], c["target"]) for c in done.audit["changes"]} == {
            ("record-replace", f"{owned}."),
            ("record-add", dns.reversename.from_address(env.free[1]).to_text()),
            ("record-delete", dns.reversename.from_address(env.free[2]).to_text()),
        }

        again = run_cookbook(config, "sre.dns.netbox")
        assert again.returncode == 0 and again.audit["changes"] == []
        assert "rrsets not ours left as they are: nothing to change" in again.stderr
    finally:
        env.netbox.release_ips(ips)
        env.netbox.delete("vm", [vm])


def test_a_hand_made_instance_without_nic_ip_gets_no_address_unless_allocation_and_then_ganeti_carries_it(
        env: Env) -> None:
    bare, alloc = env.name("bare"), env.name("alloc")
    pnode = sorted(env.ganeti.group("A")["node_list"])[0]
    for name in (bare, alloc):
        env.ganeti.create_instance(name, disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1,
                                   pnode=pnode, name_check=False).wait(timeout=300)
    assert env.ganeti_state(bare, alloc) == {bare: [None], alloc: [None]}

    recorded = sync(env, "--match", f"{env.token}-*")
    assert recorded.returncode == 0, recorded.stderr
    output = " ".join(recorded.stderr.split())
    for name in (bare, alloc):
        assert f"missing ip-address {name} no address: the Ganeti NIC has no IP and sync.allocate_ips is false" in \
            output
    state = env.netbox_state(bare, alloc)
    assert all(len(vms) == 1 and ips == [] for vms, ips in state.values())
    assert env.ganeti_state(bare, alloc) == {bare: [None], alloc: [None]}

    allocating = env.config("allocating", sync={"allocate_ips": True})
    before = (env.netbox_state(alloc), env.ganeti_state(alloc), env.records(alloc))
    dry = sync(env, "--vm", alloc, config=allocating, dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert "ganeti-nic" in dry.stderr
    assert (env.netbox_state(alloc), env.ganeti_state(alloc), env.records(alloc)) == before

    done = sync(env, "--vm", alloc, config=allocating)
    assert done.returncode == 0, done.stderr
    [(vms, ips)] = env.netbox_state(alloc).values()
    ipv4 = [ip.split("/")[0] for ip in ips if ":" not in ip]
    assert len(ipv4) == 1
    assert env.ganeti_state(alloc) == {alloc: ipv4}
    assert env.dns.resolve(alloc, "A") == ipv4
    assert env.netbox_state(bare)[bare][1] == []

    before = (env.netbox_state(bare), env.ganeti_state(bare))
    assert sync(env, "--match", bare, config=allocating, dry_run=True).returncode == 0
    assert (env.netbox_state(bare), env.ganeti_state(bare)) == before
    whole = sync(env, "--match", bare, config=allocating)
    assert whole.returncode == 0, whole.stderr
    [(vms, ips)] = env.netbox_state(bare).values()
    ipv4 = [ip.split("/")[0] for ip in ips if ":" not in ip]
    assert len(ipv4) == 1 and env.ganeti_state(bare) == {bare: ipv4}


def test_one_host_changes_never_touch_the_zone_apex_or_its_name_server_on_the_real_server(env: Env) -> None:
    for name, reason in ((NS, "address of a name server of the zone"), (topology.DOMAIN, "zone apex")):
        before = env.records(name)
        diff = env.dns.set_host(name, [env.free[2]], owns=owns_everything)
        assert [(item.rrset.name.to_text(), item.reason) for item in diff.left] == [(f"{name}.", reason)]
        assert all(change.name.to_text() != f"{name}." for change in diff)
        assert env.records(name)[f"{name} A"] == before[f"{name} A"]
        env.dns.apply(compute({}, env.dns.current({(change.name, change.rdtype) for change in diff}), env.dns.zones,
                              scope={(change.name, change.rdtype) for change in diff}))
