"""Cluster-wide Ganeti -> NetBox reconcile: read both sides in bulk, compute the difference, write it in bulk.

Mapping (per VM it is :mod:`libcluster.sync.vm`'s, shared with makevm): the Ganeti cluster is a NetBox
cluster group; each node group is a cluster of it (``groups.<g>.netbox_cluster``, default the group's
name); each node's device belongs to its group's cluster; each instance is a VM of its primary node's
group's cluster with vcpus, memory and disk (MB = Ganeti's MiB) and a status (running -> active,
stopped -> offline, Ganeti error states -> failed); each NIC an interface with Ganeti's MAC. Primary
IPs are kept: set only when missing or not the VM's own. A VM without any address gets its Ganeti NIC IP,
or is reported, or with ``sync.allocate_ips`` gets allocated addresses its NIC then carries
(:mod:`libcluster.sync.addresses`). NetBox VMs Ganeti no longer has are
reported, and deleted only when asked, within the delete limit (:meth:`SyncSettings.delete_limit`).
Reads grow with pages, not VMs: a few paged reads whatever the cluster size (VM interfaces through
NetBox's GraphQL API, about six times faster than its REST list: see NetBox.graphql_list).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tabulate import tabulate

from libcluster.clusters import ClusterSettings
from libcluster.config import Section
from libcluster.ganeti import GanetiCluster
from libcluster.netbox import NetBox, NetBoxFilterError
from libcluster.sync import addresses
from libcluster.sync import vm as sync_vm

logger = logging.getLogger(__name__)

VM_FIELDS = ("id", "name", "cluster", "status", "vcpus", "memory", "disk", "primary_ip4", "primary_ip6")
IP_FIELDS = ("id", "address", "dns_name", "status", "assigned_object_type", "assigned_object_id")
DEVICE_FIELDS = ("id", "name", "cluster")
CLUSTER_FIELDS = ("id", "name", "scope_type", "scope_id")
"""Fields read in bulk (NetBox serialises only these: much faster than whole objects)."""
INTERFACE_SELECTION = "id name virtual_machine { id cluster { id } } primary_mac_address { mac_address }"
"""What the GraphQL read of VM interfaces asks for."""

TABLE_HEADERS = ("Action", "Object", "Name", "Change")

@dataclass(frozen=True)
class SyncSettings:
    """The `sync` section: address policy, safety limit of deletions, type of clusters the sync creates."""

    allocate_ips: bool = False
    release_ips: bool = True
    max_delete: int = 10
    max_delete_percent: float = 25.0
    cluster_type: str = "ganeti"

    @classmethod
    def from_config(cls, config: Section) -> SyncSettings:
        """Read the optional `sync` section of the root configuration."""
        section = config.section("sync", {})
        base = cls()
        return cls(
            allocate_ips=section.bool("allocate_ips", base.allocate_ips),
            release_ips=section.bool("release_ips", base.release_ips),
            max_delete=section.int("max_delete", base.max_delete),
            max_delete_percent=section.float("max_delete_percent", base.max_delete_percent),
            cluster_type=section.str("cluster_type", base.cluster_type),
        )

    def delete_limit(self, total: int) -> int:
        """VMs a sync may delete without asking, out of total: max_delete, lower on small clusters, at least one."""
        return max(1, min(self.max_delete, int(total * self.max_delete_percent / 100)))


@dataclass(frozen=True)
class GanetiState:
    """What Ganeti runs: node groups with their nodes, and every instance (RAPI bulk dicts)."""

    groups: dict[str, list[str]]
    instances: list[dict[str, Any]]

    @classmethod
    def read(cls, ganeti: GanetiCluster) -> GanetiState:
        """Two bulk RAPI reads of a GanetiCluster (groups, instances)."""
        groups = {group.name: list(group.nodes) for group in ganeti.groups()}
        return cls(groups=groups, instances=[instance.raw for instance in ganeti.instances()])

    def group_of(self, node: str) -> str | None:
        """The node group holding node, None if none does."""
        return next((group for group, nodes in self.groups.items() if node in nodes), None)


@dataclass
class NetBoxState:
    """What NetBox holds for one cluster group: clusters, node devices, VMs, their interfaces and addresses."""

    group: dict[str, Any]
    clusters: dict[str, dict[str, Any]]
    devices: dict[str, dict[str, Any]]
    vms: list[dict[str, Any]]
    interfaces: dict[int, list[dict[str, Any]]]
    ips: list[dict[str, Any]]
    """Addresses inside the configured prefixes, plus those of VMs that have none there and no primary."""
    _owners: dict[int, int] | None = field(default=None, repr=False)

    @classmethod
    def read(cls, netbox: NetBox, group_name: str, ganeti: GanetiState, prefixes: Sequence[str]) -> NetBoxState:
        """Bulk paged reads: the group, its clusters, the nodes' devices, VMs, interfaces and, when needed, addresses.

        Addresses are read only when an instance has no VM yet or a VM has no primary address: a cluster
        whose VMs all have one costs no address read (primaries are kept, never recomputed).
        """
        group = netbox.get("cluster-group", name=group_name)
        clusters = {str(c["name"]): c for c in netbox.objects("cluster", fields=CLUSTER_FIELDS, group_id=group["id"])}
        cluster_ids = [int(c["id"]) for c in clusters.values()]
        devices = _read_devices(netbox, sorted(node for members in ganeti.groups.values() for node in members),
                                cluster_ids)
        vms, interfaces = _read_vms(netbox, cluster_ids)
        state = cls(group=group, clusters=clusters, devices=devices, vms=vms, interfaces=interfaces, ips=[])
        bare, new = addressless(vms, ganeti)
        if prefixes and (bare or new):
            state.ips = _read_addresses(netbox, state, prefixes, bare)
        return state

    def vm_of(self, ip: Mapping[str, Any]) -> int | None:
        """Id of the VM an address is assigned to (through one of the VMs' interfaces read), None otherwise."""
        if self._owners is None:
            self._owners = {int(i["id"]): vm_id for vm_id, found in self.interfaces.items() for i in found}
        return self._owners.get(int(ip.get("assigned_object_id") or 0)) if _on_interface(ip) else None


def read_interfaces(netbox: NetBox, cluster_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The interfaces of the clusters' VMs by VM id, shaped as REST gives them (ids as int, the MAC under
    primary_mac_address); one that is not in those clusters raises NetBoxFilterError."""
    found: dict[int, list[dict[str, Any]]] = {}
    rows = netbox.graphql_list("vm_interface_list", INTERFACE_SELECTION,
                               filters="{virtual_machine: {cluster: {id: {in_list: $clusters}}}}",
                               variables={"clusters": ("[ID!]", [str(cluster) for cluster in cluster_ids])})
    for row in rows:
        vm, cluster = int(row["virtual_machine"]["id"]), int(row["virtual_machine"]["cluster"]["id"])
        if cluster not in cluster_ids:
            raise NetBoxFilterError(f"GraphQL vm_interface_list: interface {row['name']} of VM {vm} is in cluster "
                                    f"{cluster}, not in the clusters asked for ({list(cluster_ids)})")
        found.setdefault(vm, []).append({"id": int(row["id"]), "name": row["name"], "virtual_machine": {"id": vm},
                                         "primary_mac_address": row["primary_mac_address"]})
    return found


def _read_devices(netbox: NetBox, nodes: Sequence[str], cluster_ids: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The devices of the nodes, and those in the group's clusters (nodes that left), by name."""
    devices = {str(d["name"]): d for d in netbox.objects("device", fields=DEVICE_FIELDS, name=list(nodes))}
    if cluster_ids:
        devices.update({str(d["name"]): d for d in netbox.objects("device", fields=DEVICE_FIELDS,
                                                                   cluster_id=list(cluster_ids))})
    return devices


def _read_vms(netbox: NetBox, cluster_ids: Sequence[int]
              ) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """The clusters' VMs and their interfaces by VM id: the two big reads at once (NetBox serves them from two
    workers); none without a cluster."""
    if not cluster_ids:
        return [], {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_interfaces, netbox, cluster_ids)
        vms = netbox.objects("vm", fields=VM_FIELDS, cluster_id=list(cluster_ids))
        return vms, pending.result()


def addressless(vms: Sequence[Mapping[str, Any]], ganeti: GanetiState) -> tuple[list[int], set[str]]:
    """Why addresses must be read: ids of VMs without a primary address, names of instances without a VM."""
    bare = [int(vm["id"]) for vm in vms if not vm.get("primary_ip4") and not vm.get("primary_ip6")]
    new = {str(i["name"]) for i in ganeti.instances} - {str(vm["name"]) for vm in vms}
    return bare, new


def _read_addresses(netbox: NetBox, state: NetBoxState, prefixes: Sequence[str], bare: Sequence[int]
                    ) -> list[dict[str, Any]]:
    """The addresses inside prefixes, plus those of the bare VMs (no primary) that have none there."""
    ips = netbox.objects("ip-address", fields=IP_FIELDS, parent=list(prefixes))
    seen = {state.vm_of(ip) for ip in ips}
    if unseen := [vm_id for vm_id in bare if vm_id not in seen]:
        ips += netbox.objects("ip-address", fields=IP_FIELDS, virtual_machine_id=unseen)
    return ips


def narrowed(ganeti: GanetiState, state: NetBoxState, patterns: Sequence[str]) -> tuple[GanetiState, NetBoxState]:
    """Both sides limited to the instances and VMs whose name matches a glob pattern (clusters and devices stay)."""
    def match(name: Any) -> bool:
        return any(fnmatch.fnmatchcase(str(name), pattern) for pattern in patterns)

    return (replace(ganeti, instances=[i for i in ganeti.instances if match(i["name"])]),
            replace(state, vms=[vm for vm in state.vms if match(vm["name"])]))


def _on_interface(ip: Mapping[str, Any]) -> bool:
    """Whether an address is assigned to a VM interface (read without the costly nested assigned_object)."""
    return ip.get("assigned_object_type") == "virtualization.vminterface" and bool(ip.get("assigned_object_id"))


@dataclass
class Row:
    """One line of the difference table."""

    action: str
    """create, update, delete; or extra, missing, conflict, busy: reported, not written."""
    kind: str
    name: str
    change: str = ""


@dataclass
class VMPlan:
    """What one instance needs in NetBox."""

    instance: dict[str, Any]
    group: str
    cluster: str
    vm: dict[str, Any] | None
    changes: dict[str, Any] = field(default_factory=dict)
    interfaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_interfaces: list[str] = field(default_factory=list)
    macs: dict[str, str] = field(default_factory=dict)
    owned: list[dict[str, Any]] = field(default_factory=list)
    """Addresses assigned to the VM, its current primaries first."""
    assign: list[dict[str, Any]] = field(default_factory=list)
    """Unassigned addresses named after the VM: assigned to its first interface."""
    requests: list[addresses.AddressRequest] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The instance's name, also the VM's."""
        return str(self.instance["name"])


@dataclass
class Plan:
    """The whole difference: what to write, and one table row per difference (written or only reported)."""

    state: NetBoxState
    new_clusters: dict[str, str] = field(default_factory=dict)
    """NetBox cluster name -> node group, for groups without a cluster."""
    devices: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    """Devices whose cluster changes, with the cluster name (None: no cluster)."""
    vms: list[VMPlan] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    """NetBox VMs of the group's clusters that Ganeti does not have."""
    rows: list[Row] = field(default_factory=list)

    @property
    def writes(self) -> list[Row]:
        """The rows that are writes (besides deletions, which need asking)."""
        return [row for row in self.rows if row.action in ("create", "update")]

    def table(self) -> str:
        """The difference as a table."""
        return table(self.rows)


def table(rows: Sequence[Row]) -> str:
    """Rows as a table (tabulate), or a line saying there is no difference."""
    if not rows:
        return "NetBox matches Ganeti: nothing to change."
    return tabulate([(row.action, row.kind, row.name, row.change) for row in rows], headers=TABLE_HEADERS)


def _ordered(ips: Iterable[dict[str, Any]], vm: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Addresses with the VM's current primaries first, so that keeping them is what primary_fields computes."""
    primaries = {(vm.get(key) or {}).get("id") for key in ("primary_ip4", "primary_ip6")} if vm else set()
    return sorted(ips, key=lambda ip: ip["id"] not in primaries)


def _shown(value: Any) -> str:
    """A NetBox field for the table: nested objects by address, name or value."""
    if isinstance(value, Mapping):
        value = value.get("address") or value.get("name") or value.get("value") or value.get("id")
    return "-" if value in (None, "") else str(value)


@dataclass(frozen=True)
class AddressIndex:
    """The NetBox addresses read, indexed the three ways the plan looks them up."""

    owned: dict[int, list[dict[str, Any]]]
    """Addresses assigned to a VM's interface, by VM id."""
    loose: dict[str, list[dict[str, Any]]]
    """Unassigned addresses with a DNS name, by that name."""
    taken: dict[str, dict[str, Any]]
    """Every address, by its IP (without the prefix length)."""


def index_addresses(state: NetBoxState) -> AddressIndex:
    """The addresses of state indexed by owning VM, by DNS name when unassigned, and by IP."""
    index = AddressIndex(owned={}, loose={}, taken={})
    for ip in state.ips:
        index.taken[str(ip["address"]).split("/")[0]] = ip
        vm_id = state.vm_of(ip)
        if vm_id is not None:
            index.owned.setdefault(vm_id, []).append(ip)
        elif not ip.get("assigned_object_id") and ip.get("dns_name"):
            index.loose.setdefault(str(ip["dns_name"]), []).append(ip)
    return index


def compute(ganeti: GanetiState, state: NetBoxState, settings: ClusterSettings, sync: SyncSettings, *,
            delete: bool = False, busy: Iterable[str] = ()) -> Plan:
    """The difference between what Ganeti runs and what NetBox holds (pure: no request).

    Instances in busy (a cookbook holds their instance lock, see resources.instances_held) are left alone.
    """
    busy = set(busy)
    plan = Plan(state=state)
    wanted = wanted_clusters(ganeti, settings)
    plan.new_clusters, plan.rows = cluster_rows(wanted, state.clusters)
    _plan_devices(plan, ganeti, wanted)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for vm in state.vms:
        by_name.setdefault(str(vm["name"]), []).append(vm)
    index = index_addresses(state)
    for instance in sorted(ganeti.instances, key=lambda item: str(item["name"])):
        group = ganeti.group_of(str(instance.get("pnode")))
        candidates = by_name.pop(str(instance["name"]), [])
        if group is None or instance["name"] in busy:
            plan.rows.append(skipped_row(instance, group))
            continue
        chosen, others = pick_vm(candidates, wanted[group])
        plan.extra += others
        item = VMPlan(instance=instance, group=group, cluster=wanted[group], vm=chosen)
        plan.rows += _plan_vm(item, state, settings, sync, index)
        plan.vms.append(item)
    plan.extra += [vm for vms in by_name.values() for vm in vms]
    plan.rows += extra_rows(plan.extra, delete=delete)
    return plan


def wanted_clusters(ganeti: GanetiState, settings: ClusterSettings) -> dict[str, str]:
    """Node group -> the NetBox cluster it maps to (groups.<g>.netbox_cluster, default the group's name)."""
    return {group: settings.groups[group].netbox_cluster if group in settings.groups else group
            for group in ganeti.groups}


def cluster_rows(wanted: Mapping[str, str], existing: Iterable[str]) -> tuple[dict[str, str], list[Row]]:
    """The clusters to create (NetBox name -> node group) and the rows: creations, then the existing clusters no
    node group maps to (reported, left as they are)."""
    existing = set(existing)
    new = {cluster: group for group, cluster in sorted(wanted.items()) if cluster not in existing}
    rows = [Row("create", "cluster", cluster, f"node group {group}") for cluster, group in new.items()]
    rows += [Row("extra", "cluster", cluster, "no node group maps to it (left as is)")
             for cluster in sorted(existing - set(wanted.values()))]
    return new, rows


def skipped_row(instance: Mapping[str, Any], group: str | None) -> Row:
    """The row of an instance the sync leaves alone: its primary node is in no group (group None), or a cookbook
    holds its instance lock (creating it)."""
    name = str(instance["name"])
    if group is None:
        return Row("missing", "vm", name, f"primary node {instance.get('pnode')} is in no node group (skipped)")
    return Row("busy", "vm", name, "a cookbook holds its instance lock (left alone)")


def pick_vm(candidates: Sequence[dict[str, Any]], cluster: str
            ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Of the NetBox VMs named after an instance, the one in its cluster (else the first), and the others (extra)."""
    vm = next((c for c in candidates if c["cluster"]["name"] == cluster), None) or \
        (candidates[0] if candidates else None)
    return vm, [c for c in candidates if c is not vm]


def extra_rows(extra: Iterable[Mapping[str, Any]], *, delete: bool) -> list[Row]:
    """The rows of NetBox VMs Ganeti does not have, by name: deletions when delete, else reported."""
    return [Row("delete", "vm", str(vm["name"]), f"in cluster {vm['cluster']['name']}, not in Ganeti") if delete
            else Row("extra", "vm", str(vm["name"]),
                     f"in cluster {vm['cluster']['name']}, not in Ganeti (--delete removes it)")
            for vm in sorted(extra, key=lambda vm: str(vm["name"]))]


def _plan_devices(plan: Plan, ganeti: GanetiState, wanted: Mapping[str, str]) -> None:
    node_cluster = {node: wanted[group] for group, nodes in ganeti.groups.items() for node in nodes}
    ours = set(plan.state.clusters)
    for name in sorted(set(node_cluster) | set(plan.state.devices)):
        device = plan.state.devices.get(name)
        target = node_cluster.get(name)
        if device is None:
            plan.rows.append(Row("missing", "device", name, "no NetBox device of that name (devices are not created)"))
            continue
        have = (device.get("cluster") or {}).get("name")
        if target is None and have not in ours:
            continue
        if have != target:
            plan.devices.append((device, target))
            why = "" if target else " (not a node of this cluster)"
            plan.rows.append(Row("update", "device", name, f"cluster {have or '-'} -> {target or '-'}{why}"))


def _plan_vm(item: VMPlan, state: NetBoxState, settings: ClusterSettings, sync: SyncSettings,
             index: AddressIndex) -> list[Row]:
    """Fill item with what one instance needs in NetBox; returns its rows (record, interfaces, addresses)."""
    rows = record_rows(item, state)
    rows += nic_rows(item)
    item.owned = _ordered(index.owned.get(int(item.vm["id"]), []) if item.vm else [], item.vm)
    item.assign = list(index.loose.get(item.name, []))
    if not (item.owned or item.assign or has_primary(item.vm)) and sync_vm.nics(item.instance):
        wanted = addresses.requests_for(item.instance, settings.groups.get(item.group), allocate=sync.allocate_ips)
        rows += address_rows(item, wanted, index.taken)
    return rows + allocation_rows(item) + primary_rows(item)


def has_primary(vm: Mapping[str, Any] | None) -> bool:
    """Whether a NetBox VM has a primary address (IPv4 or IPv6)."""
    return bool(vm and (vm.get("primary_ip4") or vm.get("primary_ip6")))


def record_rows(item: VMPlan, state: NetBoxState) -> list[Row]:
    """The VM's own row: its creation, or the update of the fields that differ (kept in item.changes); an existing
    VM's interfaces go into item.interfaces."""
    cluster_id = int(state.clusters[item.cluster]["id"]) if item.cluster in state.clusters else 0
    fields = sync_vm.vm_fields(item.instance, cluster_id)
    vm = item.vm
    if vm is None:
        return [Row("create", "vm", item.name, f"cluster {item.cluster}, {fields['vcpus']} vCPU, memory "
                    f"{fields['memory']} MB, disk {fields['disk']} MB, {fields['status']}")]
    item.interfaces = {str(i["name"]): i for i in state.interfaces.get(int(vm["id"]), [])}
    item.changes = sync_vm.changed_fields(vm, fields)
    if not item.changes:
        return []
    after = {**item.changes, "cluster": item.cluster}
    return [Row("update", "vm", item.name, ", ".join(
        f"{key} {_shown(vm.get(key))} -> {after[key]}" for key in sorted(item.changes)))]


def mac_differs(iface: Mapping[str, Any], mac: str) -> bool:
    """Whether a NetBox interface's MAC is not mac (case aside)."""
    return (sync_vm.interface_mac(iface) or "").lower() != mac.lower()


def nic_rows(item: VMPlan) -> list[Row]:
    """Rows of the instance's NICs: interfaces to create (item.new_interfaces), MACs to set (item.macs)."""
    rows = []
    for nic in sync_vm.nics(item.instance):
        iface = item.interfaces.get(nic.name)
        if iface is None:
            item.new_interfaces.append(nic.name)
            rows.append(Row("create", "interface", f"{item.name} {nic.name}", f"MAC {nic.mac or '-'}"))
        elif nic.mac and mac_differs(iface, nic.mac):
            rows.append(Row("update", "interface", f"{item.name} {nic.name}",
                            f"MAC {sync_vm.interface_mac(iface) or '-'} -> {nic.mac}"))
        if nic.mac and (iface is None or mac_differs(iface, nic.mac)):
            item.macs[nic.name] = nic.mac
    return rows


def address_rows(item: VMPlan, wanted: Sequence[addresses.AddressRequest], taken: Mapping[str, dict[str, Any]]
                 ) -> list[Row]:
    """Sort the addresses an instance without any should get: a free NetBox address named after it is assigned
    (item.assign), one held by something else is a conflict (not taken), the rest are created (item.requests)."""
    if not wanted:
        return [Row("missing", "ip-address", item.name, addresses.NO_ADDRESS)]
    rows = []
    for request in wanted:
        ip = taken.get(request.address.split("/")[0]) if request.address else None
        if ip is not None and (ip.get("assigned_object_id") or ip.get("dns_name") not in ("", None, item.name)):
            rows.append(Row("conflict", "ip-address", item.name, f"Ganeti NIC IP {request.address} is already "
                            f"{ip.get('dns_name') or 'assigned'} in NetBox (not taken)"))
        elif ip is not None:
            item.assign.append(ip)
        else:
            item.requests.append(request)
    return rows


def allocation_rows(item: VMPlan) -> list[Row]:
    """Rows of the addresses to assign and create, and of the NIC IP set to an allocated IPv4 (an allocated IPv6
    is not carried by the NIC: said in its own row)."""
    rows = [Row("update", "ip-address", str(ip["address"]), f"assign to {item.name}") for ip in item.assign]
    rows += [Row("create", "ip-address", item.name, request.describe()) for request in item.requests]
    allocated = [request for request in item.requests if request.address is None]
    if allocated:
        rows.append(Row("update", "ganeti-nic", item.name, "NIC 0 ip -> the IPv4 address allocated"))
        rows += [Row("uncarried", "ganeti-nic", item.name, f"the IPv6 address of {request.describe()} "
                     f"{addresses.NOT_CARRIED}") for request in allocated
                 if ipaddress.ip_network(request.prefixes[0]).version == 6]
    return rows


def primary_rows(item: VMPlan) -> list[Row]:
    """Rows of the primary addresses an existing VM gets from the addresses it owns (kept when they are its own)."""
    if item.vm is None or not item.owned:
        return []
    vm = item.vm
    return [Row("update", "vm", item.name,
                f"{key} {_shown(vm.get(key))} -> {next(ip['address'] for ip in item.owned if ip['id'] == value)}")
            for key, value in sync_vm.primary_fields(vm, item.owned).items()]


@dataclass
class Applied:
    """What apply() wrote, per object kind and action (planned counts in dry-run)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, count: int) -> None:
        """Count count writes of what (e.g. 'vm create')."""
        if count:
            self.counts[what] = self.counts.get(what, 0) + count

    def describe(self) -> str:
        """One line, e.g. 'vm create: 3, vm update: 1', or 'nothing written'."""
        return ", ".join(f"{what}: {count}" for what, count in sorted(self.counts.items())) or "nothing written"


def apply(netbox: NetBox, plan: Plan, sync: SyncSettings, *, delete: bool, ganeti: GanetiCluster | None = None
          ) -> Applied:
    """Write the plan in bulk calls, in dependency order; deletions only when delete (the caller checks limits).

    Addresses allocated for an instance (sync.allocate_ips) are then set as its NIC IP through ganeti."""
    done = Applied()
    clusters = dict(plan.state.clusters)
    if plan.new_clusters:
        clusters.update(_create_clusters(netbox, plan, sync))
        done.add("cluster create", len(plan.new_clusters))
    if plan.devices:
        netbox.update("device", device_updates(plan.devices, clusters))
        done.add("device update", len(plan.devices))
    _apply_vms(netbox, plan, clusters, done)
    _apply_interfaces(netbox, plan, done)
    given = _apply_addresses(netbox, plan, done)
    if ganeti is not None:
        _carry_allocated(ganeti, plan, given, done)
    if delete and plan.extra:
        _delete_extra(netbox, plan, sync, done)
    return done


def device_updates(devices: Iterable[tuple[Mapping[str, Any], str | None]], clusters: Mapping[str, Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The bulk update moving each device to its cluster (by the cluster's id; None: out of any cluster)."""
    return [{"id": device["id"], "cluster": _id(clusters.get(cluster)) if cluster else None}
            for device, cluster in devices]


def _apply_vms(netbox: NetBox, plan: Plan, clusters: Mapping[str, Mapping[str, Any]], done: Applied) -> None:
    """Create the missing VMs, then update those whose fields differ (one bulk call each)."""
    wanted = [sync_vm.vm_fields(i.instance, _id(clusters[i.cluster])) for i in plan.vms if i.vm is None]
    created = netbox.create("vm", wanted) if wanted else []
    done.add("vm create", len(created))
    updates = vm_updates(plan.vms, created, clusters)
    if updates:
        netbox.update("vm", updates)
        done.add("vm update", len(updates))


def vm_updates(items: Sequence[VMPlan], created: Sequence[dict[str, Any]],
               clusters: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Give each VM-less item its created VM (in order), compute the changes of the others again with the cluster
    ids known now (a cluster created by this run had none at plan time); returns the bulk update."""
    news = iter(created)
    for item in items:
        if item.vm is None:
            item.vm = next(news)
        elif item.changes:
            item.changes = sync_vm.changed_fields(item.vm, sync_vm.vm_fields(item.instance,
                                                                               _id(clusters[item.cluster])))
    return [{"id": i.vm["id"], **i.changes} for i in items if i.changes and i.vm]


def _carry_allocated(ganeti: GanetiCluster, plan: Plan, given: Mapping[str, list[dict[str, Any]]],
                     done: Applied) -> None:
    """Set the IPv4 address allocated for an instance as its NIC IP (addresses.carry)."""
    for item in plan.vms:
        if any(request.address is None for request in item.requests) and \
                addresses.carry(ganeti, item.name, given.get(item.name, [])):
            done.add("ganeti nic ip", 1)


def extra_addresses(plan: Plan) -> list[dict[str, Any]]:
    """The addresses assigned to the extra VMs (those Ganeti does not have)."""
    extra_ids = {int(vm["id"]) for vm in plan.extra}
    return [ip for ip in plan.state.ips if plan.state.vm_of(ip) in extra_ids]


def _delete_extra(netbox: NetBox, plan: Plan, sync: SyncSettings, done: Applied) -> None:
    """Retire the extra VMs' addresses (released or kept, sync.release_ips), then delete the VMs."""
    ips = extra_addresses(plan)
    addresses.retire(netbox, ips, release=sync.release_ips)
    done.add("ip-address " + ("release" if sync.release_ips else "keep"), len(ips))
    netbox.delete("vm", plan.extra)
    done.add("vm delete", len(plan.extra))


def _id(obj: Mapping[str, Any] | None) -> int | None:
    return int(obj["id"]) if obj and obj.get("id") is not None else None


def _create_clusters(netbox: NetBox, plan: Plan, sync: SyncSettings) -> dict[str, dict[str, Any]]:
    """Create the missing clusters in the group, with the configured type and the scope of a sibling cluster."""
    kind = netbox.get("cluster-type", slug=sync.cluster_type)
    sibling = next(iter(plan.state.clusters.values()), {})
    scope = {key: sibling[key] for key in ("scope_type", "scope_id") if sibling.get(key) is not None}
    made = netbox.create("cluster", [{"name": name, "type": kind["id"], "group": plan.state.group["id"],
                                      "status": "active", **scope} for name in plan.new_clusters])
    return {str(cluster["name"]): cluster for cluster in made}


def _apply_interfaces(netbox: NetBox, plan: Plan, done: Applied) -> None:
    """Create the missing interfaces (with their MAC where NetBox takes it, as sync.vm does), then set the MACs
    that still differ (one bulk call each)."""
    missing = [(item, name) for item in plan.vms for name in item.new_interfaces]
    mac_on_create = bool(missing) and netbox.version >= sync_vm.MAC_ON_INTERFACE
    made = netbox.create("vm-interface", [
        {"virtual_machine": item.vm["id"] if item.vm else None, "name": name,
         **({"mac_address": item.macs[name]} if mac_on_create and name in item.macs else {})}
        for item, name in missing]) if missing else []
    done.add("interface create", len(made))
    for (item, name), iface in zip(missing, made, strict=True):
        item.interfaces[name] = iface
    macs = mac_updates(plan.vms)
    netbox.set_macs(macs)
    done.add("mac set", len(macs))


def mac_updates(items: Iterable[VMPlan]) -> dict[int, str]:
    """The MACs to set, by interface id: those still differing once the interfaces exist (an interface without an
    id, planned in a dry-run, is only logged)."""
    macs: dict[int, str] = {}
    for item in items:
        for name, mac in item.macs.items():
            iface_id = item.interfaces[name].get("id")
            if not mac_differs(item.interfaces[name], mac):
                continue
            if iface_id is None:
                logger.info("Would set MAC %s on %s of %s once it exists", mac, name, item.name)
            else:
                macs[int(iface_id)] = mac
    return macs


def _first_interface(item: VMPlan) -> int | None:
    nics = sync_vm.nics(item.instance)
    return _id(item.interfaces.get(nics[0].name)) if nics else None


def primary_updates(items: Iterable[VMPlan], given: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The bulk update setting missing primaries of existing VMs from the addresses they own, were assigned, or
    were given (by VM name); addresses without an id (dry-run) are not used."""
    primaries = []
    for item in items:
        ips = [ip for ip in item.owned + item.assign + given.get(item.name, []) if ip.get("id") is not None]
        if item.vm is not None and item.vm.get("id") is not None and ips:
            changes = sync_vm.primary_fields(item.vm, _ordered(ips, item.vm))
            if changes:
                primaries.append({"id": item.vm["id"], **changes})
    return primaries


def _apply_addresses(netbox: NetBox, plan: Plan, done: Applied) -> dict[str, list[dict[str, Any]]]:
    """Assign loose addresses, create or allocate the missing ones, then set missing primaries (bulk each); returns
    the addresses created, by VM name."""
    assign = [{"id": ip["id"], **sync_vm.ip_fields(iface, item.name)}
              for item in plan.vms if (iface := _first_interface(item)) is not None for ip in item.assign]
    if assign:
        netbox.update("ip-address", assign)
        done.add("ip-address assign", len(assign))
    requests = [request for item in plan.vms for request in item.requests]
    given = addresses.give(netbox, requests, {item.name: _first_interface(item) for item in plan.vms
                                              if item.requests}) if requests else []
    done.add("ip-address create", len(given))
    by_vm: dict[str, list[dict[str, Any]]] = {}
    for ip in given:
        by_vm.setdefault(str(ip.get("dns_name")), []).append(ip)
    primaries = primary_updates(plan.vms, by_vm)
    if primaries:
        netbox.update("vm", primaries)
        done.add("vm primary", len(primaries))
    return by_vm
