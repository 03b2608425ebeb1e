"""Build the records a set of (name, address) pairs should have: A/AAAA forward, PTR reverse, RFC 2317 CNAMEs.

Records are dnspython rrsets keyed by (owner name, type), with absolute names, so that the
zone read from the server and the records wanted compare directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from libcluster.dns.errors import DNSZoneError
from libcluster.dns.zones import Zones

RRsetKey = tuple[dns.name.Name, dns.rdatatype.RdataType]
"""An rrset's identity: owner name and type."""

Records = dict[RRsetKey, dns.rrset.RRset]
"""Rrsets by (owner name, type)."""


@dataclass
class Built:
    """Records built for some (name, address) pairs, and what could not be placed in a configured zone."""

    records: Records = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """One line per name or address outside every configured zone (no record made for it)."""


def add_record(records: Records, name: dns.name.Name, rdata: dns.rdata.Rdata, ttl: int) -> None:
    """Add one record to the rrset (name, type of rdata) of records, creating the rrset if needed."""
    key = (name, rdata.rdtype)
    rrset = records.get(key)
    if rrset is None:
        rrset = records[key] = dns.rrset.RRset(name, dns.rdataclass.IN, rdata.rdtype)
    rrset.add(rdata, ttl)


def _parse(fqdn: str, address: str) -> tuple[dns.name.Name, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        name = dns.name.from_text(fqdn.strip())
    except dns.exception.DNSException as exc:
        raise DNSZoneError(f"{fqdn!r} is not a valid DNS name: {exc}") from None
    if name == dns.name.root:
        raise DNSZoneError(f"{fqdn!r} is not a host name")
    try:
        return name, ipaddress.ip_address(address.strip().split("/", 1)[0])
    except ValueError:
        raise DNSZoneError(f"{address!r} (for {fqdn}) is not an IP address") from None


def build(entries: Iterable[tuple[str, str]], zones: Zones, ttl: int) -> Built:
    """Forward and reverse records for (fqdn, address) pairs; an address may carry its mask (NetBox style)."""
    built = Built()
    for fqdn, address in entries:
        name, ip = _parse(fqdn, address)
        if zones.zone_of(name) is None:
            built.skipped.append(f"{name}: no configured zone holds this name, no A/AAAA record")
        elif ip.version == 4:
            add_record(built.records, name, A(dns.rdataclass.IN, dns.rdatatype.A, str(ip)), ttl)
        else:
            add_record(built.records, name, AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, str(ip)), ttl)
        owner, alias = zones.ptr_owner(ip)
        if zones.zone_of(owner) is None:
            built.skipped.append(f"{ip}: no configured reverse zone holds {owner}, no PTR record")
            continue
        add_record(built.records, owner, PTR(dns.rdataclass.IN, dns.rdatatype.PTR, name), ttl)
        if alias is not None and zones.zone_of(alias) is not None:
            add_record(built.records, alias, CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, owner), ttl)
    return built
