"""What every lab part shares: commands logged to the part's file, apt installs, secrets, steps.

A part is a module with `NAME`, `up(lab)`, `down(lab)` and `status(lab) -> dict`; `up` is
idempotent (it repairs what is down and leaves the rest), `status` says `{"up": bool, ...}`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cookbook_lab import topology

APT_LOCK_TIMEOUT = 300
"""Seconds apt waits for the dpkg lock held by another apt."""


class LabError(Exception):
    """A lab step failed; the message names the part and its log file."""


class Lab:
    """Paths, secrets and helpers of one lab on this machine."""

    def __init__(self, state_dir: Path = topology.STATE_DIR, cache_dir: Path = topology.CACHE_DIR) -> None:
        """Use state_dir for runtime state and cache_dir for what survives `down`."""
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.log_dir = state_dir / "logs"
        self._secrets: dict[str, str] | None = None
        self._secrets_lock = threading.Lock()

    @property
    def secrets_file(self) -> Path:
        """JSON file holding the lab's generated passwords, tokens and keys."""
        return self.state_dir / "secrets.json"

    @property
    def config_file(self) -> Path:
        """The generated `cookbook -c` configuration."""
        return self.state_dir / "config.yaml"

    def log_file(self, part: str) -> Path:
        """Log file of one part."""
        return self.log_dir / f"{part}.log"

    def remove_state(self) -> None:
        """Delete the runtime state dir and forget the secrets read from it (the next up makes new ones)."""
        with self._secrets_lock:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._secrets = None

    def secret(self, name: str, nbytes: int = 24, *, hexchars: bool = False) -> str:
        """Return the named lab secret, generating and persisting it on first use.

        Safe across the threads and processes of one lab: a missing name is looked up again in the
        file under a lock before one is generated, so no writer drops another one's secret.
        """
        with self._secrets_lock:  # parts start in parallel threads (NetBox beside the others)
            if self._secrets is not None and name in self._secrets:
                return self._secrets[name]
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with (self.state_dir / "secrets.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._secrets = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}
                if name not in self._secrets:
                    self._secrets[name] = secrets.token_hex(nbytes) if hexchars else secrets.token_urlsafe(nbytes)
                    tmp = self.secrets_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(self._secrets, indent=2, sort_keys=True))
                    tmp.chmod(0o600)
                    tmp.replace(self.secrets_file)
            return self._secrets[name]

    def run(
        self,
        part: str,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd (never through a shell), appending its output to the part's log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(part).open("a") as log:
            log.write(f"$ {shlex.join(cmd)}\n")
            log.flush()
            merged_env = {**os.environ, **(env or {})}
            try:
                result = subprocess.run(
                    list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    timeout=timeout, env=merged_env, input=input_text, check=False,
                )
            except subprocess.TimeoutExpired:
                log.write(f"!! timed out after {timeout}s\n")
                raise LabError(f"{part}: '{shlex.join(cmd)}' timed out after {timeout}s; "
                               f"log: {self.log_file(part)}") from None
            log.write(result.stdout)
            log.write(f"-> exit {result.returncode}\n")
        if check and result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-5:])
            raise LabError(
                f"{part}: '{shlex.join(cmd)}' exited {result.returncode}: {tail}; log: {self.log_file(part)}"
            )
        return result

    def apt_install(self, part: str, packages: Sequence[str]) -> None:
        """Install missing Debian packages without recommends and without starting their services."""
        missing = [name for name in packages if not _dpkg_installed(name)]
        if not missing:
            return
        policy = Path("/usr/sbin/policy-rc.d")
        had_policy = policy.exists()
        if not had_policy:
            policy.write_text("#!/bin/sh\n# cookbook-lab: no service starts during lab installs\nexit 101\n")
            policy.chmod(0o755)
        try:
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            lock = f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}"
            if self.run(part, ["apt-get", "-o", lock, "install", "-y", "--no-install-recommends", *missing],
                        check=False, env=env, timeout=1200).returncode != 0:
                self.run(part, ["apt-get", "-o", lock, "update"], env=env, timeout=600)
                self.run(part, ["apt-get", "-o", lock, "install", "-y", "--no-install-recommends", *missing],
                         env=env, timeout=1200)
        finally:
            if not had_policy:
                policy.unlink(missing_ok=True)


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print what the lab is doing and, when done, how long it took."""
    print(f"==> {title} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        print(f"<== {title}: FAILED after {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
        raise
    print(f"<== {title}: done in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)


def wait_for(what: str, probe: Any, timeout: float, interval: float = 0.5) -> Any:
    """Call probe() until it returns a truthy value; raise LabError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise LabError(f"{what} not ready after {timeout:.0f}s" + (f": {last_error}" if last_error else ""))


def pids_alive(pids: Sequence[int]) -> list[int]:
    """Return the pids of the list that are still running."""
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def read_pidfile(path: Path) -> int | None:
    """Return the pid in path if the file exists and that process runs."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pids_alive([pid]) else None


def start_background(lab: Lab, part: str, cmd: Sequence[str], pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start a foreground daemon detached in its own session, output to the part's log; record its pid in pidfile."""
    lab.log_dir.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with lab.log_file(part).open("a") as log:
        log.write(f"$ {shlex.join(cmd)} &\n")
        log.flush()
        process = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    pidfile.write_text(f"{process.pid}\n")
    return process.pid


def stop_pidfile(pidfile: Path, timeout: float = 20, sig: signal.Signals = signal.SIGTERM) -> None:
    """End the process named in pidfile: sig (SIGTERM), then SIGKILL after timeout; remove the pidfile."""
    pid = read_pidfile(pidfile)
    if pid is not None:
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
            while _running(pid):
                time.sleep(0.1)
    pidfile.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether pid still runs (reaping it first if it is our exited child; zombies count as ended)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
