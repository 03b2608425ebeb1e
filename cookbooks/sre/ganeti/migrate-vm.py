"""Live-migrate a running VM to another node of its group (--to NODE, or where Ganeti's iallocator says).

Steps:
  1. Check: the instance exists in --cluster and runs; its disk template can migrate (drbd, sharedfile,
     diskless, rbd, ext, blockdev, gluster: a file or plain instance must first be converted with
     sre.ganeti.changedisk); a stopped one is failed over instead (sre.ganeti.failover-vm: Ganeti
     refuses to migrate it). --to must be a usable node of the same group (drbd: its secondary); the
     target node(s) must have the instance's memory free.
  2. Confirm, then take the instance's lock (the one reboot-vm, changedisk and the sync take).
  3. Migrate live through the RAPI, showing the job's log; say which node it went to (in dry-run:
     which node Ganeti's check chose).
  4. Check it runs on the new node.
Rollback (a step fails, Ctrl-C, `cancel` from chat; `cookbook --recover` of a run that died runs the
same undo step): the instance is migrated back to the node it was on.
Exit codes: 0 migrated; 94 unknown cluster, instance or node, a node of another group, a template that
cannot migrate, a stopped instance or not enough memory (nothing changed); 99 a step failed (rolled
back); 97 interrupted (rolled back); 93 the rollback left something (named). With -d Ganeti checks
the migration (its dry-run job) and the node it would choose is shown. NetBox needs no change (the VM
stays active).

Usage:
  cookbook sre.ganeti.migrate-vm --cluster lab -t T12345 vm1.lab.example
  cookbook sre.ganeti.migrate-vm --cluster lab --to node2.lab.example vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance, Node

logger = logging.getLogger(__name__)


class MigrateVM(CookbookBase):
    """Live-migrate a VM to another node of its group."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --to and the instance (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--to", type=fqdn_argument, metavar="NODE",
                            help="the target node; without it Ganeti's iallocator chooses (drbd: its secondary node)")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance and the target nodes; refuse what Ganeti would refuse before anything changes."""
        _, cluster, instance = vmops.read_instance(self.ctx, args)
        vmops.check_movable(cluster.name, instance)
        if instance.admin_state != "up":
            raise LibclusterError(f"{args.fqdn} is stopped (admin state {instance.admin_state}): Ganeti does not "
                                  "migrate a stopped instance, fail it over with sre.ganeti.failover-vm")
        if not instance.running:
            raise LibclusterError(f"{args.fqdn} is {instance.status} in Ganeti, not running: not migrated")
        targets = vmops.with_memory(vmops.target_nodes(cluster, instance, args.to), instance)
        return MigrateVMRunner(self.ctx, cluster, instance, targets, args.to)


class MigrateVMRunner(CookbookRunnerBase):
    """Migrate live, check the new node; the client's undo migrates it back."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, instance: Instance, targets: list[Node],
                 to: str | None) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.cluster = cluster
        self.fqdn = instance.name
        self.old = instance.primary_node
        self.memory = instance.memory
        self.targets = targets
        self.to = to

    @property
    def runtime_description(self) -> str:
        """VM, cluster and nodes."""
        return f"for {self.fqdn} on cluster {self.cluster.name}: {self.old} -> {self.to or 'iallocator choice'}"

    def run(self) -> int:
        """The runbook: show the move, confirm, lock, migrate, check the node."""
        free = ", ".join(f"{node.name} ({node.memory_free} MiB free)" for node in self.targets)
        print(f"Live migration of {self.fqdn} ({self.memory} MiB) on cluster {self.cluster.name} from {self.old} "
              f"to {self.to or 'the node Ganeti chooses'}; target(s) with the memory: {free}", flush=True)
        self.ctx.confirm(f"Migrate {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        node = self.cluster.migrate_instance(self.fqdn, mode="live", target_node=self.to).wait().value
        if self.ctx.dry_run:
            print(f"Ganeti's check passed: {self.fqdn} would be migrated to {node}", flush=True)
            return 0
        state = self.cluster.instance(self.fqdn)
        if state.primary_node == self.old or not state.running:
            raise LibclusterError(f"{self.fqdn} is {state.status} on {state.primary_node} after the migration")
        print(f"{self.fqdn} runs on {node} (was on {self.old})", flush=True)
        return 0
