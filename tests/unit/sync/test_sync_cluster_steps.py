"""The pure steps of libcluster.sync.cluster, one by one: what compute() and apply() are made of.

Objects are shaped as the bulk reads return them (sync_fakes); no step makes a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from libcluster.sync import addresses
from libcluster.sync import cluster as sc
from libcluster.sync.cluster import AddressIndex, GanetiState, NetBoxState, Row, VMPlan
from tests.unit.sync.sync_fakes import cluster, iface, instance, ip, settings, vm

A, B = cluster(1, "A"), cluster(2, "B")
GROUPS = {"A": ["node1.lab.example"], "B": ["node3.lab.example"]}


def state(vms: Sequence[dict[str, Any]] = (), ifaces: Sequence[dict[str, Any]] = (),
          ips: Sequence[dict[str, Any]] = ()) -> NetBoxState:
    by_vm: dict[int, list[dict[str, Any]]] = {}
    for item in ifaces:
        by_vm.setdefault(item["virtual_machine"]["id"], []).append(item)
    return NetBoxState(group={"id": 1, "name": "lab"}, clusters={"A": A, "B": B}, devices={}, vms=list(vms),
                       interfaces=by_vm, ips=list(ips))


def plan_of(name: str, record: dict[str, Any] | None = None, **fields: Any) -> VMPlan:
    return VMPlan(instance=instance(name, **fields), group="A", cluster="A", vm=record)


# --- compute's steps --------------------------------------------------------------------------------------------

def test_wanted_clusters_map_groups_through_their_setting_or_by_name() -> None:
    ganeti = GanetiState({"A": [], "B": [], "C": []}, [])
    mapped = settings({"A": (), "B": ()})
    mapped.groups["B"] = replace(mapped.groups["B"], netbox_cluster="bee")
    assert sc.wanted_clusters(ganeti, mapped) == {"A": "A", "B": "bee", "C": "C"}


def test_cluster_rows_create_the_missing_and_report_the_unmapped() -> None:
    new, rows = sc.cluster_rows({"A": "A", "C": "cee"}, ["A", "old", "B"])
    assert new == {"cee": "C"}
    assert rows == [Row("create", "cluster", "cee", "node group C"),
                    Row("extra", "cluster", "B", "no node group maps to it (left as is)"),
                    Row("extra", "cluster", "old", "no node group maps to it (left as is)")]
    assert sc.cluster_rows({"A": "A"}, ["A"]) == ({}, [])


def test_index_addresses_by_owner_loose_name_and_ip() -> None:
    record = vm(5, "vm5.lab.example", A)
    nic = iface(50, record)
    mine = ip(1, "198.51.100.5/26", dns_name="vm5.lab.example", iface_obj=nic)
    loose = ip(2, "198.51.100.6/26", dns_name="vm6.lab.example")
    nameless = ip(3, "198.51.100.7/26")
    index = sc.index_addresses(state([record], [nic], [mine, loose, nameless]))
    assert index.owned == {5: [mine]}
    assert index.loose == {"vm6.lab.example": [loose]}
    assert index.taken == {"198.51.100.5": mine, "198.51.100.6": loose, "198.51.100.7": nameless}


def test_pick_vm_prefers_the_one_in_the_instances_cluster() -> None:
    in_b, in_a = vm(1, "x", B), vm(2, "x", A)
    assert sc.pick_vm([in_b, in_a], "A") == (in_a, [in_b])
    assert sc.pick_vm([in_b], "A") == (in_b, [])
    assert sc.pick_vm([], "A") == (None, [])


def test_skipped_row_says_why_an_instance_is_left_alone() -> None:
    item = instance("vm1.lab.example", pnode="lost.lab.example")
    assert sc.skipped_row(item, None) == Row("missing", "vm", "vm1.lab.example",
                                             "primary node lost.lab.example is in no node group (skipped)")
    busy = sc.skipped_row(item, "A")
    assert (busy.action, busy.kind, busy.name) == ("busy", "vm", "vm1.lab.example") and "(left alone)" in busy.change


def test_extra_rows_are_deletions_only_when_asked_and_in_name_order() -> None:
    extra = [vm(2, "b.lab.example", A), vm(1, "a.lab.example", B)]
    assert [(r.action, r.name) for r in sc.extra_rows(extra, delete=True)] == [
        ("delete", "a.lab.example"), ("delete", "b.lab.example")]
    assert sc.extra_rows(extra[:1], delete=False) == [
        Row("extra", "vm", "b.lab.example", "in cluster A, not in Ganeti (--delete removes it)")]


def test_addressless_names_vms_without_primary_and_instances_without_vm() -> None:
    vms = [vm(1, "has.lab.example", A, primary4={"id": 9}), vm(2, "bare.lab.example", A)]
    ganeti = GanetiState(GROUPS, [instance("has.lab.example"), instance("new.lab.example")])
    assert sc.addressless(vms, ganeti) == ([2], {"new.lab.example"})


# --- _plan_vm's steps -------------------------------------------------------------------------------------------

def test_record_rows_create_a_missing_vm_with_its_fields() -> None:
    item = plan_of("vm1.lab.example", memory=2048, vcpus=2)
    assert sc.record_rows(item, state()) == [
        Row("create", "vm", "vm1.lab.example", "cluster A, 2 vCPU, memory 2048 MB, disk 1024 MB, active")]
    assert item.changes == {} and item.interfaces == {}


def test_record_rows_update_only_what_differs_and_keep_the_interfaces() -> None:
    record = vm(1, "vm1.lab.example", A, memory=1024)
    nic = iface(10, record)
    item = plan_of("vm1.lab.example", record, memory=4096)
    assert sc.record_rows(item, state([record], [nic])) == [
        Row("update", "vm", "vm1.lab.example", "memory 1024 -> 4096")]
    assert item.changes == {"memory": 4096} and item.interfaces == {"eth0": nic}
    same = plan_of("vm1.lab.example", record)
    assert sc.record_rows(same, state([record], [nic])) == [] and same.changes == {}


def test_nic_rows_create_missing_interfaces_and_set_differing_macs() -> None:
    record = vm(1, "vm1.lab.example", A)
    item = plan_of("vm1.lab.example", record, macs=["aa:00:00:00:00:01", "aa:00:00:00:00:02"])
    item.interfaces = {"eth0": iface(10, record, mac="AA:00:00:00:00:09")}
    assert sc.nic_rows(item) == [
        Row("update", "interface", "vm1.lab.example eth0", "MAC AA:00:00:00:00:09 -> aa:00:00:00:00:01"),
        Row("create", "interface", "vm1.lab.example eth1", "MAC aa:00:00:00:00:02")]
    assert item.new_interfaces == ["eth1"]
    assert item.macs == {"eth0": "aa:00:00:00:00:01", "eth1": "aa:00:00:00:00:02"}
    same = plan_of("vm1.lab.example", record)
    same.interfaces = {"eth0": iface(10, record, mac="AA:00:00:00:00:01")}  # case aside, the same MAC
    assert sc.nic_rows(same) == [] and same.macs == {}
    assert sc.mac_differs(iface(1, record, mac=None), "aa:00:00:00:00:01")


def test_address_rows_assign_a_free_named_address_refuse_a_taken_one_and_create_the_rest() -> None:
    item = plan_of("vm1.lab.example")
    free = ip(1, "198.51.100.1/26", dns_name="vm1.lab.example")
    held = ip(2, "198.51.100.2/26", dns_name="other.lab.example")
    wanted = [addresses.AddressRequest("vm1.lab.example", "198.51.100.1/26"),
              addresses.AddressRequest("vm1.lab.example", "198.51.100.2/26"),
              addresses.AddressRequest("vm1.lab.example", None, ("2001:db8:a::/64",))]
    rows = sc.address_rows(item, wanted, {"198.51.100.1": free, "198.51.100.2": held})
    assert rows == [Row("conflict", "ip-address", "vm1.lab.example", "Ganeti NIC IP 198.51.100.2/26 is already "
                        "other.lab.example in NetBox (not taken)")]
    assert item.assign == [free] and item.requests == [wanted[2]]
    assert sc.address_rows(plan_of("vm2.lab.example"), [], {}) == [
        Row("missing", "ip-address", "vm2.lab.example", addresses.NO_ADDRESS)]


def test_allocation_rows_name_assignments_creations_and_what_the_nic_carries() -> None:
    item = plan_of("vm1.lab.example")
    item.assign = [ip(1, "198.51.100.1/26", dns_name="vm1.lab.example")]
    item.requests = [addresses.AddressRequest("vm1.lab.example", None, ("198.51.100.0/26",)),
                     addresses.AddressRequest("vm1.lab.example", None, ("2001:db8:a::/64",))]
    assert sc.allocation_rows(item) == [
        Row("update", "ip-address", "198.51.100.1/26", "assign to vm1.lab.example"),
        Row("create", "ip-address", "vm1.lab.example", "next free of 198.51.100.0/26"),
        Row("create", "ip-address", "vm1.lab.example", "next free of 2001:db8:a::/64"),
        Row("update", "ganeti-nic", "vm1.lab.example", "NIC 0 ip -> the IPv4 address allocated"),
        Row("uncarried", "ganeti-nic", "vm1.lab.example",
            f"the IPv6 address of next free of 2001:db8:a::/64 {addresses.NOT_CARRIED}")]
    given = plan_of("vm2.lab.example")
    given.requests = [addresses.AddressRequest("vm2.lab.example", "198.51.100.9/26")]
    assert [row.action for row in sc.allocation_rows(given)] == ["create"]  # a given address: the NIC has it


def test_primary_rows_set_the_owned_address_as_primary_only_when_missing() -> None:
    record = vm(1, "vm1.lab.example", A)
    item = plan_of("vm1.lab.example", record)
    item.owned = [ip(7, "198.51.100.7/26", dns_name="vm1.lab.example")]
    assert sc.primary_rows(item) == [Row("update", "vm", "vm1.lab.example", "primary_ip4 - -> 198.51.100.7/26")]
    kept = plan_of("vm1.lab.example", vm(1, "vm1.lab.example", A, primary4={"id": 7}))
    kept.owned = item.owned
    assert sc.primary_rows(kept) == [] and sc.primary_rows(plan_of("vm3.lab.example")) == []
    assert sc.has_primary(kept.vm) and not sc.has_primary(record) and not sc.has_primary(None)


# --- apply's steps ----------------------------------------------------------------------------------------------

def test_device_updates_move_devices_to_the_cluster_ids() -> None:
    devices = [({"id": 1, "name": "n1"}, "A"), ({"id": 2, "name": "n2"}, None), ({"id": 3, "name": "n3"}, "new")]
    assert sc.device_updates(devices, {"A": A, "new": {"name": "new", "id": None}}) == [
        {"id": 1, "cluster": 1}, {"id": 2, "cluster": None}, {"id": 3, "cluster": None}]


def test_vm_updates_give_new_items_their_vm_and_recompute_changes_with_cluster_ids() -> None:
    record = vm(1, "old.lab.example", A, memory=1024)
    new, changed, same = plan_of("new.lab.example"), plan_of("old.lab.example", record, memory=2048), \
        plan_of("same.lab.example", vm(2, "same.lab.example", A))
    changed.changes = {"memory": 2048, "cluster": 0}  # planned while its cluster had no id yet
    created = {"id": 9, "name": "new.lab.example"}
    assert sc.vm_updates([new, changed, same], [created], {"A": A}) == [{"id": 1, "memory": 2048}]
    assert new.vm is created and same.changes == {}


def test_mac_updates_skip_equal_macs_and_interfaces_without_id() -> None:
    record = vm(1, "vm1.lab.example", A)
    item = plan_of("vm1.lab.example", record, macs=["aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03"])
    item.macs = {"eth0": "aa:00:00:00:00:01", "eth1": "aa:00:00:00:00:02", "eth2": "aa:00:00:00:00:03"}
    item.interfaces = {"eth0": iface(10, record, mac="aa:00:00:00:00:01"), "eth1": iface(11, record, mac=None),
                       "eth2": {"id": None, "name": "eth2"}}  # eth2: created in a dry-run
    assert sc.mac_updates([item]) == {11: "aa:00:00:00:00:02"}


def test_primary_updates_use_owned_assigned_and_given_addresses_with_an_id() -> None:
    record = vm(1, "vm1.lab.example", A)
    item = plan_of("vm1.lab.example", record)
    given: dict[str, list[dict[str, Any]]] = {"vm1.lab.example": [{"id": None, "address": "198.51.100.3/26"},
                                 {"id": 8, "address": "2001:db8:a::8/64"}]}
    item.assign = [ip(4, "198.51.100.4/26", dns_name="vm1.lab.example")]
    assert sc.primary_updates([item], given) == [{"id": 1, "primary_ip4": 4, "primary_ip6": 8}]
    assert sc.primary_updates([plan_of("vm2.lab.example")], {}) == []  # no VM (dry-run create): nothing


def test_extra_addresses_are_those_on_the_extra_vms_interfaces() -> None:
    gone, kept = vm(1, "gone.lab.example", A), vm(2, "kept.lab.example", A)
    on_gone, on_kept = ip(1, "198.51.100.1/26", iface_obj=iface(10, gone)), ip(2, "198.51.100.2/26",
                                                                                 iface_obj=iface(20, kept))
    plan = sc.Plan(state=state([gone, kept], [iface(10, gone), iface(20, kept)], [on_gone, on_kept]), extra=[gone])
    assert sc.extra_addresses(plan) == [on_gone]


def test_address_index_is_empty_without_addresses() -> None:
    assert sc.index_addresses(state()) == AddressIndex(owned={}, loose={}, taken={})
