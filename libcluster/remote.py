"""Commands on hosts through cumin, each marked safe (read-only) or not, dry-run honest.

Dry-run runs only safe commands; the others are recorded in the change log as planned and
their results say "skipped (dry-run)" (never an empty iterator that breaks callers). Each
run gets a fresh ClusterShell task in its own thread, so settings cannot leak from one run
(or one cumin configuration) to the next. A host whose command exited 255 or timed out is
probed with `true`: if the probe does not get through either, the host is reported
unreachable, not as a command failure. Hostnames are validated and command arguments
given as lists are quoted with shlex, so no value reaches a remote shell unquoted.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import cumin
from ClusterShell import Task
from ClusterShell.NodeSet import NodeSet
from cumin import query, transport, transports
from cumin.transports.clustershell import NullReporter

from libcluster import redact
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import AnswerLostError, ConfigError
from libcluster.remote_results import (  # the public vocabulary of remote runs, re-exported
    CommandSpec,
    HostResult,
    HostStatus,
    InvalidHostError,
    RemoteError,
    RemoteExecutionError,
    RunResult,
    command_line,
    validate_host,
)
from libcluster.undo import Undo

logger = logging.getLogger(__name__)

PROBE_COMMAND = "true"
"""What is run to tell an unreachable host from a command that failed with exit code 255."""

SSH_FAILURE_RC = 255
"""Exit code of ssh itself failing (and, ambiguously, of a remote command exiting 255)."""

__all__ = [
    "CommandSpec",
    "HostResult",
    "HostStatus",
    "InvalidHostError",
    "Remote",
    "RemoteError",
    "RemoteExecutionError",
    "RemoteHosts",
    "RunResult",
    "command_line",
    "command_undo",
    "validate_host",
]


def _decode(output: transports.CommandOutputResult) -> str:
    try:
        return str(output.stdout())
    except UnicodeDecodeError:
        return str(output.stdout(encoding="latin-1"))


def command_undo(hosts: Iterable[str], commands: Sequence[CommandSpec], *, check: CommandSpec | None = None) -> Undo:
    """The undo of commands run on hosts: run `commands` there (each host where `check`, if given, exits 0).

    The commands must be idempotent: a rollback or `cookbook --recover` may run them after a run that
    died before, during or after the commands they take back.
    """
    names = [validate_host(host) for host in hosts]
    return Undo("remote", "command", ",".join(names), {
        "kind": "command", "hosts": names,
        "commands": [command_line(command) for command in commands],
        "check": command_line(check) if check is not None else None,
    })


class _NotDone(RemoteError):
    """Raised inside the journaled write to mark its result, caught in Remote.run (never leaves it)."""


class _MaybeDone(_NotDone, AnswerLostError):
    """A host timed out or became unreachable: the commands may have run there ("maybe")."""


def _raise_unless_done(result: RunResult) -> None:
    """Mark a run maybe (a host timed out or is unreachable) or failed (no command ran anywhere), else done."""
    silent = result.with_status(HostStatus.TIMEOUT) + result.with_status(HostStatus.UNREACHABLE)
    if silent:
        raise _MaybeDone(f"no answer from {', '.join(silent)}: the commands may have run there")
    if not any(host.return_codes for host in result.hosts.values()):
        raise _NotDone("the commands ran on no host")


def _host_result(name: str, result: transports.HostResults) -> HostResult:
    """Translate cumin's per-host result."""
    codes = tuple(result.return_codes)
    outputs = tuple(_decode(output) for output in result.outputs)
    state = result.state
    if state == transports.HostState.SUCCESS and result.completed:
        status = HostStatus.OK
    elif state == transports.HostState.FAILED:
        status = HostStatus.FAILED
    elif state == transports.HostState.TIMEOUT:
        status = HostStatus.TIMEOUT
    else:
        status = HostStatus.NOT_RUN
    return HostResult(host=name, status=status, return_codes=codes, outputs=outputs)


class RemoteHosts:
    """A set of hosts to run commands on; made by Remote.query() or Remote.hosts()."""

    def __init__(self, remote: Remote, hosts: NodeSet) -> None:
        """Target hosts (already validated) through remote."""
        self._remote = remote
        self.nodeset = hosts

    def __len__(self) -> int:
        """Number of hosts."""
        return len(self.nodeset)

    def __iter__(self) -> Iterator[str]:
        """Each hostname."""
        return iter(self.nodeset)

    def __str__(self) -> str:
        """The folded host list, e.g. node[1-3].lab.example."""
        return str(self.nodeset)

    def run_sync(self, *commands: CommandSpec, is_safe: bool = False, undo: Undo | None = None,
                 **options: Any) -> RunResult:
        """Run commands one after the other across the hosts (each waits for the previous on all hosts).

        Options: timeout (per command and host, seconds), total_timeout (whole run), batch_size,
        batch_sleep, success_threshold (0..1, default 1.0), ok_codes (default [0]). `is_safe`
        marks read-only commands: only those run in dry-run. `undo` (see command_undo()) is how to
        take the commands back; without it a rollback leaves what they did.
        """
        return self._remote.run(self.nodeset, commands, mode="sync", is_safe=is_safe, undo=undo, **options)

    def run_async(self, *commands: CommandSpec, is_safe: bool = False, undo: Undo | None = None,
                  **options: Any) -> RunResult:
        """Run the commands on each host independently, stopping on a host at its first failure.

        Same options as run_sync().
        """
        return self._remote.run(self.nodeset, commands, mode="async", is_safe=is_safe, undo=undo, **options)


class Remote:
    """Entry point to remote execution: query hosts, then run commands on them."""

    def __init__(self, config: Section, *, dry_run: bool, changes: ChangeLog) -> None:
        """Use the `remote` section of the configuration (cumin_config path, ssh_user)."""
        self.dry_run = dry_run
        self.changes = changes
        path = config.str("cumin_config")
        try:
            loaded = cumin.Config(path)
        except cumin.CuminError as exc:
            raise ConfigError(f"{config.source}: key '{config.where}.cumin_config': {exc}") from None
        # cumin caches one dict per path and ClusterShell mutates task settings: work on a copy.
        self._cumin_config: dict[str, Any] = copy.deepcopy(dict(loaded))
        if self._cumin_config.get("environment"):
            raise ConfigError(
                f"{path}: 'environment' is not supported: cumin would change this whole process's environment"
            )
        clustershell = self._cumin_config.setdefault("clustershell", {})
        if config.has("ssh_user"):
            clustershell["ssh_user"] = config.str("ssh_user")
        self._probe_timeout = float(clustershell.get("connect_timeout", 10)) + 5.0

    def ssh_command(self, host: str, command: str) -> list[str]:
        """The ssh command line cumin's ClusterShell transport runs for command on host (the cumin config's
        ssh_path, ssh_options, ssh_user and connect_timeout), for what needs ssh itself, e.g. data on stdin."""
        settings = self._cumin_config.get("clustershell", {})
        options = settings.get("ssh_options") or []
        argv = shlex.split(str(settings.get("ssh_path") or "ssh"))
        argv += [os.path.expanduser(option) for option in shlex.split(" ".join(options) if isinstance(options, list)
                                                                       else str(options))]
        argv += ["-oForwardAgent=no", "-oForwardX11=no"]
        argv += ["-l", str(settings["ssh_user"])] if settings.get("ssh_user") else []
        timeout = int(settings.get("connect_timeout") or 0)
        argv += [f"-oConnectTimeout={timeout}"] if timeout > 0 else []
        return [*argv, "-oBatchMode=yes", validate_host(host), command]

    def query(self, query_string: str) -> RemoteHosts:
        """Hosts matching a cumin query (direct backend: `node[1-3].lab.example`, `D{host1,host2}`)."""
        try:
            hosts = query.Query(self._cumin_config).execute(query_string)
        except cumin.CuminError as exc:
            raise RemoteError(f"invalid cumin query {query_string!r}: {exc}") from None
        if not hosts:
            raise RemoteError(f"cumin query {query_string!r} matched no host")
        for name in hosts:
            validate_host(name)
        return RemoteHosts(self, hosts)

    def hosts(self, names: Iterable[str]) -> RemoteHosts:
        """Exactly these hosts (each validated as a hostname or IP address, no query syntax)."""
        valid = [validate_host(name) for name in names]
        if not valid:
            raise RemoteError("no host given")
        return RemoteHosts(self, NodeSet.fromlist(valid))

    def run(
        self,
        hosts: NodeSet,
        commands: Sequence[CommandSpec],
        *,
        mode: str,
        is_safe: bool,
        undo: Undo | None = None,
        timeout: float | None = None,
        total_timeout: int | None = None,
        batch_size: int | None = None,
        batch_sleep: float | None = None,
        success_threshold: float = 1.0,
        ok_codes: Sequence[int] | None = None,
    ) -> RunResult:
        """Run commands on hosts (see RemoteHosts.run_sync); unsafe ones are only recorded in dry-run.

        Unsafe commands are journaled (the run's fence checked first: a run whose lock is lost runs no more
        commands): intent before, then the result: done; maybe when a host timed out or became unreachable
        (the commands may have run there); failed when they ran on no host.
        """
        if not commands:
            raise RemoteError("no command given")
        lines = tuple(command_line(command) for command in commands)
        target = str(hosts)
        options: dict[str, Any] = {"mode": mode, "timeout": timeout, "total_timeout": total_timeout,
                                   "batch_size": batch_size, "batch_sleep": batch_sleep,
                                   "success_threshold": success_threshold, "ok_codes": ok_codes}
        if is_safe:
            logger.debug("Running safe commands %s on %s", lines, target)
            return self._run(hosts, lines, **options)
        if self.dry_run:
            self.changes.record("remote", "command", target, commands=list(lines))
            skipped = {name: HostResult(host=name, status=HostStatus.SKIPPED) for name in hosts}
            return RunResult(commands=lines, hosts=skipped, success_threshold=success_threshold)
        try:
            with self.changes.writing("remote", "command", target, undo=undo, commands=list(lines)) as pending:
                result = self._run(hosts, lines, **options)
                not_ok = {name: str(host.status) for name, host in result.hosts.items() if host.status.is_failure}
                if not_ok:
                    pending.learn(hosts=not_ok)
                _raise_unless_done(result)
        except _NotDone:
            pass
        return result

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Run the undo a caller gave its commands (command_undo()): "undone", or "absent" when its check says
        there is nothing to undo on any host; a host where it fails raises RemoteExecutionError naming it."""
        if action != "command":
            raise RemoteError(f"unknown remote undo action {action!r} (known: command)")
        names = [validate_host(str(name)) for name in args.get("hosts") or []]
        lines = tuple(str(line) for line in args.get("commands") or [])
        if not names or not lines:
            raise RemoteError(f"remote undo needs hosts and commands, got {dict(args)!r}")
        hosts = NodeSet.fromlist(names)
        if args.get("check"):
            checked = self._run(hosts, (str(args["check"]),), mode="async", success_threshold=0.0)
            silent = checked.with_status(HostStatus.UNREACHABLE) + checked.with_status(HostStatus.TIMEOUT)
            if silent:
                raise RemoteError(f"remote undo check '{args['check']}': no answer from {', '.join(silent)}")
            hosts = NodeSet.fromlist(checked.with_status(HostStatus.OK))
            if not hosts:
                return "absent"
        self._run(hosts, lines, mode="sync").raise_on_failure()
        logger.info("Undo: ran %s on %s", "; ".join(lines), hosts)
        return "undone"

    def _run(
        self,
        hosts: NodeSet,
        lines: Sequence[str],
        *,
        mode: str,
        timeout: float | None = None,
        total_timeout: int | None = None,
        batch_size: int | None = None,
        batch_sleep: float | None = None,
        success_threshold: float = 1.0,
        ok_codes: Sequence[int] | None = None,
    ) -> RunResult:
        """Run command lines through cumin and tell unreachable hosts from failed commands (nothing journaled)."""
        cumin_commands = [
            transports.Command(line, timeout=timeout, ok_codes=list(ok_codes) if ok_codes is not None else None)
            for line in lines
        ]
        outcome = self._execute(
            hosts,
            cumin_commands,
            mode=mode,
            total_timeout=total_timeout,
            batch_size=batch_size,
            batch_sleep=batch_sleep,
            success_threshold=float(success_threshold),
        )
        results = {name: _host_result(name, outcome.hosts_results[name]) for name in hosts}
        suspects = [
            name
            for name, result in results.items()
            if result.status is HostStatus.TIMEOUT or result.rc == SSH_FAILURE_RC
        ]
        if suspects:
            for name in self._unreachable(suspects):
                results[name] = HostResult(
                    host=name,
                    status=HostStatus.UNREACHABLE,
                    return_codes=results[name].return_codes,
                    outputs=results[name].outputs,
                )
        for name, result in results.items():
            logger.debug("%s: %s: %s", name, result.describe(), result.output.strip()[-2000:])
        return RunResult(commands=tuple(lines), hosts=results, success_threshold=success_threshold)

    def _unreachable(self, names: list[str]) -> list[str]:
        """Of the given hosts, those where a `true` over SSH does not succeed either."""
        nodes = NodeSet.fromlist(names)
        probe = [transports.Command(PROBE_COMMAND, timeout=self._probe_timeout)]
        outcome = self._execute(nodes, probe, mode="async", success_threshold=0.0)
        return [name for name in nodes if _host_result(name, outcome.hosts_results[name]).status is not HostStatus.OK]

    def _execute(
        self,
        hosts: NodeSet,
        commands: list[transports.Command],
        *,
        mode: str,
        success_threshold: float,
        total_timeout: int | None = None,
        batch_size: int | None = None,
        batch_sleep: float | None = None,
    ) -> transports.ExecutionResults:
        """Run through cumin in a new thread, so the ClusterShell task (per thread) starts clean."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                worker = transport.Transport.new(
                    self._cumin_config,
                    transports.Target(
                        hosts,
                        batch_size=batch_size,
                        batch_sleep=float(batch_sleep) if batch_sleep is not None else None,
                    ),
                )
                worker.commands = commands
                worker.handler = mode
                worker.success_threshold = success_threshold
                worker.timeout = total_timeout
                worker.reporter = NullReporter
                worker.progress_bars = False
                box["results"] = worker.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
                box["error"] = exc
            finally:
                Task.task_terminate()

        thread = threading.Thread(target=work, name="libcluster-remote", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            error = box["error"]
            if isinstance(error, cumin.CuminError):
                raise RemoteError(redact.redact(f"cumin failed on {hosts}: {error}")) from error
            raise error
        return box["results"]
