"""Drain a Ganeti node for maintenance (optionally reboot it and return it to service), or --undrain it.

Steps:
  1. Check (nothing changed yet): the node is known to --cluster, not the master (fail it over first with
     sre.ganeti.master-failover), not offline; each primary instance's move is checked by its own Ganeti
     dry-run job (a running one is migrated, a stopped one failed over); a file/plain instance stops the run
     with the list and the sre.ganeti.changedisk command, unless --shutdown-plain stops it explicitly; the
     other nodes of the group must hold its running primaries (N+1). The plan is printed.
  2. Confirm; take the node's lock and each instance's lock (held until the run ends).
  3. Drain the node (a master candidate is tagged, so that undrain makes it a candidate again).
  4. Migrate (or fail over) its primaries; --full also evacuates its secondaries (DRBD only: unit-tested
     with recorded output, the lab has no DRBD).
  5. --reboot: reboot the node, wait until SSH, noded and a new boot id answer, run verify-disks until
     clean, then undrain it unless --keep-drained. Without --reboot the node stays drained.
  6. Verify the cluster (`gnt-cluster verify`: an error about the node fails the run).
Rollback (a step fails, Ctrl-C): the node is undrained, and where each moved instance now is is printed;
moved instances are not moved back.
--undrain: return a drained node to service (master candidate again if the drain took it out as one).
Exit codes: 0 done; 94 unknown cluster or node, the master, an offline node, an instance that cannot move,
no room in the group (nothing changed); 1 the cluster verify reports an error about the node (rolled back);
99 a step failed (rolled back); 97 interrupted (rolled back). With -d only Ganeti's per-instance dry-run
checks run and the plan is printed: nothing changes.

Usage:
  cookbook sre.ganeti.drain-node --cluster lab -t T13001 node2.lab.example
  cookbook sre.ganeti.drain-node --cluster lab --reboot node2.lab.example
  cookbook sre.ganeti.drain-node --cluster lab --undrain node2.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.ganeti import GanetiCluster, maintenance
from libcluster.ganeti.nodes import NodePlan

logger = logging.getLogger(__name__)


class DrainNode(CookbookBase):
    """Drain a Ganeti node (and with --reboot reboot it and return it to service), or --undrain it."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, the node and the options (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("node", type=fqdn_argument, help="the node, as Ganeti names it")
        parser.add_argument("--undrain", action="store_true", help="return the drained node to service, nothing else")
        parser.add_argument("--full", action="store_true", help="also evacuate the node's secondaries (DRBD)")
        parser.add_argument("--reboot", action="store_true",
                            help="reboot the emptied node, wait for it, verify-disks, then undrain it")
        parser.add_argument("--keep-drained", action="store_true", help="with --reboot: leave the node drained")
        parser.add_argument("--shutdown-plain", action="store_true",
                            help="stop the file/plain primaries (they cannot move) instead of refusing")
        parser.add_argument("--timeout", type=float, default=600.0,
                            help="seconds to wait for the rebooted node (default 600)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check the node and each move with Ganeti's dry-run checks; a refusal exits 94 with nothing changed."""
        if args.undrain and (args.full or args.reboot or args.keep_drained or args.shutdown_plain):
            raise ValueError("--undrain takes no other option")
        if args.keep_drained and not args.reboot:
            raise ValueError("--keep-drained goes with --reboot (without it the node stays drained anyway)")
        cluster = self.ctx.ganeti(cluster_settings(self.ctx.config, args).name)
        if args.undrain:
            maintenance.known(cluster, args.node)
            return UndrainRunner(self.ctx, cluster, args.node)
        plan = maintenance.check(cluster, args.node, shutdown_plain=args.shutdown_plain)
        return DrainNodeRunner(self.ctx, cluster, plan, args)


class DrainNodeRunner(CookbookRunnerBase):
    """Print the plan, confirm, drain and empty, reboot, undrain, verify; rollback undrains."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, plan: NodePlan, args: argparse.Namespace) -> None:
        """Keep what get_runner() checked."""
        self.ctx, self.cluster, self.plan, self.args = ctx, cluster, plan, args
        self.node = plan.node
        self.done: maintenance.NodeRun | None = None

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        what = "drain and reboot" if self.args.reboot else "drain"
        return f"{what} of node {self.node} of cluster {self.cluster.name}"

    def run(self) -> int:
        """The runbook."""
        print(f"Plan for {self.node} (each move checked by Ganeti):\n  " + "\n  ".join(self.plan.lines()), flush=True)
        self.ctx.confirm(f"{self.runtime_description.capitalize()}?")
        self.ctx.undo.enabled = False  # the rollback is an undrain: moved instances stay where Ganeti put them
        self.done = maintenance.NodeRun(self.node)  # filled step by step: the rollback sees a failed move's drain
        maintenance.empty(self.ctx, self.cluster, self.node, full=self.args.full,
                          shutdown_plain=self.args.shutdown_plain, plan=self.plan, into=self.done)
        if self.ctx.dry_run:
            print(f"Dry-run: {self.node} would be drained; nothing changed", flush=True)
            return 0
        if self.args.reboot:
            maintenance.reboot(self.ctx, self.cluster, self.done, timeout=self.args.timeout)
            if not self.args.keep_drained:
                maintenance.undrain(self.cluster, self.done)
        print("\n".join([f"{self.node} is {'drained' if self.done.drained else 'in service'}:",
                         *self.done.lines()]), flush=True)
        errors = maintenance.verify(self.cluster, [self.node])
        for error in errors:
            logger.error("cluster verify: %s", error)
        return 1 if errors else 0

    def rollback(self) -> None:
        """Undrain the node and say where each moved instance now is."""
        if self.done is not None and self.done.drained and not self.ctx.dry_run:
            print("\n".join(maintenance.undrain_and_report(self.cluster, self.done)), flush=True)


class UndrainRunner(CookbookRunnerBase):
    """Return a drained node to service."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, node: str) -> None:
        """Keep the checked node."""
        self.ctx, self.cluster, self.node = ctx, cluster, node

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"undrain of node {self.node} of cluster {self.cluster.name}"

    def run(self) -> int:
        """Lock the node, undrain it (its role back), say its role."""
        resources.hold(self.ctx, self.cluster.name, node=self.node)
        change = self.cluster.undrain(self.node)
        verb = "would become" if self.ctx.dry_run else "is now"
        print(f"{self.node} was {change.old.value}, {verb} {change.new.value}", flush=True)
        return 0
