"""Hanging a lab service the way a stuck server hangs: SIGSTOP its processes (the socket stays open, nothing answers),
SIGCONT them afterwards, whatever the test did in between.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE_DIR = "/var/lib/cookbook-lab"
"""The lab's state directory: the command lines of its servers name it, which tells them from other processes."""
SERVICES = {
    "netbox": ("gunicorn", "netbox"),
    "knot": ("knotd", STATE_DIR),
    "etcd": ("etcd", STATE_DIR),
    "rapi": ("ganeti-rapi", ""),
}
"""Service name -> (program, a word its command line also holds): how its processes are found in /proc."""


def pids_of(service: str) -> list[int]:
    """The processes of a lab service, found by their command line (gunicorn's master and workers alike)."""
    program, word = SERVICES[service]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if any(Path(arg.decode(errors="replace")).name.startswith(program) for arg in argv[:2]) and word in text:
            found.append(int(entry.name))
    return sorted(found)


@contextmanager
def hung(service: str) -> Iterator[list[int]]:
    """SIGSTOP every process of service for the duration of the block, then SIGCONT them (also on failure)."""
    pids = pids_of(service)
    if not pids:
        raise AssertionError(f"no process of the lab service {service} is running")
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield pids
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
