"""Benchmark of NetBox -> DNS on the lab's real Knot: 20,000 records applied by batched TSIG-signed updates.

The entries (name, address) are generated as NetBox would give them: N/2 hosts under a subdomain of its own
of the lab zone (`h<i>.bench-<random>.lab.example`), each with an IPv6 address of a /64 of its own inside the
lab's IPv6 reverse zone, so N/2 AAAA and N/2 PTR records. They go through the functions sre.dns.netbox runs
(wanted, difference with the scope limited to the bench's names and /64, DNS.apply), NetBox accounting for them
as it does for addresses of VMs of the configured clusters, and are removed the same way at the end, pass or
fail. Measured: building, reading the zones (AXFR) and computing the difference, and
applying it (time and update messages); then a no-change pass and the removal.

Usage: .venv/bin/python bench/bench_dns.py [--config LAB_CONFIG] [--records 20000]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import secrets
import shlex
import sys
import time
from pathlib import Path

import journaled

from cookbook_lab import topology
from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS, Records
from libcluster.dns.protection import Owns
from libcluster.sync import netbox_dns
from libcluster.sync.netbox_dns import Accounted, DNSSyncSettings, Scope

RESULTS = Path(__file__).resolve().parent / "results" / "dns.txt"
ZONES = [topology.DOMAIN, "0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa"]
GOAL = 10.0


def timed_pass(client: DNS, records: Records, scope: Scope, owns: Owns) -> tuple[float, float, int, int]:
    """Read and diff, then apply: (diff seconds, apply seconds, rrsets changed, update messages)."""
    started = time.monotonic()
    diff = netbox_dns.difference(client, records, scope, owns, ZONES)
    diffed = time.monotonic()
    before = client.messages_sent
    client.apply(diff)
    return diffed - started, time.monotonic() - diffed, len(diff), client.messages_sent - before


def main(argv: list[str] | None = None) -> int:
    """Apply, re-check and remove the generated records; print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="/var/lib/cookbook-lab/config.yaml", help="the lab's cookbook config")
    parser.add_argument("--records", type=int, default=20000, help="records to apply (half AAAA, half PTR)")
    parser.add_argument("--no-journal", action="store_true",
                        help="no journal (before the journal, runs did not write one)")
    args = parser.parse_args(argv)
    root = config_module.load(args.config)
    with journaled.changelog(root, enabled=not args.no_journal) as changes:
        return measure(args, root, changes)


def measure(args: argparse.Namespace, root: config_module.Section, changes: ChangeLog) -> int:
    """Run the benchmark with changes (journaled like a run, or not) and write its figures."""
    client = DNS(root.section("dns"), dry_run=False, changes=changes)
    token = f"bench-{secrets.token_hex(3)}"
    network = ipaddress.IPv6Network(f"2001:2:0:b{secrets.token_hex(2)[1:]}::/64")
    scope = Scope(DNSSyncSettings(names=(f"*.{token}.{topology.DOMAIN}",), networks=(str(network),)), client.zones)
    hosts = args.records // 2
    started = time.monotonic()
    entries = [(f"h{index}.{token}.{topology.DOMAIN}", str(network[index + 1])) for index in range(hosts)]
    built = netbox_dns.wanted(client, entries, scope)
    build_seconds = time.monotonic() - started
    records = sum(len(rrset) for rrset in built.records.values())
    owns = Accounted.of(client.zones, ({"dns_name": name, "address": address} for name, address in entries)).owns
    try:
        apply_pass = timed_pass(client, built.records, scope, owns)
        again = timed_pass(client, built.records, scope, owns)
        sample = entries[hosts // 2]
        answered = client.resolve(sample[0], "AAAA") == [sample[1]]
    finally:
        removal = timed_pass(client, {}, scope, owns)
    left = len(netbox_dns.difference(client, {}, scope, owns, ZONES))
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} on {platform.node()} ({os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}); Knot {client.server.where} (lab), update_batch {client.batch}",
        f"# command: {shlex.join([sys.executable, *sys.argv])}",
        f"# {journaled.describe(changes)}",
        f"records: {records} ({hosts} AAAA under {token}.{topology.DOMAIN}, {hosts} PTR in {network}); "
        f"{len(built.records)} rrsets; built in {build_seconds:.2f} s",
        f"apply:     AXFR + diff {apply_pass[0]:.2f} s, apply {apply_pass[1]:.2f} s: {apply_pass[2]} rrsets in "
        f"{apply_pass[3]} update messages (total {apply_pass[0] + apply_pass[1]:.2f} s)",
        f"no change: AXFR + diff {again[0]:.2f} s: {again[2]} rrsets, {again[3]} update messages; "
        f"the server answers the records: {'yes' if answered else 'NO'}",
        f"removal:   AXFR + diff {removal[0]:.2f} s, apply {removal[1]:.2f} s: {removal[2]} rrsets in {removal[3]} "
        f"update messages; left afterwards: {left}",
        f"goal: {records} records applied in under {GOAL:.0f} s: "
        f"{'met' if apply_pass[0] + apply_pass[1] < GOAL else 'NOT met'} ({apply_pass[0] + apply_pass[1]:.2f} s "
        "including the AXFR read and the diff)",
    ]
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0 if answered and not again[2] and not left else 1


if __name__ == "__main__":
    sys.exit(main())
