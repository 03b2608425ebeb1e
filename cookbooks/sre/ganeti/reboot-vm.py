"""Reboot a VM at the Ganeti level (soft, hard or full), depooling it around the reboot if configured.

Steps:
  1. Find the VM's cluster: NetBox's VM -> its cluster -> that cluster's group, matched against
     netbox_cluster_group of the configured clusters; when NetBox does not know the VM (or is
     unreachable), every configured cluster's RAPI is asked. The instance must be up in Ganeti.
  2. Confirm, then take the instance's lock (shared with changedisk), held until any rollback is done.
  3. Run the cluster's depool_command on the VM, if one is configured.
  4. Reboot through the RAPI (--type: soft asks the guest, hard restarts the hypervisor process,
     full stops and starts the instance), showing the job's log lines.
  5. Wait until Ganeti reports the instance running.
  6. Run the cluster's pool_command on the VM, if one is configured.
Rollback, when a step fails or the run is interrupted (Ctrl-C, or `cancel` from chat) after the
depool command started: the reboot job in flight is waited for; if Ganeti then reports the
instance running, the pool command runs again. A VM whose reboot failed is never pooled: it is
left depooled and the run exits 93 saying so (pool it by hand once it is healthy), as when the
pool command fails in the rollback. Exit codes: 0 rebooted; 97 interrupted and 99 a step failed
(a VM this run depooled is pooled again); 93 the VM is left depooled.
The reason (-r) is logged in the START/END lines and the server admin log.

Usage:
  cookbook sre.ganeti.reboot-vm -r "kernel upgrade" vm1.example.org
  cookbook sre.ganeti.reboot-vm --type full --shutdown-timeout 60 vm1.example.org
"""

from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack

from libcluster import clusters, resources
from libcluster.arguments import fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, JobHandle, RapiNotFoundError
from libcluster.ganeti.cluster import REBOOT_TYPES
from libcluster.ganeti.waits import wait_running

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT = 120
POOL_TIMEOUT = 300
"""Seconds the depool and pool commands may take on the VM."""


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
    """Reboot a VM through Ganeti, with optional depool/pool around it."""

    argument_reason_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--type, --shutdown-timeout and the VM's FQDN (-r is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        parser.add_argument("--type", choices=REBOOT_TYPES, default="hard", help="reboot type")
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
    """Depool, reboot, wait for running, pool; the rollback pools again a VM this run depooled, if it runs."""

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
        self.lock = ExitStack()
        self.depooled = False
        """The depool command was started: from then on the VM may be out of its pool until pooled again."""
        self.pooled = False
        self.reboot_failed = False
        self.job: JobHandle | None = None
        """The reboot job while it is waited for: it goes on if the wait is interrupted."""

    @property
    def runtime_description(self) -> str:
        """VM, cluster, reboot type and the reason."""
        reason = f": {self.reason}" if self.reason else ""
        return f"for {self.fqdn} on cluster {self.cluster.name} ({self.type} reboot){reason}"

    def run(self) -> int:
        """Confirm, then depool, reboot and pool under the instance's lock (kept for the rollback on failure)."""
        steps = [f"{self.type} reboot through Ganeti, then wait until it runs"]
        if self.settings.depool_command:
            steps.insert(0, f"depool: {self.settings.depool_command}")
        if self.settings.pool_command:
            steps.append(f"pool: {self.settings.pool_command}")
        print(f"Rebooting {self.fqdn} on cluster {self.cluster.name}"
              f"{f' because: {self.reason}' if self.reason else ''}:\n"
              + "\n".join(f"  {number}. {step}" for number, step in enumerate(steps, 1)), flush=True)
        self.ctx.confirm(f"Reboot {self.fqdn}?")
        self.lock.enter_context(resources.acquire(self.ctx, self.cluster.name, instances=[self.fqdn]))
        self.depooled = bool(self.settings.depool_command) and not self.ctx.dry_run
        self._on_vm("depool", self.settings.depool_command)
        self.job = self.cluster.reboot_instance(self.fqdn, reboot_type=self.type,
                                                shutdown_timeout=self.shutdown_timeout, reason=self.reason)
        try:
            self.job.wait()
            self.job = None
            state = None if self.ctx.dry_run else wait_running(self.cluster, self.fqdn)
        except LibclusterError:
            self.job, self.reboot_failed = None, True
            raise
        if state is not None:
            logger.info("%s is running on %s after the %s reboot", self.fqdn, state["pnode"], self.type)
        self._on_vm("pool", self.settings.pool_command)
        self.pooled = True
        self.lock.close()
        return 0

    def rollback(self) -> None:
        """Pool the VM again if this run depooled it and Ganeti reports it running; else raise naming what is left."""
        try:
            if not self.depooled or self.pooled:
                logger.info("Rollback: nothing to pool again, this run left %s in its pool", self.fqdn)
                return
            pool = self.settings.pool_command
            if not pool:
                logger.warning("Rollback: %s was depooled and cluster %s has no pool_command: pool it by hand",
                               self.fqdn, self.cluster.name)
                return
            problem = self._why_not_running()
            if problem:
                raise LibclusterError(f"{self.fqdn} is left DEPOOLED ({problem}): pool it by hand ({pool}) once it "
                                      "is healthy")
            logger.info("Rollback: %s runs, pooling it again", self.fqdn)
            try:
                self._on_vm("pool", pool)
            except LibclusterError as exc:
                raise LibclusterError(f"{self.fqdn} is left DEPOOLED, the pool command failed: pool it by hand "
                                      f"({pool}): {exc}") from exc
            self.pooled = True
        finally:
            self.lock.close()

    def _why_not_running(self) -> str:
        """After the reboot job in flight (if any) ended: why the VM must stay depooled, "" if it runs."""
        if self.reboot_failed:
            return "its reboot failed"
        try:
            if self.job is not None:
                logger.info("Rollback: waiting for Ganeti job %s (%s) to end: a job that runs cannot be stopped",
                            self.job.id, self.job.description)
                self.job.wait()
                self.job = None
            wait_running(self.cluster, self.fqdn)
        except LibclusterError as exc:
            return str(exc)
        return ""

    def _on_vm(self, what: str, command: str | None) -> None:
        """Run the depool or pool command on the VM (skipped in dry-run); a failure raises."""
        if not command:
            logger.info("No %s_command configured for cluster %s: skipping %s", what, self.cluster.name, what)
            return
        logger.info("Running %s on %s: %s", what, self.fqdn, command)
        self.ctx.remote().hosts([self.fqdn]).run_sync(command, timeout=POOL_TIMEOUT).raise_on_failure()
