"""Start a VM through Ganeti, pooling it afterwards when asked (--pool); NetBox then shows it active.

Steps:
  1. Check: the instance exists in --cluster and is administratively down.
  2. Confirm, then take the instance's lock (the one reboot-vm, changedisk and the sync take), held until
     any rollback is done.
  3. Start it through the RAPI, showing the job's log, and wait until Ganeti reports it running.
  4. Set the NetBox VM's status to active (a VM NetBox does not hold is reported, not created).
  5. With --pool, run the cluster's pool_command on the VM (the counterpart of stop-vm --depool).
Rollback (a step fails, Ctrl-C, `cancel` from chat; `cookbook --recover` of a run that died runs the
same undo steps): the NetBox status is put back and the instance this run started is stopped again.
Exit codes: 0 running; 94 unknown cluster or instance, or the instance is already up (nothing
changed); 99 a step failed or the confirmation was refused (rolled back); 97 interrupted (rolled back);
93 the rollback left something (named). With -d Ganeti checks the startup (its dry-run job); the NetBox
change and the pool command are only listed.

Usage:
  cookbook sre.ganeti.start-vm --cluster lab -t T12345 vm1.lab.example
  cookbook sre.ganeti.start-vm --cluster lab --pool vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import pooling, resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster
from libcluster.ganeti.waits import wait_running
from libcluster.sync.vm import vm_status

logger = logging.getLogger(__name__)


class StartVM(CookbookBase):
    """Start a VM through Ganeti (optionally pooled afterwards); NetBox shows it active."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --pool and the instance (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--pool", action="store_true",
                            help="run the cluster's pool_command on the VM once it runs")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance; refuse an unknown or already started one before anything changes."""
        settings, cluster, instance = vmops.read_instance(self.ctx, args)
        if instance.admin_state != "down":
            raise LibclusterError(f"{args.fqdn} is administratively {instance.admin_state} in Ganeti, not down: "
                                  "nothing to start")
        return StartVMRunner(self.ctx, settings, cluster, args)


class StartVMRunner(CookbookRunnerBase):
    """Start, wait until it runs, NetBox active, pool (if asked)."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster,
                 args: argparse.Namespace) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.settings = settings
        self.cluster = cluster
        self.fqdn = args.fqdn
        self.pool = args.pool

    @property
    def runtime_description(self) -> str:
        """VM and cluster."""
        return f"for {self.fqdn} on cluster {self.cluster.name}" + (" (pooled after)" if self.pool else "")

    def run(self) -> int:
        """The runbook: show the steps, confirm, lock, start, wait until it runs, NetBox active, pool (if asked)."""
        steps = pooling.steps(self.settings, ["start through Ganeti, then wait until it runs",
                                              "NetBox VM status: active"], depool=False, pool=self.pool)
        print(f"Starting {self.fqdn} on cluster {self.cluster.name}:\n"
              + pooling.numbered(steps), flush=True)
        self.ctx.confirm(f"Start {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        self.cluster.startup_instance(self.fqdn).wait()
        if self.ctx.dry_run:
            status = "active"
        else:
            state = wait_running(self.cluster, self.fqdn)
            logger.info("%s is running on %s", self.fqdn, state.primary_node)
            status = vm_status(state.raw)
        vmops.follow_status(self.ctx, self.settings, self.fqdn, status)
        if self.pool:
            pooling.pool(self.ctx, self.settings, self.fqdn)
        return 0
