"""libcluster.sync.instance: one instance followed into NetBox (through sync.vm's record) and its DNS records.

NetBox is an in-memory double answering the one-VM reads; the DNS publication is recorded instead of sent
(sync.dns.publish is the makevm-tested path); Ganeti answers from a dict of RAPI-shaped instances.
"""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rdatatype
import pytest
from tests.unit.sync.sync_fakes import StoredNetBox, iface, instance, ip, settings, vm

from libcluster.dns import Diff, DNSError, Zones
from libcluster.ganeti import Group, Instance, RapiNotFoundError
from libcluster.netbox import NetBoxError
from libcluster.sync import addresses
from libcluster.sync import instance as sync_instance
from libcluster.sync.cluster import SyncSettings
from libcluster.sync.instance import Follower
from libcluster.sync.netbox_dns import DNSSyncSettings

GROUPS = [Group.from_rapi({"name": "A", "uuid": "uuid-a", "node_list": ["node1.lab.example", "node2.lab.example"]}),
          Group.from_rapi({"name": "B", "uuid": "uuid-b", "node_list": ["node3.lab.example"]}),
          Group.from_rapi({"name": "C", "uuid": "uuid-c", "node_list": ["node4.lab.example"]})]


class Ganeti:
    """The RAPI reads a Follower makes, and the NIC changes it asks for (recorded)."""

    def __init__(self, *instances: dict[str, Any]) -> None:
        self.instances = {i["name"]: i for i in instances}
        self.modified: list[tuple[str, list[Any]]] = []

    def modify_instance(self, name: str, *, nics: list[Any]) -> Any:
        self.modified.append((name, nics))
        return type("Done", (), {"wait": lambda self: None})()

    def instance(self, name: str) -> Instance:
        if name not in self.instances:
            raise RapiNotFoundError("GET", f"/2/instances/{name}", 404, "not found")
        return Instance.from_rapi(self.instances[name])

    def groups(self) -> list[Group]:
        return GROUPS


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], bool]]:
    """(name, addresses, whether NetBox accounted for the name's records) of every DNS publication, in order."""
    calls: list[tuple[str, list[str], bool]] = []

    def publish(client: Any, name: str, addresses: list[str], *, owns: Any) -> Diff:
        calls.append((name, list(addresses), owns(dns.name.from_text(name), dns.rdatatype.A, [])))
        return Diff()

    monkeypatch.setattr(sync_instance.sync_dns, "publish", publish)
    return calls


class Client:
    """What a Follower asks its DNS client itself (publish is stood in for); host_diff only reports (nothing found)."""

    zones = Zones(["lab.example", "100.51.198.in-addr.arpa"])

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def host_diff(self, fqdn: str, addresses: list[str], *, owns: Any) -> Diff:
        self.asked.append((fqdn, list(addresses)))
        return Diff()


def follower(netbox: StoredNetBox, ganeti: Ganeti, **sync: Any) -> Follower:
    return Follower(netbox, Client(), ganeti, settings(), SyncSettings(**sync),  # type: ignore[arg-type]
                    DNSSyncSettings())


def test_a_hand_made_instance_is_recorded_with_allocated_addresses_and_published(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = StoredNetBox(free={"198.51.100.0/26": 5, "2001:db8:a::/64": 5})
    ganeti = Ganeti(instance("new.lab.example", memory=512, vcpus=2))
    done = follower(netbox, ganeti, allocate_ips=True).follow("new.lab.example", delete=True)
    [record] = netbox.objects("vm", name="new.lab.example")
    assert (record["cluster"]["name"], record["memory"], record["vcpus"], record["status"]) == (
        "A", 512, 2, {"value": "active"})
    [nic] = netbox.objects("vm-interface", virtual_machine_id=record["id"])
    assert nic["mac_address"] == "aa:00:00:00:00:01"
    ips = netbox.objects("ip-address", dns_name="new.lab.example")
    assert sorted(str(i["address"]) for i in ips) == ["198.51.100.1/26", "2001:db8:a::1/64"]
    assert {i["assigned_object_id"] for i in ips} == {nic["id"]}
    assert (record["primary_ip4"]["address"], record["primary_ip6"]["address"]) == ("198.51.100.1/26",
                                                                                  "2001:db8:a::1/64")
    assert published == [("new.lab.example", ["198.51.100.1", "2001:db8:a::1"], False)]
    assert ganeti.modified == [("new.lab.example", [["modify", 0, {"ip": "198.51.100.1"}]])]
    assert [(row.action, row.change) for row in done.rows] == [
        ("create", "198.51.100.1/26"), ("create", "2001:db8:a::1/64"),
        ("update", "NIC 0 ip -> 198.51.100.1 (allocated in NetBox)"),
        ("uncarried", f"2001:db8:a::1/64 {addresses.NOT_CARRIED}"), ("write", "vm-create"),
        ("write", "vm-interface-create x1"), ("write", "ip-address-update x2"),
        ("write", "vm-update primary_ip4,primary_ip6")]
    netbox.calls.clear()
    again = follower(netbox, Ganeti(instance("new.lab.example", memory=512, vcpus=2))).follow("new.lab.example",
                                                                                             delete=True)
    assert netbox.writes() == []
    assert published[-1] == ("new.lab.example", ["198.51.100.1", "2001:db8:a::1"], True)
    assert [(row.action, row.change) for row in again.rows] == [
        ("differs", "NIC 0 ip is unset in Ganeti, NetBox gives 198.51.100.1 (left as is)")]


def test_a_later_run_carries_the_netbox_ipv4_to_a_nic_without_ip_when_allocating_and_reports_a_different_nic_ip(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = netbox_with_vm("later.lab.example")
    bare = Ganeti(instance("later.lab.example"))
    done = follower(netbox, bare, allocate_ips=True).follow("later.lab.example", delete=False)
    assert bare.modified == [("later.lab.example", [["modify", 0, {"ip": "198.51.100.9"}]])]
    assert ("update", "NIC 0 ip -> 198.51.100.9 (as in NetBox)") in [(row.action, row.change) for row in done.rows]
    other = Ganeti(instance("later.lab.example", ips=["198.51.100.20"]))
    done = follower(netbox, other, allocate_ips=True).follow("later.lab.example", delete=False)
    assert other.modified == []
    assert ("differs", "NIC 0 ip is 198.51.100.20 in Ganeti, NetBox gives 198.51.100.9 (left as is)") in [
        (row.action, row.change) for row in done.rows]
    assert published[-1] == ("later.lab.example", ["198.51.100.9"], True)


def test_a_hand_made_instance_without_nic_ip_is_recorded_without_address_unless_allocating(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = StoredNetBox(free={"198.51.100.0/26": 5, "2001:db8:a::/64": 5})
    ganeti = Ganeti(instance("bare.lab.example"))
    done = follower(netbox, ganeti).follow("bare.lab.example", delete=True)
    assert netbox.objects("vm", name="bare.lab.example") and netbox.objects("ip-address") == []
    assert ganeti.modified == [] and netbox.writes("allocate") == []
    assert ("missing", addresses.NO_ADDRESS) in [(row.action, row.change) for row in done.rows]
    assert published == [("bare.lab.example", [], False)]


def test_a_name_in_neither_ganeti_nor_netbox_changes_nothing_and_says_so(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = StoredNetBox()
    netbox.add("ip-address", ip(900, "198.51.100.31/26", dns_name="nobody.lab.example"))
    following = follower(netbox, Ganeti())
    done = following.follow("nobody.lab.example", delete=True)
    assert [(row.action, row.change) for row in done.rows] == [
        ("nothing", "in neither Ganeti nor NetBox cluster group lab: nothing changed")]
    assert netbox.writes() == [] and published == []
    assert following.dns.asked == [("nobody.lab.example", [])]  # type: ignore[attr-defined]


@pytest.mark.parametrize("renamed", [False, True])
def test_a_failed_dns_update_of_a_deleted_or_renamed_vm_leaves_netbox_as_it_was_for_the_retry(
        monkeypatch: pytest.MonkeyPatch, renamed: bool) -> None:
    netbox = netbox_with_vm("old.lab.example")

    def publish(client: Any, name: str, addresses: list[str], *, owns: Any) -> Diff:
        raise DNSError("UPDATE lab.example: not authorized")

    monkeypatch.setattr(sync_instance.sync_dns, "publish", publish)
    ganeti = Ganeti(instance("new.lab.example")) if renamed else Ganeti()
    with pytest.raises(DNSError):
        if renamed:
            follower(netbox, ganeti).follow("new.lab.example", delete=True, renamed_from="old.lab.example")
        else:
            follower(netbox, ganeti).follow("old.lab.example", delete=True)
    assert netbox.writes() == []
    assert [vm["id"] for vm in netbox.objects("vm", name="old.lab.example")] == [10]
    assert netbox.store["ip-address"][12]["dns_name"] == "old.lab.example"


def test_the_ganeti_nic_ip_is_taken_when_free_and_refused_when_netbox_gives_it_to_another(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = StoredNetBox()
    follower(netbox, Ganeti(instance("nic.lab.example", ips=["198.51.100.30"]))).follow("nic.lab.example",
                                                                                         delete=False)
    assert [str(i["address"]) for i in netbox.objects("ip-address", dns_name="nic.lab.example")] == [
        "198.51.100.30/26"]
    netbox.add("ip-address", ip(900, "198.51.100.31/26", dns_name="other.lab.example"))
    done = follower(netbox, Ganeti(instance("clash.lab.example", ips=["198.51.100.31"]))).follow(
        "clash.lab.example", delete=False)
    assert [(row.action, row.change) for row in done.rows if row.action == "conflict"] == [
        ("conflict", "Ganeti NIC IP 198.51.100.31/26 is already other.lab.example in NetBox (not taken)")]
    assert netbox.objects("ip-address", dns_name="clash.lab.example") == []


def netbox_with_vm(name: str) -> StoredNetBox:
    """NetBox holding VM 10 called name in cluster lab, with interface 11 and on it address 12 (198.51.100.9/26)."""
    netbox = StoredNetBox()
    record = netbox.add("vm", vm(10, name, netbox.store["cluster"][1]))
    nic = netbox.add("vm-interface", iface(11, record))
    netbox.add("ip-address", ip(12, "198.51.100.9/26", dns_name=name, iface_obj=nic))
    return netbox


def test_a_removed_instance_is_reported_and_only_deleted_with_delete(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = netbox_with_vm("gone.lab.example")
    kept = follower(netbox, Ganeti()).follow("gone.lab.example", delete=False)
    assert [(row.action, row.name) for row in kept.rows] == [("extra", "gone.lab.example")]
    assert netbox.writes() == [] and published == []
    done = follower(netbox, Ganeti(), release_ips=False).follow("gone.lab.example", delete=True)
    assert [(row.action, row.change) for row in done.rows] == [
        ("delete", "not in Ganeti; 1 address(es) kept (reserved)")]
    assert netbox.objects("vm", name="gone.lab.example") == []
    assert netbox.store["ip-address"][12]["status"] == "reserved" and netbox.store["ip-address"][12]["dns_name"] == ""
    assert published == [("gone.lab.example", [], True)]


def test_a_renamed_instance_keeps_its_netbox_vm_and_addresses(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = StoredNetBox()
    address = netbox.add("ip-address", ip(12, "198.51.100.9/26", dns_name="old.lab.example"))
    record = netbox.add("vm", vm(10, "old.lab.example", netbox.store["cluster"][1], primary4={"id": 12}))
    nic = netbox.add("vm-interface", iface(11, record))
    netbox.store["ip-address"][12] = ip(12, address["address"], dns_name="old.lab.example", iface_obj=nic)
    follower(netbox, Ganeti(instance("new.lab.example"))).follow("new.lab.example", delete=True,
                                                                  renamed_from="old.lab.example")
    [renamed] = netbox.objects("vm", name="new.lab.example")
    assert renamed["id"] == 10 and netbox.objects("vm", name="old.lab.example") == []
    assert netbox.store["ip-address"][12]["dns_name"] == "new.lab.example"
    assert published == [("old.lab.example", [], True), ("new.lab.example", ["198.51.100.9"], False)]


def test_a_group_without_netbox_cluster_asks_for_a_cluster_wide_sync(
        published: list[tuple[str, list[str], bool]]) -> None:
    with pytest.raises(NetBoxError, match="node group C has no NetBox cluster C .* run sync-netbox on the whole"):
        follower(StoredNetBox(), Ganeti(instance("c.lab.example", pnode="node4.lab.example"))).follow(
            "c.lab.example", delete=True)


def test_a_rename_from_an_instance_ganeti_still_has_changes_nothing_of_it(
        published: list[tuple[str, list[str], bool]]) -> None:
    netbox = netbox_with_vm("live.lab.example")
    ganeti = Ganeti(instance("live.lab.example"), instance("other.lab.example", ips=["198.51.100.10"]))
    done = follower(netbox, ganeti).follow("other.lab.example", delete=True, renamed_from="live.lab.example")
    assert ("refused", "live.lab.example") in [(row.action, row.name) for row in done.rows]
    assert [vm["id"] for vm in netbox.objects("vm", name="live.lab.example")] == [10]
    assert netbox.store["ip-address"][12]["dns_name"] == "live.lab.example"
    assert [name for name, _, _ in published] == ["other.lab.example"]
