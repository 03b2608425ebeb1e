# ruff: noqa: N999 - a cookbook file is named as operators type it: drain-node
"""Drain a Ganeti node for maintenance: no new instance goes to it, its primary instances are migrated away.

Steps:
  1. Check the node (known to the cluster, not its master, not offline) and list its primary instances.
  2. Take the node's lock and the lock of each of those instances, held until the run and its undo end.
  3. Confirm.
  4. Set the node's role to drained: Ganeti places no new instance on it.
  5. Migrate its primary instances away (the hypervisor's migration mode) and check that none is left on it.
Rollback, when a step fails or the run is interrupted: the node gets its old role back (the undo the Ganeti
client registered in step 4, also run by `cookbook --recover` of a run that died). Instances already
migrated stay where they are: they run fine on their new node.
With -d nothing is changed: the locks are checked and the Ganeti jobs are listed as planned changes (the
node-level migration is sent as a Ganeti dry-run job, which checks the request, not each instance's move).

Usage:
  cookbook team.drain-node -r "disk replacement" --cluster prod1 node3.prod1.example.org
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Node

logger = logging.getLogger(__name__)


class DrainNode(CookbookBase):
    """Drain a Ganeti node: set it drained and migrate its primary instances away."""

    argument_reason_required = True

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster and the node's name (-r is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("node", type=fqdn_argument, help="the node, as Ganeti names it")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check the cluster and the node; nothing is locked or changed yet (a refusal exits 94)."""
        settings = cluster_settings(self.ctx.config, args)
        cluster = self.ctx.ganeti(settings.name)
        node = cluster.node(args.node)
        if node.role == "M":
            raise LibclusterError(f"{node.name} is the master of cluster {cluster.name}: fail the master over first")
        if node.offline:
            raise LibclusterError(f"{node.name} is offline: there is nothing to migrate from it")
        return DrainNodeRunner(self.ctx, cluster, node, args.reason)


class DrainNodeRunner(CookbookRunnerBase):
    """Lock, confirm, drain, migrate, check."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, node: Node, reason: str) -> None:
        """Keep what get_runner() checked."""
        self.ctx = ctx
        self.cluster = cluster
        self.node = node
        self.reason = reason

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"for node {self.node.name} of cluster {self.cluster.name}: {self.reason}"

    def run(self) -> int:
        """The runbook, step by step."""
        instances = list(self.node.primary_instances)
        resources.hold(self.ctx, self.cluster.name, node=self.node.name, instances=instances)
        self.ctx.confirm(f"Drain {self.node.name} and migrate its {len(instances)} primary instance(s) away?")
        self.cluster.set_node_role(self.node.name, "drained").wait()
        if instances:
            self.cluster.migrate_node(self.node.name).wait()
        if self.ctx.dry_run:  # nothing moved: there is nothing to check
            return 0
        left = self.cluster.node(self.node.name).primary_instances
        if left:
            logger.error("Still on %s after the migration: %s", self.node.name, ", ".join(left))
            return 1
        logger.info("%s is drained: %d instance(s) migrated away", self.node.name, len(instances))
        return 0
