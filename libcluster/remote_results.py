"""What a remote run returns, and the checks every command goes through, without cumin.

Kept apart from libcluster.remote (the cumin executor) so that code which only reads results or
builds command lines (e.g. libcluster.ganeti) does not import cumin and ClusterShell at start-up.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from libcluster import redact
from libcluster.errors import LibclusterError

CommandSpec = str | Sequence[str]
"""A command: a ready shell line, or an argv list that is quoted here (preferred)."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class RemoteError(LibclusterError):
    """A remote execution could not be set up or run."""


class InvalidHostError(RemoteError):
    """A hostname is not a plain DNS name or IP address (shell metacharacters, leading dash...)."""


class RemoteExecutionError(RemoteError):
    """A command failed on too many hosts; `result` has every host's status, exit code and output."""

    def __init__(self, result: RunResult) -> None:
        """Summarise the failing hosts of result."""
        self.result = result
        bad = [f"{name} ({host.describe()})" for name, host in result.hosts.items() if host.status.is_failure]
        super().__init__(redact.redact(f"{'; '.join(result.commands)}: failed on {len(bad)} of "
                                       f"{len(result.hosts)} hosts: {', '.join(bad)}"))


def validate_host(name: str) -> str:
    """Return name if it is a DNS hostname or an IP address, else raise InvalidHostError."""
    if isinstance(name, str) and _HOSTNAME.match(name):
        return name
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        raise InvalidHostError(f"invalid hostname {name!r}: only letters, digits, dots and inner dashes") from None


def command_line(command: CommandSpec) -> str:
    """The shell line of a command; an argv list has each element quoted with shlex.quote."""
    if isinstance(command, str):
        return command
    return shlex.join(str(arg) for arg in command)


class HostStatus(StrEnum):
    """How the commands ended on one host."""

    OK = "ok"
    FAILED = "failed"
    """A command exited with a code not in ok_codes (the host was reachable)."""
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    """SSH could not connect: neither the command nor a probe got through."""
    NOT_RUN = "not run"
    """Not all commands ran: stopped below the success threshold or by the global timeout."""
    SKIPPED = "skipped (dry-run)"

    @property
    def is_failure(self) -> bool:
        """Whether this status counts against the success threshold."""
        return self in (HostStatus.FAILED, HostStatus.TIMEOUT, HostStatus.UNREACHABLE, HostStatus.NOT_RUN)


@dataclass(frozen=True)
class HostResult:
    """The outcome on one host: status, and exit code and output of each command that ran."""

    host: str
    status: HostStatus
    return_codes: tuple[int, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def rc(self) -> int | None:
        """Exit code of the last command that ran (None if none ran or it was skipped)."""
        return self.return_codes[-1] if self.return_codes else None

    @property
    def output(self) -> str:
        """Output (stdout and stderr merged) of the last command that ran; "skipped (dry-run)" if skipped."""
        if self.status is HostStatus.SKIPPED:
            return str(HostStatus.SKIPPED)
        return self.outputs[-1] if self.outputs else ""

    def describe(self) -> str:
        """Short human form, e.g. "exit code 1", "unreachable"."""
        if self.status is HostStatus.FAILED:
            return f"exit code {self.rc}"
        return str(self.status)


@dataclass(frozen=True)
class RunResult:
    """Per-host results of one run of one or more commands."""

    commands: tuple[str, ...]
    hosts: Mapping[str, HostResult]
    success_threshold: float = 1.0

    def __getitem__(self, host: str) -> HostResult:
        """The result of one host."""
        return self.hosts[host]

    def with_status(self, status: HostStatus) -> list[str]:
        """Names of the hosts that ended with status."""
        return [name for name, host in self.hosts.items() if host.status is status]

    @property
    def skipped(self) -> bool:
        """True when dry-run skipped the commands (nothing ran)."""
        return any(host.status is HostStatus.SKIPPED for host in self.hosts.values())

    @property
    def ok(self) -> bool:
        """Whether the share of hosts that did not fail reaches the success threshold (skipped hosts count as ok)."""
        good = sum(not host.status.is_failure for host in self.hosts.values())
        return bool(self.hosts) and good / len(self.hosts) >= self.success_threshold

    def raise_on_failure(self) -> RunResult:
        """Return self, or raise RemoteExecutionError if the run is not ok."""
        if not self.ok:
            raise RemoteExecutionError(self)
        return self
