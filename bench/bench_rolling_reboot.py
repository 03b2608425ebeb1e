"""Benchmark: a rolling reboot (`cookbook sre.ganeti.reboot-nodes`) on the lab, per node split into Ganeti's job
time, the node's own restart time, and our overhead; then two groups with --groups-in-parallel 2 against the
slower group alone.

Usage (root, lab up; creates one running sharedfile VM `rr-bench-*` per node of the groups and removes them):
    .venv/bin/python bench/bench_rolling_reboot.py --group B
    .venv/bin/python bench/bench_rolling_reboot.py --group A --group B     # also the parallel comparison

Per node, from the run's own lines ("NODE done in T s (check ..., drain ..., moves ..., reboot ..., ...)"):
  - Ganeti job time: the union of the received_ts-to-end_ts intervals, as Ganeti recorded them, of the jobs
    whose summary names the node or one of the bench VMs it moved, and of the verify-disks jobs (their
    summary names no node), clipped to the node's turn: from its "NODE (i/n): draining and rebooting" line
    to its "NODE done in" line in the run's DEBUG log (lines of the run's pid). Jobs that overlap, or a VM
    moved again in another node's turn, are counted once, for the turn they ran in;
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

from runlog import log_time, run_log

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, connect
from libcluster.ganeti.jobs import timestamp
from libcluster.remote import Remote
from libcluster.runner.logs import log_paths

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


def rollout(config: Path, nodes: list[str], parallel: int) -> tuple[float, str, list[str]]:
    """Run reboot-nodes on nodes as an operator types it; (wall time, output, the run's DEBUG log lines)."""
    argv = [str(COOKBOOK), "-c", str(config), "-y", "sre.ganeti.reboot-nodes", "--cluster", "lab",
            "--groups-in-parallel", str(parallel), "--nodes", *nodes]
    debug_log = log_paths(config_module.load(config).str("logs_base_dir"), "sre.ganeti.reboot-nodes")[1]
    offset = debug_log.stat().st_size if debug_log.exists() else 0
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=3600)
    wall = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"{shlex.join(argv[3:])} exited {process.returncode}:\n{stdout}{stderr}")
    return wall, stdout + stderr, run_log(debug_log, offset, process.pid)


def turns(lines: list[str], nodes: list[str]) -> dict[str, tuple[float, float]]:
    """Each node's turn in the run's log: from its "NODE (i/n): draining and rebooting" line to its "NODE done in"."""
    found: dict[str, tuple[float, float]] = {}
    for node in nodes:
        begin = next(log_time(line) for line in lines if f"{node} (" in line and "): draining and rebooting" in line)
        end = next(log_time(line) for line in lines if f"{node} done in " in line)
        found[node] = (begin, end)
    return found


def job_time(cluster: GanetiCluster, turn: tuple[float, float], node: str, vms: set[str]) -> float:
    """Seconds of the node's turn spent waiting on Ganeti: the union of the received-to-end intervals of the jobs
    that name the node, one of the VMs moved off it, or none (verify-disks), clipped to the turn. Jobs that
    overlap (submitted while another runs) or a VM's moves in another node's turn are not counted twice."""
    first, last = turn
    spans: list[tuple[float, float]] = []
    for job in cluster.jobs(bulk=True):
        received, end = timestamp(job.get("received_ts")), timestamp(job.get("end_ts"))
        summaries = " ".join(str(s) for s in job.get("summary") or [])
        if not (received and end and received < last and end > first):
            continue
        if any(f"({name})" in summaries for name in (node, *vms)) or "VERIFY_DISKS" in summaries:
            spans.append((max(received, first), min(end, last)))
    total, reach = 0.0, first
    for received, end in sorted(spans):
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
            wall, output, log = rollout(args.config, nodes[group], 1)
            node_turns = turns(log, nodes[group])
            walls[group] = wall
            moved = MOVED.findall(output)
            lines.append(f"\ngroup {group} alone ({', '.join(nodes[group])}; the master {master} left out): "
                         f"{wall:.1f} s")
            lines.append("node                 total  ganeti restart overhead noticed  steps")
            for node, total, steps in DONE.findall(output):
                timings = {step: float(seconds) for step, seconds in STEP.findall(steps)}
                ganeti = job_time(cluster, node_turns[node], node, {vm for on, vm, _ in moved if on == node})
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
