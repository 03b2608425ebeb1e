"""Rolling reboot of Ganeti nodes: one node at a time per group, groups in parallel, the master last.

Steps:
  1. Check (nothing changed yet): the nodes of each --group and each --nodes are known to --cluster and
     online; each node's moves are checked by Ganeti's per-instance dry-run jobs and its group's room (N+1),
     as sre.ganeti.drain-node does. --resume skips the nodes that the previous run(s) of this cookbook on
     the cluster (the last one without --resume and the --resume runs after it, from the audit log)
     rebooted and returned to service. The order is printed.
  2. Confirm; lock every selected node and every instance on them (one call: the global lock order). Then
     for each node, the steps of drain-node --reboot (libcluster.ganeti.maintenance): drain, migrate
     (running) or fail over (stopped) its primaries, reboot, wait until noded answers with a new boot id,
     then for SSH while verify-disks runs until clean, undrain. One node at a time in each group;
     --groups-in-parallel K groups at a time, a node's drain or undrain never while another node is down
     (Ganeti 3.0 would skip the down node when it adds or removes a master candidate's SSH key; once a node did
     not come back, the nodes the other groups are working on are left drained, saying why). Progress per
     node in the terminal and on the server admin log/chat, with each step's time.
  3. The master, when selected, goes last: it is failed over to a master candidate (one this run rebooted
     when there is one), then rebooted like the others; the run says where the master role ends.
  4. Stop at the first failure: no other node is started (groups already running finish their node); the
     node that failed is left drained and the run says so (`drain-node --undrain` returns it to service).
Exit codes: 0 done; 94 unknown cluster, group or node, an offline node, an instance that cannot move, no room
(nothing changed); 1 a node failed (left drained, the others untouched); 97 interrupted. With -d only
Ganeti's checks run and each node's plan is printed: nothing changes.

Usage:
  cookbook sre.ganeti.reboot-nodes --cluster lab -t T13002 --group B
  cookbook sre.ganeti.reboot-nodes --cluster lab --group A --group B --groups-in-parallel 2
  cookbook sre.ganeti.reboot-nodes --cluster lab --group B --resume
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
import time
from pathlib import Path

from libcluster import audit, parallel, resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument, positive_int
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, maintenance
from libcluster.ganeti.nodes import Role

logger = logging.getLogger(__name__)
NAME = "sre.ganeti.reboot-nodes"


class RebootNodes(CookbookBase):
    """Rolling reboot of Ganeti nodes, groups in parallel, the master last after a failover."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, the groups and nodes, parallelism, --resume (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--group", dest="groups", action="append", default=[], metavar="G",
                            help="every node of Ganeti group G (repeatable)")
        parser.add_argument("--nodes", nargs="+", default=[], type=fqdn_argument, metavar="N", help="these nodes")
        parser.add_argument("--groups-in-parallel", type=positive_int, default=1, metavar="K",
                            help="groups rebooted at the same time (default 1)")
        parser.add_argument("--resume", action="store_true",
                            help="skip the nodes the previous run(s) rebooted and returned to service")
        parser.add_argument("--shutdown-plain", action="store_true",
                            help="stop the file/plain primaries (they cannot move) instead of refusing")
        parser.add_argument("--timeout", type=float, default=600.0,
                            help="seconds to wait for each rebooted node (default 600)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Select and check the nodes (a refusal exits 94, nothing changed); order them, the master last."""
        if not args.groups and not args.nodes:
            raise ValueError("name the nodes to reboot: --group G and/or --nodes N")
        cluster = self.ctx.ganeti(cluster_settings(self.ctx.config, args).name)
        groups = {group.name: group for group in cluster.groups()}
        unknown = [name for name in args.groups if name not in groups]
        if unknown:
            raise LibclusterError(f"no node group {', '.join(unknown)} in cluster {cluster.name} "
                                  f"(groups: {', '.join(sorted(groups))})")
        wanted = [node for name in args.groups for node in groups[name].nodes] + args.nodes
        nodes = {name: maintenance.known(cluster, name) for name in dict.fromkeys(wanted)}
        done = resumed(self.ctx, cluster.name) if args.resume else set()
        master = cluster.master()
        by_group: dict[str, list[str]] = {}
        for name in sorted(nodes):
            if name not in done and name != master:
                by_group.setdefault(nodes[name].group_uuid, []).append(name)
        last = master if master in nodes and master not in done else None
        for name in [*(n for names in by_group.values() for n in names), *([last] if last else [])]:
            maintenance.check(cluster, name, shutdown_plain=args.shutdown_plain, master=name == last)
        return RebootNodesRunner(self.ctx, cluster, list(by_group.values()), last, sorted(done & set(nodes)), args)


def resumed(ctx: Context, cluster: str) -> set[str]:
    """The nodes the previous runs of this cookbook on cluster (the last one without --resume and the --resume
    runs after it, from the audit log) rebooted and returned to service (a real undrain recorded)."""
    runs = []
    for record in reversed(audit.read_records(Path(ctx.config.str("audit_log")))):
        argv = record.get("argv") or []
        if record.get("cookbook") != NAME or record.get("dry_run") or not _on_cluster(argv, cluster):
            continue
        runs.append(record)
        if "--resume" not in argv:
            break
    return {str(change["target"]) for record in runs for change in record.get("changes") or []
            if change.get("action") == "node-role" and not change.get("dry_run") and not change.get("error")
            and (change.get("detail") or {}).get("role") in (Role.REGULAR.value, Role.CANDIDATE.value)}


def _on_cluster(argv: list[str], cluster: str) -> bool:
    return any(pair == ("--cluster", cluster) for pair in itertools.pairwise(argv)) or f"--cluster={cluster}" in argv


class RebootNodesRunner(CookbookRunnerBase):
    """The rollout: groups in parallel, one node at a time, the master last; stops at the first failure."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, groups: list[list[str]], master: str | None,
                 skipped: list[str], args: argparse.Namespace) -> None:
        """Keep the checked order."""
        self.ctx, self.cluster, self.groups, self.master, self.args = ctx, cluster, groups, master, args
        self.skipped = skipped
        self.failed = threading.Event()
        self.gate = maintenance.KeyGate()  # groups in parallel: no role change while a node is down
        self.runs: list[maintenance.NodeRun] = []
        self._lock = threading.Lock()

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        count = sum(map(len, self.groups)) + (1 if self.master else 0)
        return f"rolling reboot of {count} node(s) of cluster {self.cluster.name}"

    def run(self) -> int:
        """Print the order, confirm, roll out, say where the master role ends."""
        lines = [f"group {i + 1}: {', '.join(names)}" for i, names in enumerate(self.groups)]
        lines += [f"then the master {self.master}, after a master failover"] if self.master else []
        lines += [f"skipped (--resume): {', '.join(self.skipped)}"] if self.skipped else []
        print(f"Rolling reboot, {self.args.groups_in_parallel} group(s) at a time:\n  " + "\n  ".join(lines),
              flush=True)
        self.ctx.confirm(f"Start the {self.runtime_description}?")
        self.ctx.undo.enabled = False  # a node that fails is left drained; the others are done
        selected = {*(name for names in self.groups for name in names), *([self.master] if self.master else [])}
        hosted = {name for node in self.cluster.nodes() if node.name in selected
                  for name in (*node.primary_instances, *node.secondary_instances)}
        resources.hold(self.ctx, self.cluster.name, nodes=selected, instances=hosted)  # together: the lock order
        k = self.args.groups_in_parallel
        for start in range(0, len(self.groups), k):
            parallel.map_all(self._group, self.groups[start:start + k])
            if self.failed.is_set():
                return 1
        if self.master:
            candidates = [run.node for run in self.runs if Role.of(self.cluster.node(run.node)) is Role.CANDIDATE]
            candidates += [node.name for node in self.cluster.nodes() if node.role == Role.CANDIDATE.letter]
            if not candidates:
                raise LibclusterError(f"no master candidate to fail {self.master} over to: it is not rebooted")
            new = self.cluster.master_failover(candidates[0])
            self.ctx.notify(f"master role {'would move' if self.ctx.dry_run else 'moved'} from {self.master} to "
                            f"{candidates[0]}")
            if not self._node(self.master, 1, 1):
                return 1
            print(f"The master role ends on {new if not self.ctx.dry_run else candidates[0]}", flush=True)
        return 0

    def _drained(self, name: str) -> bool:
        """Whether Ganeti says the node is drained now (a step may have failed after the drain, before it returned)."""
        try:
            return self.cluster.node(name).drained and not self.ctx.dry_run
        except LibclusterError:
            return False

    def _group(self, names: list[str]) -> None:
        """One group, node after node, until the end or any failure."""
        for index, name in enumerate(names, 1):
            if self.failed.is_set() or not self._node(name, index, len(names)):
                return

    def _node(self, name: str, index: int, count: int) -> bool:
        """Drain, reboot, undrain one node; on failure say it stays drained and set the failed flag."""
        self.ctx.notify(f"{name} ({index}/{count}): draining and rebooting")
        started = time.monotonic()
        try:
            run = maintenance.empty(self.ctx, self.cluster, name, shutdown_plain=self.args.shutdown_plain,
                                    master=self.ctx.dry_run and name == self.master,  # checked again: VMs moved
                                    gate=self.gate)
            maintenance.reboot(self.ctx, self.cluster, run, timeout=self.args.timeout,  # only recorded in dry-run
                               gate=self.gate)
            if not self.ctx.dry_run:
                maintenance.undrain(self.cluster, run, gate=self.gate)
        except (LibclusterError, OSError) as exc:
            self.failed.set()
            state = "left drained" if self._drained(name) else "not drained"
            self.ctx.notify(f"{name} FAILED: {exc}; {name} is {state}, rollout stopped "
                            f"(cookbook sre.ganeti.drain-node --cluster {self.cluster.name} --undrain {name} "
                            "returns it to service)")
            return False
        with self._lock:
            self.runs.append(run)
        steps = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in run.timings.items())
        plan_lines = "" if not self.ctx.dry_run else "\n  " + "\n  ".join(run.plan.lines() if run.plan else [])
        self.ctx.notify(f"{name} done in {time.monotonic() - started:.1f}s ({steps}){plan_lines}")
        for line in run.lines():
            print(f"  {name}: {line}", flush=True)
        return True
