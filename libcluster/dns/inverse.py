"""The undo of a DNS change: put an rrset back as it was, only while the server still answers what was written.

Each rrset an update message changes gets its own undo, `rrset-restore`, holding the rrset before and
after (TTL and records as text, JSON-safe). Restoring reads the rrset again: as it was before, there is
nothing to do (the change never reached the server, or was undone already); as written, it goes back
through the same guard as every DNS change (zone apexes, delegations, name servers' addresses and names
outside the dns.netbox scope are never touched); anything else was changed by someone since, and is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns.diff import RRsetChange
from libcluster.undo import Undo

ACTION = "rrset-restore"
"""The undo action of every DNS change."""


def data(rrset: dns.rrset.RRset | None) -> dict[str, Any] | None:
    """An rrset as JSON-safe data: its TTL and its records as text (None: no rrset)."""
    if rrset is None:
        return None
    return {"ttl": int(rrset.ttl), "rdata": sorted(rdata.to_text() for rdata in rrset)}


def rrset_of(name: dns.name.Name, rdtype: dns.rdatatype.RdataType,
             value: Mapping[str, Any] | None) -> dns.rrset.RRset | None:
    """The rrset data() made (None stays None)."""
    if value is None:
        return None
    return dns.rrset.from_text_list(name, int(value["ttl"]), "IN", rdtype, [str(text) for text in value["rdata"]])


def declared(change: RRsetChange) -> Undo:
    """The undo of one rrset change: the rrset before and after it."""
    return Undo("dns", ACTION, change.name.to_text(), {
        "name": change.name.to_text(), "type": dns.rdatatype.to_text(change.rdtype), "zone": change.zone.to_text(),
        "old": data(change.old), "new": data(change.new),
    })


def holds(got: dns.rrset.RRset | None, want: dns.rrset.RRset | None) -> bool:
    """Whether the server's rrset (None: nothing) is exactly want (None: nothing), TTL included."""
    if got is None or want is None:
        return got is None and want is None
    return got == want and got.ttl == want.ttl


def describe(rrset: dns.rrset.RRset | None) -> str:
    """The TTL and records of an rrset, or "nothing", for messages."""
    value = data(rrset)
    return f"{value['ttl']} {' '.join(value['rdata'])}" if value else "nothing"
