"""Addresses of VMs recorded without a cookbook, and what happens to them when the VM goes.

A VM that Ganeti runs and NetBox knows no address of (made by hand with ``gnt-instance add``) gets its first
NIC's Ganeti IP when one is set (with the mask of the configured prefix holding it, a host mask otherwise).
Without one, it gets addresses only when ``sync.allocate_ips`` is true (default false): the next free address
of its group's first IPv4 prefix with room, and of the first IPv6 prefix when the group has one, and the sync
then sets the IPv4 one as the NIC's IP in Ganeti (:func:`carry`), so that NetBox never names an address the
instance does not have; the IPv6 one, which Ganeti's single NIC IP cannot hold, is reported as not carried.
Either way the address carries the VM's FQDN as dns_name, like the addresses makevm allocates. When a VM
is removed its addresses are released (deleted) or, with ``sync.release_ips: false``, kept: unassigned,
status reserved, dns_name cleared (so no DNS record stays) and the old name in the description.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libcluster.clusters import GroupSettings
from libcluster.ganeti import GanetiCluster
from libcluster.netbox import NetBox, NetBoxConflict

KEPT_STATUS = "reserved"
"""NetBox status of an address kept after its VM was removed."""


@dataclass(frozen=True)
class AddressRequest:
    """One address a VM should get: a given address (Ganeti's NIC IP, with mask) or the next free one of prefixes."""

    vm: str
    """FQDN of the VM, also the dns_name of the address."""
    address: str | None = None
    prefixes: tuple[str, ...] = ()
    """Prefixes (one IP version, in order of preference) to allocate from when no address is given."""

    def describe(self) -> str:
        """The address, or where it will come from."""
        return self.address or f"next free of {', '.join(self.prefixes)}"


def with_mask(address: str, prefixes: Sequence[str]) -> str:
    """address with the mask of the first prefix that holds it, a host mask (/32, /128) when none does."""
    ip = ipaddress.ip_interface(address).ip
    for prefix in prefixes:
        network = ipaddress.ip_network(prefix)
        if ip.version == network.version and ip in network:
            return f"{ip}/{network.prefixlen}"
    return f"{ip}/{ip.max_prefixlen}"


def requests_for(instance: Mapping[str, Any], group: GroupSettings | None, *, allocate: bool
                 ) -> list[AddressRequest]:
    """The addresses a VM without any gets: its first NIC's Ganeti IP, else (allocate) one per IP version of the
    group, else none."""
    name = str(instance["name"])
    known = group.all_prefixes if group else ()
    nic_ips = [ip for ip in (instance.get("nic.ips") or [])[:1] if ip]
    if nic_ips:
        return [AddressRequest(vm=name, address=with_mask(str(nic_ips[0]), known))]
    if group is None or not allocate:
        return []
    return [AddressRequest(vm=name, prefixes=prefixes) for prefixes in (group.prefixes_v4, group.prefixes_v6)
            if prefixes]


def give(netbox: NetBox, requests: Sequence[AddressRequest], interfaces: Mapping[str, int | None]
         ) -> list[dict[str, Any]]:
    """Create the given addresses and allocate the others, in bulk, each assigned to interfaces[vm] when known.

    Allocation spreads the requests over each request's prefixes by their free addresses (one read per
    prefix); returns NetBox's address objects (planned ones in dry-run).
    """
    def data(request: AddressRequest) -> dict[str, Any]:
        fields: dict[str, Any] = {"dns_name": request.vm, "status": "active"}
        if interfaces.get(request.vm) is not None:
            fields.update(assigned_object_type="virtualization.vminterface",
                          assigned_object_id=interfaces[request.vm])
        return fields

    given = [{**data(request), "address": request.address} for request in requests if request.address]
    made = netbox.create("ip-address", given) if given else []
    by_prefixes: dict[tuple[str, ...], list[AddressRequest]] = {}
    for request in requests:
        if not request.address:
            by_prefixes.setdefault(request.prefixes, []).append(request)
    for prefixes, waiting in by_prefixes.items():
        for prefix in prefixes:
            if not waiting:
                break
            free = len(netbox.available_ips(prefix, len(waiting)))
            if free:
                made += netbox.allocate_ips(prefix, [data(request) for request in waiting[:free]])
                waiting = waiting[free:]
        if waiting:
            raise NetBoxConflict(f"no free address left in {', '.join(prefixes)} for {len(waiting)} VM(s): "
                                 f"{', '.join(request.vm for request in waiting[:5])}")
    return made


def retire(netbox: NetBox, ips: Sequence[Mapping[str, Any]], *, release: bool) -> None:
    """Before its VM is deleted: delete (release) its addresses, or keep them unassigned, reserved, without DNS name."""
    if not ips:
        return
    if release:
        netbox.release_ips(list(ips))
        return
    netbox.update("ip-address", [
        {"id": ip["id"], "assigned_object_type": None, "assigned_object_id": None, "status": KEPT_STATUS,
         "dns_name": "", "description": f"kept from {ip.get('dns_name') or 'a removed VM'}"[:200]}
        for ip in ips
    ])


NO_ADDRESS = "no address: the Ganeti NIC has no IP and sync.allocate_ips is false (recorded without address)"
"""Reported for a VM recorded without address."""


NOT_CARRIED = "allocated in NetBox, not carried by the Ganeti NIC (its one ip field holds the IPv4 address)"
"""Reported for an allocated IPv6 address: Ganeti's NIC has a single IP."""


def nic_ip(instance: Mapping[str, Any]) -> str | None:
    """The Ganeti IP of the instance's first NIC (None when unset)."""
    found = (instance.get("nic.ips") or [None])[0]
    return str(found) if found else None


def first_ipv4(ips: Sequence[Mapping[str, Any]]) -> str | None:
    """The first IPv4 address (without mask) among NetBox addresses, None when there is none."""
    return next((str(ipaddress.ip_interface(str(ip["address"])).ip) for ip in ips
                 if ipaddress.ip_interface(str(ip["address"])).version == 4), None)


def nic_differs(instance: Mapping[str, Any], ips: Sequence[Mapping[str, Any]]) -> str | None:
    """How the instance's first NIC IP in Ganeti differs from the IPv4 address NetBox gives it (None: the same, or
    NetBox gives none, or no NIC)."""
    netbox_ip, ganeti_ip = first_ipv4(ips), nic_ip(instance)
    if netbox_ip is None or ganeti_ip == netbox_ip or not instance.get("nic.macs"):
        return None
    return f"NIC 0 ip is {ganeti_ip or 'unset'} in Ganeti, NetBox gives {netbox_ip}"


def uncarried(given: Sequence[Mapping[str, Any]]) -> list[str]:
    """The allocated addresses Ganeti's one-IP NIC does not carry: every IPv6 one (the NIC carries the IPv4)."""
    return [str(ip["address"]) for ip in given if ipaddress.ip_interface(str(ip["address"])).version == 6]


def carry(ganeti: GanetiCluster, name: str, given: Sequence[Mapping[str, Any]]) -> str | None:
    """Make the first NIC of instance name carry the IPv4 address allocated for it (one NIC IP in Ganeti), waiting
    for the job (in dry-run Ganeti only checks it); returns the address set, None when none is IPv4."""
    address = first_ipv4(given)
    if address is None:
        return None
    ganeti.modify_instance(name, nics=[["modify", 0, {"ip": address}]]).wait()
    return address
