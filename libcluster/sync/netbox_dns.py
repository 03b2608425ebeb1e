"""NetBox -> DNS: every NetBox address with a dns_name gives A/AAAA and PTR records in the configured zones.

The records are built by :mod:`libcluster.dns` (IPv4 and IPv6 reverse, RFC 2317 classless zones with
their CNAMEs), compared with the zones read by TSIG AXFR, and only the difference is applied, by
batched TSIG-signed RFC 2136 updates. Settings come from ``dns.netbox``:

- ``statuses``: address statuses that get records (default active, dhcp, slaac);
- ``max_changes``/``max_percent``: a difference of more rrsets than the larger of max_changes and
  max_percent % of the wanted rrsets stops unless forced (a NetBox outage must not empty the zones);
- ``names``/``networks``: optional scope. Forward rrsets whose owner matches none of the ``names``
  glob patterns, and reverse rrsets of addresses outside ``networks``, are neither created nor
  deleted: hand-made records living in the same zones stay. Empty means everything.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.reversename

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS, Built, Diff, Records, snippets
from libcluster.dns.zones import FORWARD_TYPES, Zones
from libcluster.errors import LibclusterError
from libcluster.netbox import NetBox

IP_FIELDS = ("id", "address", "dns_name", "status")


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
        base = cls()
        return cls(
            statuses=tuple(str(s) for s in section.list("statuses", list(base.statuses))),
            max_changes=section.int("max_changes", base.max_changes),
            max_percent=section.float("max_percent", base.max_percent),
            names=tuple(str(pattern).lower().rstrip(".") for pattern in section.list("names", [])),
            networks=tuple(str(ipaddress.ip_network(str(net))) for net in section.list("networks", [])),
        )

    def limit(self, wanted: int) -> int:
        """Rrset changes allowed without --force when wanted rrsets are expected."""
        return max(self.max_changes, int(wanted * self.max_percent / 100))


class Scope:
    """Which rrsets of the zones the NetBox sync owns (see the module docstring)."""

    def __init__(self, settings: DNSSyncSettings, zones: Zones) -> None:
        """Patterns and networks of settings; zones tell RFC 2317 owner names apart."""
        self._names = settings.names
        self._networks = [ipaddress.ip_network(net) for net in settings.networks]
        self._zones = zones

    def name_in(self, name: dns.name.Name) -> bool:
        """Whether a forward owner name is ours."""
        text = name.to_text(omit_final_dot=True).lower()
        return not self._names or any(fnmatch.fnmatchcase(text, pattern) for pattern in self._names)

    def address_in(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """Whether the reverse records of an address are ours."""
        return not self._networks or (address is not None and any(address in net for net in self._networks))

    def owns(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether the rrset (name, type) is ours to create, change or delete."""
        if rdtype in FORWARD_TYPES:
            return self.name_in(name)
        return self.address_in(reverse_address(name, self._zones))


def reverse_address(name: dns.name.Name, zones: Zones) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a reverse owner name stands for, RFC 2317 classless owners included; None if none."""
    for classless in zones.classless:
        if name.parent() == classless.zone:
            try:
                last = int(name.labels[0])
            except ValueError:
                return None
            return ipaddress.IPv4Address(int(classless.network.network_address) & ~0xFF | last)
    try:
        return ipaddress.ip_address(dns.reversename.to_address(name))
    except (dns.exception.DNSException, ValueError):
        return None


def netbox_entries(netbox: NetBox, settings: DNSSyncSettings) -> list[tuple[str, str]]:
    """(dns_name, address) of every NetBox address with a dns_name and a status that gets records (paged reads)."""
    ips = netbox.objects("ip-address", fields=IP_FIELDS, dns_name__empty=False, status=list(settings.statuses))
    return sorted((str(ip["dns_name"]), str(ip["address"])) for ip in ips)


def wanted(client: DNS, entries: Iterable[tuple[str, str]], scope: Scope) -> Built:
    """The records the entries give, limited to the scope; names outside every zone are listed in skipped."""
    built = client.records(entries)
    built.records = {key: rrset for key, rrset in built.records.items() if scope.owns(*key)}
    return built


def difference(client: DNS, records: Records, scope: Scope, zones: Sequence[str] | None = None) -> Diff:
    """What to change in the zones (default: every configured one) so their in-scope rrsets are exactly records."""
    return client.diff(records, zones=zones, keep=lambda name, rdtype: not scope.owns(name, rdtype))


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
