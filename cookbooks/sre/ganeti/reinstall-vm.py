"""Reinstall a VM's operating system through Ganeti: THE DATA ON ITS DISKS IS LOST.

Steps:
  1. Check: the instance exists in --cluster and has disks (Ganeti cannot reinstall a diskless one);
     the OS (--os, default its current one) is one Ganeti offers on every node.
  2. The operator types the VM's FQDN to confirm; without a terminal (chat, automation)
     --confirm-fqdn FQDN must repeat it. -y never answers this. From chat a real run also needs an
     approval (the cookbook is listed in chatops.need_approval of the example configuration).
  3. Take the instance's lock (the one reboot-vm, changedisk and the sync take), held until any
     rollback is done.
  4. If it runs, run the cluster's depool_command on the VM.
  5. Reinstall through the RAPI: one Ganeti job shuts it down, reinstalls the OS and starts it,
     showing the job's log; wait until Ganeti reports it running.
  6. Set the NetBox VM's status to active (a stopped VM is started by the reinstall).
  7. If it was depooled, run the cluster's pool_command on it.
No undo of the reinstall itself (the old disks' data is gone). Rollback (a step fails, Ctrl-C, `cancel`
from chat; `cookbook --recover` of a run that died): the NetBox status is put back; a VM this run
depooled is pooled again only if the reinstall job succeeded and it runs, else it is left depooled and
named (exit 93).
Exit codes: 0 reinstalled and running; 94 unknown cluster, instance or OS, or no disks (nothing changed); 99 the
FQDN was not confirmed (nothing changed) or a step failed (rolled back); 97 interrupted (rolled back);
93 the rollback left something (named). With -d nothing is sent: Ganeti has no dry-run for a
reinstall, so the plan is listed (the typed confirmation is asked as in a real run).

Usage:
  cookbook sre.ganeti.reinstall-vm --cluster lab -t T12345 vm1.lab.example
  cookbook -y sre.ganeti.reinstall-vm --cluster lab --os noop --confirm-fqdn vm1.lab.example vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from libcluster import pooling, resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance
from libcluster.ganeti.waits import wait_running
from libcluster.sync.vm import vm_status

logger = logging.getLogger(__name__)

COOKBOOK = "sre.ganeti.reinstall-vm"
"""This cookbook's name: the undo of its depool names it, so that `cookbook --recover` finds undo() here."""


class ReinstallVM(CookbookBase):
    """Reinstall a VM's OS through Ganeti (its disks' data is lost), depooled around it."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --os, --confirm-fqdn and the instance (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--os", metavar="NAME", help="the OS definition to install (default: the instance's)")
        parser.add_argument("--confirm-fqdn", type=fqdn_argument, metavar="FQDN",
                            help="repeat the VM's FQDN to confirm without a terminal (-y never confirms this)")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance and the cluster's OS list; refuse an unknown instance or OS before anything changes."""
        settings, cluster, instance = vmops.read_instance(self.ctx, args)
        if instance.disk_template == "diskless" or not instance.disk_sizes:
            raise LibclusterError(f"{args.fqdn} has no disks: Ganeti cannot reinstall it (its job would shut it down "
                                  "and then fail)")
        os_name = args.os or instance.os
        offered = cluster.os_list()
        if not os_name or os_name not in offered:
            raise LibclusterError(f"OS {os_name!r} is not offered by cluster {settings.name} (offered: "
                                  f"{', '.join(offered) or 'none'})")
        return ReinstallVMRunner(self.ctx, settings, cluster, instance, os_name, args.confirm_fqdn)


class ReinstallVMRunner(CookbookRunnerBase):
    """Typed confirmation, depool, reinstall (shutdown, install, start), wait, NetBox active, pool."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster, instance: Instance,
                 os_name: str, confirm_fqdn: str | None) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.settings = settings
        self.cluster = cluster
        self.fqdn = instance.name
        self.was_up = instance.admin_state == "up"
        self.old_os = instance.os
        self.os_name = os_name
        self.confirm_fqdn = confirm_fqdn

    @property
    def runtime_description(self) -> str:
        """VM, cluster and OS."""
        return f"for {self.fqdn} on cluster {self.cluster.name}: OS {self.old_os} -> {self.os_name}"

    def run(self) -> int:
        """The runbook: show the steps, typed confirmation, lock, depool, reinstall, wait, NetBox active, pool."""
        middle = [f"reinstall OS {self.os_name} through Ganeti (shut down, install, start), then wait until it runs",
                  "NetBox VM status: active"]
        steps = pooling.steps(self.settings, middle, depool=self.was_up, pool=self.was_up)
        print(f"Reinstalling {self.fqdn} on cluster {self.cluster.name} (OS {self.old_os} -> {self.os_name}): "
              "the data on its disks is LOST.\n"
              + pooling.numbered(steps), flush=True)
        vmops.confirm_fqdn(self.ctx, self.fqdn, self.confirm_fqdn,
                           f"Reinstalling {self.fqdn} erases the data on its disks")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        if self.was_up:
            pooling.depool(self.ctx, self.cluster, self.settings, self.fqdn, cookbook=COOKBOOK, change="reinstall")
        self.cluster.reinstall_instance(self.fqdn, os_name=self.os_name, start=True).wait()
        if self.ctx.dry_run:
            status = "active"
        else:
            state = wait_running(self.cluster, self.fqdn)
            logger.info("%s is reinstalled with OS %s and running on %s", self.fqdn, self.os_name, state.primary_node)
            status = vm_status(state.raw)
        vmops.follow_status(self.ctx, self.settings, self.fqdn, status)
        if self.was_up:
            pooling.pool(self.ctx, self.settings, self.fqdn)
        return 0


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo steps: "pool" (libcluster.pooling.undo) pools the VM again once it runs."""
    return pooling.undo(ctx, action, args)
