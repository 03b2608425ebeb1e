"""Stop a VM through Ganeti, depooling it first when asked (--depool); NetBox then shows it offline.

Steps:
  1. Check: the instance exists in --cluster and is administratively up.
  2. Confirm, then take the instance's lock (the one reboot-vm, changedisk and the sync take), held until
     any rollback is done.
  3. With --depool, run the cluster's depool_command on the VM (as reboot-vm --depool; without it the
     VM is not depooled: pool commands are only run when asked).
  4. Shut it down through the RAPI (forced off after --shutdown-timeout seconds), showing the job's log.
  5. Set the NetBox VM's status to offline (a VM NetBox does not hold is reported, not created).
Rollback (a step fails, Ctrl-C, `cancel` from chat; `cookbook --recover` of a run that died runs the
same undo steps): the NetBox status is put back, the instance started again and, with --depool, pooled
again once Ganeti reports it running (a VM that does not run is left depooled and named: exit 93).
Exit codes: 0 stopped; 94 unknown cluster or instance, or the instance is already stopped (nothing
changed); 99 a step failed or the confirmation was refused (rolled back); 97 interrupted (rolled back);
93 the rollback left something (named). With -d Ganeti checks the shutdown (its dry-run job); the
depool command and the NetBox change are only listed.

Usage:
  cookbook sre.ganeti.stop-vm --cluster lab -t T12345 vm1.lab.example
  cookbook sre.ganeti.stop-vm --cluster lab --depool --shutdown-timeout 60 vm1.lab.example
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from libcluster import pooling, resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster
from libcluster.sync.vm import vm_status

COOKBOOK = "sre.ganeti.stop-vm"
"""This cookbook's name: the undo of its depool names it, so that `cookbook --recover` finds undo() here."""
DEFAULT_SHUTDOWN_TIMEOUT = 120


class StopVM(CookbookBase):
    """Stop a VM through Ganeti (optionally depooled first); NetBox shows it offline."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --depool, --shutdown-timeout and the instance (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--depool", action="store_true",
                            help="run the cluster's depool_command on the VM before stopping it")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT,
                            help="seconds the guest gets to shut down before it is forced off")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance; refuse an unknown or already stopped one before anything changes."""
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        settings, cluster, instance = vmops.read_instance(self.ctx, args)
        if instance.admin_state != "up":
            raise LibclusterError(f"{args.fqdn} is already administratively {instance.admin_state} in Ganeti: "
                                  "nothing to stop")
        return StopVMRunner(self.ctx, settings, cluster, args)


class StopVMRunner(CookbookRunnerBase):
    """Depool (if asked), shut down, NetBox offline."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster,
                 args: argparse.Namespace) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.settings = settings
        self.cluster = cluster
        self.fqdn = args.fqdn
        self.depool = args.depool
        self.shutdown_timeout = args.shutdown_timeout

    @property
    def runtime_description(self) -> str:
        """VM and cluster."""
        return f"for {self.fqdn} on cluster {self.cluster.name}" + (" (depooled first)" if self.depool else "")

    def run(self) -> int:
        """The runbook: show the steps, confirm, lock, depool (if asked), shut down, NetBox offline."""
        steps = pooling.steps(self.settings, [f"shut down through Ganeti (forced off after {self.shutdown_timeout}s)",
                                              "NetBox VM status: offline"], depool=self.depool, pool=False)
        print(f"Stopping {self.fqdn} on cluster {self.cluster.name}:\n"
              + pooling.numbered(steps), flush=True)
        self.ctx.confirm(f"Stop {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        if self.depool:
            pooling.depool(self.ctx, self.cluster, self.settings, self.fqdn, cookbook=COOKBOOK, change="shutdown")
        self.cluster.shutdown_instance(self.fqdn, timeout=self.shutdown_timeout).wait()
        status = "offline" if self.ctx.dry_run else vm_status(self.cluster.instance(self.fqdn).raw)
        vmops.follow_status(self.ctx, self.settings, self.fqdn, status)
        return 0


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo steps: "pool" (libcluster.pooling.undo) pools the VM again once it runs."""
    return pooling.undo(ctx, action, args)
