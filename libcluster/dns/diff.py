"""The difference between the records wanted and those on the server, rrset by rrset.

Only rrsets we manage are compared (see :meth:`Zones.managed`): SOA, NS, MX, TXT and any
hand-made record of another type are never touched. An rrset differs when its records or its
TTL differ; it is then added, deleted or replaced as a whole, unless the guard refuses it: such an
rrset (the zone apex, a name server's address, a record NetBox does not account for) is left as
it is and listed in :attr:`Diff.left`, so callers report it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns.errors import DNSZoneError
from libcluster.dns.records import Found, Records, RRsetKey, folded_key
from libcluster.dns.zones import Zones

Keep = Callable[[dns.name.Name, dns.rdatatype.RdataType], bool]
"""A predicate on an rrset found on the server: True keeps it, silently, even though nothing wants it (out of scope)."""

Guard = Callable[[dns.name.Name, dns.rdatatype.RdataType, "dns.rrset.RRset | None"], "str | None"]
"""Asked for every rrset that would change, with what the server holds (None: nothing): why it must be left
as it is, or None when it may change."""


def _texts(rrset: dns.rrset.RRset | None) -> list[str]:
    return sorted(rdata.to_text() for rdata in rrset) if rrset is not None else []


@dataclass(frozen=True)
class RRsetChange:
    """One rrset to add (old None), delete (new None) or replace, in its zone."""

    zone: dns.name.Name
    old: dns.rrset.RRset | None
    new: dns.rrset.RRset | None

    @property
    def rrset(self) -> dns.rrset.RRset:
        """The rrset concerned (the new one, or the old one for a delete)."""
        rrset = self.new if self.new is not None else self.old
        assert rrset is not None, "a change has an old or a new rrset"
        return rrset

    @property
    def name(self) -> dns.name.Name:
        """Owner name."""
        return self.rrset.name

    @property
    def rdtype(self) -> dns.rdatatype.RdataType:
        """Record type."""
        return self.rrset.rdtype

    @property
    def action(self) -> str:
        """'add', 'delete' or 'replace'."""
        if self.old is None:
            return "add"
        return "delete" if self.new is None else "replace"

    @property
    def size(self) -> int:
        """Records this change puts in an update message.

        The old rrset as prerequisite (or one absence record), one whole-rrset deletion or nothing, the new records.
        """
        return len(self.old or ()) + len(self.new or ()) + 1

    def describe(self) -> str:
        """One line: `+`, `-` or `~`, the owner, type, TTL and records (old -> new for a replace)."""
        rdtype = dns.rdatatype.to_text(self.rdtype)
        if self.action == "add":
            return f"+ {self.name} {self.rrset.ttl} {rdtype} {' '.join(_texts(self.new))}"
        if self.action == "delete":
            return f"- {self.name} {self.rrset.ttl} {rdtype} {' '.join(_texts(self.old))}"
        assert self.old is not None
        return (f"~ {self.name} {rdtype} {self.old.ttl} {' '.join(_texts(self.old))}"
                f" -> {self.rrset.ttl} {' '.join(_texts(self.new))}")

    def detail(self) -> dict[str, object]:
        """The change as JSON-ready data for the ChangeLog."""
        ttl = self.new.ttl if self.new is not None else None
        return {"zone": self.zone.to_text(), "type": dns.rdatatype.to_text(self.rdtype),
                "old": _texts(self.old), "new": _texts(self.new), "ttl": ttl}


@dataclass(frozen=True)
class Left:
    """An rrset that differs from what is wanted but is not ours to change: reported, never touched."""

    zone: dns.name.Name
    old: dns.rrset.RRset | None
    new: dns.rrset.RRset | None
    reason: str

    @property
    def rrset(self) -> dns.rrset.RRset:
        """The rrset concerned (the one on the server, or the one wanted when the server has none)."""
        rrset = self.old if self.old is not None else self.new
        assert rrset is not None, "a left rrset has an old or a new rrset"
        return rrset

    def describe(self) -> str:
        """One line: the owner, type and records the server has, what was wanted, and why it is left alone."""
        rrset = self.rrset
        have = " ".join(_texts(self.old)) or "nothing"
        want = " ".join(_texts(self.new)) or "nothing"
        return (f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: the server has {have}, NetBox gives {want}; "
                f"left as is: {self.reason}")


@dataclass(frozen=True)
class Diff:
    """Every rrset change, ordered by zone then owner name then type; and the rrsets left alone, with why."""

    changes: tuple[RRsetChange, ...] = ()
    left: tuple[Left, ...] = ()

    def __len__(self) -> int:
        """Number of rrsets to change."""
        return len(self.changes)

    def __iter__(self) -> Iterator[RRsetChange]:
        """The changes in order."""
        return iter(self.changes)

    def by_zone(self) -> dict[dns.name.Name, list[RRsetChange]]:
        """The changes grouped by zone, in order."""
        grouped: dict[dns.name.Name, list[RRsetChange]] = {}
        for change in self.changes:
            grouped.setdefault(change.zone, []).append(change)
        return grouped

    def counts(self) -> dict[str, int]:
        """How many rrsets would be added, replaced and deleted."""
        actions = [change.action for change in self.changes]
        return {action: actions.count(action) for action in ("add", "replace", "delete")}

    def lines(self) -> list[str]:
        """The difference as text, one line per rrset, under a header line per zone (for dry-run output); the
        rrsets left alone follow their zone's changes, marked `!`."""
        by_zone = self.by_zone()
        left: dict[dns.name.Name, list[Left]] = {}
        for item in self.left:
            left.setdefault(item.zone, []).append(item)
        lines: list[str] = []
        for zone in [*by_zone, *(zone for zone in left if zone not in by_zone)]:
            lines.append(f"zone {zone}:")
            lines.extend(f"  {change.describe()}" for change in by_zone.get(zone, []))
            lines.extend(f"  ! {item.describe()}" for item in left.get(zone, []))
        return lines


def compute(wanted: Records | Found, actual: Records | Found, zones: Zones, *,
            scope: Collection[RRsetKey] | None = None, keep: Keep | None = None, guard: Guard | None = None) -> Diff:
    """The changes that make the server's managed rrsets (actual) equal to wanted.

    scope limits the comparison to some (name, type) keys (e.g. one host's records); keep silently
    protects rrsets found on the server that nothing wants (out of scope); guard is asked about every
    rrset that would change and may leave it alone (it then goes to Diff.left). Rrsets are compared by
    folded keys, and dnspython rrsets built only for those that differ.
    """
    want = wanted if isinstance(wanted, Found) else Found.of(wanted)
    found = actual if isinstance(actual, Found) else Found.of(actual)
    allowed = {folded_key(*key) for key in scope} if scope is not None else None
    changes, left = [], []
    for key in want.rrsets.keys() | found.rrsets.keys():
        if allowed is not None and key not in allowed:
            continue
        new, old = want.rrsets.get(key), found.rrsets.get(key)
        if new is not None and old is not None and new.same(old):
            continue
        some = new if new is not None else old
        assert some is not None
        name, rdtype = some.name, some.rdtype
        if new is None and (not zones.managed(name, rdtype) or (keep is not None and keep(name, rdtype))):
            continue
        zone = zones.zone_of(name)
        if zone is None:
            raise DNSZoneError(f"{name}: no configured zone holds this name")
        old_rrset = old.rrset() if old is not None else None
        new_rrset = new.rrset() if new is not None else None
        reason = guard(name, rdtype, old_rrset) if guard is not None else None
        if reason is not None:
            left.append(Left(zone=zone, old=old_rrset, new=new_rrset, reason=reason))
        else:
            changes.append(RRsetChange(zone=zone, old=old_rrset, new=new_rrset))
    changes.sort(key=lambda change: (change.zone.labels[::-1], change.name.labels[::-1], change.rdtype))
    left.sort(key=lambda item: (item.zone.labels[::-1], item.rrset.name.labels[::-1], item.rrset.rdtype))
    return Diff(tuple(changes), tuple(left))
