"""Build the records a set of (name, address) pairs should have: A/AAAA forward, PTR reverse, RFC 2317 CNAMEs.

Records are dnspython rrsets keyed by (owner name, type), with absolute names. Rrsets read from the
server are kept in :class:`Found`, compared by case-folded keys: hashing and comparing dnspython names
and records costs more than reading the zone, so rrsets are only built for what differs.
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
from libcluster.dns.zones import Zones, folded

RRsetKey = tuple[dns.name.Name, dns.rdatatype.RdataType]
"""An rrset's identity: owner name and type."""

Records = dict[RRsetKey, dns.rrset.RRset]
"""Rrsets by (owner name, type)."""

FoldedKey = tuple[tuple[bytes, ...], int]
"""An rrset's identity compared cheaply: lower-cased owner labels and type."""


def folded_key(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> FoldedKey:
    """The folded key of (name, type)."""
    return folded(name), int(rdtype)


def _rdata_key(rdata: dns.rdata.Rdata) -> object:
    """What tells records of one type apart: the address, the folded target, else the canonical wire form."""
    target = getattr(rdata, "target", None)
    if isinstance(target, dns.name.Name):
        return folded(target)
    address = getattr(rdata, "address", None)
    return address if isinstance(address, str) else rdata.to_digestable()


@dataclass
class FoundRRset:
    """One rrset as read: owner, type, TTL and its records; the dnspython rrset is built on demand."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ttl: int
    rdatas: list[dns.rdata.Rdata]
    built: dns.rrset.RRset | None = None

    def same(self, other: FoundRRset) -> bool:
        """Same TTL and same records (order and duplicates aside)."""
        return self.ttl == other.ttl and {_rdata_key(r) for r in self.rdatas} == {_rdata_key(r) for r in other.rdatas}

    def rrset(self) -> dns.rrset.RRset:
        """The dnspython rrset."""
        if self.built is None:
            self.built = dns.rrset.RRset(self.name, dns.rdataclass.IN, self.rdtype)
            for rdata in self.rdatas:
                self.built.add(rdata, self.ttl)
        return self.built


class Found:
    """Rrsets by folded key, filled one record at a time (from an AXFR) or from Records."""

    def __init__(self) -> None:
        """Empty."""
        self.rrsets: dict[FoldedKey, FoundRRset] = {}

    @classmethod
    def of(cls, records: Records) -> Found:
        """The rrsets of records (kept as they are)."""
        found = cls()
        for (name, rdtype), rrset in records.items():
            found.rrsets[folded_key(name, rdtype)] = FoundRRset(name, rdtype, rrset.ttl, list(rrset), rrset)
        return found

    def add(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, ttl: int, rdata: dns.rdata.Rdata,
            labels: tuple[bytes, ...] | None = None) -> None:
        """Add one record (the rrset's TTL is the lowest of its records', as dnspython does); labels: name folded."""
        key = (labels if labels is not None else folded(name), int(rdtype))
        found = self.rrsets.get(key)
        if found is None:
            self.rrsets[key] = FoundRRset(name, rdtype, ttl, [rdata])
        else:
            found.ttl = min(found.ttl, ttl)
            found.rdatas.append(rdata)
            found.built = None

    def records(self) -> Records:
        """Everything as Records (dnspython rrsets)."""
        return {(found.name, found.rdtype): found.rrset() for found in self.rrsets.values()}


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
