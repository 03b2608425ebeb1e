"""NetBox -> DNS: every NetBox address with a dns_name gives A/AAAA and PTR records in the configured zones.

The records are built by :mod:`libcluster.dns` (IPv4 and IPv6 reverse, RFC 2317 classless zones with
their CNAMEs), compared with the zones read by TSIG AXFR, and only the difference is applied, by
batched TSIG-signed RFC 2136 updates. Settings come from ``dns.netbox``:

- ``statuses``: address statuses that get records (default active, dhcp, slaac);
- ``max_changes``/``max_percent``: a difference of more rrsets than the larger of max_changes and
  max_percent % of the wanted rrsets stops unless forced (a NetBox outage must not empty the zones);
- ``names``/``networks``: optional scope (:mod:`libcluster.dns.scope`, checked by every DNS write
  path). Forward rrsets whose owner matches none of the ``names`` glob patterns, and reverse rrsets of
  addresses outside ``networks``, are neither created nor deleted. Empty means everything.

Inside the scope, an rrset the server already has is replaced or deleted only when NetBox accounts for
it (:class:`Accounted`): its name is the dns_name of an address NetBox assigns to a VM or device of
the configured cluster groups, or its address is such an address, whatever the address's status (read
before anything is changed; only the statuses above get records).
Anything else found in the zones (hand-made records) is left as it is and reported; missing records
are added. Zone apexes, delegations and name servers' addresses are never changed (libcluster.dns).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS, Built, Diff, Records, snippets
from libcluster.dns.protection import Owns
from libcluster.dns.scope import Scope, ScopeSettings, reverse_address
from libcluster.dns.zones import FORWARD_TYPES, Zones, folded
from libcluster.errors import LibclusterError
from libcluster.netbox import NetBox
from libcluster.netbox.kinds import VM_INTERFACE_TYPE
from libcluster.sync.cluster import read_interfaces

IP_FIELDS = ("id", "address", "dns_name", "status", "assigned_object_type", "assigned_object_id")
DEVICE_INTERFACE = "dcim.interface"
"""Content type of a device interface, in IP assignments."""


class ThresholdExceeded(LibclusterError):
    """The difference is larger than the configured threshold (forced runs apply it anyway)."""


@dataclass(frozen=True)
class DNSSyncSettings:
    """The `dns.netbox` section: which addresses get records, the change threshold, and the optional scope."""

    statuses: tuple[str, ...] = ("active", "dhcp", "slaac")
    max_changes: int = 20
    max_percent: float = 5.0
    names: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Section) -> DNSSyncSettings:
        """Read the optional `netbox` subsection of the root configuration's `dns` section."""
        section = config.section("dns").section("netbox", {})
        base, scope = cls(), ScopeSettings.from_section(section)
        return cls(
            statuses=tuple(str(s) for s in section.list("statuses", list(base.statuses))),
            max_changes=section.int("max_changes", base.max_changes),
            max_percent=section.float("max_percent", base.max_percent),
            names=scope.names, networks=scope.networks,
        )

    def limit(self, wanted: int) -> int:
        """Rrset changes allowed without --force when wanted rrsets are expected."""
        return max(self.max_changes, int(wanted * self.max_percent / 100))


@dataclass(frozen=True)
class Accounted:
    """What NetBox accounts for: the names and addresses of addresses it assigns to our VMs or devices."""

    zones: Zones
    names: frozenset[tuple[bytes, ...]] = frozenset()
    """Folded dns_names."""
    addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()

    @classmethod
    def of(cls, zones: Zones, ips: Iterable[dict[str, Any]]) -> Accounted:
        """Accounting for NetBox ip-address objects (each with its address and dns_name)."""
        names, addresses = set(), set()
        for ip in ips:
            if ip.get("dns_name"):
                names.add(folded(dns.name.from_text(str(ip["dns_name"]))))
                addresses.add(ipaddress.ip_interface(str(ip["address"])).ip)
        return cls(zones, frozenset(names), frozenset(addresses))

    def owns(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, rrset: Iterable[Any]) -> bool:
        """Whether an rrset on the server is ours: an A/AAAA of one of the names; a PTR or RFC 2317 CNAME of one
        of the addresses, or a PTR pointing only to our names (a leftover of an address that changed)."""
        if rdtype in FORWARD_TYPES:
            return folded(name) in self.names
        if reverse_address(name, self.zones) in self.addresses:
            return True
        return rdtype == dns.rdatatype.PTR and all(folded(rdata.target) in self.names for rdata in rrset)


def netbox_entries(netbox: NetBox, settings: DNSSyncSettings) -> list[dict[str, Any]]:
    """Every NetBox address with a dns_name and a status that gets records (paged reads), with its assignment."""
    return netbox.objects("ip-address", fields=IP_FIELDS, dns_name__empty=False, status=list(settings.statuses))


def entries(ips: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(dns_name, address) of NetBox addresses, sorted."""
    return sorted((str(ip["dns_name"]), str(ip["address"])) for ip in ips)


def cluster_ids(netbox: NetBox, groups: Iterable[str]) -> list[int]:
    """Ids of the NetBox clusters of the named cluster groups (unknown groups have none)."""
    found = netbox.objects("cluster-group", name=sorted(set(groups)))
    return [int(c["id"]) for c in netbox.objects("cluster", fields=("id", "name"),
                                                 group_id=[int(g["id"]) for g in found])] if found else []


def owned_by_groups(netbox: NetBox, zones: Zones, groups: Iterable[str]) -> Owns:
    """Owns() of what NetBox accounts for in the cluster groups: every address with a dns_name, whatever its status
    (a deprecated or reserved address of our VM still accounts for its old records), read when first asked (a
    diff asks only about rrsets that differ: a run with nothing to change reads nothing more)."""
    loaded: list[Accounted] = []

    def owns(name: dns.name.Name, rdtype: dns.rdatatype.RdataType, rrset: Iterable[Any]) -> bool:
        if not loaded:
            ips = netbox.objects("ip-address", fields=IP_FIELDS, dns_name__empty=False)
            loaded.append(accounted(netbox, zones, ips, cluster_ids(netbox, groups)))
        return loaded[0].owns(name, rdtype, rrset)

    return owns


def accounted(netbox: NetBox, zones: Zones, ips: Iterable[dict[str, Any]], clusters: Sequence[int]) -> Accounted:
    """Accounting for the addresses among ips assigned to an interface of a VM or device of the clusters."""
    vm_interfaces = {int(i["id"]) for found in (read_interfaces(netbox, clusters) if clusters else {}).values()
                     for i in found}
    devices = [int(d["id"]) for d in netbox.objects("device", fields=("id", "name"), cluster_id=list(clusters))
               ] if clusters else []
    on_devices = {int(ip["id"]) for ip in netbox.objects("ip-address", fields=("id",), device_id=devices)
                  } if devices else set()

    def ours(ip: dict[str, Any]) -> bool:
        kind, assigned = ip.get("assigned_object_type"), int(ip.get("assigned_object_id") or 0)
        return (kind == VM_INTERFACE_TYPE and assigned in vm_interfaces) or \
            (kind == DEVICE_INTERFACE and int(ip["id"]) in on_devices)

    return Accounted.of(zones, filter(ours, ips))


def wanted(client: DNS, entries: Iterable[tuple[str, str]], scope: Scope) -> Built:
    """The records the entries give, limited to the scope; names outside every zone are listed in skipped."""
    built = client.records(entries)
    built.records = {key: rrset for key, rrset in built.records.items() if scope.owns(*key)}
    return built


def difference(client: DNS, records: Records, scope: Scope, owns: Owns, zones: Sequence[str] | None = None) -> Diff:
    """What to change in the zones (default: every configured one) so their in-scope rrsets are exactly records,
    replacing or deleting only what owns() accepts (the rest is in Diff.left)."""
    return client.diff(records, zones=zones, keep=lambda name, rdtype: not scope.owns(name, rdtype), owns=owns)


def left_lines(diff: Diff, limit: int = 20) -> list[str]:
    """The rrsets the diff leaves alone, one line each (at most limit, then how many more), for warnings."""
    lines = [item.describe() for item in diff.left[:limit]]
    if len(diff.left) > limit:
        lines.append(f"... and {len(diff.left) - limit} more rrsets left as they are")
    return lines


def check_threshold(diff: Diff, wanted_count: int, settings: DNSSyncSettings, *, force: bool) -> None:
    """Raise ThresholdExceeded when diff changes more rrsets than allowed, unless force."""
    limit = settings.limit(wanted_count)
    if len(diff) > limit and not force:
        counts = ", ".join(f"{count} {action}" for action, count in diff.counts().items() if count)
        raise ThresholdExceeded(
            f"the difference changes {len(diff)} rrsets ({counts}), more than the threshold of {limit} "
            f"(dns.netbox.max_changes {settings.max_changes}, max_percent {settings.max_percent}% of "
            f"{wanted_count} wanted rrsets): check NetBox, then run again with --force if it is right"
        )


def rows(diff: Diff) -> list[tuple[str, str, str, str, str]]:
    """The difference as table rows: zone, action, owner, type, records (old -> new for a replace)."""
    table = []
    for change in diff:
        old = " ".join(sorted(rdata.to_text() for rdata in change.old or ()))
        new = " ".join(sorted(rdata.to_text() for rdata in change.new or ()))
        shown = f"{old} -> {new}" if change.action == "replace" else (new or old)
        table.append((change.zone.to_text(), change.action, change.name.to_text(),
                      dns.rdatatype.to_text(change.rdtype), shown))
    return table


def write_snippets(client: DNS, records: Records, directory: Path, zones: Sequence[str] | None = None, *,
                   changes: ChangeLog) -> list[Path]:
    """Write one validated zone file snippet per zone (see snippets.write; in dry-run only shown); returns the files
    changed."""
    chosen = {dns.name.from_text(zone) for zone in zones} if zones else None
    texts = {zone: text for zone, text in client.snippets(records).items() if chosen is None or zone in chosen}
    return snippets.write(directory, texts, dry_run=client.dry_run, changes=changes)


def host_addresses(ips: Iterable[dict[str, Any]], name: str, settings: DNSSyncSettings) -> list[str]:
    """Addresses (without mask) among NetBox ips named name whose status gets DNS records, deduplicated."""
    found = {str(ip["address"]).split("/")[0] for ip in ips
             if str(ip.get("dns_name") or "").rstrip(".").lower() == name.rstrip(".").lower()
             and _status(ip) in settings.statuses}
    return sorted(found)


def _status(ip: dict[str, Any]) -> str:
    status = ip.get("status") or "active"
    return str(status.get("value") if isinstance(status, dict) else status)
