"""Benchmark: a rolling reboot (`cookbook sre.ganeti.reboot-nodes`) on the lab, per node split into Ganeti's job
time, the node's own restart time, and our overhead; then two groups with --groups-in-parallel 2 against the
slower group alone.

Usage (root, lab up; creates one running sharedfile VM `rr-bench-*` per node of the groups and removes them):
    .venv/bin/python bench/bench_rolling_reboot.py --group B
    .venv/bin/python bench/bench_rolling_reboot.py --group A --group B     # also the parallel comparison

Per node, from the run's own lines ("NODE done in T s (check ..., drain ..., moves ..., reboot ..., ...)"):
  - Ganeti job time: the union of the received_ts-to-end_ts intervals, as Ganeti recorded them, of the jobs
    after the run started whose summary names the node or one of the bench VMs it moved, and of the
    verify-disks jobs (their summary names no node), clipped to the node's turn: from the first to the last
    job naming the node itself (its tags and role changes). Jobs that overlap, or a VM moved again in
    another node's turn, are counted once, for the turn they ran in;
  - restart: the node's own restart time, measured before the rollout by rebooting it alone and polling
    (boot id and SSH) every 0.05 s;
  - overhead = total - Ganeti job time - restart; "noticed" = the reboot step (reboot command to node back,
    polled every 0.2 s by wait_node_back) - restart: how late we notice the node back.
Goals (issue 13): overhead under 2 s per node, noticed within 1 s; two groups in parallel take about the time
of the slower group. Figures and the command go to bench/results/rolling_reboot.txt. The master is left out of
its group (reboot-nodes would fail it over first and reboot it last): each group's other nodes are given with
--nodes, which reboot-nodes groups by Ganeti group as it does --group.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, connect
from libcluster.ganeti.jobs import timestamp
from libcluster.remote import Remote

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "rolling_reboot.txt"
COOKBOOK = REPO / ".venv" / "bin" / "cookbook"
DONE = re.compile(r"(\S+) done in ([\d.]+)s \((.*)\)")
STEP = re.compile(r"(\w+) ([\d.]+)s")
MOVED = re.compile(r"^  (\S+): (\S+): now on (\S+)$", re.MULTILINE)


def _clients(config: Path) -> tuple[GanetiCluster, Remote]:
    root = config_module.load(config)
    changes = ChangeLog(dry_run=False)
    remote = Remote(root.section("remote"), dry_run=False, changes=changes)
    return connect(root, "lab", dry_run=False, changes=changes, remote=remote), remote


def restart_time(cluster: GanetiCluster, remote: Remote, node: str) -> float:
    """The node's own restart: `reboot` to a new boot id with SSH answering, polled every 0.05 s."""
    before = cluster.boot_ids()[node]
    started = time.monotonic()
    remote.hosts([node]).run_sync("reboot", is_safe=False, timeout=30, ok_codes=[0, 255])
    cluster.wait_node_back(node, before, timeout=300, interval=0.05)
    return time.monotonic() - started


def rollout(config: Path, nodes: list[str], parallel: int) -> tuple[float, str, float]:
    """Run reboot-nodes on nodes as an operator types it; (wall time, output, start time as epoch)."""
    argv = [str(COOKBOOK), "-c", str(config), "-y", "sre.ganeti.reboot-nodes", "--cluster", "lab",
            "--groups-in-parallel", str(parallel), "--nodes", *nodes]
    epoch, started = time.time(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{shlex.join(argv[3:])} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return wall, done.stdout + done.stderr, epoch


def job_time(cluster: GanetiCluster, since: float, node: str, vms: set[str]) -> float:
    """Seconds the node's turn waited on Ganeti: the union of the received-to-end intervals of the jobs after since
    that name the node, one of the VMs moved off it or none (verify-disks), clipped to the node's turn (the first
    to the last job naming the node itself: its tags and role changes). A job overlapping another (submitted while
    one runs) or a VM's move in another node's turn is not counted twice."""
    own: list[tuple[float, float]] = []
    others: list[tuple[float, float]] = []
    for job in cluster.jobs(bulk=True):
        received, end = timestamp(job.get("received_ts")), timestamp(job.get("end_ts"))
        summaries = " ".join(str(s) for s in job.get("summary") or [])
        if not (received and end and received >= since):
            continue
        if f"({node})" in summaries:
            own.append((received, end))
        elif any(f"({vm})" in summaries for vm in vms) or "VERIFY_DISKS" in summaries:
            others.append((received, end))
    if not own:
        return 0.0
    first, last = min(r for r, _ in own), max(e for _, e in own)
    clipped = sorted(own + [(max(r, first), min(e, last)) for r, e in others if r < last and e > first])
    total, reach = 0.0, first
    for received, end in clipped:
        if end > reach:
            total += end - max(received, reach)
            reach = end
    return total


def main() -> int:
    """Create the VMs, measure restarts, roll out (each group alone, then in parallel), print, write results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", required=True, help="lab node group (repeat for two)")
    parser.add_argument("--config", type=Path, default=Path("/var/lib/cookbook-lab/config.yaml"))
    args = parser.parse_args()
    cluster, remote = _clients(args.config)
    master = cluster.master()
    nodes = {group: sorted(node for node in cluster.group(group).nodes if node != master) for group in args.group}
    vms: list[str] = []
    lines = [f"$ {shlex.join(sys.argv)}", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}"]
    try:
        # before the VMs: a node's reboot stops the instances it runs
        restart = {node: restart_time(cluster, remote, node) for members in nodes.values() for node in members}
        for members in nodes.values():
            for node in members:
                name = f"rr-bench-{secrets.token_hex(3)}.lab.example"
                vms.append(name)
                cluster.create_instance(name, disk_template="sharedfile", disks=[1024], os_type="noop", memory=128,
                                        vcpus=1, pnode=node, name_check=False, start=True).wait(timeout=300)
        walls: dict[str, float] = {}
        for group in args.group:
            wall, output, since = rollout(args.config, nodes[group], 1)
            walls[group] = wall
            moved = MOVED.findall(output)
            lines.append(f"\ngroup {group} alone ({', '.join(nodes[group])}; the master {master} left out): "
                         f"{wall:.1f} s")
            lines.append("node                 total  ganeti restart overhead noticed  steps")
            for node, total, steps in DONE.findall(output):
                timings = {step: float(seconds) for step, seconds in STEP.findall(steps)}
                ganeti = job_time(cluster, since, node, {vm for on, vm, _ in moved if on == node})
                overhead = float(total) - ganeti - restart[node]
                noticed = timings.get("reboot", 0.0) - restart[node]
                lines.append(f"{node:20} {float(total):6.1f} {ganeti:7.1f} {restart[node]:7.1f} {overhead:8.1f} "
                             f"{noticed:7.2f}  {steps}")
        if len(args.group) > 1:
            wall, _, _ = rollout(args.config, [node for members in nodes.values() for node in members],
                                 len(args.group))
            slower = max(walls.values())
            lines.append(f"\n{len(args.group)} groups with --groups-in-parallel {len(args.group)}: {wall:.1f} s; the "
                         f"slower group alone {slower:.1f} s (ratio {wall / slower:.2f}); the sum "
                         f"{sum(walls.values()):.1f} s")
        lines.append(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    finally:
        existing = set(cluster.instance_names())
        for name in vms:
            if name in existing:
                cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)
    print("\n".join(lines))
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
