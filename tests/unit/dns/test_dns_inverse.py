"""The undo data of DNS changes: JSON-safe rrsets before and after, read back exactly, TTL included."""

from __future__ import annotations

import json

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns.diff import RRsetChange
from libcluster.dns.inverse import ACTION, data, declared, holds, rrset_of

ZONE = dns.name.from_text("lab.example")
NAME = dns.name.from_text("vm1.lab.example")


def _a(ttl: int, *addresses: str) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(NAME, ttl, "IN", "A", list(addresses))


def test_a_replace_is_undone_by_its_old_rrset_kept_as_text() -> None:
    undo = declared(RRsetChange(zone=ZONE, old=_a(300, "198.18.16.5"), new=_a(600, "198.18.16.7", "198.18.16.6")))
    assert (undo.system, undo.action, undo.target, undo.kind) == ("dns", ACTION, "vm1.lab.example.", "rrset")
    args = json.loads(json.dumps(dict(undo.args)))
    assert args == {"name": "vm1.lab.example.", "type": "A", "zone": "lab.example.",
                    "old": {"ttl": 300, "rdata": ["198.18.16.5"]},
                    "new": {"ttl": 600, "rdata": ["198.18.16.6", "198.18.16.7"]}}
    assert holds(rrset_of(NAME, dns.rdatatype.A, args["new"]), _a(600, "198.18.16.6", "198.18.16.7"))


def test_an_add_is_undone_by_nothing() -> None:
    undo = declared(RRsetChange(zone=ZONE, old=None, new=_a(300, "198.18.16.5")))
    assert undo.args["old"] is None and rrset_of(NAME, dns.rdatatype.A, None) is None
    assert data(None) is None


def test_holds_compares_records_and_ttl() -> None:
    assert holds(None, None) and not holds(_a(300, "198.18.16.5"), None) and not holds(None, _a(300, "198.18.16.5"))
    assert not holds(_a(300, "198.18.16.5"), _a(600, "198.18.16.5"))
    assert not holds(_a(300, "198.18.16.5"), _a(300, "198.18.16.6"))
