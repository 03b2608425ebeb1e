"""What no change may touch, whoever asks for it, and the guard that also leaves alone what is not ours.

Never changed: a zone's apex, the owners of its NS rrsets other than the apex (delegations) and every
name below them, and the names its NS rrsets point to (the name servers' addresses, glue included).
A whole-zone diff learns them from the AXFR; a one-host diff asks the server (NS queries) about the
few names it would change. The guard also refuses any change outside the dns.netbox scope
(:mod:`libcluster.dns.scope`).
"""

from __future__ import annotations

from collections.abc import Callable

import dns.name
import dns.rdatatype
import dns.rrset

from libcluster.dns.diff import Guard
from libcluster.dns.scope import OUTSIDE, Scope
from libcluster.dns.server import Server
from libcluster.dns.zones import Zones, folded

Owns = Callable[[dns.name.Name, dns.rdatatype.RdataType, dns.rrset.RRset], bool]
"""Whether an rrset found on the server is ours to replace or delete (e.g. NetBox accounts for it)."""

NOT_OURS = "NetBox does not account for it (not a name or address of a VM or device of the configured clusters)"
"""Why an rrset owns() refuses is left as is."""


def owns_nothing(name: dns.name.Name, rdtype: dns.rdatatype.RdataType, rrset: dns.rrset.RRset) -> bool:
    """Owns() of a run that owns no record yet (makevm: it may only add records; one found is not its own)."""
    del name, rdtype, rrset
    return False


def owns_everything(name: dns.name.Name, rdtype: dns.rdatatype.RdataType, rrset: dns.rrset.RRset) -> bool:
    """Owns() of a caller removing records it made itself under names of its own (a test's or benchmark's
    cleanup); a cookbook passes what NetBox or its own run accounts for."""
    del name, rdtype, rrset
    return True


class Protection:
    """The NS rrsets of the zones (from an AXFR, or asked of the server name by name) and what they protect."""

    def __init__(self, zones: Zones, server: Server | None = None) -> None:
        """zones tell a name's zone apart; with a server, NS rrsets are asked for each name checked."""
        self._zones = zones
        self._server = server
        self._owners: set[dns.name.Name] = set()
        self._targets: set[tuple[bytes, ...]] = set()
        self._asked: set[dns.name.Name] = set()

    def add(self, owner: dns.name.Name, target: dns.name.Name) -> None:
        """One NS record of a zone (from its AXFR)."""
        self._owners.add(owner)
        self._targets.add(folded(target))

    def _ask(self, name: dns.name.Name) -> None:
        if self._server is None or name in self._asked:
            return
        self._asked.add(name)
        owners, targets = self._server.authority(name)
        self._owners |= owners
        self._targets |= {folded(target) for target in targets}

    def reason(self, name: dns.name.Name) -> str | None:
        """Why name must never be changed, None when nothing protects it."""
        zone = self._zones.zone_of(name)
        if zone is None:
            return None
        if name == zone:
            return "zone apex"
        self._ask(zone)
        self._ask(name)
        if folded(name) in self._targets:
            return "address of a name server of the zone"
        for owner in self._owners:
            if owner != zone and owner.is_subdomain(zone) and name.is_subdomain(owner):
                return f"at or below the delegation {owner}"
        return None


def guard(protection: Protection, scope: Scope, owns: Owns) -> Guard:
    """The diff guard every DNS write passes: protected names and rrsets outside the dns.netbox scope never change
    (adds included); an rrset on the server owns() refuses is not replaced or deleted."""
    def check(name: dns.name.Name, rdtype: dns.rdatatype.RdataType, old: dns.rrset.RRset | None) -> str | None:
        protected = protection.reason(name)
        if protected is not None:
            return protected
        if not scope.owns(name, rdtype):
            return OUTSIDE
        if old is not None and not owns(name, rdtype, old):
            return NOT_OURS
        return None

    return check
