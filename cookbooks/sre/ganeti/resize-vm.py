"""Change a VM's vCPUs and memory through Ganeti, reboot it so they take effect, and update its NetBox VM.

Steps:
  1. Check (nothing is changed if one fails, exit 10): the new sizes are inside the instance policy of
     its node group (min/max memory and vCPUs), and the primary node (and a drbd secondary, which must be
     able to run it) has the extra memory, with N+1 kept: the group still restarts the running instances
     of any one failed node elsewhere if it did so before (libcluster.ganeti.fit).
  2. Show old -> new and the steps, confirm (-y answers it), take the instance's lock (the one reboot-vm,
     changedisk and the sync take), held until any rollback is done.
  3. Modify the backend parameters through the RAPI (vcpus; memory as maxmem and minmem).
  4. Reboot through Ganeti (hard: the hypervisor process restarts with the new sizes) and wait until
     Ganeti reports the instance running. With --depool the cluster's depool_command runs on the VM
     before the reboot and its pool_command after, as reboot-vm --depool (without --depool neither runs).
     With --no-reboot, or for a stopped instance, there is no reboot: the new sizes TAKE EFFECT ONLY AT
     THE NEXT REBOOT THROUGH GANETI (sre.ganeti.reboot-vm) or start; a reboot inside the guest does not
     apply them.
  5. Set the NetBox VM's vcpus and memory (a VM NetBox lacks is reported, not created).
Rollback (a step fails, e.g. the reboot; Ctrl-C; `cancel` from chat; `cookbook --recover` of a run that
died runs the same undo steps): the NetBox VM's sizes and the instance's old backend parameters are put
back (the old values read before the modify); a VM this run depooled is pooled again only if Ganeti
reports it running after its reboot job ended, else it is left depooled and named (exit 93). An instance
whose reboot failed keeps the state Ganeti left it in (Ganeti's watcher starts instances that should run).
Exit codes: 0 resized; 10 a check of step 1 failed (nothing changed); 94 unknown cluster or instance, or
nothing to change; 99 a step failed or the confirmation was refused (rolled back); 97 interrupted
(rolled back); 93 the rollback left something (named). With -d Ganeti checks the modify and the reboot
(its dry-run jobs); the depool/pool commands and the NetBox change are only listed.

Usage:
  cookbook sre.ganeti.resize-vm --cluster lab --memory 2 -t T12345 vm1.lab.example
  cookbook sre.ganeti.resize-vm --cluster lab --vcpus 4 --memory 8 --depool vm1.lab.example
  cookbook sre.ganeti.resize-vm --cluster lab --memory 1.5 --no-reboot vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from libcluster import pooling, resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument, positive_float, positive_int
from libcluster.capacity import format_mib
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance, fit
from libcluster.ganeti.waits import wait_running

logger = logging.getLogger(__name__)

COOKBOOK = "sre.ganeti.resize-vm"
"""This cookbook's name: the undo of its depool names it, so that `cookbook --recover` finds undo() here."""
EXIT_PRECHECK_FAILED = 10
"""The new sizes are outside the group's policy or do not fit in memory (N+1): nothing changed."""
DEFAULT_SHUTDOWN_TIMEOUT = 120


class ResizeVM(CookbookBase):
    """Change a VM's vCPUs and memory, reboot it through Ganeti, update NetBox."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --vcpus, --memory, --no-reboot, --depool, --shutdown-timeout and the instance."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--vcpus", type=positive_int, help="the new number of vCPUs")
        parser.add_argument("--memory", type=positive_float, metavar="GB", help="the new memory in GB, e.g. 2 or 1.5")
        parser.add_argument("--no-reboot", action="store_true",
                            help="do not reboot: the new sizes take effect at the next reboot through Ganeti")
        parser.add_argument("--depool", action="store_true",
                            help="run the cluster's depool_command on the VM before the reboot, pool_command after")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT,
                            help="seconds the guest gets to shut down at the reboot before it is forced off")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance; refuse an unknown one, no size given, or sizes it already has."""
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        if args.vcpus is None and args.memory is None:
            raise ValueError("give --vcpus and/or --memory")
        if args.depool and args.no_reboot:
            raise ValueError("--depool applies to the reboot, and --no-reboot skips it: give one of them")
        settings, cluster, instance = vmops.read_instance(self.ctx, args)
        memory = None if args.memory is None else max(1, round(args.memory * 1024))
        if (args.vcpus in (None, instance.vcpus)) and (memory in (None, instance.memory)):
            raise LibclusterError(f"{args.fqdn} already has {instance.vcpus} vCPUs and {instance.memory} MiB of "
                                  "memory: nothing to change")
        return ResizeVMRunner(self.ctx, settings, cluster, instance, args, memory)


class ResizeVMRunner(CookbookRunnerBase):
    """Check, modify, reboot (depool/pool with --depool), NetBox; the modify's undo puts the old sizes back."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster, instance: Instance,
                 args: argparse.Namespace, memory: int | None) -> None:
        """Keep what get_runner read; memory in MiB (None: unchanged)."""
        self.ctx = ctx
        self.settings = settings
        self.cluster = cluster
        self.fqdn = args.fqdn
        self.old = instance
        self.vcpus: int | None = args.vcpus
        self.memory = memory
        self.reboot = not args.no_reboot and instance.admin_state == "up"
        self.no_reboot = args.no_reboot
        self.depool = args.depool
        self.shutdown_timeout = args.shutdown_timeout

    @property
    def runtime_description(self) -> str:
        """VM, cluster and the new sizes."""
        return f"for {self.fqdn} on cluster {self.cluster.name}: {self._change()}"

    def _change(self) -> str:
        old = self.old
        parts = [f"vCPUs {old.vcpus} -> {self.vcpus}" if self.vcpus not in (None, old.vcpus) else "",
                 f"memory {format_mib(old.memory or 0)} -> {format_mib(self.memory)}"
                 if self.memory not in (None, old.memory) and self.memory is not None else ""]
        return ", ".join(part for part in parts if part)

    def problems(self) -> list[str]:
        """Step 1: the group's instance policy, then memory on the primary (and drbd secondary) with N+1."""
        nodes = self.cluster.nodes()
        primary = next((node for node in nodes if node.name == self.old.primary_node), None)
        if primary is None:
            return [f"Ganeti lists no node {self.old.primary_node} (the primary node of {self.fqdn})"]
        group = next((group for group in self.cluster.groups() if group.uuid == primary.group_uuid), None)
        if group is None:
            return [f"Ganeti lists no node group {primary.group_uuid} (the group of node {primary.name})"]
        values = {key: value for key, value in (("memory-size", self.memory), ("cpu-count", self.vcpus))
                  if value is not None}
        found = [f"group {group.name}'s instance policy: {text}"
                 for text in fit.policy_problems(group.ipolicy, values)]
        if self.memory is not None:
            found += fit.memory_problems(self.old, self.memory, nodes, self.cluster.instances())
        return found

    def run(self) -> int:
        """The runbook: check, show old -> new, confirm, lock, modify, reboot (depool/pool), NetBox."""
        problems = self.problems()
        if problems:
            logger.error("%s cannot be resized (%s), nothing was changed:\n%s", self.fqdn, self._change(),
                         "\n".join(f"  - {problem}" for problem in problems))
            return EXIT_PRECHECK_FAILED
        self._show_steps()
        self.ctx.confirm(f"Resize {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        self.cluster.modify_backend(self.fqdn, vcpus=self.vcpus, memory=self.memory).wait()
        if self.reboot:
            self._reboot()
        else:
            logger.warning("%s: %s is set in Ganeti but TAKES EFFECT ONLY AT THE NEXT %s THROUGH GANETI (a reboot "
                           "inside the guest does not apply it)", self.fqdn, self._change(),
                           "REBOOT" if self.old.admin_state == "up" else "START")
        vmops.follow_size(self.ctx, self.settings, self.fqdn, {
            "vcpus": self.vcpus or self.old.vcpus or 0, "memory": self.memory or self.old.memory or 0})
        return 0

    def _reboot(self) -> None:
        """Depool (with --depool), hard reboot through Ganeti, wait until it runs, pool (with --depool)."""
        if self.depool:
            pooling.depool(self.ctx, self.cluster, self.settings, self.fqdn, cookbook=COOKBOOK, change="reboot")
        self.cluster.reboot_instance(self.fqdn, reboot_type="hard", shutdown_timeout=self.shutdown_timeout,
                                     reason=f"{COOKBOOK}: {self._change()}").wait()
        if not self.ctx.dry_run:
            state = wait_running(self.cluster, self.fqdn)
            logger.info("%s runs on %s with %s", self.fqdn, state["pnode"], self._change())
        if self.depool:
            pooling.pool(self.ctx, self.settings, self.fqdn)

    def _show_steps(self) -> None:
        if self.reboot:
            reboot = [f"hard reboot through Ganeti (forced off after {self.shutdown_timeout}s), wait until it runs"]
            middle = pooling.steps(self.settings, reboot, depool=self.depool, pool=self.depool)
        else:
            when = "reboot" if self.old.admin_state == "up" else "start"
            middle = [f"no reboot: the new sizes take effect at the next {when} through Ganeti"]
        steps = ["modify the backend parameters through Ganeti", *middle, "NetBox VM: vcpus and memory"]
        print(f"Resizing {self.fqdn} on cluster {self.cluster.name} (primary {self.old.primary_node}): "
              f"{self._change()}\n" + pooling.numbered(steps),
              flush=True)


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo steps: "pool" (libcluster.pooling.undo) pools the VM again once it runs."""
    return pooling.undo(ctx, action, args)
