"""What several Ganeti cookbooks share: the FQDN argument type, the instance lock, waiting for "running"."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from libcluster.errors import LibclusterError
from libcluster.remote import InvalidHostError, validate_host

RUNNING_TIMEOUT = 300.0
"""Seconds an instance gets to be reported running after a start or reboot job succeeded."""
POLL_INTERVAL = 2.0


def fqdn_argument(value: str) -> str:
    """Argparse type of a host or instance FQDN: a plain DNS name (no shell metacharacters, no leading dash)."""
    try:
        return validate_host(value)
    except InvalidHostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def instance_lock(fqdn: str) -> str:
    """Name of the lock (ctx.lock) every cookbook that stops or restarts an instance takes."""
    return f"ganeti-instance:{fqdn}"


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
