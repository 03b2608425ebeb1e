"""Fail a Ganeti cluster's master role over to a master candidate.

Steps:
  1. Check (nothing changed yet): --to is a master candidate of --cluster (without --to: the first candidate
     by name, in the master's group when it has one) whose noded answers (boot id) and SSH answers;
     --no-voting only on a two-node cluster.
  2. Confirm (--no-voting: a second confirmation naming the risk, the old master's name
     typed: -y does not answer it).
  3. Drain the job queue and wait for the master's jobs, run `gnt-cluster master-failover` on the new master,
     wait until the RAPI at the configured URL (the cluster IP, which follows the master) names it.
  4. Verify the cluster (`gnt-cluster verify`: an error about either node fails the run).
Rollback: none (fail it over again, this cookbook with --to the old master).
Exit codes: 0 done; 94 unknown cluster or node, not a candidate, daemons not answering, --no-voting on more
than two nodes (nothing changed); 1 verify reports an error about the old or new master; 99 a step failed.
With -d the commands are only printed.

Usage:
  cookbook sre.ganeti.master-failover --cluster lab -t T13003 --to node2.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, maintenance
from libcluster.ganeti.nodes import NodeStateError, Role
from libcluster.interactive import AbortError

logger = logging.getLogger(__name__)


class MasterFailover(CookbookBase):
    """Fail the master role over to a master candidate."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --to, --no-voting (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--to", type=fqdn_argument, metavar="NODE",
                            help="the new master, a master candidate (default: the first candidate by name)")
        parser.add_argument("--no-voting", action="store_true",
                            help="two-node clusters whose master is dead only: skip the vote (asks twice)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check the target and its daemons; a refusal exits 94 with nothing changed."""
        cluster = self.ctx.ganeti(cluster_settings(self.ctx.config, args).name)
        nodes = cluster.nodes()
        if args.no_voting and len(nodes) != 2:
            raise LibclusterError(f"--no-voting is for two-node clusters only; {cluster.name} has {len(nodes)} "
                                  "nodes, whose majority can vote")
        master = cluster.master()
        if args.to:
            target = maintenance.known(cluster, args.to)
            if target.name == master:
                raise NodeStateError(f"{target.name} is already the master of cluster {cluster.name}")
            if Role.of(target) is not Role.CANDIDATE:
                raise NodeStateError(f"{target.name} is {Role.of(target).value} in cluster {cluster.name}: only a "
                                     "master candidate can become the master")
        else:
            group = next((node.group_uuid for node in nodes if node.name == master), None)
            candidates = sorted((node.group_uuid != group, node.name) for node in nodes
                                if Role.of(node) is Role.CANDIDATE)
            if not candidates:
                raise NodeStateError(f"cluster {cluster.name} has no master candidate")
            target = maintenance.known(cluster, candidates[0][1])
        if cluster.boot_ids().get(target.name) is None:
            raise NodeStateError(f"{target.name}: its noded does not answer (no boot id): not a master now")
        if not cluster.answers_ssh(target.name):
            raise NodeStateError(f"{target.name}: SSH does not answer: not a master now")
        return MasterFailoverRunner(self.ctx, cluster, master, target.name, args.no_voting)


class MasterFailoverRunner(CookbookRunnerBase):
    """Confirm, fail over, wait for the RAPI, verify."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, old: str, new: str, no_voting: bool) -> None:
        """Keep what get_runner() checked."""
        self.ctx, self.cluster, self.old, self.new, self.no_voting = ctx, cluster, old, new, no_voting

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"master failover of cluster {self.cluster.name}: {self.old} -> {self.new}"

    def run(self) -> int:
        """The runbook."""
        print(f"Master failover of cluster {self.cluster.name} from {self.old} to {self.new}"
              f"{' WITHOUT VOTING' if self.no_voting else ''}", flush=True)
        self.ctx.confirm(f"Fail the master over to {self.new}?")
        if self.no_voting:
            answer = self.ctx.ask_input(f"--no-voting: if {self.old} is alive, both nodes may act as master and the "
                                        f"cluster configuration may split. Type {self.old} if it is really down")
            if answer != self.old:
                raise AbortError(f"typed {answer!r}, not {self.old}: nothing done")
        resources.hold(self.ctx, self.cluster.name, whole_cluster=True)
        master = self.cluster.master_failover(self.new, no_voting=self.no_voting)
        if self.ctx.dry_run:
            print(f"Dry-run: the master would move to {self.new}; it stays on {master}", flush=True)
            return 0
        self.ctx.notify(f"the master of cluster {self.cluster.name} is now {master} (was {self.old}); the RAPI "
                        "answers from it")
        errors = maintenance.verify(self.cluster, [self.old, master])
        for error in errors:
            logger.error("cluster verify: %s", error)
        return 1 if errors else 0
