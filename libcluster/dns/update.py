"""RFC 2136 update messages for a diff: batched, each change guarded by a prerequisite on what was read.

An added rrset requires that the rrset does not exist yet; a replaced or deleted one requires
that it still holds exactly the records read (value-dependent "RRset exists"). A message is
applied whole or not at all, so a concurrent change makes its message fail with YXRRSET or
NXRRSET and overwrites nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dns.name
import dns.rcode
import dns.update

from libcluster.dns.diff import RRsetChange
from libcluster.dns.errors import DNSAuthError, DNSPrerequisiteError, DNSRefused

DEFAULT_BATCH = 1000
"""Records per update message (prerequisites included): the server's cost is per message, not per record, and
1000 records stay under the 64 KiB message limit for common names (a bigger message is split before sending)."""

PREREQUISITE_RCODES = frozenset({dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET})
"""Rcodes meaning a prerequisite did not hold (RFC 2136 section 3.2.5)."""


def batches(changes: Sequence[RRsetChange], limit: int) -> Iterator[list[RRsetChange]]:
    """Consecutive groups of changes holding at most limit records each (a bigger single change goes alone)."""
    batch: list[RRsetChange] = []
    size = 0
    for change in changes:
        if batch and size + change.size > limit:
            yield batch
            batch, size = [], 0
        batch.append(change)
        size += change.size
    if batch:
        yield batch


def message(zone: dns.name.Name, changes: Sequence[RRsetChange]) -> dns.update.UpdateMessage:
    """One unsigned update message for changes of zone, each with its prerequisite."""
    update = dns.update.UpdateMessage(zone)
    for change in changes:
        if change.old is None:
            update.absent(change.name, change.rdtype)
        else:
            update.present(change.name, *change.old)
            update.delete(change.name, change.rdtype)
        if change.new is not None:
            update.add(change.name, change.new)
    return update


def check(rcode: dns.rcode.Rcode, zone: dns.name.Name, changes: Sequence[RRsetChange], *, applied: int) -> None:
    """Raise the typed error for a refused update message; applied counts changes earlier messages made."""
    if rcode == dns.rcode.NOERROR:
        return
    text = dns.rcode.to_text(rcode)
    names = ", ".join(sorted({change.name.to_text() for change in changes})[:5])
    more = "" if len(changes) <= 5 else f" and {len(changes) - 5} more"
    if rcode in PREREQUISITE_RCODES:
        raise DNSPrerequisiteError(
            f"UPDATE {zone}: prerequisite failed ({text}): one of the {len(changes)} rrsets of this message "
            f"({names}{more}) changed on the server since it was read; nothing of this message was applied "
            f"({applied} changes of earlier messages were). Read the zone again and retry.",
            rcode=text, zone=zone.to_text(), applied=applied,
        )
    if rcode == dns.rcode.NOTAUTH:
        raise DNSAuthError(f"UPDATE {zone}: not authorized (NOTAUTH): the server does not let this key update the zone")
    raise DNSRefused(f"UPDATE {zone}: the server refused the update ({text}) of {names}{more}")
