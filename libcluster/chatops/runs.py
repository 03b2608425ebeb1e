"""Runs requested from chat: their record, the argument check, and the ``cookbook`` subprocess.

A run is ``cookbook -c CONFIG -y [-d] -- NAME ARGS...`` with the argv list given to the kernel as
is (no shell), stdin closed (so a free-text prompt fails the run with its message), its own session
(signals to the service do not reach it), and the audit variables telling the runner who asked and
who approved. Its merged stdout and stderr go line by line to the run's log file and to the chat;
a log that cannot be written (disk full) is given up, never waited for: the output is still read
and the end still reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING

from libcluster import audit, redact
from libcluster.cookbook import (
    EXIT_ARGS_FAILED,
    EXIT_EXCEPTION,
    EXIT_INIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_ROLLBACK_FAILED,
)
from libcluster.errors import LibclusterError

if TYPE_CHECKING:
    from libcluster.chatops.feed import Feed

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 30.0
"""Seconds the argument check may take (it imports the cookbook module)."""


class RunState(StrEnum):
    """Where a chat run is. The value is what chat shows (``[id] denied: ...``, ``(awaiting-approval)``)."""

    CHECKING = "checking"
    AWAITING_APPROVAL = "awaiting-approval"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    """Interrupted (SIGINT) by a person: the cookbook rolls back."""
    PASSED = "passed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DENIED = "denied"
    EXPIRED = "expired"
    HELP = "help"
    """The request asked for the cookbook's help: shown, nothing run."""
    REJECTED = "rejected"
    """The cookbook's parser refused the arguments: nothing run."""

    @property
    def active(self) -> bool:
        """Whether a run in this state has not finished yet (it may still change state)."""
        return bool(TRANSITIONS[self])

    @property
    def waiting(self) -> bool:
        """Whether a run in this state waits for its cookbook to start (checking, awaiting approval, queued)."""
        return self in (RunState.CHECKING, RunState.AWAITING_APPROVAL, RunState.QUEUED)

    @property
    def started(self) -> bool:
        """Whether a run in this state has its cookbook process (running, or being interrupted)."""
        return self in (RunState.RUNNING, RunState.CANCELLING)


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.CHECKING: frozenset({RunState.AWAITING_APPROVAL, RunState.QUEUED, RunState.HELP, RunState.REJECTED,
                                  RunState.CANCELLED}),
    RunState.AWAITING_APPROVAL: frozenset({RunState.QUEUED, RunState.DENIED, RunState.EXPIRED, RunState.CANCELLED}),
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.CANCELLING, RunState.PASSED, RunState.FAILED, RunState.CANCELLED}),
    RunState.CANCELLING: frozenset({RunState.PASSED, RunState.CANCELLED}),
    **{end: frozenset() for end in (RunState.PASSED, RunState.FAILED, RunState.CANCELLED, RunState.DENIED,
                                    RunState.EXPIRED, RunState.HELP, RunState.REJECTED)},
}
"""The states a run may go to from each state; a finished run goes nowhere. A cancel of a running run
interrupts it (cancelling); a run the service stops while it runs is cancelled from running directly;
a run whose runner cannot start fails from running."""


class TransitionError(LibclusterError):
    """A run was asked to go to a state TRANSITIONS does not allow from its current one."""
OUTCOMES = {0: "PASS", EXIT_INTERRUPTED: "INTERRUPTED (rollback run)", EXIT_ROLLBACK_FAILED:
            "FAIL, ROLLBACK FAILED: clean up by hand", EXIT_INIT_FAILED: "REFUSED by the cookbook's checks",
            EXIT_ARGS_FAILED: "INVALID ARGUMENTS", EXIT_NOT_FOUND: "NOT FOUND", EXIT_EXCEPTION: "ERROR"}
"""How an exit code reads in chat; other codes are the cookbook's own failures (FAIL)."""


@dataclass(frozen=True)
class Door:
    """How commands are typed at a front door, for the hints in messages, and how much a reply may hold."""

    cookbook: str
    """The command itself: ``!cookbook`` on IRC, the slash command (``/cookbook``) elsewhere."""
    approve: str
    deny: str
    help: str
    max_lines: int
    """Lines of one reply (list, help, log)."""


@dataclass
class Run:
    """One request to run a cookbook, from its arrival in chat to its end."""

    id: str
    cookbook: str
    args: list[str]
    dry_run: bool
    requester: str
    """Name of the person who asked (chatops.people)."""
    identity: str
    """The chat identity they asked from, e.g. ``irc:alice!a@host``."""
    channel: str
    """Where they asked, e.g. ``irc:#sre-ops`` or ``slack:#ops``."""
    feed: Feed
    """Where the run's progress and result go."""
    door: Door
    """The front door the request came through (hints in messages use its syntax)."""
    approver: str = ""
    cancelled_by: str = ""
    exit_code: int | None = None
    note: str = ""
    """Why the run ended without running (invalid arguments, denied, expired, cancelled)."""
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    log_path: Path | None = None
    process: RunProcess | None = None
    _state: RunState = field(default=RunState.CHECKING, init=False, repr=False)

    @property
    def state(self) -> RunState:
        """Where the run is: set only through move, which checks the transition."""
        return self._state

    def move(self, state: RunState) -> None:
        """Go to state; one TRANSITIONS does not allow from the current state raises TransitionError (unchanged)."""
        if state not in TRANSITIONS[self._state]:
            allowed = ", ".join(sorted(TRANSITIONS[self._state])) or "none: the run has ended"
            raise TransitionError(f"run {self.id}: state {self._state} cannot become {state} (allowed: {allowed})")
        self._state = state

    @property
    def command(self) -> str:
        """The request as typed, secrets masked: ``[-d] NAME ARGS...``."""
        words = (["-d"] if self.dry_run else []) + [self.cookbook, *audit.redact_argv(self.args)]
        return shlex.join(words)

    def outcome(self) -> str:
        """PASS, FAIL (exit_code=N), INTERRUPTED... of a finished run."""
        if self.exit_code is None:
            return str(self.state)
        return OUTCOMES.get(self.exit_code, f"FAIL (exit_code={self.exit_code})")


@dataclass(frozen=True)
class Check:
    """What the cookbook's own parser said about the arguments."""

    exit_code: int
    message: str
    help: bool = False


def check_arguments(config_path: Path, cookbook: str, args: Sequence[str]) -> Check:
    """Parse args with the cookbook's parser in a subprocess (see :mod:`.argcheck`); nothing runs."""
    command = [sys.executable, "-m", "libcluster.chatops.argcheck", "-c", str(config_path), "--", cookbook, *args]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return Check(EXIT_EXCEPTION, f"checking the arguments took more than {CHECK_TIMEOUT:.0f}s")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return Check(int(result["exit_code"]), redact.redact(str(result["message"])), bool(result.get("help")))
    except (IndexError, ValueError, KeyError, TypeError):
        logger.error("Argument check of %s gave no verdict (exit %d): %s", cookbook, done.returncode,
                     redact.redact(done.stderr[-2000:]))
        return Check(EXIT_EXCEPTION, "the argument check failed (see the service's log)")


def cookbook_command() -> list[str]:
    """The ``cookbook`` console script of the Python running the service."""
    return [str(Path(sys.executable).parent / "cookbook")]


def run_environment(run: Run) -> dict[str, str]:
    """The service's environment plus who asked, who approved and where, for the runner's audit, logs and SAL.

    SUDO_USER names the requester: like sudo, the service runs the cookbook on behalf of a person
    it has checked, and the runner records SUDO_USER as the operator.
    """
    env = dict(os.environ)
    env.update({audit.ORIGIN_ENV: "chat", audit.CHAT_ENV["requester"]: run.requester,
                audit.CHAT_ENV["approver"]: run.approver, audit.CHAT_ENV["channel"]: run.channel,
                "SUDO_USER": run.requester, "PYTHONUNBUFFERED": "1"})
    return env


class RunLog:
    """A run's log file that never raises: the first error (disk full...) is kept in error and later writes skipped."""

    def __init__(self, path: Path) -> None:
        """Open path for appending (its directory created); an error here only marks the log failed."""
        self.path = path
        self.error = ""
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            self._fail(exc)

    def write(self, text: str) -> None:
        """Append text and flush, unless the log failed already."""
        if self._file is None:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        """Close the file (a failing last flush marks the log failed)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._fail(exc)
            self._file = None

    def _fail(self, exc: OSError) -> None:
        self.error = exc.strerror or str(exc)
        logger.error("Run log %s not written from here on: %s", self.path, self.error)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # closes the descriptor even when the buffered data cannot go out
        self._file = None


class RunProcess:
    """The ``cookbook`` subprocess of a run; a thread copies its output and reports its exit code."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, on_line: Callable[[str], None],
                 on_exit: Callable[[int], None]) -> None:
        """Start argv (a list, never a shell) and the thread reading its output into log_path and on_line."""
        self.log = RunLog(log_path)
        self.log.write(f"# {shlex.join(audit.redact_argv(argv))}\n")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                      cwd=log_path.parent)
        self.interrupted = False
        self._thread = threading.Thread(target=self._read, args=(on_line, on_exit), name="chatops-run",
                                        daemon=True)
        self._thread.start()

    def _read(self, on_line: Callable[[str], None], on_exit: Callable[[int], None]) -> None:
        stream: IO[bytes] = self.popen.stdout  # type: ignore[assignment]
        for raw in stream:
            line = redact.redact(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            self.log.write(line + "\n")
            if line.strip():
                on_line(line)
        stream.close()
        exit_code = self.popen.wait()
        self.log.write(f"# exit code {exit_code}\n")
        self.log.close()
        on_exit(exit_code)

    def interrupt(self) -> bool:
        """Send SIGINT (the cookbook rolls back, as on Ctrl+C); False if it already ended."""
        if self.popen.poll() is not None:
            return False
        os.kill(self.popen.pid, signal.SIGINT)
        self.interrupted = True
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the output to be read and the exit to be reported."""
        self._thread.join(timeout)
