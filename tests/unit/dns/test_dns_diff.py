"""Differences between wanted and actual rrsets: adds, deletes, replaces, what is never touched."""

from __future__ import annotations

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns import Zones
from libcluster.dns.diff import compute
from libcluster.dns.records import Records, build
from cookbook_lab import topology

ZONES = Zones(topology.DNS_ZONES)


def rrset(owner: str, ttl: int, rdtype: str, *values: str) -> dns.rrset.RRset:
    """An rrset from text."""
    return dns.rrset.from_text(owner, ttl, "IN", rdtype, *values)


def records(*rrsets: dns.rrset.RRset) -> Records:
    """Records keyed as the library keys them."""
    return {(item.name, item.rdtype): item for item in rrsets}


def test_no_difference_when_equal() -> None:
    wanted = build([("vm1.lab.example", "198.18.16.1")], ZONES, 300).records
    actual = build([("vm1.lab.example", "198.18.16.1")], ZONES, 300).records
    assert len(compute(wanted, actual, ZONES)) == 0


def test_add_delete_and_replace_each_rrset_as_a_whole() -> None:
    wanted = records(rrset("new.lab.example.", 300, "A", "198.18.16.20"),
                     rrset("moved.lab.example.", 300, "A", "198.18.16.22"),
                     rrset("ttl.lab.example.", 300, "A", "198.18.16.23"))
    actual = records(rrset("moved.lab.example.", 300, "A", "198.18.16.21"),
                     rrset("gone.lab.example.", 300, "A", "198.18.16.24"),
                     rrset("ttl.lab.example.", 3600, "A", "198.18.16.23"))
    diff = compute(wanted, actual, ZONES)
    actions = {change.name.to_text(): change.action for change in diff}
    assert actions == {"new.lab.example.": "add", "moved.lab.example.": "replace",
                       "gone.lab.example.": "delete", "ttl.lab.example.": "replace"}
    assert diff.counts() == {"add": 1, "replace": 2, "delete": 1}
    assert all(change.zone == dns.name.from_text(topology.DOMAIN) for change in diff)
    lines = diff.lines()
    assert lines[0] == f"zone {topology.DOMAIN}.:"
    assert "  + new.lab.example. 300 A 198.18.16.20" in lines
    assert "  - gone.lab.example. 300 A 198.18.16.24" in lines
    assert "  ~ moved.lab.example. A 300 198.18.16.21 -> 300 198.18.16.22" in lines


def test_unmanaged_rrsets_on_the_server_are_never_deleted() -> None:
    actual = records(rrset("lab.example.", 300, "MX", "10 mail.lab.example."),
                     rrset("www.lab.example.", 300, "CNAME", "web.lab.example."),
                     rrset("lab.example.", 300, "NS", "ns1.lab.example."),
                     rrset("lab.example.", 300, "SOA", "ns1.lab.example. h.lab.example. 1 2 3 4 5"),
                     rrset("txt.lab.example.", 300, "TXT", '"hello"'),
                     rrset("elsewhere.example.net.", 300, "A", "203.0.113.1"))
    assert len(compute({}, actual, ZONES)) == 0


def test_keep_and_scope_limit_what_is_compared() -> None:
    actual = records(rrset("ns1.lab.example.", 300, "A", "127.0.0.1"),
                     rrset("old.lab.example.", 300, "A", "198.18.16.9"))
    diff = compute({}, actual, ZONES, keep=lambda name, rdtype: name == dns.name.from_text("ns1.lab.example"))
    assert [change.name.to_text() for change in diff] == ["old.lab.example."]
    scope = {(dns.name.from_text("ns1.lab.example"), dns.rdatatype.A)}
    assert [change.name.to_text() for change in compute({}, actual, ZONES, scope=scope)] == ["ns1.lab.example."]


def test_change_detail_is_json_ready() -> None:
    diff = compute(records(rrset("a.lab.example.", 300, "A", "198.18.16.2", "198.18.16.1")), {}, ZONES)
    assert diff.changes[0].detail() == {"zone": "lab.example.", "type": "A", "old": [],
                                        "new": ["198.18.16.1", "198.18.16.2"], "ttl": 300}
    assert diff.changes[0].size == 3
