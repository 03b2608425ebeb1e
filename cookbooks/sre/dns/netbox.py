"""Make DNS true to NetBox: A/AAAA and PTR records of every NetBox address with a dns_name.

Steps:
  1. Read every NetBox address with a dns_name and a status that gets records (dns.netbox.statuses:
     active, dhcp, slaac) in paged bulk reads, and build its records: A or AAAA in the forward zone,
     PTR in the IPv4 or IPv6 reverse zone (in an RFC 2317 classless zone, with the parent zone's
     CNAME, where one is configured). Names and addresses outside every configured zone are listed.
  2. Read the configured zones (--zone: that one only) by TSIG-signed AXFR and print the difference
     as a table. SOA, NS, zone apexes, delegations, the name servers' addresses, other record types
     and rrsets outside the dns.netbox scope (names, networks) are never touched. An existing rrset is
     replaced or deleted only when NetBox accounts for it (its name or address belongs to an address
     NetBox assigns to a VM or device of the configured clusters' cluster groups); any other is left
     as it is and reported as a warning.
  3. Stop if the difference is larger than the threshold (the larger of dns.netbox.max_changes and
     dns.netbox.max_percent % of the wanted rrsets) unless --force: a NetBox outage or a bad import
     must not empty the zones.
  4. Apply only the difference by TSIG-signed RFC 2136 updates, batched (dns.update_batch records per
     message), each rrset guarded by a prerequisite on what was read: a concurrent change fails its
     message instead of being overwritten. With -d nothing is sent.

--snippets DIR writes the records as zone file snippets instead (one file per zone, named after it,
each starting with $ORIGIN, validated by parsing it back with dnspython), for setups that keep their
zones in git: the server is neither read nor changed. Each changed file is shown as a diff and
replaced atomically (temporary file in DIR, fsync, rename); files already up to date are left
alone; a symbolic link at DIR or at a snippet file is refused and nothing is written. With -d
only the diffs are shown: nothing is created or written. Files written are in the audit record.

Exit codes: 0 done (or nothing to do), 1 threshold exceeded, 2 DNS error (TSIG refused, server down)
or snippets that cannot be written. A failed run is not rolled back (running it again completes the
work); its updates are in the audit journal, and `cookbook --recover` of it undoes nothing.

Usage:
  cookbook -d sre.dns.netbox
  cookbook sre.dns.netbox --zone 2.0.192.in-addr.arpa
  cookbook sre.dns.netbox --force
  cookbook sre.dns.netbox --snippets /srv/dns/netbox
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tabulate import tabulate

from libcluster import clusters
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.dns import DNS, DNSError, Records, update
from libcluster.dns.protection import Owns
from libcluster.netbox import NetBox
from libcluster.sync import netbox_dns
from libcluster.sync.netbox_dns import DNSSyncSettings, ThresholdExceeded

logger = logging.getLogger(__name__)

EXIT_THRESHOLD = 1
EXIT_DNS_ERROR = 2


class DnsNetbox(CookbookBase):
    """Make DNS true to NetBox (A/AAAA and PTR of every address with a dns_name), applying only the difference."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--zone, --force, --snippets."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        parser.add_argument("--zone", action="append", metavar="ZONE",
                            help="only this configured zone (repeatable; default: every configured zone)")
        parser.add_argument("--force", action="store_true", help="apply a difference larger than the threshold")
        parser.add_argument("--snippets", type=Path, metavar="DIR",
                            help="write validated zone file snippets into DIR instead of updating the server "
                                 "(atomically, never through a symlink; -d shows the diffs only)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> DnsNetboxRunner:
        """Check the zones asked for are configured; nothing is read yet."""
        client: DNS = self.ctx.dns()
        names = {zone.to_text(omit_final_dot=True) for zone in client.zones.names}
        unknown = sorted({zone.rstrip(".") for zone in args.zone or ()} - names)
        if unknown:
            known = ", ".join(sorted(names))
            raise ValueError(f"zone(s) {', '.join(unknown)} not configured under dns.zones ({known})")
        return DnsNetboxRunner(self.ctx, args, client)


class DnsNetboxRunner(CookbookRunnerBase):
    """Builds the records from NetBox, compares, applies."""

    def __init__(self, ctx: Context, args: argparse.Namespace, client: DNS) -> None:
        """Keep the context, the arguments and the DNS client; read the dns.netbox settings."""
        self.ctx = ctx
        ctx.undo.enabled = False  # converging: a failed run is finished by the next one, its updates are not undone
        self.args = args
        self.dns = client
        self.settings = DNSSyncSettings.from_config(ctx.config)
        self.zones = [zone.rstrip(".") for zone in args.zone] if args.zone else None

    @property
    def runtime_description(self) -> str:
        """Which zones."""
        return f"for zone(s) {', '.join(self.zones)}" if self.zones else "for every configured zone"

    @property
    def lock_args(self) -> LockArgs:
        """One run at a time, whatever the zones: two runs would compute from the same zones and race."""
        return LockArgs(suffix="", concurrency=1, ttl=None)

    def run(self) -> int:
        """Build, compare, check the threshold, apply (or write snippets)."""
        started = time.monotonic()
        netbox: NetBox = self.ctx.netbox()
        ips = netbox_dns.netbox_entries(netbox, self.settings)
        entries = netbox_dns.entries(ips)
        scope = self.dns.scope
        built = netbox_dns.wanted(self.dns, entries, scope)
        for line in built.skipped[:20]:
            logger.warning("Not in DNS: %s", line)
        if len(built.skipped) > 20:
            logger.warning("... and %d more names or addresses outside the configured zones", len(built.skipped) - 20)
        logger.info("NetBox: %d addresses with a dns_name give %d rrsets (%d requests, %.1fs)", len(entries),
                    len(built.records), netbox.request_count, time.monotonic() - started)
        try:
            if self.args.snippets:
                netbox_dns.write_snippets(self.dns, built.records, self.args.snippets, self.zones,
                                          changes=self.ctx.changes)
                return 0
            groups = {clusters.load(self.ctx.config, name).netbox_cluster_group
                      for name in clusters.names(self.ctx.config)}
            return self._sync(built.records, started, netbox_dns.owned_by_groups(netbox, self.dns.zones, groups))
        except ThresholdExceeded as exc:
            logger.error("Stopped, nothing applied: %s", exc)
            return EXIT_THRESHOLD
        except DNSError as exc:
            logger.error("DNS: %s", exc)
            return EXIT_DNS_ERROR

    def _sync(self, records: Records, started: float, owns: Owns) -> int:
        scope = self.dns.scope
        diff = netbox_dns.difference(self.dns, records, scope, owns, self.zones)
        for line in netbox_dns.left_lines(diff):
            logger.warning("Not ours: %s", line)
        if not diff:
            what = f"{len(diff.left)} rrsets not ours left as they are" if diff.left else "DNS matches NetBox"
            logger.info("%s: nothing to change (%.1fs)", what, time.monotonic() - started)
            return 0
        counts = ", ".join(f"{count} {action}" for action, count in diff.counts().items() if count)
        logger.info("Difference (%d rrsets: %s):\n%s", len(diff), counts,
                    tabulate(netbox_dns.rows(diff), headers=("Zone", "Action", "Name", "Type", "Records")))
        wanted = len(records) if self.zones is None else sum(
            1 for key in records if (zone := self.dns.zones.zone_of(key[0])) is not None
            and zone.to_text(omit_final_dot=True) in self.zones)
        netbox_dns.check_threshold(diff, wanted, self.settings, force=self.args.force)
        sent = self.dns.apply(diff)
        planned = sum(len(list(update.batches(changes, self.dns.batch))) for changes in diff.by_zone().values())
        messages = planned if self.ctx.dry_run else sent
        verb = "Would apply" if self.ctx.dry_run else "Applied"
        logger.info("%s %d rrset changes in %d update message(s) (%.1fs)", verb, len(diff), messages,
                    time.monotonic() - started)
        return 0
