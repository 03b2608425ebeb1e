"""Benchmark: a rolling reboot (`cookbook sre.ganeti.reboot-nodes`) on the lab, per node split into Ganeti's job
time, the node's own restart time, and our overhead; then two groups with --groups-in-parallel 2 against the
slower group alone.

Usage (root, lab up; creates one running sharedfile VM `rr-bench-*` per node of the groups and removes them):
    .venv/bin/python bench/bench_rolling_reboot.py --group B
    .venv/bin/python bench/bench_rolling_reboot.py --group A --group B     # also the parallel comparison

Per node, from the run's own lines ("NODE done in T s (check ..., drain ..., moves ..., reboot ..., ...)"):
  - Ganeti job time: the union of the received_ts-to-end_ts intervals, as Ganeti recorded them, of the jobs
    whose summary names the node or one of the bench VMs it moved, of the node's tag jobs (named in their op:
    the candidate tag drain and undrain set and remove) and of the verify-disks jobs (their summary names no
    node), clipped to the node's turn: from its "NODE (i/n): draining and rebooting" line
    to its "NODE done in" line in the run's DEBUG log (lines of the run's pid). Jobs that overlap, or a VM
    moved again in another node's turn, are counted once, for the turn they ran in;
  - restart: the node's own restart in this very run: from the run's log line of its `reboot` command to the
    moment a watcher of the bench, started on that line and polling every 0.05 s (boot id through the RAPI, then
    SSH), sees it back. A node's restart varies by about a second from one reboot to the next (its processes
    stop, it stays down 3 s, its daemons start), so a restart measured apart would not be this one;
  - overhead = total - the time covered by Ganeti's jobs or the restart (their union: a verify-disks job that
    runs while the node's SSH is awaited is not subtracted twice); the "ganeti" column is the part of that union
    outside the restart; "noticed" = the run's reboot step (reboot command until noded answers with a new boot
    id, polled every 0.1 s, and then SSH) - restart: how late the run notices the node back.
Goals (issue 13): overhead under 2 s per node, noticed within 1 s; two groups in parallel take about the time
of the slower group; `gnt-cluster verify` clean afterwards. Figures and the command go to
bench/results/rolling_reboot.txt. The master is left out of
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
import tempfile
import threading
import time
from pathlib import Path

from runlog import log_time, run_log, written_by

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, GanetiError, connect
from libcluster.ganeti.jobs import timestamp
from libcluster.remote import Remote
from libcluster.runner.logs import log_paths

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "rolling_reboot.txt"
COOKBOOK = REPO / ".venv" / "bin" / "cookbook"
DONE = re.compile(r"(\S+) done in ([\d.]+)s \((.*)\)")
STEP = re.compile(r"(\w+) ([\d.]+)s")
MOVED = re.compile(r"^  (\S+): (\S+): now on (\S+)$", re.MULTILINE)


def _client(config: Path) -> GanetiCluster:
    root = config_module.load(config)
    changes = ChangeLog(dry_run=False)
    remote = Remote(root.section("remote"), dry_run=False, changes=changes)
    return connect(root, "lab", dry_run=False, changes=changes, remote=remote)


REBOOTED = re.compile(r"Did remote command (\S+) \(commands=\['reboot'\]\)")


class RestartWatch:
    """Follows a run's DEBUG log; on the line of a node's `reboot` command, polls that node every 0.05 s until it
    answers with a new boot id and SSH, and keeps (command time, back time) per node."""

    def __init__(self, cluster: GanetiCluster, log: Path, offset: int) -> None:
        """Watch log from offset; the boot ids before any reboot are read now."""
        self.cluster, self.log, self.offset = cluster, log, offset
        self.before = cluster.boot_ids()
        self.times: dict[str, tuple[float, float]] = {}
        self._threads: list[threading.Thread] = []

    def poll(self, pid: int) -> None:
        """Read the whole lines the run wrote since the last call; start a watcher for each new reboot line."""
        if not self.log.exists():
            return
        with self.log.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        chunk = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read at the next call
        self.offset += len(chunk)
        for line in chunk.decode("utf-8", errors="replace").splitlines():
            found = REBOOTED.search(line) if written_by(line, pid) else None
            if found and found.group(1) not in self.times:
                self.times[found.group(1)] = (log_time(line), 0.0)
                thread = threading.Thread(target=self._watch, args=(found.group(1),), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _watch(self, node: str) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                boot_id = self.cluster.boot_ids([node]).get(node)
                if boot_id and boot_id != self.before.get(node) and self.cluster.answers_ssh(node):
                    self.times[node] = (self.times[node][0], time.time())
                    return
            except GanetiError as exc:  # the RAPI busy or the node unknown for a moment: look again
                print(f"restart watch of {node}: {exc}", file=sys.stderr)
            time.sleep(0.05)

    def restarts(self) -> dict[str, tuple[float, float]]:
        """node -> (its reboot command, back), for the nodes seen back (after every watcher has ended)."""
        for thread in self._threads:
            thread.join(600)
        return {node: times for node, times in self.times.items() if times[1]}


def rollout(cluster: GanetiCluster, config: Path, nodes: list[str], parallel: int
            ) -> tuple[float, str, list[str], dict[str, float]]:
    """Run reboot-nodes on nodes as an operator types it; (wall time, output, the run's DEBUG log lines, each
    node's restart as watched)."""
    argv = [str(COOKBOOK), "-c", str(config), "-y", "sre.ganeti.reboot-nodes", "--cluster", "lab",
            "--groups-in-parallel", str(parallel), "--nodes", *nodes]
    debug_log = log_paths(config_module.load(config).str("logs_base_dir"), "sre.ganeti.reboot-nodes")[1]
    offset = debug_log.stat().st_size if debug_log.exists() else 0
    watch = RestartWatch(cluster, debug_log, offset)
    with tempfile.TemporaryFile("w+") as output:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, text=True)
        while process.poll() is None:
            watch.poll(process.pid)
            time.sleep(0.05)
        wall = time.monotonic() - started
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        sys.exit(f"{shlex.join(argv[3:])} exited {process.returncode}:\n{text}")
    return wall, text, run_log(debug_log, offset, process.pid), watch.restarts()


def turns(lines: list[str], nodes: list[str]) -> dict[str, tuple[float, float]]:
    """Each node's turn in the run's log: from its "NODE (i/n): draining and rebooting" line to its "NODE done in"."""
    found: dict[str, tuple[float, float]] = {}
    for node in nodes:
        begin = next(log_time(line) for line in lines if f"{node} (" in line and "): draining and rebooting" in line)
        end = next(log_time(line) for line in lines if f"{node} done in " in line)
        found[node] = (begin, end)
    return found


def job_spans(cluster: GanetiCluster, turn: tuple[float, float], node: str, vms: set[str]) -> list[tuple[float, float]]:
    """The received-to-end intervals, clipped to the node's turn, of the jobs that name the node (its tag jobs in
    their op), one of the VMs moved off it, or none (verify-disks)."""
    first, last = turn
    spans: list[tuple[float, float]] = []
    for job in cluster.jobs(bulk=True):
        received, end = timestamp(job.get("received_ts")), timestamp(job.get("end_ts"))
        summaries = " ".join(str(s) for s in job.get("summary") or [])
        if not (received and end and received < last and end > first):
            continue
        tagged = any(op.get("OP_ID", "").startswith("OP_TAGS_") and op.get("name") == node
                     for op in job.get("ops") or [])  # a tag job's summary names no object: its op does
        if any(f"({name})" in summaries for name in (node, *vms)) or "VERIFY_DISKS" in summaries or tagged:
            spans.append((max(received, first), min(end, last)))
    return spans


def covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of the intervals: overlapping ones (jobs queued while another runs, a job
    during the node's restart) are counted once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def main() -> int:
    """Create the VMs, roll out (each group alone, then in parallel), print, write results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", required=True, help="lab node group (repeat for two)")
    parser.add_argument("--config", type=Path, default=Path("/var/lib/cookbook-lab/config.yaml"))
    args = parser.parse_args()
    cluster = _client(args.config)
    master = cluster.master()
    nodes = {group: sorted(node for node in cluster.group(group).nodes if node != master) for group in args.group}
    vms: list[str] = []
    lines = [f"$ {shlex.join(sys.argv)}", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}"]
    try:
        for members in nodes.values():
            for node in members:
                name = f"rr-bench-{secrets.token_hex(3)}.lab.example"
                vms.append(name)
                cluster.create_instance(name, disk_template="sharedfile", disks=[1024], os_type="noop", memory=128,
                                        vcpus=1, pnode=node, name_check=False, start=True).wait(timeout=300)
        walls: dict[str, float] = {}
        for group in args.group:
            wall, output, log, restart = rollout(cluster, args.config, nodes[group], 1)
            node_turns = turns(log, nodes[group])
            walls[group] = wall
            moved = MOVED.findall(output)
            lines.append(f"\ngroup {group} alone ({', '.join(nodes[group])}; the master {master} left out): "
                         f"{wall:.1f} s")
            lines.append("node                 total  ganeti restart overhead noticed  steps")
            for node, total, steps in DONE.findall(output):
                timings = {step: float(seconds) for step, seconds in STEP.findall(steps)}
                if node not in restart:
                    lines.append(f"{node:20} {float(total):6.1f}  its restart was not seen: no figure  {steps}")
                    continue
                spans = job_spans(cluster, node_turns[node], node, {vm for on, vm, _ in moved if on == node})
                command, back = restart[node]
                ours = float(total) - covered([*spans, (command, back)])  # Ganeti or the restart: not ours
                ganeti = covered([*spans, (command, back)]) - (back - command)
                noticed = timings.get("reboot", 0.0) - (back - command)
                lines.append(f"{node:20} {float(total):6.1f} {ganeti:7.1f} {back - command:7.1f} {ours:8.1f} "
                             f"{noticed:7.2f}  {steps}")
        if len(args.group) > 1:
            wall, _, _, _ = rollout(cluster, args.config, [node for members in nodes.values() for node in members],
                                    len(args.group))
            slower = max(walls.values())
            lines.append(f"\n{len(args.group)} groups with --groups-in-parallel {len(args.group)}: {wall:.1f} s; the "
                         f"slower group alone {slower:.1f} s (ratio {wall / slower:.2f}); the sum "
                         f"{sum(walls.values()):.1f} s")
        errors = cluster.commands.cluster_verify().errors  # SSH keys too: a key change while a node is down
        lines.append(f"gnt-cluster verify after the rollouts: {len(errors)} error(s)"
                     + "".join(f"\n  {error.code} {error.item}: {error.message}" for error in errors))
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
