"""Rebalance a Ganeti node group: hbal's plan, run by us one action at a time, each journaled with its undo.

Steps:
  1. Check (nothing changed yet): --group is a node group of --cluster, each --exclude-instances name is an
     instance of that group; hbal computes its plan (`hbal -L -G GROUP`, read-only, with --no-disk-moves and
     --exclude-instances passed on). A plan holding an action word other than hbal's f, fa:NODE and r:NODE is
     refused, naming it, as is a step whose actions do not lead to the nodes its line says. The plan (each move
     with its actions, the score now and after it) is printed.
  2. Confirm; take the group's lock, the lock of each of its nodes and of each instance that moves (held until
     the run ends).
  3. Run the moves in hbal's order, one at a time, and each move's actions in hbal's order, each Ganeti job
     followed to its end: f (to the DRBD secondary) and fa:NODE (shared storage) live-migrate a running instance
     and fail a stopped one over (no downtime), undo: move back; r:NODE replaces the DRBD secondary with NODE
     (Ganeti's replace-disks, the disks copied to NODE), undo: replace back with the old secondary. A move starts
     only if its instance is on the nodes the plan says, and each real action must end where the plan says.
     DRBD (f, r:NODE) is unit-tested only: the lab has no DRBD.
  4. Report the final score (`hbal -L` again).
Rollback (an action fails, Ctrl-C, `cancel` from chat; `cookbook --recover` of a run that died runs the same undo
steps): the moves not started are not sent; the run says which moves were done and which was in progress (and at
which of its actions, for a move of several); then the undo takes back each action done, newest first (a job
Ganeti had not started yet is canceled, a running one is waited for first).
Exit codes: 0 done (or nothing to move); 94 unknown cluster or group, an --exclude-instances name not in the
group, a plan with an action word this cookbook does not run or that cannot be mapped (nothing changed); 99 an
action failed or ended elsewhere (rolled back); 97 interrupted (rolled back); 93 the rollback left something
(named). With -d hbal's plan is printed and Ganeti checks each action with its dry-run job (only the first action
of each instance: a later one's check would see the instance where it still is): nothing changes.

Usage:
  cookbook -d sre.ganeti.rebalance --cluster lab --group A
  cookbook sre.ganeti.rebalance --cluster lab -t T13001 --group A --no-disk-moves
  cookbook sre.ganeti.rebalance --cluster lab --group A --exclude-instances vm1.lab.example vm2.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.ganeti import GanetiCluster, rebalance

logger = logging.getLogger(__name__)


class Rebalance(CookbookBase):
    """Rebalance a Ganeti node group with hbal's plan, one journaled action at a time."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --group and hbal's options (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--group", required=True, help="the Ganeti node group to rebalance")
        parser.add_argument("--no-disk-moves", action="store_true",
                            help="only migrations and failovers, no DRBD secondary replacement "
                                 "(hbal's --no-disk-moves)")
        parser.add_argument("--exclude-instances", nargs="+", default=[], type=fqdn_argument, metavar="FQDN",
                            help="instances of the group that must not move (hbal's --exclude-instances)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check the group and the excluded instances, get hbal's plan; a refusal exits 94 with nothing changed."""
        cluster = self.ctx.ganeti(cluster_settings(self.ctx.config, args).name)
        plan = rebalance.plan(cluster, args.group, no_disk_moves=args.no_disk_moves, exclude=args.exclude_instances)
        return RebalanceRunner(self.ctx, cluster, plan)


class RebalanceRunner(CookbookRunnerBase):
    """Print the plan, confirm, lock, run the moves' actions one at a time, report the final score."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, plan: rebalance.Plan) -> None:
        """Keep the checked plan."""
        self.ctx, self.cluster, self.plan = ctx, cluster, plan
        self.progress = rebalance.Progress(plan)

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"of group {self.plan.group} of cluster {self.cluster.name}: {len(self.plan.moves)} move(s)"

    def run(self) -> int:
        """The runbook."""
        print(f"hbal's plan for group {self.plan.group} of cluster {self.cluster.name}:\n  "
              + "\n  ".join(self.plan.lines()), flush=True)
        if not self.plan.moves:
            return 0
        self.ctx.confirm(f"Rebalance group {self.plan.group} ({len(self.plan.moves)} moves)?")
        resources.hold(self.ctx, self.cluster.name, groups=[self.plan.group], nodes=self.plan.nodes,
                       instances=self.plan.instances)
        rebalance.execute(self.cluster, self.progress)
        if self.ctx.dry_run:
            print(f"Dry-run: Ganeti's checks passed; the score would go from "
                  f"{rebalance.score_text(self.plan.initial_score)} to {rebalance.score_text(self.plan.final_score)}; "
                  "nothing changed", flush=True)
            return 0
        final = rebalance.score(self.cluster, self.plan.group)
        print(f"{len(self.progress.done)} move(s) done; score {rebalance.score_text(self.plan.initial_score)} before, "
              f"{rebalance.score_text(final)} now (hbal -L; planned {rebalance.score_text(self.plan.final_score)})",
              flush=True)
        return 0

    def rollback(self) -> None:
        """Say which moves were done, which was in progress and which were not started (the undo takes back each
        action done)."""
        print("Rebalance stopped:\n  " + "\n  ".join(self.progress.lines()), flush=True)
