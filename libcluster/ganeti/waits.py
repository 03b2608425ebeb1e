"""Waiting for Ganeti to settle: an instance reported running, a `gnt-cluster verify` that survives races.

Library API: ``wait_running(cluster, fqdn)`` after a start or reboot job succeeded (the job's end does
not mean the instance runs), ``verify_cluster(cluster.commands, "after the add")`` before and after a
change that must leave the cluster clean.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from libcluster.errors import LibclusterError
from libcluster.ganeti.cluster import GanetiCluster
from libcluster.ganeti.commands import GntCommands, VerifyResult
from libcluster.ganeti.models import Instance

logger = logging.getLogger(__name__)

RUNNING_TIMEOUT = 300.0
"""Seconds an instance gets to be reported running after a start or reboot job succeeded."""
POLL_INTERVAL = 2.0
"""Seconds between two RAPI reads while waiting."""
VERIFY_TRIES = 3
VERIFY_RETRY_SLEEP = 5.0
"""A verify job fails (wrong_state, "Missing lock") when instances change while it runs: tried again."""


def wait_running(
    cluster: GanetiCluster,
    fqdn: str,
    timeout: float = RUNNING_TIMEOUT,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Instance:
    """Poll the RAPI until Ganeti reports the instance running; return it.

    Raises LibclusterError naming the last status seen when `timeout` seconds pass first.
    """
    deadline = clock() + timeout
    while True:
        instance = cluster.instance(fqdn)
        if instance.get("status") == "running" and instance.get("oper_state"):
            return instance
        if clock() >= deadline:
            raise LibclusterError(f"{fqdn} is not running {timeout:g}s after the job ended "
                                  f"(Ganeti status {instance.get('status')})")
        sleep(POLL_INTERVAL)


def verify_cluster(commands: GntCommands, when: str) -> VerifyResult:
    """`gnt-cluster verify` (ignoring the cluster's verify_ignore codes), tried again when it failed without
    any finding, i.e. a verify job failed; errors are logged as warnings, the summary at INFO.
    """
    result = _verify_once(commands, when)
    for _ in range(VERIFY_TRIES - 1):
        if result.ok or result.errors:
            break
        logger.warning("gnt-cluster verify did not complete (a verify job failed, e.g. instances changed "
                       "meanwhile): trying again in %gs", VERIFY_RETRY_SLEEP)
        time.sleep(VERIFY_RETRY_SLEEP)
        result = _verify_once(commands, when)
    return result


def _verify_once(commands: GntCommands, when: str) -> VerifyResult:
    result = commands.cluster_verify()
    for issue in result.issues:
        log = logger.warning if issue.level == "ERROR" else logger.debug
        log("verify %s: %s %s %s: %s", when, issue.level, issue.code, issue.item, issue.message)
    logger.info("gnt-cluster verify %s: exit code %s, %d error(s), %d warning(s) (ignored codes: %s)", when,
                result.rc, len(result.errors), len(result.warnings),
                ", ".join(commands.verify_ignore) or "none")
    return result
