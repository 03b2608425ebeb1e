"""libcluster.sync.cluster: the difference between Ganeti and NetBox (pure), and how apply() writes it (bulk).

States are built the way the bulk reads return them (RAPI bulk instances, NetBox objects limited to
the sync's fields); writes go to a NetBox double that records each client call.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from tests.unit.sync.sync_fakes import RecordingNetBox, cluster, iface, instance, ip, settings, vm

from libcluster.netbox import NetBoxFilterError
from libcluster.sync import addresses
from libcluster.sync import cluster as sync_cluster
from libcluster.sync.cluster import GanetiState, NetBoxState, SyncSettings

A, B = cluster(1, "A"), cluster(2, "B")
GROUPS = {"A": ["node1.lab.example", "node2.lab.example"], "B": ["node3.lab.example"]}
DEVICES = {node: {"id": index, "name": node, "cluster": {"id": c["id"], "name": c["name"]}}
           for index, (node, c) in enumerate([("node1.lab.example", A), ("node2.lab.example", A),
                                               ("node3.lab.example", B)], start=1)}
ALLOCATE = SyncSettings(allocate_ips=True)


class NicCarrier:
    """A Ganeti double recording NIC modifications (addresses.carry)."""

    def __init__(self) -> None:
        """Nothing modified yet."""
        self.modified: list[tuple[str, list[Any]]] = []

    def modify_instance(self, name: str, *, nics: list[Any]) -> Any:
        """Record the change; the returned job is done at once."""
        self.modified.append((name, nics))
        return type("Done", (), {"wait": lambda self: None})()


def state(vms: list[dict[str, Any]], ifaces: list[dict[str, Any]] = (), ips: list[dict[str, Any]] = (),
          devices: dict[str, dict[str, Any]] | None = None, clusters: tuple[dict[str, Any], ...] = (A, B)
          ) -> NetBoxState:
    by_vm: dict[int, list[dict[str, Any]]] = {}
    for item in ifaces:
        by_vm.setdefault(item["virtual_machine"]["id"], []).append(item)
    return NetBoxState(group={"id": 1, "name": "lab"}, clusters={c["name"]: c for c in clusters},
                       devices=DEVICES if devices is None else devices, vms=vms, interfaces=by_vm, ips=list(ips))


def in_sync(name: str, vm_id: int, memory: int = 1024, status: str = "active", mac: str = "aa:00:00:00:00:01"
            ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A VM recorded as the sync would: its interface with the MAC, an address that is its primary."""
    address = ip(vm_id * 10, f"198.51.100.{vm_id}/26", dns_name=name)
    record = vm(vm_id, name, A, memory=memory, status=status, primary4={"id": address["id"]})
    nic = iface(vm_id * 100, record, mac=mac)
    return record, nic, ip(address["id"], address["address"], dns_name=name, iface_obj=nic)


def test_a_cluster_in_sync_has_no_difference_and_apply_writes_nothing() -> None:
    records = [in_sync(f"vm{n}.lab.example", n) for n in range(1, 4)]
    ganeti = GanetiState(GROUPS, [instance(f"vm{n}.lab.example") for n in range(1, 4)])
    current = state([r[0] for r in records], [r[1] for r in records], [r[2] for r in records])
    plan = sync_cluster.compute(ganeti, current, settings(), SyncSettings())
    assert plan.rows == []
    assert plan.table() == "NetBox matches Ganeti: nothing to change."
    netbox = RecordingNetBox()
    applied = sync_cluster.apply(netbox, plan, SyncSettings(), delete=True)
    assert netbox.writes() == [] and applied.counts == {}


def test_each_kind_of_drift_gives_exactly_its_rows() -> None:
    kept, memory, status, extra = (in_sync(f"{n}.lab.example", i) for i, n in enumerate(
        ["kept", "memory", "status", "extra"], start=1))
    ganeti = GanetiState(GROUPS, [
        instance("kept.lab.example"),
        instance("memory.lab.example", memory=2048),
        instance("status.lab.example", admin_state="down", status="ADMIN_down"),
        instance("missing.lab.example", pnode="node3.lab.example", macs=["aa:00:00:00:00:09"]),
    ])
    current = state([r[0] for r in (kept, memory, status, extra)], [r[1] for r in (kept, memory, status, extra)],
                    [r[2] for r in (kept, memory, status, extra)])
    plan = sync_cluster.compute(ganeti, current, settings(), SyncSettings())
    rows = {(row.action, row.kind, row.name, row.change) for row in plan.rows}
    assert rows == {
        ("update", "vm", "memory.lab.example", "memory 1024 -> 2048"),
        ("update", "vm", "status.lab.example", "status active -> offline"),
        ("create", "vm", "missing.lab.example", "cluster B, 1 vCPU, memory 1024 MB, disk 1024 MB, active"),
        ("create", "interface", "missing.lab.example eth0", "MAC aa:00:00:00:00:09"),
        ("missing", "ip-address", "missing.lab.example", addresses.NO_ADDRESS),
        ("extra", "vm", "extra.lab.example", "in cluster A, not in Ganeti (--delete removes it)"),
    }
    assert [vm["name"] for vm in plan.extra] == ["extra.lab.example"]
    allocating = sync_cluster.compute(ganeti, current, settings(), ALLOCATE)
    assert {(row.action, row.kind, row.name, row.change) for row in allocating.rows} - rows == {
        ("create", "ip-address", "missing.lab.example", "next free of 198.51.100.64/26"),
        ("update", "ganeti-nic", "missing.lab.example", "NIC 0 ip -> the IPv4 address allocated")}


@pytest.mark.parametrize("version", [(4, 7), (4, 6)])
def test_apply_writes_each_kind_in_one_bulk_call_in_dependency_order(version: tuple[int, int]) -> None:
    names = [f"new{n}.lab.example" for n in range(5)]
    ganeti = GanetiState(GROUPS, [instance(name, macs=[f"aa:00:00:00:01:0{n}"]) for n, name in enumerate(names)])
    plan = sync_cluster.compute(ganeti, state([]), settings(), ALLOCATE)
    netbox = RecordingNetBox(free={"198.51.100.0/26": 60, "2001:db8:a::/64": 1000}, version=version)
    carrier = NicCarrier()
    applied = sync_cluster.apply(netbox, plan, ALLOCATE, delete=False, ganeti=carrier)  # type: ignore[arg-type]
    macs_apart = [("set_macs", "vm-interface")] if version < (4, 7) else []
    assert [(method, kind) for method, kind, _ in netbox.writes()] == [
        ("create", "vm"), ("create", "vm-interface"), *macs_apart,
        ("allocate", "198.51.100.0/26"), ("allocate", "2001:db8:a::/64"), ("update", "vm")]
    created_vms = netbox.writes("create")[0][2]
    assert [obj["name"] for obj in created_vms] == names and {obj["cluster"] for obj in created_vms} == {1}
    interfaces = netbox.writes("create")[1][2]
    assert [obj["name"] for obj in interfaces] == ["eth0"] * 5
    macs = [f"aa:00:00:00:01:0{n}" for n in range(5)]
    if version < (4, 7):
        assert sorted(netbox.writes("set_macs")[0][2].values()) == macs
    else:
        assert [obj["mac_address"] for obj in interfaces] == macs
    allocated = netbox.writes("allocate")[0][2]
    assert [a["dns_name"] for a in allocated] == names
    assert all(a["assigned_object_type"] == "virtualization.vminterface" for a in allocated)
    primaries = netbox.writes("update")[-1][2]
    assert len(primaries) == 5 and all({"primary_ip4", "primary_ip6"} <= set(p) for p in primaries)
    assert applied.counts == {"vm create": 5, "interface create": 5, "ip-address create": 10, "vm primary": 5,
                              "ganeti nic ip": 5, **({"mac set": 5} if macs_apart else {})}
    assert [name for name, _ in carrier.modified] == names
    assert all(nics[0][:2] == ["modify", 0] and ipaddress.ip_address(nics[0][2]["ip"]) in
               ipaddress.ip_network("198.51.100.0/26") for _, nics in carrier.modified)


def test_allocation_spreads_over_the_prefixes_by_their_free_addresses() -> None:
    prefixes = {"A": ("198.51.100.0/30", "198.51.100.8/29")}
    ganeti = GanetiState({"A": ["node1.lab.example"]}, [instance(f"v{n}.lab.example") for n in range(4)])
    plan = sync_cluster.compute(ganeti, state([], clusters=(A,), devices={}), settings(prefixes), ALLOCATE)
    netbox = RecordingNetBox(free={"198.51.100.0/30": 1, "198.51.100.8/29": 6})
    sync_cluster.apply(netbox, plan, ALLOCATE, delete=False)
    assert [(kind, len(sent)) for method, kind, sent in netbox.writes("allocate")] == [
        ("198.51.100.0/30", 1), ("198.51.100.8/29", 3)]


def test_a_ganeti_nic_ip_is_used_and_an_existing_loose_address_is_assigned_not_duplicated() -> None:
    loose = ip(40, "198.51.100.40/26", dns_name="loose.lab.example")
    taken = ip(41, "198.51.100.41/26", dns_name="other.lab.example")
    ganeti = GanetiState(GROUPS, [
        instance("nicip.lab.example", ips=["198.51.100.30"]),
        instance("loose.lab.example"),
        instance("clash.lab.example", ips=["198.51.100.41"]),
    ])
    plan = sync_cluster.compute(ganeti, state([], ips=[loose, taken]), settings(), SyncSettings())
    rows = {(row.action, row.kind, row.name, row.change) for row in plan.rows if row.kind == "ip-address"}
    assert rows == {
        ("create", "ip-address", "nicip.lab.example", "198.51.100.30/26"),
        ("update", "ip-address", "198.51.100.40/26", "assign to loose.lab.example"),
        ("conflict", "ip-address", "clash.lab.example",
         "Ganeti NIC IP 198.51.100.41/26 is already other.lab.example in NetBox (not taken)"),
    }
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(), delete=False)
    created = [obj for method, kind, objs in netbox.writes("create") if kind == "ip-address" for obj in objs]
    assert [obj["address"] for obj in created] == ["198.51.100.30/26"]
    assigned = [obj for method, kind, objs in netbox.writes("update") if kind == "ip-address" for obj in objs]
    assert [obj["id"] for obj in assigned] == [40]


def test_primary_ips_are_kept_and_only_set_when_missing() -> None:
    record, nic, first = in_sync("keep.lab.example", 1)
    second = ip(99, "198.51.100.50/26", dns_name="keep.lab.example", iface_obj=nic)
    no_primary = {**vm(2, "set.lab.example", A), "primary_ip4": None}
    nic2 = iface(200, no_primary)
    owned = ip(98, "198.51.100.51/26", dns_name="set.lab.example", iface_obj=nic2)
    ganeti = GanetiState(GROUPS, [instance("keep.lab.example"), instance("set.lab.example")])
    plan = sync_cluster.compute(ganeti, state([record, no_primary], [nic, nic2], [second, first, owned]),
                                settings(), SyncSettings())
    assert [(row.name, row.change) for row in plan.rows] == [("set.lab.example", "primary_ip4 - -> 198.51.100.51/26")]
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(), delete=False)
    assert netbox.writes("update") == [("update", "vm", [{"id": 2, "primary_ip4": 98}])]


def test_mac_and_missing_interface_and_device_moves() -> None:
    record, nic, address = in_sync("mac.lab.example", 1, mac="aa:00:00:00:00:ff")
    devices = {**DEVICES, "node3.lab.example": {"id": 3, "name": "node3.lab.example", "cluster": None},
               "old.lab.example": {"id": 9, "name": "old.lab.example", "cluster": {"id": 1, "name": "A"}}}
    ganeti = GanetiState(GROUPS, [instance("mac.lab.example", macs=["aa:00:00:00:00:01", "aa:00:00:00:00:02"])])
    plan = sync_cluster.compute(ganeti, state([record], [nic], [address], devices=devices), settings(),
                                SyncSettings())
    assert {(row.action, row.kind, row.name, row.change) for row in plan.rows} == {
        ("update", "interface", "mac.lab.example eth0", "MAC aa:00:00:00:00:ff -> aa:00:00:00:00:01"),
        ("create", "interface", "mac.lab.example eth1", "MAC aa:00:00:00:00:02"),
        ("update", "device", "node3.lab.example", "cluster - -> B"),
        ("update", "device", "old.lab.example", "cluster A -> - (not a node of this cluster)"),
    }
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(), delete=False)
    assert netbox.writes("update")[0] == ("update", "device", [{"id": 3, "cluster": 2}, {"id": 9, "cluster": None}])
    assert netbox.writes("set_macs") == [("set_macs", "vm-interface", {100: "aa:00:00:00:00:01"})]
    assert netbox.writes("create")[0][2] == [{"virtual_machine": 1, "name": "eth1", "mac_address": "aa:00:00:00:00:02"}]


def test_a_node_group_without_cluster_gets_one_and_its_vms_are_created_in_it() -> None:
    ganeti = GanetiState({**GROUPS, "C": ["node4.lab.example"]},
                         [instance("c1.lab.example", pnode="node4.lab.example")])
    devices = {**DEVICES, "node4.lab.example": {"id": 4, "name": "node4.lab.example", "cluster": None}}
    plan = sync_cluster.compute(ganeti, state([], devices=devices), settings(), SyncSettings(allocate_ips=False))
    assert ("create", "cluster", "C", "node group C") in {(r.action, r.kind, r.name, r.change) for r in plan.rows}
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(allocate_ips=False), delete=False)
    made = netbox.writes("create")[0]
    assert made == ("create", "cluster", [{"name": "C", "type": 77, "group": 1, "status": "active",
                                           "scope_type": "dcim.site", "scope_id": 1}])
    assert netbox.writes("create")[1][2][0]["cluster"] == 5000
    assert netbox.writes("update")[0] == ("update", "device", [{"id": 4, "cluster": 5000}])


def test_deletions_only_with_delete_and_addresses_released_or_kept() -> None:
    extra, nic, address = in_sync("gone.lab.example", 1)
    ganeti = GanetiState(GROUPS, [])
    current = state([extra], [nic], [address])
    without = sync_cluster.compute(ganeti, current, settings(), SyncSettings())
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, without, SyncSettings(), delete=False)
    assert [call for call in netbox.writes() if call[0] != "create"] == []
    plan = sync_cluster.compute(ganeti, current, settings(), SyncSettings(), delete=True)
    assert [(r.action, r.name) for r in plan.rows] == [("delete", "gone.lab.example")]
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(), delete=True)
    assert [(m, k) for m, k, _ in netbox.writes() if m != "create"] == [("release", "ip-address"), ("delete", "vm")]
    netbox = RecordingNetBox()
    sync_cluster.apply(netbox, plan, SyncSettings(release_ips=False), delete=True)
    kept = netbox.writes("update")[0][2][0]
    assert kept == {"id": 10, "assigned_object_type": None, "assigned_object_id": None, "status": "reserved",
                    "dns_name": "", "description": "kept from gone.lab.example"}


def test_error_states_map_to_failed_and_busy_instances_are_left_alone() -> None:
    record, nic, address = in_sync("err.lab.example", 1)
    ganeti = GanetiState(GROUPS, [instance("err.lab.example", status="ERROR_down"), instance("new.lab.example")])
    plan = sync_cluster.compute(ganeti, state([record], [nic], [address]), settings(), SyncSettings(),
                                busy={"new.lab.example"})
    assert [(r.action, r.name, r.change) for r in plan.rows] == [
        ("update", "err.lab.example", "status active -> failed"),
        ("busy", "new.lab.example", "a cookbook holds its instance lock (left alone)")]


@pytest.mark.parametrize("total, limit", [(2, 1), (4, 1), (20, 5), (1000, 10)])
def test_delete_limit_is_max_delete_lowered_on_small_clusters_never_below_one(total: int, limit: int) -> None:
    assert SyncSettings(max_delete=10, max_delete_percent=25).delete_limit(total) == limit


def test_narrowed_keeps_only_matching_instances_and_vms() -> None:
    ganeti = GanetiState(GROUPS, [instance("web1.lab.example"), instance("db1.lab.example")])
    current = state([vm(1, "web2.lab.example", A), vm(2, "db2.lab.example", A)])
    small_ganeti, small_state = sync_cluster.narrowed(ganeti, current, ["web*"])
    assert [i["name"] for i in small_ganeti.instances] == ["web1.lab.example"]
    assert [v["name"] for v in small_state.vms] == ["web2.lab.example"]
    assert small_state.devices == current.devices


def test_dry_run_plans_dependent_writes_without_ids() -> None:
    ganeti = GanetiState(GROUPS, [instance("new.lab.example")])
    plan = sync_cluster.compute(ganeti, state([]), settings(), ALLOCATE)
    netbox = RecordingNetBox(dry_run=True, free={"198.51.100.0/26": 5, "2001:db8:a::/64": 5})
    applied = sync_cluster.apply(netbox, plan, ALLOCATE, delete=False)
    assert netbox.writes("set_macs") == [] and netbox.writes("update") == []
    assert applied.counts == {"vm create": 1, "interface create": 1, "ip-address create": 2}


class Reader:
    """The reads NetBoxState.read makes: canned answers per kind, every call recorded."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]], version: tuple[int, int] = (4, 7)) -> None:
        self.answers = answers
        self.version = version
        self.calls: list[tuple[str, tuple[str, ...] | None, dict[str, Any]]] = []

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        self.calls.append((kind, None, filters))
        return {"id": 1, "name": "lab"}

    def objects(self, kind: str, *, fields: Any = None, **filters: Any) -> list[dict[str, Any]]:
        self.calls.append((kind, tuple(fields) if fields else None, filters))
        return list(self.answers.get(kind, []))

    def graphql_list(self, name: str, selection: str, *, filters: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """The canned vm-interface answers as NetBox's GraphQL gives them (ids as strings, MAC nested)."""
        self.calls.append((name, None, {"filters": filters, **{var: value for var, (_, value) in variables.items()}}))
        return [{"id": str(nic["id"]), "name": nic["name"],
                 "virtual_machine": {"id": str(nic["virtual_machine"]["id"]), "cluster": {"id": self.cluster_of(nic)}},
                 "primary_mac_address": {"mac_address": nic["mac_address"]} if nic["mac_address"] else None}
                for nic in self.answers.get("vm-interface", [])]

    def cluster_of(self, nic: dict[str, Any]) -> str:
        """Cluster id of the canned VM the interface belongs to."""
        vm_id = nic["virtual_machine"]["id"]
        return str(next(record["cluster"]["id"] for record in self.answers["vm"] if record["id"] == vm_id))


def as_read(nic: dict[str, Any]) -> dict[str, Any]:
    """The interface as NetBoxState.read returns it."""
    return {"id": nic["id"], "name": nic["name"], "virtual_machine": {"id": nic["virtual_machine"]["id"]},
            "primary_mac_address": {"mac_address": nic["mac_address"]} if nic["mac_address"] else None}


@pytest.mark.parametrize("instances, expected", [
    (["vm1.lab.example"], []),
    (["vm1.lab.example", "new.lab.example"], [("ip-address", {"parent": ["198.51.100.0/26"]})]),
])
def test_read_asks_for_addresses_only_when_a_vm_is_new_or_has_no_primary(instances: list[str],
                                                                         expected: list[Any]) -> None:
    record, nic, address = in_sync("vm1.lab.example", 1)
    reader = Reader({"cluster": [A], "vm": [record], "vm-interface": [nic], "ip-address": [address]})
    current = NetBoxState.read(reader, "lab", GanetiState(GROUPS, [instance(n) for n in instances]),  # type: ignore
                               ["198.51.100.0/26"])
    assert [(kind, filters) for kind, _, filters in reader.calls if kind == "ip-address"] == expected
    assert current.interfaces == {1: [as_read(nic)]} and current.ips == ([address] if expected else [])
    assert ("vm_interface_list", None, {"filters": "{virtual_machine: {cluster: {id: {in_list: $clusters}}}}",
                                        "clusters": ["1"]}) in reader.calls


def test_read_looks_for_the_addresses_of_a_vm_without_primary_outside_the_prefixes() -> None:
    bare = vm(2, "bare.lab.example", A)
    reader = Reader({"cluster": [A], "vm": [bare], "vm-interface": [iface(20, bare)]})
    NetBoxState.read(reader, "lab", GanetiState(GROUPS, [instance("bare.lab.example")]),  # type: ignore[arg-type]
                     ["198.51.100.0/26"])
    assert [filters for kind, _, filters in reader.calls if kind == "ip-address"] == [
        {"parent": ["198.51.100.0/26"]}, {"virtual_machine_id": [2]}]


def test_read_refuses_an_interface_of_another_cluster() -> None:
    record, nic, _ = in_sync("vm1.lab.example", 1)
    reader = Reader({"cluster": [A], "vm": [record], "vm-interface": [nic]})
    reader.cluster_of = lambda nic: "99"  # type: ignore[method-assign]  # NetBox ignored the filter
    with pytest.raises(NetBoxFilterError, match="interface eth0 of VM 1 is in cluster 99, not in the clusters"):
        NetBoxState.read(reader, "lab", GanetiState(GROUPS, [instance("vm1.lab.example")]),  # type: ignore[arg-type]
                         ["198.51.100.0/26"])
