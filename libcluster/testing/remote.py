"""Commands on hosts, answered by the test: :class:`FakeRemote` stands for :class:`libcluster.remote.Remote`.

``FakeRemote(respond)`` answers every command with ``respond(host, command line) -> (status, rc, output)``
(:func:`ok` and :func:`failed` build the usual answers) and records ``(host, command line, is_safe)`` in
``calls``; in dry-run an unsafe command is only recorded, its host result SKIPPED, as the real one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from libcluster.remote import CommandSpec, Remote, RemoteHosts
from libcluster.remote_results import HostResult, HostStatus, RemoteError, RunResult, command_line, validate_host

Answer = tuple[HostStatus, int, str]
"""What a responder returns for one command on one host: status, exit code, output."""


def ok(output: str = "") -> Answer:
    """A command that exited 0."""
    return HostStatus.OK, 0, output


def failed(rc: int = 1, output: str = "") -> Answer:
    """A command that exited rc."""
    return HostStatus.FAILED, rc, output


class FakeHosts:
    """``remote.hosts([...])``: runs commands through the remote's responder."""

    REAL = RemoteHosts
    HELPERS = ("remote", "names")

    def __init__(self, remote: FakeRemote, names: list[str]) -> None:
        """Target these hosts."""
        self.remote = remote
        self.names = names

    def __len__(self) -> int:
        """Number of hosts."""
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        """Each hostname."""
        return iter(self.names)

    def run_sync(self, *commands: CommandSpec, is_safe: bool = False, **options: Any) -> RunResult:
        """Ask the responder for each host's answer; unsafe commands are skipped in dry-run."""
        line = "; ".join(command_line(command) for command in commands)
        results = {}
        for host in self.names:
            self.remote.calls.append((host, line, is_safe))
            if self.remote.dry_run and not is_safe:
                results[host] = HostResult(host=host, status=HostStatus.SKIPPED)
                continue
            status, rc, output = self.remote.respond(host, line)
            results[host] = HostResult(host=host, status=status, return_codes=(rc,), outputs=(output,))
        return RunResult(commands=(line,), hosts=results)

    def run_async(self, *commands: CommandSpec, is_safe: bool = False, **options: Any) -> RunResult:
        """As run_sync (the responder answers each host at once)."""
        return self.run_sync(*commands, is_safe=is_safe, **options)


class FakeRemote:
    """``ctx.remote()``: every command answered by respond(host, command line)."""

    REAL = Remote
    HELPERS = ("respond", "calls")

    def __init__(self, respond: Callable[[str, str], Answer] = lambda host, line: ok(), *,
                 dry_run: bool = False) -> None:
        """Answer with respond (default: exit 0, no output); record (host, command line, is_safe) of every call."""
        self.respond = respond
        self.dry_run = dry_run
        self.calls: list[tuple[str, str, bool]] = []

    def hosts(self, names: Iterable[str]) -> RemoteHosts:
        """Exactly these hosts (validated as the real one does)."""
        valid = [validate_host(name) for name in names]
        if not valid:
            raise RemoteError("no host given")
        return cast(RemoteHosts, FakeHosts(self, valid))
