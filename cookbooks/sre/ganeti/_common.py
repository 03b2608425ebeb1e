"""The instance lock (held through a rollback) that the Ganeti cookbooks take before they stop or restart an instance.

Moving to libcluster/resources.py with the other resource locks; the rest is library API:
libcluster.arguments (FQDN type, --cluster/--group) and libcluster.ganeti.waits (wait_running, verify_cluster).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack


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
