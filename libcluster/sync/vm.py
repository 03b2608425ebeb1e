"""Record one Ganeti instance in NetBox: the VM in its cluster, one interface per NIC with Ganeti's MAC, its IPs.

Input is a plain RAPI instance dict (``GET /2/instances/NAME`` or one entry of ``?bulk=1``) and the
NetBox IP objects the instance owns. Only what differs is written, so a second call with the same
input writes nothing. In dry-run the NetBox client records the writes and sends none; the steps that
need the id of an object that is only planned (a VM not created yet) are skipped and logged.
NetBox units: memory and disk in MB (Ganeti's MiB), vcpus as a number.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from libcluster.capacity import instance_disk, instance_memory, instance_vcpus
from libcluster.netbox import NetBox
from libcluster.netbox.kinds import VM_INTERFACE_TYPE

logger = logging.getLogger(__name__)

STATUS_BY_ADMIN_STATE = {"up": "active", "down": "offline", "offline": "offline"}
"""NetBox VM status for Ganeti's admin_state: a stopped instance is offline, not gone."""

PRIMARY_FIELDS = {4: "primary_ip4", 6: "primary_ip6"}
"""VM field holding the primary address of each IP version."""

MAC_ON_INTERFACE = (4, 7)
"""First NetBox version taking `mac_address` when a VM interface is created (older ones: MAC objects)."""


@dataclass(frozen=True)
class Nic:
    """One NIC of the instance as NetBox should show it: interface name and MAC (None until Ganeti assigned one)."""

    name: str
    mac: str | None


@dataclass(frozen=True)
class Current:
    """What NetBox holds for the instance before the call (None: no VM yet); a bulk sync reads it for many VMs."""

    vm: Mapping[str, Any] | None
    interfaces: Sequence[Mapping[str, Any]] = ()


@dataclass
class Recorded:
    """The result: the VM and its interfaces (NIC order) as NetBox now has them, or as planned in dry-run."""

    vm: dict[str, Any]
    interfaces: list[dict[str, Any]]
    created: bool
    """True when this call created the VM."""
    writes: list[str] = field(default_factory=list)
    """One line per write made (or planned), e.g. ``vm-update memory``."""


def vm_status(instance: Mapping[str, Any]) -> str:
    """NetBox status of an instance: failed in a Ganeti error state (ERROR_*), else from its admin_state."""
    if str(instance.get("status") or "").startswith("ERROR_"):
        return "failed"
    return STATUS_BY_ADMIN_STATE.get(str(instance.get("admin_state")), "active")


def vm_fields(instance: Mapping[str, Any], cluster_id: int | None) -> dict[str, Any]:
    """The VM fields NetBox should hold for the instance in cluster cluster_id (None: a cluster a dry-run plans)."""
    return {
        "name": instance["name"],
        "cluster": cluster_id,
        "status": vm_status(instance),
        "vcpus": instance_vcpus(instance),
        "memory": instance_memory(instance),
        "disk": instance_disk(instance),
    }


def nics(instance: Mapping[str, Any]) -> list[Nic]:
    """The instance's NICs in Ganeti's order; a NIC without a Ganeti name is called ethN."""
    macs = list(instance.get("nic.macs") or [])
    names = list(instance.get("nic.names") or [])
    return [
        Nic(name=(names[index] if index < len(names) and names[index] else f"eth{index}"), mac=mac or None)
        for index, mac in enumerate(macs)
    ]


def _plain(value: Any) -> Any:
    """A NetBox field as the scalar written: nested objects by id, choices by value."""
    if isinstance(value, Mapping):
        return value.get("id", value.get("value"))
    return value


def _same(current: Any, wanted: Any) -> bool:
    current = _plain(current)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and current is not None:
        try:
            return float(current) == float(wanted)
        except (TypeError, ValueError):
            return False
    return bool(current == wanted)


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The wanted fields whose value differs from the current NetBox object (nested objects compared by id)."""
    return {name: value for name, value in wanted.items() if not _same(current.get(name), value)}


def interface_mac(interface: Mapping[str, Any]) -> str | None:
    """The MAC NetBox shows for a VM interface (4.7 ``mac_address``; 4.2-4.6 via ``primary_mac_address``)."""
    mac = interface.get("mac_address") or (interface.get("primary_mac_address") or {}).get("mac_address")
    return str(mac) if mac else None


def ip_fields(interface_id: int, dns_name: str) -> dict[str, Any]:
    """The fields of an IP owned by the instance: assigned to its interface, named after it."""
    return {"assigned_object_type": VM_INTERFACE_TYPE, "assigned_object_id": interface_id, "dns_name": dns_name}


def primary_fields(vm: Mapping[str, Any], addresses: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The primary_ip4/primary_ip6 changes that make the first address of each version primary."""
    wanted: dict[str, Any] = {}
    for ip in addresses:
        name = PRIMARY_FIELDS[ipaddress.ip_interface(ip["address"]).version]
        wanted.setdefault(name, ip["id"])
    return changed_fields(vm, wanted)


def lookup(netbox: NetBox, name: str, cluster_id: int) -> Current:
    """Read the VM called name in cluster cluster_id and its interfaces (two requests, one if there is no VM)."""
    vm = netbox.find("vm", name=name, cluster_id=cluster_id)
    interfaces = netbox.objects("vm-interface", virtual_machine_id=vm["id"]) if vm else []
    return Current(vm, interfaces)


def record_instance(
    netbox: NetBox,
    instance: Mapping[str, Any],
    *,
    cluster_id: int,
    addresses: Sequence[Mapping[str, Any]] = (),
    current: Current | None = None,
) -> Recorded:
    """Make NetBox hold the instance: VM fields, one interface per NIC with its MAC, addresses on the first one.

    addresses are NetBox IP objects; the first of each IP version becomes the VM's primary. current is
    what NetBox holds (read with lookup() when None). Writes only what differs; raises the NetBox
    client's errors, leaving what was written before the failure (the caller decides on cleanup).
    """
    name = str(instance["name"])
    wanted_nics = nics(instance)
    if addresses and not wanted_nics:
        raise ValueError(f"instance {name} has no NIC to assign {len(addresses)} address(es) to")
    if current is None:
        current = lookup(netbox, name, cluster_id)
    writes: list[str] = []
    wanted = vm_fields(instance, cluster_id)
    if current.vm is None:
        vm = netbox.create("vm", [wanted])[0]
        writes.append("vm-create")
    else:
        vm = dict(current.vm)
        changes = changed_fields(vm, wanted)
        if changes:
            vm.update(netbox.update("vm", [{"id": vm["id"], **changes}])[0])
            writes.append("vm-update " + ",".join(sorted(changes)))
    interfaces = _interfaces(netbox, vm, wanted_nics, current, writes)
    if addresses:
        _addresses(netbox, vm, interfaces[0], addresses, writes)
    return Recorded(vm=vm, interfaces=interfaces, created=current.vm is None, writes=writes)


def _addresses(netbox: NetBox, vm: dict[str, Any], interface: Mapping[str, Any],
               addresses: Sequence[Mapping[str, Any]], writes: list[str]) -> None:
    """Assign the addresses to the interface and make the first of each version primary, where they differ."""
    iface_id = interface.get("id")
    owned = [ip for ip in addresses if ip.get("id") is not None] if iface_id is not None else []
    if len(owned) < len(addresses):
        planned = ", ".join(str(ip["address"]) for ip in addresses if ip not in owned)
        logger.info("Would assign %s to %s of %s and make them primary once they exist", planned,
                    interface["name"], vm["name"])
    if iface_id is None or not owned:
        return
    updates = [{"id": ip["id"], **changes}
               for ip in owned if (changes := changed_fields(ip, ip_fields(int(iface_id), str(vm["name"]))))]
    if updates:
        netbox.update("ip-address", updates, current=owned)
        writes.append(f"ip-address-update x{len(updates)}")
    primary = primary_fields(vm, owned) if vm.get("id") is not None else {}
    if primary:
        vm.update(netbox.update("vm", [{"id": vm["id"], **primary}], current=[vm])[0])
        writes.append("vm-update " + ",".join(sorted(primary)))


def _interfaces(netbox: NetBox, vm: Mapping[str, Any], wanted: Sequence[Nic], current: Current,
                writes: list[str]) -> list[dict[str, Any]]:
    """Create the missing interfaces and set the MACs that differ; return the interfaces in NIC order."""
    by_name = {str(iface["name"]): dict(iface) for iface in current.interfaces}
    missing = [nic for nic in wanted if nic.name not in by_name]
    if missing:
        mac_on_create = netbox.version >= MAC_ON_INTERFACE  # saves a PATCH and a read of the MAC objects per VM
        bodies = [{"virtual_machine": vm.get("id"), "name": nic.name,
                   **({"mac_address": nic.mac} if mac_on_create and nic.mac else {})} for nic in missing]
        for iface in netbox.create("vm-interface", bodies):
            by_name[str(iface["name"])] = dict(iface)
        writes.append(f"vm-interface-create x{len(bodies)}")
    macs: dict[int, str] = {}
    for nic in wanted:
        iface = by_name[nic.name]
        if nic.mac is None or (interface_mac(iface) or "").lower() == nic.mac.lower():
            continue
        if iface.get("id") is None:
            logger.info("Would set MAC %s on %s of %s once it exists", nic.mac, nic.name, vm.get("name"))
            continue
        macs[int(iface["id"])] = nic.mac
        iface["mac_address"] = nic.mac
    if macs:
        netbox.set_macs(macs)
        writes.append(f"mac-set x{len(macs)}")
    return [by_name[nic.name] for nic in wanted]
