"""What several Ganeti cookbooks share: the FQDN argument type, the instance lock (held through a rollback),
waiting for "running", and a `gnt-cluster verify` that survives Ganeti's own races.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from libcluster.errors import LibclusterError
from libcluster.ganeti.commands import GntCommands, VerifyResult
from libcluster.remote import InvalidHostError, validate_host

logger = logging.getLogger(__name__)

RUNNING_TIMEOUT = 300.0
"""Seconds an instance gets to be reported running after a start or reboot job succeeded."""
POLL_INTERVAL = 2.0
VERIFY_TRIES = 3
VERIFY_RETRY_SLEEP = 5.0
"""A verify job fails (wrong_state, "Missing lock") when instances change while it runs: tried again."""


def fqdn_argument(value: str) -> str:
    """Argparse type of a host or instance FQDN: a plain DNS name (no shell metacharacters, no leading dash)."""
    try:
        return validate_host(value)
    except InvalidHostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def instance_lock(fqdn: str) -> str:
    """Name of the lock (ctx.lock) every cookbook that stops or restarts an instance takes."""
    return f"ganeti-instance:{fqdn}"


class HeldLock:
    """A lock taken in run() and kept until rollback() has put things back (the runner calls rollback after
    run() failed or was interrupted), so no other run touches the instance half-way; release() after success.
    """

    def __init__(self) -> None:
        """Hold nothing yet."""
        self._stack = ExitStack()

    def take(self, lock: AbstractContextManager[None]) -> None:
        """Enter lock, e.g. ctx.lock(instance_lock(fqdn)), and keep it past the end of run()."""
        self._stack.enter_context(lock)

    def release(self) -> None:
        """Release what take() holds; nothing if it holds nothing."""
        self._stack.close()


def wait_running(
    cluster: Any,
    fqdn: str,
    timeout: float = RUNNING_TIMEOUT,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the RAPI until Ganeti reports the instance running; return its fields.

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
