"""RFC 2136 messages for a diff: prerequisites per change, batching, rcodes as typed errors."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
import pytest

from libcluster.dns import DNSAuthError, DNSPrerequisiteError, DNSRefused, Zones
from libcluster.dns.diff import RRsetChange, compute
from libcluster.dns.records import build
from libcluster.dns.update import batches, check, message
from cookbook_lab import topology

ZONE = dns.name.from_text(topology.DOMAIN)
ZONES = Zones(topology.DNS_ZONES)


def rrset(owner: str, ttl: int, rdtype: str, *values: str) -> dns.rrset.RRset:
    """An rrset from text."""
    return dns.rrset.from_text(owner, ttl, "IN", rdtype, *values)


def change(old: dns.rrset.RRset | None, new: dns.rrset.RRset | None) -> RRsetChange:
    """A change in the lab forward zone."""
    return RRsetChange(zone=ZONE, old=old, new=new)


def wire_roundtrip(update: dns.update.UpdateMessage) -> dns.update.UpdateMessage:
    """The message as the server parses it."""
    parsed = dns.message.from_wire(update.to_wire())
    assert isinstance(parsed, dns.update.UpdateMessage)
    return parsed


def test_add_requires_the_rrset_absent() -> None:
    new = rrset("vm.lab.example.", 300, "A", "198.18.16.5")
    parsed = wire_roundtrip(message(ZONE, [change(None, new)]))
    [prerequisite] = parsed.prerequisite
    # "RRset does not exist": class NONE, no data (RFC 2136 2.4.3).
    assert (prerequisite.name, prerequisite.rdtype, prerequisite.deleting) == (new.name, dns.rdatatype.A,
                                                                               dns.rdataclass.NONE)
    assert len(prerequisite) == 0
    [added] = parsed.update
    assert added == new and added.ttl == 300 and added.deleting is None


def test_replace_requires_exactly_the_old_records_then_deletes_and_adds() -> None:
    old = rrset("vm.lab.example.", 300, "A", "198.18.16.5", "198.18.16.6")
    new = rrset("vm.lab.example.", 300, "A", "198.18.16.7")
    parsed = wire_roundtrip(message(ZONE, [change(old, new)]))
    # Value-dependent "RRset exists": class IN, TTL 0, every old record (RFC 2136 2.4.2); one RR per rrset on parse.
    assert all(item.deleting is None and item.ttl == 0 for item in parsed.prerequisite)
    assert sorted(item[0].to_text() for item in parsed.prerequisite) == ["198.18.16.5", "198.18.16.6"]
    deleted, added = parsed.update
    # "Delete an RRset": class ANY, no data (RFC 2136 2.5.2), before the addition.
    assert deleted.deleting == dns.rdataclass.ANY and deleted.rdtype == dns.rdatatype.A and len(deleted) == 0
    assert added == new


def test_delete_requires_the_old_records() -> None:
    old = rrset("vm.lab.example.", 300, "AAAA", "2001:2:0:a::5")
    parsed = wire_roundtrip(message(ZONE, [change(old, None)]))
    assert [r.to_text() for r in parsed.prerequisite[0]] == ["2001:2:0:a::5"]
    [deleted] = parsed.update
    assert deleted.deleting == dns.rdataclass.ANY and deleted.rdtype == dns.rdatatype.AAAA


def test_batches_hold_at_most_the_limit_of_records() -> None:
    entries = [(f"vm{i}.lab.example", f"198.18.16.{i}") for i in range(1, 201)]
    diff = compute(build(entries, ZONES, 300).records, {}, ZONES)
    forward = diff.by_zone()[ZONE]
    groups = list(batches(forward, 50))
    assert [len(group) for group in groups] == [25] * 8
    assert sum(sum(item.size for item in group) for group in groups) == sum(item.size for item in forward)
    assert all(sum(item.size for item in group) <= 50 for group in groups)
    big = change(None, rrset("many.lab.example.", 300, "A", *(f"198.18.16.{i}" for i in range(1, 80))))
    assert [len(group) for group in batches([big, *forward[:2]], 50)] == [1, 2]


def test_rcodes_become_typed_errors() -> None:
    changes = [change(None, rrset("vm.lab.example.", 300, "A", "198.18.16.5"))]
    check(dns.rcode.NOERROR, ZONE, changes, applied=0)
    for rcode in (dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN):
        with pytest.raises(DNSPrerequisiteError, match="vm.lab.example") as caught:
            check(rcode, ZONE, changes, applied=7)
        assert caught.value.rcode == dns.rcode.to_text(rcode) and caught.value.applied == 7
    with pytest.raises(DNSAuthError, match="NOTAUTH"):
        check(dns.rcode.NOTAUTH, ZONE, changes, applied=0)
    with pytest.raises(DNSRefused, match="REFUSED"):
        check(dns.rcode.REFUSED, ZONE, changes, applied=0)
