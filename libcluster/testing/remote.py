"""Commands on hosts, answered by the test: :class:`FakeRemote` stands for :class:`libcluster.remote.Remote`.

``FakeRemote(respond)`` answers every command with ``respond(host, command line) -> (status, rc, output)``
(:func:`ok` and :func:`failed` build the usual answers) and records ``(host, command line, is_safe)`` in
``calls``; in dry-run an unsafe command is only recorded, its host result SKIPPED, as the real one does.
In a real run an unsafe command is journaled in ``changes`` with the undo its caller gives
(:func:`libcluster.remote.command_undo`), which :meth:`FakeRemote.undo` runs through the responder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from libcluster.changes import ChangeLog
from libcluster.remote import CommandSpec, Remote, RemoteHosts
from libcluster.remote_results import (
    HostResult,
    HostStatus,
    RemoteError,
    RemoteExecutionError,
    RunResult,
    command_line,
    validate_host,
)
from libcluster.undo import Undo

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

    def run_sync(self, *commands: CommandSpec, is_safe: bool = False, undo: Undo | None = None,
                 **options: Any) -> RunResult:
        """Ask the responder for each host's answer; unsafe commands are skipped in dry-run, journaled with their
        undo in a real run."""
        line = "; ".join(command_line(command) for command in commands)
        if is_safe:
            return self.remote.answer(self.names, line, is_safe=True)
        if self.remote.dry_run:
            self.remote.changes.record("remote", "command", ",".join(self.names), commands=[line])
            return self.remote.answer(self.names, line, is_safe=False)
        with self.remote.changes.writing("remote", "command", ",".join(self.names), undo=undo, commands=[line]):
            return self.remote.answer(self.names, line, is_safe=False)

    def run_async(self, *commands: CommandSpec, is_safe: bool = False, undo: Undo | None = None,
                  **options: Any) -> RunResult:
        """As run_sync (the responder answers each host at once)."""
        return self.run_sync(*commands, is_safe=is_safe, undo=undo, **options)


class FakeRemote:
    """``ctx.remote()``: every command answered by respond(host, command line)."""

    REAL = Remote
    HELPERS = ("respond", "calls", "answer")

    def __init__(self, respond: Callable[[str, str], Answer] = lambda host, line: ok(), *,
                 dry_run: bool = False, changes: ChangeLog | None = None) -> None:
        """Answer with respond (default: exit 0, no output); record (host, command line, is_safe) of every call."""
        self.respond = respond
        self.dry_run = dry_run
        self.changes = changes or ChangeLog(dry_run=dry_run)
        self.calls: list[tuple[str, str, bool]] = []

    def answer(self, names: Iterable[str], line: str, *, is_safe: bool) -> RunResult:
        """Record the call on each host and ask the responder (SKIPPED for an unsafe command in dry-run)."""
        results = {}
        for host in names:
            self.calls.append((host, line, is_safe))
            if self.dry_run and not is_safe:
                results[host] = HostResult(host=host, status=HostStatus.SKIPPED)
                continue
            status, rc, output = self.respond(host, line)
            results[host] = HostResult(host=host, status=status, return_codes=(rc,), outputs=(output,))
        return RunResult(commands=(line,), hosts=results)

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Run a command_undo(): its commands on each host where its check (if any) exits 0; "absent" when the
        check passes nowhere; a host where a command fails raises RemoteExecutionError."""
        if action != "command":
            raise RemoteError(f"unknown remote undo action {action!r} (known: command)")
        hosts = [validate_host(str(name)) for name in args.get("hosts") or []]
        if args.get("check"):
            checked = self.answer(hosts, str(args["check"]), is_safe=True)
            hosts = checked.with_status(HostStatus.OK)
            if not hosts:
                return "absent"
        for line in args.get("commands") or []:
            result = self.answer(hosts, str(line), is_safe=False)
            if not result.ok:
                raise RemoteExecutionError(result)
        return "undone"

    def hosts(self, names: Iterable[str]) -> RemoteHosts:
        """Exactly these hosts (validated as the real one does)."""
        valid = [validate_host(name) for name in names]
        if not valid:
            raise RemoteError("no host given")
        return cast(RemoteHosts, FakeHosts(self, valid))
