"""Benchmark of the cluster-wide Ganeti -> NetBox sync against the lab's real NetBox, with a generated Ganeti state.

The Ganeti side is generated (N instances of one node group, each with a NIC, its MAC and a Ganeti NIC IP in
198.19.0.0/18) and fed to the same functions sync-netbox runs (NetBoxState.read, compute, apply); the NetBox
side is real. It uses a cluster group and cluster of its own (bench-<random>), so the lab's are not touched,
and deletes everything it made at the end (bulk deletes), pass or fail.

For each size it measures, with the NetBox client's request counter:
  first sync      every VM, interface, MAC and address created
  no-change sync  nothing to write: only the paged reads (goal: under 15 s for 5,000 VMs, requests growing
                  with pages, not VMs)
  1% drift        memory of 0.5% and status of 0.5% of the VMs changed: only those written
Figures are printed and written to bench/results/sync.txt.

Usage: .venv/bin/python bench/bench_sync.py [--config LAB_CONFIG] [--vms 5000 10000]
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import journaled

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.clusters import ClusterSettings, GroupSettings, VMDefaults
from libcluster.netbox import NetBox
from libcluster.sync import cluster as sync_cluster
from libcluster.sync.cluster import GanetiState, NetBoxState, SyncSettings

RESULTS = Path(__file__).resolve().parent / "results" / "sync.txt"
PREFIX = ipaddress.ip_network("198.19.0.0/18")
"""Addresses of the generated instances (inside the lab's 198.18.0.0/15, outside its prefixes)."""
NODES = [f"bench-node{n}.bench.invalid" for n in range(1, 5)]
NO_CHANGE_GOAL = 15.0
REQUEST_TIMEOUT = 600.0
"""Seconds per request: a bulk delete of 200 VMs with their interfaces takes about 30 s on the loaded lab."""
DRIFT = 0.01


@dataclass
class Measure:
    """One sync: seconds, HTTP requests, rows of the difference, what was written."""

    label: str
    seconds: float
    requests: int
    rows: int
    written: str

    def line(self) -> str:
        """One line of the results."""
        return f"{self.label:<16} {self.seconds:8.1f} s  {self.requests:5d} requests  {self.rows:6d} rows  " \
               f"written: {self.written}"


def generate(token: str, count: int) -> list[dict[str, Any]]:
    """count RAPI-shaped instances of group A: varied sizes, one NIC each with a MAC and a NIC IP."""
    instances = []
    for index in range(count):
        instances.append({
            "name": f"{token}-{index:05d}.bench.invalid", "pnode": NODES[index % len(NODES)],
            "admin_state": "up", "status": "running",
            "beparams": {"maxmem": 1024 * (1 + index % 8), "vcpus": 1 + index % 4},
            "disk.sizes": [10240 * (1 + index % 3)], "nic.macs": [f"aa:01:{index >> 16 & 255:02x}:"
                                                                  f"{index >> 8 & 255:02x}:{index & 255:02x}:01"],
            "nic.names": [None], "nic.ips": [str(PREFIX[index + 1])],
        })
    return instances


def drift(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy where 0.5% of the instances have twice the memory and another 0.5% are stopped."""
    changed = [dict(instance) for instance in instances]
    step = int(1 / DRIFT)
    for index in range(0, len(changed), step):
        changed[index]["beparams"] = {**changed[index]["beparams"], "maxmem": changed[index]["beparams"]["maxmem"] * 2}
        other = index + step // 2
        if other < len(changed):
            changed[other] = {**changed[other], "admin_state": "down", "status": "ADMIN_down"}
    return changed


def sync(netbox: NetBox, settings: ClusterSettings, sync_settings: SyncSettings, state: GanetiState,
         label: str) -> Measure:
    """What the cookbook's whole-cluster run does, timed and counted."""
    started, before = time.monotonic(), netbox.request_count
    current = NetBoxState.read(netbox, settings.netbox_cluster_group, state, [str(PREFIX)])
    plan = sync_cluster.compute(state, current, settings, sync_settings)
    applied = sync_cluster.apply(netbox, plan, sync_settings, delete=False)
    rows = len([row for row in plan.rows if row.action != "missing"])
    return Measure(label, time.monotonic() - started, netbox.request_count - before, rows, applied.describe())


def cleanup(netbox: NetBox, group: dict[str, Any] | None, cluster: dict[str, Any] | None, log: Callable) -> None:
    """Bulk-delete the bench's VMs (their interfaces, MACs and addresses go with them), addresses left, cluster."""
    started = time.monotonic()
    if cluster is not None:
        vms = netbox.objects("vm", fields=("id", "name"), cluster_id=cluster["id"])
        netbox.delete("vm", vms)
        log(f"cleanup: {len(vms)} VMs deleted in {time.monotonic() - started:.1f} s")
    leftovers = netbox.objects("ip-address", fields=("id", "address"), parent=str(PREFIX))
    if leftovers:
        netbox.release_ips(leftovers)
    if cluster is not None:
        netbox.delete("cluster", [cluster])
    if group is not None:
        netbox.delete("cluster-group", [group])
    log(f"cleanup: done in {time.monotonic() - started:.1f} s ({len(leftovers)} addresses left by the cascade)")


def run_size(netbox: NetBox, token: str, count: int, log: Callable[[str], None]) -> list[Measure]:
    """First, no-change and 1%-drift syncs of count generated VMs in a fresh cluster, then its cleanup."""
    group = cluster = None
    try:
        group = netbox.create("cluster-group", [{"name": f"{token}-{count}", "slug": f"{token}-{count}"}])[0]
        kind = netbox.get("cluster-type", slug="ganeti")
        site = netbox.get("site", slug="lab1")
        cluster = netbox.create("cluster", [{"name": f"{token}-{count}-A", "type": kind["id"], "group": group["id"],
                                             "status": "active", "scope_type": "dcim.site",
                                             "scope_id": site["id"]}])[0]
        settings = ClusterSettings(
            name="bench", domain="bench.invalid", netbox_cluster_group=group["name"], defaults=VMDefaults(),
            groups={"A": GroupSettings("A", cluster["name"], None, (str(PREFIX),), ())})
        instances = generate(token, count)
        state = GanetiState({"A": NODES}, instances)
        measures = []
        for label, current in (("first sync", state), ("no-change sync", state),
                               ("1% drift sync", GanetiState({"A": NODES}, drift(instances))),
                               ("no-change sync", GanetiState({"A": NODES}, drift(instances)))):
            measures.append(sync(netbox, settings, SyncSettings(), current, label))
            log(f"{count} VMs: {measures[-1].line()}")
        reads: dict[str, Callable[[], Any]] = {
            "read vm": lambda: netbox.objects("vm", fields=sync_cluster.VM_FIELDS, cluster_id=[cluster["id"]]),
            "read interfaces": lambda: sync_cluster.read_interfaces(netbox, [int(cluster["id"])]),
        }
        for label, read in reads.items():
            started, before = time.monotonic(), netbox.request_count
            read()
            measures.append(Measure(label, time.monotonic() - started, netbox.request_count - before, 0,
                                    "(one paged read alone)"))
            log(f"{count} VMs: {measures[-1].line()}")
        return measures
    finally:
        cleanup(netbox, group, cluster, log)


def main(argv: list[str] | None = None) -> int:
    """Run the sizes asked for, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="/var/lib/cookbook-lab/config.yaml", help="the lab's cookbook config")
    parser.add_argument("--vms", type=int, nargs="+", default=[5000], help="sizes to run")
    parser.add_argument("--no-journal", action="store_true",
                        help="no journal (before the journal, runs did not write one)")
    args = parser.parse_args(argv)
    root = config_module.load(args.config)
    with journaled.changelog(root, enabled=not args.no_journal) as changes:
        return measure(args, root, changes)


def measure(args: argparse.Namespace, root: config_module.Section, changes: ChangeLog) -> int:
    """Run the benchmark with changes (journaled like a run, or not) and write its figures."""
    section = root.section("netbox")
    patient = config_module.Section({**section, "timeout": REQUEST_TIMEOUT}, section.where, section.source)
    netbox = NetBox(patient, read_write=True, dry_run=False, changes=changes)
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} on {platform.node()} "
             f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}), NetBox {'.'.join(map(str, netbox.version))}"
             f" (lab, gunicorn), page_size {netbox.page_size}, bulk_size {netbox.bulk_size}",
             f"# command: {shlex.join([sys.executable, *sys.argv])}",
             f"# {journaled.describe(changes)}",
             "# Ganeti side generated (1 node group, 4 nodes, 1 NIC with MAC and NIC IP per VM); NetBox side real,",
             "# in a cluster group of its own, deleted afterwards. Each sync = bulk paged reads + compute + bulk writes."]

    def log(text: str) -> None:
        print(text, flush=True)

    token = f"bench-{secrets.token_hex(3)}"
    for count in args.vms:
        measures = run_size(netbox, token, count, log)
        no_change = measures[1]
        lines.append(f"{count} VMs:")
        lines += [f"  {measure.line()}" for measure in measures]
        goal = "met" if no_change.seconds < NO_CHANGE_GOAL else "NOT met"
        lines.append(f"  goal: no-change sync under {NO_CHANGE_GOAL:.0f} s: {goal} ({no_change.seconds:.1f} s, "
                     f"{no_change.requests} requests for {count} VMs)")
        lines.append(f"  1% drift: {measures[2].rows} rows, written: {measures[2].written}")
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
