"""The difference between the records wanted and those on the server, rrset by rrset.

Only rrsets we manage are compared (see :meth:`Zones.managed`): SOA, NS, MX, TXT and any
hand-made record of another type are never touched. An rrset differs when its records or its
TTL differ; it is then added, deleted or replaced as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns.errors import DNSZoneError
from libcluster.dns.records import Records, RRsetKey
from libcluster.dns.zones import Zones

Keep = Callable[[dns.name.Name, dns.rdatatype.RdataType], bool]
"""A predicate on an rrset found on the server: True keeps it even though nothing wants it."""


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
class Diff:
    """Every rrset change, ordered by zone then owner name then type."""

    changes: tuple[RRsetChange, ...] = ()

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
        """The difference as text, one line per rrset, under a header line per zone (for dry-run output)."""
        lines: list[str] = []
        for zone, changes in self.by_zone().items():
            lines.append(f"zone {zone}:")
            lines.extend(f"  {change.describe()}" for change in changes)
        return lines


def _equal(wanted: dns.rrset.RRset, actual: dns.rrset.RRset) -> bool:
    return wanted.ttl == actual.ttl and wanted == actual


def compute(wanted: Records, actual: Records, zones: Zones, *,
            scope: Collection[RRsetKey] | None = None, keep: Keep | None = None) -> Diff:
    """The changes that make the server's managed rrsets (actual) equal to wanted.

    scope limits the comparison to some (name, type) keys (e.g. one host's records); keep protects
    rrsets found on the server that nothing wants (e.g. hand-made records of the zone).
    """
    keys = set(wanted) | {
        key for key in actual if zones.managed(*key) and not (keep is not None and keep(*key))
    }
    if scope is not None:
        keys &= set(scope)
    changes = []
    for key in keys:
        new, old = wanted.get(key), actual.get(key)
        if new is not None and old is not None and _equal(new, old):
            continue
        zone = zones.zone_of(key[0])
        if zone is None:
            raise DNSZoneError(f"{key[0]}: no configured zone holds this name")
        changes.append(RRsetChange(zone=zone, old=old, new=new))
    changes.sort(key=lambda change: (change.zone.labels[::-1], change.name.labels[::-1], change.rdtype))
    return Diff(tuple(changes))
