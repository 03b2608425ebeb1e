"""Change the disk template of a Ganeti instance (e.g. plain -> drbd), with the downtime that needs.

Steps:
  1. Check: the instance exists, its template differs from the target, the target is enabled on the
     cluster and Ganeti can convert between the two (never from or to diskless, never to blockdev);
     drbd needs --secondary-node (another node), the other templates refuse it.
  2. Confirm, then take the instance's lock (shared with reboot-vm), held until any rollback is done.
  3. Shut the instance down (forced off after --shutdown-timeout seconds) if it runs.
  4. Convert through the RAPI (modify disk_template, remote_node), showing the job's log lines.
  5. Start it again (if it ran before) and check the new template from the RAPI.
Rollback, when a step fails or the run is interrupted (Ctrl-C, or `cancel` from chat): the Ganeti
job in flight cannot be stopped, so it is waited for (when the interrupt came before its id was
known, the newest shutdown job of the instance in Ganeti's queue is waited for); then an instance this run shut down is
started again, on whatever template Ganeti left it (the old one when the conversion failed or
never ran), and its state and template are reported. Exit codes: 0 converted; 1 the conversion
failed (instance running again on its old template); 97 interrupted (rolled back); 93 the
rollback failed: start the instance by hand. With -d, Ganeti checks the shutdown; the conversion
itself can only be checked on a stopped instance, so for a running one it is only listed.

Usage:
  cookbook sre.ganeti.changedisk --cluster prod1 --disk-template drbd --secondary-node node2.example.org vm1.example.org
  cookbook sre.ganeti.changedisk --cluster lab --disk-template sharedfile t1.lab.example
"""

from __future__ import annotations

import argparse
import logging
import time
from contextlib import ExitStack

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import (
    GanetiCluster,
    GanetiError,
    Instance,
    JobFailedError,
    JobHandle,
    LogEntry,
    RapiNotFoundError,
)
from libcluster.ganeti.jobs import FINALIZED, log_progress
from libcluster.ganeti.waits import POLL_INTERVAL, wait_running

logger = logging.getLogger(__name__)

MIRRORED = ("drbd",)
"""Templates that need a secondary node (--secondary-node)."""
NOT_CONVERTIBLE_FROM = ("diskless",)
NOT_CONVERTIBLE_TO = ("diskless", "blockdev")
"""Ganeti 3.0's DTS_NOT_CONVERTIBLE_FROM/TO: it refuses these conversions outright."""
DEFAULT_SHUTDOWN_TIMEOUT = 120
SETTLE_MARGIN = 120
"""Seconds beyond --shutdown-timeout the rollback waits for a shutdown job it found in the queue."""


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
    if target in MIRRORED and not secondary:
        raise ValueError(f"converting to {target} needs --secondary-node")
    if target not in MIRRORED and secondary:
        raise ValueError(f"--secondary-node only applies to {', '.join(MIRRORED)}, not to {target}")
    if secondary and secondary == primary:
        raise ValueError(f"the secondary node {secondary} is the instance's primary node")


class ChangeDisk(CookbookBase):
    """Change the disk template of an instance (shut down, convert, start, verify)."""

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
    """Shut down, convert, start, verify; the rollback starts again an instance this run shut down."""

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
        self.lock = ExitStack()
        self.stopped = False
        """This run sent the shutdown and the instance is not known to run again: rollback starts it."""
        self.shutdown_pending = False
        """The shutdown was (maybe) submitted and its job not yet waited for to its end: its id may be unknown."""
        self.job: JobHandle | None = None
        """The Ganeti job being waited for: it goes on if the wait is interrupted, so rollback waits for its end."""
        self.shown: dict[int, int] = {}
        """Serial of the last log line shown per job, so waiting again in the rollback shows only new lines."""

    @property
    def runtime_description(self) -> str:
        """Instance, cluster and the conversion."""
        return f"for instance {self.fqdn} on cluster {self.cluster.name}: disk template {self.old} -> {self.target}"

    def run(self) -> int:
        """Confirm, then convert under the instance's lock (kept for the rollback when the conversion fails)."""
        nodes = f"primary {self.primary}" + (f", secondary {self.secondary}" if self.secondary else "")
        print(f"Instance {self.fqdn} ({nodes}) on cluster {self.cluster.name}: disk template {self.old} -> "
              f"{self.target}.\nIt is shut down (forced off after {self.shutdown_timeout}s), converted and "
              "started again: expect downtime while its disks are copied.", flush=True)
        self.ctx.confirm(f"Convert {self.fqdn} to {self.target}?")
        self.lock.enter_context(resources.acquire(self.ctx, self.cluster.name, instances=[self.fqdn]))
        exit_code = self._convert()
        if exit_code == 0:
            self.lock.close()
        return exit_code

    def _convert(self) -> int:
        was_running = self.cluster.instance(self.fqdn)["admin_state"] == "up"
        if was_running:
            logger.info("Shutting down %s (timeout %ds)", self.fqdn, self.shutdown_timeout)
            self.stopped = self.shutdown_pending = not self.ctx.dry_run
            self._wait(self.cluster.shutdown_instance(self.fqdn, timeout=self.shutdown_timeout))
            self.shutdown_pending = False
        if self.ctx.dry_run and was_running:
            logger.info("Would convert %s to %s and start it again "
                        "(Ganeti checks a conversion only on a stopped instance)",
                        self.fqdn, self.target)
            self.ctx.changes.record("ganeti", "instance-modify", self.fqdn, cluster=self.cluster.name,
                                    checked=False, disk_template=self.target)
            return 0
        logger.info("Converting %s from %s to %s", self.fqdn, self.old, self.target)
        try:
            self._wait(self.cluster.modify_instance(self.fqdn, disk_template=self.target,
                                                    remote_node=self.secondary))
        except GanetiError as exc:
            logger.error("Conversion of %s to %s failed: %s", self.fqdn, self.target, exc)
            return 1
        if was_running:
            self._wait(self.cluster.startup_instance(self.fqdn))
        return self._verify(was_running)

    def _wait(self, job: JobHandle) -> None:
        """Wait for job, remembered as the job in flight until it ended (succeeded or failed)."""
        self.job = job
        try:
            job.wait(self._progress)
        except JobFailedError:
            self.job = None
            raise
        self.job = None

    def _progress(self, entry: LogEntry) -> None:
        """Show a job's log line once, even when the job is waited for again."""
        if entry.serial > self.shown.get(entry.job_id, -1):
            self.shown[entry.job_id] = entry.serial
            log_progress(entry)

    def _verify(self, was_running: bool) -> int:
        if self.ctx.dry_run:
            return 0
        state = wait_running(self.cluster, self.fqdn) if was_running else self.cluster.instance(self.fqdn)
        self.stopped = False
        if state["disk_template"] != self.target:
            logger.error("%s reports disk template %s after the conversion, not %s", self.fqdn,
                         state["disk_template"], self.target)
            return 1
        logger.info("%s now has disk template %s and is %s", self.fqdn, self.target, state["status"])
        return 0

    def rollback(self) -> None:
        """Let the job in flight end, start the instance again if this run shut it down, and report its state."""
        try:
            if self.ctx.dry_run:
                logger.info("Nothing to roll back: dry-run changed nothing")
                return
            if self.job is not None:
                logger.info("Rollback: waiting for Ganeti job %s (%s) to end: a job that runs cannot be stopped",
                            self.job.id, self.job.description)
                try:
                    self.job.wait(self._progress)
                except GanetiError as exc:
                    logger.warning("Rollback: job %s did not succeed: %s", self.job.id, exc)
                self.job = None
            elif self.shutdown_pending:
                self._settle_shutdown()
            self.shutdown_pending = False
            if not self.stopped:
                logger.info("Rollback: nothing to start, this run did not leave %s shut down", self.fqdn)
                return
            try:
                state = self._start_again()
            except LibclusterError as exc:
                raise LibclusterError(f"{self.fqdn} may be left SHUT DOWN (start it by hand: gnt-instance startup "
                                      f"{self.fqdn}): {exc}") from exc
            converted = ("it was converted" if state["disk_template"] == self.target
                         else f"it was not converted to {self.target}")
            logger.info("%s is %s on disk template %s: %s", self.fqdn, state["status"], state["disk_template"],
                        converted)
        finally:
            self.lock.close()

    def _settle_shutdown(self) -> None:
        """Wait for the newest shutdown job of the instance in Ganeti's queue: the interrupt came before its id.

        Otherwise the instance still runs while the job is queued, the start is skipped, and the job
        stops it afterwards.
        """
        mark = f"INSTANCE_SHUTDOWN({self.fqdn})"
        found = [job for job in self.cluster.jobs(bulk=True) if mark in (job.get("summary") or ())]
        if not found:
            logger.info("Rollback: no shutdown job of %s in Ganeti's queue", self.fqdn)
            return
        job_id = max(int(job["id"]) for job in found)
        deadline = time.monotonic() + self.shutdown_timeout + SETTLE_MARGIN
        status = self.cluster.job(job_id).get("status")
        if status not in FINALIZED:
            logger.info("Rollback: waiting for Ganeti job %s (shutdown of %s, sent just before the interrupt)",
                        job_id, self.fqdn)
        while status not in FINALIZED:
            if time.monotonic() >= deadline:
                raise LibclusterError(f"{self.fqdn} may be left SHUT DOWN: its shutdown job {job_id} is still "
                                      f"{status}; when it ends, start it by hand: gnt-instance startup {self.fqdn}")
            time.sleep(POLL_INTERVAL)
            status = self.cluster.job(job_id).get("status")

    def _start_again(self) -> Instance:
        """Start the instance unless it runs, wait until Ganeti reports it running; its fields."""
        state = self.cluster.instance(self.fqdn)
        if state["status"] != "running":
            logger.info("Starting %s again on its %s template", self.fqdn, state["disk_template"])
            self.cluster.startup_instance(self.fqdn).wait()
        state = wait_running(self.cluster, self.fqdn)
        self.stopped = False
        return state
