"""Depool a VM before a cookbook disrupts it and pool it again after: the cluster's depool/pool commands.

A cookbook calls :func:`depool` (which pushes the undo, "pool again", on ``ctx.undo`` before the command
runs: a depool cut short may have worked), disrupts the VM through Ganeti, then calls :func:`pool`. The
undo is a cookbook undo (system ``cookbook``, ``args["cookbook"]`` naming the caller), so the caller's
module-level ``undo(ctx, action, args)`` must hand the action ``pool`` to :func:`undo` here; the rollback
and ``cookbook --recover`` then wait for the instance's jobs newer than the depool and pool the VM only if
they succeeded and Ganeti reports it running: a VM whose change failed is left depooled, and said so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster
from libcluster.ganeti.jobs import FINALIZED
from libcluster.ganeti.waits import POLL_INTERVAL, wait_running
from libcluster.undo import Undo

logger = logging.getLogger(__name__)

POOL_TIMEOUT = 300
"""Seconds the depool and pool commands may take on the VM."""
JOB_SETTLE_TIMEOUT = 900
"""Seconds the undo of the depool waits for the instance's jobs to end before leaving the VM depooled."""
ACTION = "pool"
"""The undo action of a depool, in the caller cookbook's undo()."""


def steps(settings: ClusterSettings, middle: list[str], *, depool: bool = True, pool: bool = True) -> list[str]:
    """The plan's lines: the depool command (if depool), the steps, the pool command (if pool), if configured."""
    first = [f"depool: {settings.depool_command}"] if depool and settings.depool_command else []
    last = [f"pool: {settings.pool_command}"] if pool and settings.pool_command else []
    return first + list(middle) + last


def numbered(plan: list[str]) -> str:
    """The plan's lines as printed before the confirmation: ``  1. step``, one per line."""
    return "\n".join(f"  {number}. {step}" for number, step in enumerate(plan, 1))


def depool(ctx: Context, cluster: GanetiCluster, settings: ClusterSettings, fqdn: str, *, cookbook: str,
           change: str) -> None:
    """Run the cluster's depool command on the VM, its undo (pool again, through cookbook's undo()) pushed first.

    change names what the cookbook does next (``reboot``, ``shutdown``...), for the undo's message if it fails.
    """
    command, pool_command = settings.depool_command, settings.pool_command
    if command and pool_command:
        newest = max((int(job["id"]) for job in cluster.jobs()), default=0)
        ctx.undo.push(Undo("cookbook", ACTION, fqdn, {
            "cookbook": cookbook, "kind": "depooled VM", "cluster": cluster.name, "fqdn": fqdn,
            "command": pool_command, "after_job": newest, "change": change}))
    elif command:
        logger.warning("Cluster %s has no pool_command: if this run fails, pool %s by hand", cluster.name, fqdn)
    _on_vm(ctx, fqdn, "depool", command)


def pool(ctx: Context, settings: ClusterSettings, fqdn: str) -> None:
    """Run the cluster's pool command on the VM (skipped if none is configured); a failure raises."""
    _on_vm(ctx, fqdn, "pool", settings.pool_command)


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """The undo of a depool ("pool"), for the caller cookbook's undo(): pool the VM again once it runs.

    The instance's jobs newer than args["after_job"] are waited for; if one failed or the instance does
    not run, LibclusterError says the VM is left depooled, as when the pool command fails. A VM no longer in
    Ganeti (removed since) has nothing to pool: "absent".
    """
    if action != ACTION:
        raise LibclusterError(f"{args.get('cookbook')} has no undo action {action!r}")
    fqdn, command = str(args["fqdn"]), str(args["command"])
    cluster = ctx.ganeti(str(args["cluster"]))
    if fqdn not in cluster.instance_names():
        logger.info("Rollback: %s is no longer in Ganeti: there is nothing to pool", fqdn)
        return "absent"
    problem = _why_not_running(cluster, fqdn, int(args.get("after_job") or 0), str(args.get("change") or "change"))
    if problem:
        raise LibclusterError(f"{fqdn} is left DEPOOLED ({problem}): pool it by hand ({command}) once it is healthy")
    logger.info("Rollback: %s runs, pooling it again", fqdn)
    try:
        _on_vm(ctx, fqdn, "pool", command)
    except LibclusterError as exc:
        raise LibclusterError(f"{fqdn} is left DEPOOLED, the pool command failed: pool it by hand ({command}): "
                              f"{exc}") from exc
    return "undone"


def _why_not_running(cluster: GanetiCluster, fqdn: str, after_job: int, change: str) -> str:
    """Once the instance's jobs newer than after_job ended: why it must stay depooled, "" if it runs."""
    jobs = [int(job["id"]) for job in cluster.jobs(bulk=True)
            if int(job["id"]) > after_job and any(fqdn in str(line) for line in job.get("summary") or ())]
    deadline = time.monotonic() + JOB_SETTLE_TIMEOUT
    for job_id in sorted(jobs):
        info = cluster.job(job_id)
        if info.status not in FINALIZED:
            logger.info("Rollback: waiting for Ganeti job %s (%s) to end: a job that runs cannot be stopped",
                        job_id, ", ".join(info.summary))
        while info.status not in FINALIZED:
            if time.monotonic() >= deadline:
                return f"Ganeti job {job_id} is still {info.status}"
            time.sleep(POLL_INTERVAL)
            info = cluster.job(job_id)
        if info.status != "success":
            return f"its {change} failed: Ganeti job {job_id} {info.status}"
    try:
        wait_running(cluster, fqdn)
    except LibclusterError as exc:
        return str(exc)
    return ""


def _on_vm(ctx: Context, fqdn: str, what: str, command: str | None) -> None:
    """Run the depool or pool command on the VM (the remote client skips it in dry-run); a failure raises."""
    if not command:
        logger.info("No %s_command configured: skipping %s", what, what)
        return
    logger.info("Running %s on %s: %s", what, fqdn, command)
    ctx.remote().hosts([fqdn]).run_sync(command, timeout=POOL_TIMEOUT).raise_on_failure()
