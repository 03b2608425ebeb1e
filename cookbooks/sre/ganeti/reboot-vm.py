"""Reboot a VM at the Ganeti level (soft, hard or full), depooling it around the reboot with --depool.

Steps:
  1. Find the VM's cluster: NetBox's VM -> its cluster -> that cluster's group, matched against
     netbox_cluster_group of the configured clusters; when NetBox does not know the VM (or is
     unreachable), every configured cluster's RAPI is asked. The instance must be up in Ganeti.
  2. Confirm, then take the instance's lock (shared with changedisk), held until any rollback is done.
  3. With --depool, run the cluster's depool_command on the VM (as Wikimedia's reboot-vm: without
     --depool no depool or pool command runs, even when the cluster configures them).
  4. Reboot through the RAPI (--type: soft asks the guest, hard restarts the hypervisor process,
     full stops and starts the instance), showing the job's log lines.
  5. Wait until Ganeti reports the instance running.
  6. With --depool, run the cluster's pool_command on the VM.
Rollback, when a step fails or the run is interrupted (Ctrl-C, or `cancel` from chat) after the
depool command started (with --depool; the undo of the depool, also run by `cookbook --recover` of a
run that died): the reboot job in flight is waited for; if Ganeti then reports the instance running,
the pool command runs again. A VM whose reboot failed is never pooled: it is
left depooled and the run exits 93 saying so (pool it by hand once it is healthy), as when the
pool command fails in the rollback. Exit codes: 0 rebooted; 97 interrupted and 99 a step failed
(a VM this run depooled is pooled again); 93 the VM is left depooled.
The reason (-r) and the task id (-t) are logged in the START/END lines and the server admin log.

Usage:
  cookbook sre.ganeti.reboot-vm --depool -r "kernel upgrade" -t T12345 vm1.example.org
  cookbook sre.ganeti.reboot-vm --type full --shutdown-timeout 60 vm1.example.org
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from libcluster import clusters, pooling, resources
from libcluster.arguments import fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.ganeti.cluster import REBOOT_TYPES
from libcluster.ganeti.waits import wait_running

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT = 120
COOKBOOK = "sre.ganeti.reboot-vm"
"""This cookbook's name: the undo of its depool names it, so that `cookbook --recover` finds undo() here."""


def _from_netbox(ctx: Context, fqdn: str, settings: list[ClusterSettings]) -> set[str]:
    """Configured clusters NetBox places the VM in (through its cluster's group); empty if NetBox cannot tell."""
    try:
        netbox = ctx.netbox()
        vms = netbox.objects("vm", name=fqdn)
        groups = [(netbox.get("cluster", id=vm["cluster"]["id"]).get("group") or {}) for vm in vms if vm.get("cluster")]
    except LibclusterError as exc:
        logger.warning("NetBox cannot tell where %s runs (%s): asking each cluster's RAPI", fqdn, exc)
        return set()
    by_group = {cluster.netbox_cluster_group: cluster.name for cluster in settings}
    found = set()
    for group in groups:
        name = by_group.get(str(group.get("name"))) or by_group.get(str(group.get("slug")))
        if name:
            found.add(name)
    if vms and not found:
        logger.warning("NetBox has %s in no configured cluster group: asking each cluster's RAPI", fqdn)
    return found


def _from_rapi(ctx: Context, fqdn: str, settings: list[ClusterSettings]) -> set[str]:
    """Configured clusters whose RAPI knows the instance."""
    found = set()
    for cluster in settings:
        try:
            ctx.ganeti(cluster.name).instance(fqdn)
        except RapiNotFoundError:
            continue
        except LibclusterError as exc:
            logger.warning("Cannot ask cluster %s about %s: %s", cluster.name, fqdn, exc)
            continue
        found.add(cluster.name)
    return found


def find_cluster(ctx: Context, fqdn: str) -> str:
    """The configured cluster running instance fqdn: from NetBox, else from the clusters' RAPIs."""
    settings = [clusters.load(ctx.config, name) for name in clusters.names(ctx.config)]
    found = _from_netbox(ctx, fqdn, settings)
    via = "NetBox"
    if not found:
        found, via = _from_rapi(ctx, fqdn, settings), "the clusters' RAPI"
    if not found:
        names = ", ".join(cluster.name for cluster in settings) or "none configured"
        raise LibclusterError(f"{fqdn} is not a VM of any configured Ganeti cluster ({names}), per NetBox and RAPI")
    if len(found) > 1:
        raise LibclusterError(f"{fqdn} is found in several clusters ({', '.join(sorted(found))}) by {via}")
    name = found.pop()
    logger.info("%s is in cluster %s (found by %s)", fqdn, name, via)
    return name


class RebootVM(CookbookBase):
    """Reboot a VM through Ganeti, with depool/pool around it when asked (--depool)."""

    argument_reason_required = False
    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--type, --depool, --shutdown-timeout and the VM's FQDN (-r and -t are added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        parser.add_argument("--type", choices=REBOOT_TYPES, default="hard", help="reboot type")
        parser.add_argument("--depool", action="store_true",
                            help="run the cluster's depool_command on the VM before the reboot and its pool_command "
                            "after (not run without it)")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT,
                            help="seconds the guest gets to shut down before it is forced off (hard, full)")
        parser.add_argument("fqdn", type=fqdn_argument, help="the VM's FQDN (its Ganeti instance name)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Find the cluster and check the instance is up there."""
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        settings = clusters.load(self.ctx.config, find_cluster(self.ctx, args.fqdn))
        cluster = self.ctx.ganeti(settings.name)
        try:
            instance = cluster.instance(args.fqdn)
        except RapiNotFoundError:
            raise LibclusterError(f"no instance {args.fqdn} in cluster {settings.name} "
                                  "(NetBox is out of date?)") from None
        if instance["admin_state"] != "up":
            raise LibclusterError(f"{args.fqdn} is administratively {instance['admin_state']} in Ganeti: start it "
                                  "instead of rebooting it")
        return RebootVMRunner(self.ctx, cluster, settings, args)


class RebootVMRunner(CookbookRunnerBase):
    """Depool, reboot, wait for running, pool; the undo of the depool pools the VM again, if its reboot did not fail."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, settings: ClusterSettings,
                 args: argparse.Namespace) -> None:
        """Keep the cluster, its settings and the options."""
        self.ctx = ctx
        self.cluster = cluster
        self.settings = settings
        self.fqdn = args.fqdn
        self.type = args.type
        self.shutdown_timeout = args.shutdown_timeout
        self.reason = args.reason
        self.depool: bool = args.depool

    @property
    def runtime_description(self) -> str:
        """VM, cluster, reboot type and the reason."""
        reason = f": {self.reason}" if self.reason else ""
        return f"for {self.fqdn} on cluster {self.cluster.name} ({self.type} reboot){reason}"

    def run(self) -> int:
        """The runbook: show the steps, confirm, lock the instance, depool, reboot, wait until it runs, pool."""
        self._show_steps()
        self.ctx.confirm(f"Reboot {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        if self.depool:
            pooling.depool(self.ctx, self.cluster, self.settings, self.fqdn, cookbook=COOKBOOK, change="reboot")
        self.cluster.reboot_instance(self.fqdn, reboot_type=self.type, shutdown_timeout=self.shutdown_timeout,
                                     reason=self.reason).wait()
        if not self.ctx.dry_run:
            state = wait_running(self.cluster, self.fqdn)
            logger.info("%s is running on %s after the %s reboot", self.fqdn, state["pnode"], self.type)
        if self.depool:
            pooling.pool(self.ctx, self.settings, self.fqdn)
        return 0

    def _show_steps(self) -> None:
        steps = pooling.steps(self.settings, [f"{self.type} reboot through Ganeti, then wait until it runs"],
                              depool=self.depool, pool=self.depool)
        print(f"Rebooting {self.fqdn} on cluster {self.cluster.name}"
              f"{f' because: {self.reason}' if self.reason else ''}:\n"
              + pooling.numbered(steps), flush=True)


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo steps (run by the rollback, or by `cookbook --recover` of a run that died).

    "pool" (libcluster.pooling.undo): pool again the VM a run depooled, once its reboot job ended and
    Ganeti reports it running; a VM whose reboot failed is never pooled: LibclusterError says it is left
    depooled, as when the pool command fails.
    """
    return pooling.undo(ctx, action, args)
