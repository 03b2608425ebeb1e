"""The DNS client cookbooks use: build records, read zones, diff, apply by batched guarded updates, dry-run aware.

Every rrset change applied is journaled in the run's ChangeLog (intent before its update message, result
after, with its undo: see libcluster.dns.inverse); in dry-run it is only recorded and nothing is sent to
the server beyond reads (AXFR, queries).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import dns.exception
import dns.name
import dns.rdatatype
import dns.rrset

from libcluster import redact
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import inverse, update
from libcluster.dns.diff import Diff, Keep, RRsetChange, compute
from libcluster.dns.errors import DNSAnswerLost, DNSError, DNSUnavailable, DNSZoneError
from libcluster.dns.protection import Owns, Protection, guard
from libcluster.dns.records import Built, Found, Records, RRsetKey, build
from libcluster.dns.scope import Scope, ScopeSettings
from libcluster.dns.server import Server
from libcluster.dns.snippets import snippets
from libcluster.dns.zones import FORWARD_TYPES, Zones, folded
from libcluster.writes import NotOursError, Write, undoing, writing_all

if TYPE_CHECKING:
    from dns.rdtypes.ANY.NS import NS

logger = logging.getLogger(__name__)

SYSTEM = "dns"
"""System name of DNS entries in the ChangeLog."""


def _among(zone: dns.name.Name | None, origins: Sequence[dns.name.Name]) -> bool:
    """Whether zone (one of Zones.names) is one of origins (also from Zones.names): by identity, Name's == is slow."""
    return any(zone is origin for origin in origins)


class DNS:
    """Records of the configured zones on one authoritative server, changed by TSIG-signed RFC 2136 updates."""

    def __init__(self, config: Section, *, dry_run: bool, changes: ChangeLog) -> None:
        """Set up from the `dns` config section (server, port, tsig_*, ttl, timeout, zones; update_batch and the
        netbox.names/networks scope optional)."""
        secret = config.str("tsig_secret")
        redact.register(secret)
        self.dry_run = dry_run
        self.ttl = config.int("ttl", 3600)
        self.batch = config.int("update_batch", update.DEFAULT_BATCH)
        self.zones = Zones(config.list("zones"))
        self.scope = Scope(ScopeSettings.from_section(config.section("netbox", {})), self.zones)
        """The dns.netbox scope: no change of any path creates, changes or deletes an rrset outside it."""
        self.server = Server(
            config.str("server"), config.int("port", 53), keyname=config.str("tsig_name"),
            algorithm=config.str("tsig_algorithm", "hmac-sha256"), secret=secret, timeout=config.float("timeout", 10.0),
        )
        self.messages_sent = 0
        """Update messages sent so far (benchmarks and tests check batching with it)."""
        self._changes = changes

    # Building and reading

    def records(self, entries: Iterable[tuple[str, str]]) -> Built:
        """A/AAAA, PTR (and RFC 2317 CNAME) records for (fqdn, address) pairs, with the configured TTL."""
        return build(entries, self.zones, self.ttl)

    def zone_records(self, zone: str | dns.name.Name) -> Records:
        """The managed rrsets of a configured zone, read by TSIG-signed AXFR (no SOA, NS or other types)."""
        found = Found()
        self._read(self._zone(zone), found)
        return found.records()

    def current(self, keys: Iterable[RRsetKey]) -> Records:
        """The rrsets the server answers for some (name, type) keys, by direct queries (for a few names)."""
        found: Records = {}
        for name, rdtype in set(keys):
            rrset = self.server.query(name, rdtype)
            if rrset is not None:
                found[(name, rdtype)] = rrset
        return found

    def resolve(self, name: str, rdtype: str = "A") -> list[str]:
        """The records the server itself answers for name and type, as text (empty when none)."""
        rrset = self.server.query(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        return sorted(rdata.to_text() for rdata in rrset) if rrset is not None else []

    def serial(self, zone: str | dns.name.Name) -> int:
        """The SOA serial the server has for a configured zone."""
        return self.server.serial(self._zone(zone))

    def snippets(self, records: Records) -> dict[dns.name.Name, str]:
        """Zone file snippets of records, one per zone, each checked by parsing it back."""
        return snippets(records, self.zones)

    # Differences

    def diff(self, wanted: Records, *, zones: Iterable[str | dns.name.Name] | None = None,
             keep: Keep | None = None, owns: Owns) -> Diff:
        """What to change so the given zones (default: all configured) hold exactly the wanted managed rrsets.

        The zones are read by AXFR. The zone apex, the names of its NS rrsets (delegations and the names
        below them), the name servers' addresses and rrsets outside the dns.netbox scope (see self.scope) are
        never changed, not even added (they are in Diff.left); rrsets keep() accepts are silently
        kept; an rrset on the server that owns() refuses is neither replaced nor deleted (see Diff.left).
        Wanted records of other zones are ignored.
        """
        chosen = {self._zone(zone) for zone in zones} if zones is not None else set(self.zones.names)
        origins = [zone for zone in self.zones.names if zone in chosen]
        found, protection = Found(), Protection(self.zones)
        for origin in origins:
            self._read(origin, found, protection)
        want = Found.of(wanted)
        want.rrsets = {key: rrset for key, rrset in want.rrsets.items()
                       if _among(self.zones.zone_of_folded(key[0]), origins)}
        return compute(want, found, self.zones, keep=keep, guard=guard(protection, self.scope, owns))

    def host_diff(self, fqdn: str, addresses: Iterable[str], *, owns: Owns) -> Diff:
        """What to change so fqdn has exactly these addresses, with PTRs; PTRs of its old addresses go too.

        Only this host's rrsets are read (direct queries), so this is cheap for one VM. An old address's
        PTR is left alone when it no longer points to fqdn. As in diff(), zone apexes, delegations,
        name servers' addresses (asked by NS queries for what would change) and rrsets outside the
        dns.netbox scope are never changed, and an
        rrset on the server that owns() refuses is left as is (see Diff.left).
        """
        built = self.records((fqdn, address) for address in addresses)
        name = dns.name.from_text(fqdn)
        if self.zones.zone_of(name) is None:
            raise DNSZoneError(f"{fqdn}: no configured zone holds this name")
        for line in built.skipped:
            logger.warning("DNS: %s", line)
        forward = {(name, rdtype) for rdtype in FORWARD_TYPES}
        old: list[set[RRsetKey]] = []
        for rrset in self.current(forward).values():
            for rdata in rrset:
                owner, alias = self.zones.ptr_owner(ipaddress.ip_address(rdata.address))
                if self.zones.zone_of(owner) is None:
                    continue  # not ours to read or change: the server may refuse queries outside its zones
                old.append({(owner, dns.rdatatype.PTR)} | ({(alias, dns.rdatatype.CNAME)} if alias else set()))
        scope = forward | set(built.records) | {key for keys in old for key in keys}
        actual = self.current(scope)
        for keys in old:
            ptr = next(key for key in keys if key[1] == dns.rdatatype.PTR)
            if ptr not in built.records and ptr in actual and all(rdata.target != name for rdata in actual[ptr]):
                scope -= keys
        protection = Protection(self.zones, self.server)
        return compute(built.records, actual, self.zones, scope=scope, guard=guard(protection, self.scope, owns))

    # Changes

    def apply(self, diff: Diff) -> int:
        """Apply diff with TSIG-signed updates of up to `update_batch` records per message; returns messages sent.

        In dry-run nothing is sent: each change is only recorded (and logged). A failed prerequisite raises
        DNSPrerequisiteError; the messages before it stay applied and recorded.
        """
        if self.dry_run:
            for change in diff:
                self._record(change)
            return 0
        if not diff:
            return 0
        sent = applied = 0
        with self.server.connection() as sock:
            for zone, changes in diff.by_zone().items():
                for batch in update.batches(changes, self.batch):
                    sent += self._send(zone, batch, sock, applied)
                    applied += len(batch)
        return sent

    def set_host(self, fqdn: str, addresses: Iterable[str], *, owns: Owns) -> Diff:
        """Make fqdn's A/AAAA and PTR records match addresses (see host_diff) and return what changed."""
        diff = self.host_diff(fqdn, addresses, owns=owns)
        self.apply(diff)
        return diff

    def remove_host(self, fqdn: str, *, owns: Owns) -> Diff:
        """Remove fqdn's A/AAAA records and the PTRs of its addresses that owns() accepts; returns what changed."""
        return self.set_host(fqdn, [], owns=owns)

    # Undo

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Put back an rrset a change wrote (`rrset-restore`, see libcluster.dns.inverse): "undone" or "absent".

        Idempotent: an rrset as it was before needs nothing. Only an rrset the server still answers exactly
        as written goes back, through the guard every change passes; one changed since, or that the guard
        protects (apex, delegation, name server address, outside the dns.netbox scope), raises NotOursError.
        """
        if action != inverse.ACTION:
            raise DNSError(f"unknown DNS undo action {action!r} (known: {inverse.ACTION})")
        name, rdtype = dns.name.from_text(str(args["name"])), dns.rdatatype.from_text(str(args["type"]))
        old, new = inverse.rrset_of(name, rdtype, args.get("old")), inverse.rrset_of(name, rdtype, args.get("new"))
        what = f"DNS {name} {dns.rdatatype.to_text(rdtype)}"
        current = self.server.query(name, rdtype)
        if inverse.holds(current, old):
            return "absent"
        if not inverse.holds(current, new):
            raise NotOursError(f"{what}: the server has {inverse.describe(current)}, this run wrote "
                               f"{inverse.describe(new)}: changed since, left as is")
        key = (name, rdtype)

        def written(owner: dns.name.Name, kind: dns.rdatatype.RdataType, rrset: dns.rrset.RRset) -> bool:
            return inverse.holds(rrset, new)

        checked = guard(Protection(self.zones, self.server), self.scope, written)
        restore = compute({key: old} if old is not None else {}, {key: current} if current is not None else {},
                          self.zones, scope={key}, guard=checked)
        if restore.left:
            raise NotOursError(f"{what}: not restored to {inverse.describe(old)}: {restore.left[0].reason}")
        with self.server.connection() as sock:
            for zone, changes in restore.by_zone().items():
                self._update(zone, changes, sock, 0)
        logger.info("Undo: %s back to %s", what, inverse.describe(old))
        return "undone"

    # Internals

    def _zone(self, zone: str | dns.name.Name) -> dns.name.Name:
        name = zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)
        for configured in self.zones.names:
            if configured == name:
                return configured
        raise DNSZoneError(f"{zone} is not a configured zone ({', '.join(map(str, self.zones.names))})")

    def _read(self, origin: dns.name.Name, found: Found, protection: Protection | None = None) -> None:
        """Add the zone's managed rrsets to found, and its NS rrsets to protection."""
        reverse = self.zones.is_reverse(origin)
        for name, rdtype, ttl, rdata in self.server.transfer(origin):
            if rdtype == dns.rdatatype.NS:
                if protection is not None:
                    protection.add(name, cast("NS", rdata).target)
                continue
            labels = folded(name)
            zone = self.zones.zone_of_folded(labels)
            if zone is origin and self.zones.managed_in(zone, name, rdtype, reverse=reverse):
                found.add(name, rdtype, ttl, rdata, labels)

    def _send(self, zone: dns.name.Name, batch: Sequence[RRsetChange], sock: socket.socket, applied: int) -> int:
        """Send one batch (split in halves while too big for one message), each rrset journaled with its undo;
        returns messages sent."""
        keep = undoing(self._changes)
        writes = [Write(f"record-{change.action}", change.name.to_text(), inverse.declared(change) if keep else None,
                        change.detail()) for change in batch]
        try:
            with writing_all(self._changes, SYSTEM, writes):
                self._update(zone, batch, sock, applied)
        except dns.exception.TooBig:
            if len(batch) == 1:
                raise DNSError(f"UPDATE {zone}: {batch[0].name} {dns.rdatatype.to_text(batch[0].rdtype)} alone "
                               "does not fit in one DNS message") from None
            half = len(batch) // 2
            return self._send(zone, batch[:half], sock, applied) + self._send(zone, batch[half:], sock, applied + half)
        return 1

    def _update(self, zone: dns.name.Name, batch: Sequence[RRsetChange], sock: socket.socket, applied: int) -> None:
        """Send one update message; a failure once it may have left raises DNSAnswerLost (it may be applied)."""
        try:
            rcode = self.server.send(update.message(zone, batch), sock)
        except DNSUnavailable as exc:
            raise DNSAnswerLost(f"{exc} (the update may have been applied)") from None
        self.messages_sent += 1
        update.check(rcode, zone, batch, applied=applied)

    def _record(self, change: RRsetChange) -> None:
        self._changes.record(SYSTEM, f"record-{change.action}", change.name.to_text(), **change.detail())
