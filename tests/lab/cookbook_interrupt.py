"""Interrupting a lab `cookbook` run the way an operator does: SIGINT (what Ctrl-C and chat `cancel` send) once the
run has reached a given point, seen in its output or on the lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.lab.cookbook_lab import COOKBOOK


def run_interrupted(config: Path, *args: str, reached: Callable[[str], bool], timeout: float = 600) -> \
        subprocess.CompletedProcess[str]:
    """`cookbook -c CONFIG -y ARGS...`, sent SIGINT as soon as reached(its stderr so far) is true; fails the test
    if the run ends first. Output printed for the test log."""
    argv = [str(COOKBOOK), "-c", str(config), "-y", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    out: list[str] = []
    readers = [threading.Thread(target=lambda s=stream, into=into: into.extend(s), daemon=True)  # type: ignore[misc]
               for stream, into in ((process.stderr, err), (process.stdout, out))]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    try:
        while not reached("".join(err)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the run ended or timed out before the point to interrupt:\n{''.join(err)}")
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGINT)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(10)
    print(f"$ {' '.join(argv[3:])}  (SIGINT sent)\n[exit {process.returncode}]\n{''.join(out)}{''.join(err)}")
    return subprocess.CompletedProcess(argv, process.returncode, "".join(out), "".join(err))
