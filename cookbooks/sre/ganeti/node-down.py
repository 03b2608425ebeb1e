"""Handle a Ganeti node that died: mark it offline, fail its primaries over, evacuate its secondaries, mark its
NetBox device failed, and say what is not redundant now.

Steps:
  1. Check (nothing changed yet): NODE is a node of --cluster, not the master (fail the master over first:
     sre.ganeti.master-failover, --no-voting on a two-node cluster), and really down: its noded does not answer
     (a node that answers is drained with sre.ganeti.drain-node instead).
  2. Print its primaries and secondaries; confirm. With --ignore-consistency a second confirmation names the risk
     (the node's name typed; -y never answers it).
  3. Lock the node and its instances; mark the node offline (`gnt-node modify -O yes`).
  4. Fail each mirrored primary over (sharedfile, diskless...: to the node Ganeti's iallocator chooses; DRBD: to
     its secondary). A file/plain instance cannot move: it stays down on the dead node and is reported.
  5. Evacuate its secondaries (DRBD only: `gnt-node evacuate --secondary-only`; unit-tested with the fakes, the lab
     has no DRBD).
  6. NetBox: the node's device status becomes `failed`.
  7. Report what is not redundant now: instances left on the dead node, failovers that failed, DRBD secondaries
     that could not be replaced.
Rollback: none (the node is dead); once it is back: `cookbook sre.ganeti.addnode --readd`.
Exit codes: 0 done; 1 something is left not redundant (listed); 94 unknown node, the master, a node that
answers (nothing changed); 99 a step failed. With -d nothing changes: the steps are printed (Ganeti cannot
check a failover from a node that is not offline yet, so no failover check is asked for).

Usage:
  cookbook sre.ganeti.node-down --cluster lab -t T13001 node3.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.ganeti import GanetiCluster, GanetiError, maintenance
from libcluster.ganeti.nodes import DOWN_DEVICE_STATUS, MoveAction, NodeStateError, move_action, refusal
from libcluster.interactive import AbortError

logger = logging.getLogger(__name__)


class NodeDown(CookbookBase):
    """Fail over and evacuate a dead node; mark it offline and failed in NetBox."""

    argument_task_required = True

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --ignore-consistency, NODE (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--ignore-consistency", action="store_true",
                            help="fail DRBD instances over even with degraded disks (asks a second time)")
        parser.add_argument("node", type=fqdn_argument, metavar="NODE", help="the dead node's FQDN")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Refuse an unknown node, the master and a node whose noded answers (exit 94, nothing changed)."""
        cluster = self.ctx.ganeti(cluster_settings(self.ctx.config, args).name)
        node = maintenance.known(cluster, args.node)
        if node.name == cluster.master():
            raise NodeStateError(f"{node.name} is the master of cluster {cluster.name}: fail it over first "
                                 f"(cookbook sre.ganeti.master-failover --cluster {cluster.name}, --no-voting on a "
                                 "two-node cluster)")
        if cluster.boot_ids().get(node.name) is not None:
            raise NodeStateError(f"{node.name} answers (its noded reports a boot id): it is not down; drain it with "
                                 f"cookbook sre.ganeti.drain-node --cluster {cluster.name} {node.name}")
        return NodeDownRunner(self.ctx, cluster, node.name, args.ignore_consistency)


class NodeDownRunner(CookbookRunnerBase):
    """Confirm, offline, fail over, evacuate, NetBox, report."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, node: str, ignore_consistency: bool) -> None:
        """Keep what get_runner() checked."""
        self.ctx, self.cluster, self.node, self.ignore_consistency = ctx, cluster, node, ignore_consistency

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"node {self.node} of cluster {self.cluster.name} is down: offline, failover, evacuate"

    def run(self) -> int:
        """The runbook."""
        node = self.cluster.node(self.node)
        primaries = [self.cluster.instance(name) for name in sorted(node.primary_instances)]
        secondaries = sorted(node.secondary_instances)
        print(f"Node {self.node} of cluster {self.cluster.name} is down.\n  primaries: "
              f"{', '.join(i.name for i in primaries) or 'none'}\n  secondaries: {', '.join(secondaries) or 'none'}",
              flush=True)
        self.ctx.confirm(f"Mark {self.node} offline and fail its instances over?")
        if self.ignore_consistency:
            answer = self.ctx.ask_input("--ignore-consistency: a DRBD instance whose disks on the other node are "
                                        "degraded starts there with stale or corrupt data. Type "
                                        f"{self.node} to accept that risk")
            if answer != self.node:
                raise AbortError(f"typed {answer!r}, not {self.node}: nothing done")
        self.ctx.undo.enabled = False  # a dead node is not put back online by a rollback
        resources.hold(self.ctx, self.cluster.name, node=self.node,
                       instances=[i.name for i in primaries] + secondaries)
        self.cluster.set_offline(self.node)
        left: list[str] = []
        for instance in primaries:
            if move_action(instance) is MoveAction.REFUSED:
                left.append(f"{instance.name}: stays down on {self.node}: {refusal(self.cluster.name, instance)}")
                continue
            if self.ctx.dry_run:  # Ganeti checks a failover only once the node is offline: nothing to ask it yet
                print(f"Dry-run: {instance.name} would be failed over (Ganeti chooses where)", flush=True)
                continue
            try:
                job = self.cluster.failover_instance(instance.name,
                                                     ignore_consistency=self.ignore_consistency or None)
                where = job.wait().value
            except GanetiError as exc:
                left.append(f"{instance.name}: failover failed: {exc}")
                continue
            self.ctx.notify(f"{instance.name}: failed over from {self.node} to {where}")
        if secondaries:
            try:
                self.cluster.evacuate_node(self.node, mode="secondary-only").wait()
            except GanetiError as exc:
                left.extend(f"{name}: its DRBD secondary on {self.node} not replaced: {exc}" for name in secondaries)
        self._netbox()
        for line in left:
            logger.error("not redundant: %s", line)
        print(f"Node {self.node} is offline; {len(left)} instance(s) not redundant now"
              + "".join(f"\n  {line}" for line in left), flush=True)
        return 1 if left else 0

    def _netbox(self) -> None:
        """The node's NetBox device status becomes failed (a device NetBox does not know is reported, not made)."""
        netbox = self.ctx.netbox(read_write=True)
        device = netbox.find("device", name=self.node)
        if device is None:
            logger.warning("NetBox has no device %s: status not set", self.node)
            return
        netbox.update("device", [{"id": device["id"], "status": DOWN_DEVICE_STATUS}])

