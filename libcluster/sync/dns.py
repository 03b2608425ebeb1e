"""A host's DNS records: publish A/AAAA and PTRs, check the server answers them, and put back what was there.

Built on :class:`libcluster.dns.DNS` (TSIG-signed, guarded RFC 2136 updates); these add what a
cookbook needs around one change: the check that the server now answers the new records, and the
exact undo of a change for rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dns.rrset import RRset

from libcluster.dns import DNS, Diff, DNSError, DNSZoneError
from libcluster.dns.diff import compute
from libcluster.dns.protection import Owns
from libcluster.sync.netbox_dns import Accounted

logger = logging.getLogger(__name__)


def publish(dns: DNS, fqdn: str, addresses: Iterable[str], *, owns: Owns) -> Diff:
    """Make fqdn's A/AAAA and PTR records match addresses, check the server answers them; return what changed.

    Records on the server that owns() refuses, or outside the dns.netbox scope, are left as they are
    (Diff.left). In dry-run the changes are only recorded and nothing is checked.
    """
    diff = dns.set_host(fqdn, addresses, owns=owns)
    if not dns.dry_run:
        verify(dns, diff)
    return diff


def verify(dns: DNS, diff: Diff) -> None:
    """Raise DNSError unless the server answers every rrset of diff as diff left it (records, not TTLs)."""
    answered = dns.current((change.name, change.rdtype) for change in diff)
    wrong = []
    for change in diff:
        got = answered.get((change.name, change.rdtype))
        if (got is None) != (change.new is None) or (got is not None and got != change.new):
            shown = " ".join(sorted(rdata.to_text() for rdata in got)) if got is not None else "nothing"
            wrong.append(f"{change.describe()} (the server answers {shown})")
    if wrong:
        raise DNSError(f"{dns.server.where} does not answer the records just written: " + "; ".join(wrong))


def restore(dns: DNS, diff: Diff) -> Diff:
    """Undo what diff wrote on the server: each rrset the server still answers exactly as diff left it goes back to
    what was there before (added: deleted; replaced or deleted: put back); return the undo.

    Each rrset is read again first, and one that differs from what diff wrote (a change that never reached the
    server, or an rrset someone else created or changed since) is not this run's to undo: left as is.
    """
    current = dns.current((change.name, change.rdtype) for change in diff)
    written = [change for change in diff if _answers(current.get((change.name, change.rdtype)), change.new)]
    keys = {(change.name, change.rdtype) for change in written}
    before = {(change.name, change.rdtype): change.old for change in written if change.old is not None}
    undo = compute(before, {key: rrset for key, rrset in current.items() if key in keys}, dns.zones, scope=keys)
    dns.apply(undo)
    return undo


def _answers(got: RRset | None, written: RRset | None) -> bool:
    """Whether the server's rrset (None: nothing) holds exactly the records written (None: deleted)."""
    return got is None if written is None else got is not None and got == written


def retire(dns: DNS, ips: Sequence[Mapping[str, Any]]) -> list[Diff]:
    """Remove the records of the addresses of VMs being removed (ips, read before they went): each dns_name's
    A/AAAA and PTRs, as far as these addresses account for them (anything else is left and reported)."""
    accounted = Accounted.of(dns.zones, [dict(ip) for ip in ips])
    diffs = []
    for name in sorted({str(ip["dns_name"]) for ip in ips if ip.get("dns_name")}):
        try:
            diffs.append(publish(dns, name, [], owns=accounted.owns))
        except DNSZoneError as exc:
            logger.warning("DNS of %s left alone: %s", name, exc)
    return diffs
