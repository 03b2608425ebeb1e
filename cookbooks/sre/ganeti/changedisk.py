"""Change the disk template of a Ganeti instance (e.g. plain -> drbd), with the downtime that needs.

Steps:
  1. Check: the instance exists, its template differs from the target, the target is enabled on the
     cluster and Ganeti can convert between the two (never from or to diskless, never to blockdev);
     drbd needs --secondary-node (another node), the other templates refuse it.
  2. Confirm, then take the instance's lock (shared with reboot-vm), held until any rollback is done.
  3. Shut the instance down (forced off after --shutdown-timeout seconds) if it runs.
  4. Convert through the RAPI (modify disk_template, remote_node), showing the job's log lines.
  5. Start it again (if it ran before) and check the new template from the RAPI.
Rollback, when a step fails or the run is interrupted (Ctrl-C, or `cancel` from chat): the run's
changes are undone newest first (the same steps `cookbook --recover` runs for a run that died). A
Ganeti job in flight cannot be stopped: each undo waits for the job it takes back (found by its
marker when the interrupt came before its id was known). An instance this run shut down is started
again, on whatever template Ganeti left it (the old one when the conversion failed or never ran);
one this run started again and that then failed its check is stopped and started again with it.
Exit codes: 0 converted; 1 the conversion failed (instance running again on its old template); 97
interrupted (rolled back); 93 the rollback failed, the instance is named: start it by hand. With -d,
Ganeti checks the shutdown; the conversion itself can only be checked on a stopped instance, so for a
running one it is only listed.

Usage:
  cookbook sre.ganeti.changedisk --cluster prod1 --disk-template drbd --secondary-node node2.example.org vm1.example.org
  cookbook sre.ganeti.changedisk --cluster lab --disk-template sharedfile t1.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, GanetiError, Instance, RapiNotFoundError
from libcluster.ganeti.templates import INT_MIRROR
from libcluster.ganeti.waits import wait_running

logger = logging.getLogger(__name__)

NOT_CONVERTIBLE_FROM = ("diskless",)
NOT_CONVERTIBLE_TO = ("diskless", "blockdev")
"""Ganeti 3.0's DTS_NOT_CONVERTIBLE_FROM/TO: it refuses these conversions outright."""
DEFAULT_SHUTDOWN_TIMEOUT = 120

def check_conversion(current: str, target: str, enabled: list[str], secondary: str | None, primary: str) -> None:
    """Refuse, with the reason, a conversion Ganeti would refuse (ValueError)."""
    if current == target:
        raise ValueError(f"the instance already has the disk template {target}: nothing to do")
    if target not in enabled:
        raise ValueError(f"disk template {target} is not enabled on the cluster (enabled: {', '.join(enabled)})")
    if current in NOT_CONVERTIBLE_FROM:
        raise ValueError(f"Ganeti cannot convert an instance away from the {current} template")
    if target in NOT_CONVERTIBLE_TO:
        raise ValueError(f"Ganeti cannot convert an instance to the {target} template")
    if target in INT_MIRROR and not secondary:
        raise ValueError(f"converting to {target} needs --secondary-node")
    if target not in INT_MIRROR and secondary:
        raise ValueError(f"--secondary-node only applies to {', '.join(sorted(INT_MIRROR))}, not to {target}")
    if secondary and secondary == primary:
        raise ValueError(f"the secondary node {secondary} is the instance's primary node")


class ChangeDisk(CookbookBase):
    """Change the disk template of an instance (shut down, convert, start, verify)."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --disk-template, --secondary-node, --shutdown-timeout and the instance."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--disk-template", required=True, help="the new disk template, e.g. drbd, plain")
        parser.add_argument("--secondary-node", type=fqdn_argument, help="secondary node for drbd")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT,
                            help="seconds the instance gets to shut down before it is forced off")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance and the cluster and refuse what Ganeti would refuse, before anything changes."""
        cluster_settings(self.ctx.config, args)
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        cluster = self.ctx.ganeti(args.cluster)
        try:
            instance = cluster.instance(args.fqdn)
        except RapiNotFoundError:
            raise LibclusterError(f"no instance {args.fqdn} in cluster {args.cluster}") from None
        if args.secondary_node:
            try:
                cluster.node(args.secondary_node)
            except RapiNotFoundError:
                raise LibclusterError(f"no node {args.secondary_node} in cluster {args.cluster}") from None
        enabled = list(cluster.info().get("enabled_disk_templates") or [])
        check_conversion(instance["disk_template"], args.disk_template, enabled, args.secondary_node,
                         instance["pnode"])
        return ChangeDiskRunner(self.ctx, cluster, args, instance)


class ChangeDiskRunner(CookbookRunnerBase):
    """Shut down, convert, start, verify; the undo of the shutdown starts the instance again."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, args: argparse.Namespace, instance: Instance) -> None:
        """Keep what get_runner checked."""
        self.ctx = ctx
        self.cluster = cluster
        self.fqdn = args.fqdn
        self.target = args.disk_template
        self.secondary = args.secondary_node
        self.shutdown_timeout = args.shutdown_timeout
        self.old = instance["disk_template"]
        self.primary = instance["pnode"]

    @property
    def runtime_description(self) -> str:
        """Instance, cluster and the conversion."""
        return f"for instance {self.fqdn} on cluster {self.cluster.name}: disk template {self.old} -> {self.target}"

    def run(self) -> int:
        """The runbook: show the change, confirm, lock the instance, shut down, convert, start, verify."""
        nodes = f"primary {self.primary}" + (f", secondary {self.secondary}" if self.secondary else "")
        print(f"Instance {self.fqdn} ({nodes}) on cluster {self.cluster.name}: disk template {self.old} -> "
              f"{self.target}.\nIt is shut down (forced off after {self.shutdown_timeout}s), converted and "
              "started again: expect downtime while its disks are copied.", flush=True)
        self.ctx.confirm(f"Convert {self.fqdn} to {self.target}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        was_running = self.cluster.instance(self.fqdn)["admin_state"] == "up"
        if was_running:
            logger.info("Shutting down %s (timeout %ds)", self.fqdn, self.shutdown_timeout)
            self.cluster.shutdown_instance(self.fqdn, timeout=self.shutdown_timeout).wait()
            if self.ctx.dry_run:
                return self._planned_conversion()
        logger.info("Converting %s from %s to %s", self.fqdn, self.old, self.target)
        try:
            self.cluster.modify_instance(self.fqdn, disk_template=self.target, remote_node=self.secondary).wait()
        except GanetiError as exc:
            logger.error("Conversion of %s to %s failed: %s", self.fqdn, self.target, exc)
            return 1
        if was_running:
            self.cluster.startup_instance(self.fqdn).wait()
        return self._verify(was_running)

    def _planned_conversion(self) -> int:
        """Dry-run of a running instance: Ganeti checks a conversion only on a stopped one, so it is only listed."""
        logger.info("Would convert %s to %s and start it again (Ganeti checks a conversion only on a stopped "
                    "instance)", self.fqdn, self.target)
        self.ctx.changes.record("ganeti", "instance-modify", self.fqdn, cluster=self.cluster.name, checked=False,
                                disk_template=self.target)
        return 0

    def _verify(self, was_running: bool) -> int:
        """The template Ganeti reports after the conversion (once the instance runs again, if it ran)."""
        if self.ctx.dry_run:
            return 0
        state = wait_running(self.cluster, self.fqdn) if was_running else self.cluster.instance(self.fqdn)
        if state["disk_template"] != self.target:
            logger.error("%s reports disk template %s after the conversion, not %s", self.fqdn,
                         state["disk_template"], self.target)
            return 1
        logger.info("%s now has disk template %s and is %s", self.fqdn, self.target, state["status"])
        return 0
