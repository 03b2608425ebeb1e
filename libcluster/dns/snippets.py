"""Zone file snippets of records (for setups that keep zones in git), validated by parsing them back.

A snippet starts with `$ORIGIN zone.` and holds the zone's rrsets relative to it, sorted, so
that it can be `$INCLUDE`d in a hand-written zone file and diffs in git stay small.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from libcluster.dns.errors import DNSSnippetError, DNSZoneError
from libcluster.dns.records import Records
from libcluster.dns.zones import Zones


def render(zone: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> str:
    """The snippet text of rrsets of zone: $ORIGIN line, then one line per record, sorted by name and type.

    Owners are relative to the origin; record data keeps absolute names, which read unambiguously.
    """
    lines = [f"$ORIGIN {zone.to_text()}"]
    for rrset in sorted(rrsets, key=lambda rrset: (rrset.name, rrset.rdtype)):
        owner = rrset.name.relativize(zone).to_text()
        kind = f"{dns.rdataclass.to_text(rrset.rdclass)} {dns.rdatatype.to_text(rrset.rdtype)}"
        lines.extend(sorted(f"{owner} {rrset.ttl} {kind} {rdata.to_text()}" for rdata in rrset))
    return "\n".join(lines) + "\n"


def parse(zone: dns.name.Name, text: str) -> Records:
    """The rrsets of a snippet, parsed by dnspython's zone file reader (no SOA or NS needed)."""
    try:
        parsed = dns.zone.from_text(text, origin=zone, relativize=False, check_origin=False)
    except dns.exception.DNSException as exc:
        raise DNSSnippetError(f"snippet of zone {zone} does not parse: {exc}") from None
    records: Records = {}
    for name, rdataset in parsed.iterate_rdatasets():
        rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
        rrset.update(rdataset)
        records[(name, rdataset.rdtype)] = rrset
    return records


def validate(zone: dns.name.Name, text: str, expected: Records) -> None:
    """Raise DNSSnippetError unless text parses back to exactly expected (records and TTLs)."""
    parsed = parse(zone, text)
    if set(parsed) != set(expected):
        missing = sorted(str(name) for name, _ in set(expected) - set(parsed))
        extra = sorted(str(name) for name, _ in set(parsed) - set(expected))
        raise DNSSnippetError(f"snippet of zone {zone}: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, rrset in expected.items():
        if parsed[key] != rrset or parsed[key].ttl != rrset.ttl:
            raise DNSSnippetError(f"snippet of zone {zone}: {key[0]} parses back as {parsed[key]}, not {rrset}")


def snippets(records: Records, zones: Zones) -> dict[dns.name.Name, str]:
    """One validated snippet per zone holding some of records."""
    by_zone: dict[dns.name.Name, Records] = {}
    for key, rrset in records.items():
        zone = zones.zone_of(key[0])
        if zone is None:
            raise DNSZoneError(f"{key[0]}: no configured zone holds this name")
        by_zone.setdefault(zone, {})[key] = rrset
    texts = {}
    for zone, zone_records in sorted(by_zone.items()):
        text = render(zone, zone_records.values())
        validate(zone, text, zone_records)
        texts[zone] = text
    return texts
