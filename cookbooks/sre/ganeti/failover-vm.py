"""Fail a VM over to another node of its group: a running one is stopped and started there (downtime).

Steps:
  1. Check: the instance exists in --cluster and its disk template can fail over (drbd, sharedfile,
     diskless, rbd, ext, blockdev, gluster: a file or plain instance must first be converted with
     sre.ganeti.changedisk). --to must be a usable node of the same group (drbd: its secondary); for a
     running instance the target must have its memory free. A stopped instance only changes node (the
     way to move it: Ganeti does not migrate a stopped one).
  2. Confirm. With --ignore-consistency a second confirmation names the risk (the target's disks may
     be out of sync: data is lost or corrupted): the operator must type "ignore consistency" at a
     terminal; -y does not answer it, so this option cannot be used without a terminal (chat, cron).
  3. Take the instance's lock (the one reboot-vm, changedisk and the sync take).
  4. Fail over through the RAPI (a running guest gets --shutdown-timeout seconds), showing the job's
     log; say which node it went to (in dry-run: which node Ganeti's check chose); check it is there and
     runs again if it ran.
No undo: failing it back would be another stop and start, towards the node it may have been moved away
from for a reason; if a later step fails, the run says where the instance is (fail it back by hand).
Exit codes: 0 failed over; 94 unknown cluster, instance or node, a node of another group, a template
that cannot fail over or not enough memory (nothing changed); 99 a step failed or a confirmation was
refused; 97 interrupted. With -d Ganeti checks the failover (its dry-run job) and the node it would
choose is shown. NetBox needs no change (the VM keeps its status).

Usage:
  cookbook sre.ganeti.failover-vm --cluster lab -t T12345 vm1.lab.example
  cookbook sre.ganeti.failover-vm --cluster lab --to node2.lab.example --ignore-consistency vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance
from libcluster.ganeti.waits import wait_running
from libcluster.interactive import AbortError

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT = 120
IGNORE_ANSWER = "ignore consistency"
"""What the operator types to accept --ignore-consistency's risk."""


class FailoverVM(CookbookBase):
    """Fail a VM over to another node of its group (stop, start there)."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --to, --ignore-consistency, --shutdown-timeout and the instance (-t added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--to", type=fqdn_argument, metavar="NODE",
                            help="the target node; without it Ganeti's iallocator chooses (drbd: its secondary node)")
        parser.add_argument("--ignore-consistency", action="store_true",
                            help="fail over even if the target's disks are not in sync (typed second "
                                 "confirmation, never answered by -y)")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT,
                            help="seconds a running guest gets to shut down before it is forced off")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance and the target nodes; refuse what Ganeti would refuse before anything changes."""
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        _, cluster, instance = vmops.read_instance(self.ctx, args)
        vmops.check_movable(cluster.name, instance)
        targets = vmops.target_nodes(cluster, instance, args.to)
        if instance.admin_state == "up":
            vmops.with_memory(targets, instance)
        return FailoverVMRunner(self.ctx, cluster, instance, args)


class FailoverVMRunner(CookbookRunnerBase):
    """Confirm (twice with --ignore-consistency), fail over, check the node and state."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, instance: Instance, args: argparse.Namespace) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.cluster = cluster
        self.fqdn = instance.name
        self.old = instance.primary_node
        self.was_up = instance.admin_state == "up"
        self.to = args.to
        self.ignore_consistency = args.ignore_consistency
        self.shutdown_timeout = args.shutdown_timeout

    @property
    def runtime_description(self) -> str:
        """VM, cluster and nodes."""
        risky = " ignoring disk consistency" if self.ignore_consistency else ""
        return f"for {self.fqdn} on cluster {self.cluster.name}: {self.old} -> {self.to or 'iallocator choice'}{risky}"

    def run(self) -> int:
        """The runbook: show the move, confirm (twice if risky), lock, fail over, check node and state."""
        effect = (f"it is shut down (forced off after {self.shutdown_timeout}s) and started there: downtime"
                  if self.was_up else "it is stopped: only its node changes")
        print(f"Failover of {self.fqdn} on cluster {self.cluster.name} from {self.old} to "
              f"{self.to or 'the node Ganeti chooses'}: {effect}", flush=True)
        self.ctx.confirm(f"Fail {self.fqdn} over?")
        if self.ignore_consistency:
            answer = self.ctx.ask_input(
                f"--ignore-consistency: Ganeti will not check that the disks of {self.fqdn} on the target are in "
                "sync; data written since the last sync is lost and the disks may be corrupt. "
                f'Type "{IGNORE_ANSWER}" to accept that risk')
            if answer != IGNORE_ANSWER:
                raise AbortError(f"--ignore-consistency not confirmed (typed {answer!r}): nothing done")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run ends
        node = self.cluster.failover_instance(self.fqdn, target_node=self.to, shutdown_timeout=self.shutdown_timeout,
                                              ignore_consistency=self.ignore_consistency or None).wait().value
        if self.ctx.dry_run:
            print(f"Ganeti's check passed: {self.fqdn} would be failed over to {node}", flush=True)
            return 0
        state = wait_running(self.cluster, self.fqdn) if self.was_up else self.cluster.instance(self.fqdn)
        if state.primary_node == self.old:
            raise LibclusterError(f"{self.fqdn} is still on {self.old} after the failover")
        print(f"{self.fqdn} is {state.status} on {node} (was on {self.old})", flush=True)
        return 0
