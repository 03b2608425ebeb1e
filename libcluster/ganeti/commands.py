"""What the RAPI lacks, run as `gnt-*` (and htools) commands on the master over SSH.

Cluster verify and verify-disks, node add and remove, renew-crypto, hbal and instance move. Each command
is an argv list (every value quoted with shlex), is marked safe or not for dry-run, has a
timeout, and its exit code and output are parsed into a result; an unexpected exit code, a
timeout or an unreachable master raise GntCommandError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from libcluster.ganeti.errors import GntCommandError
from libcluster.remote_results import HostResult, HostStatus, command_line, validate_host

if TYPE_CHECKING:
    from libcluster.remote import Remote

_VERIFY_LINE = re.compile(r"-\s+(ERROR|WARNING):([A-Z0-9_]+):([a-z]+):([^:]*):(.*)$")
_VERIFY_CODE = re.compile(r"^E[A-Z0-9]+$")
_JOB_ID = re.compile(r"^JobID:\s*(\d+)\s*$", re.MULTILINE)
_SCORE = re.compile(r"Cluster score improved from ([0-9.]+) to ([0-9.]+)")
_INITIAL_SCORE = re.compile(r"Initial score: ([0-9.]+)")
_MOVE = re.compile(r"^\s*\d+\.\s+\S.*$", re.MULTILINE)
_SOLUTION_LINE = re.compile(r"^\s*(\d+)\.\s+(\S+)\s+(\S+)\s+=>\s+(\S+)\s+(-?[0-9.]+)\s+a=(.+?)\s*$")
_SOLUTION_LENGTH = re.compile(r"^Solution length=(\d+)\s*$", re.MULTILINE)
_DISK_NODE_ERROR = re.compile(r"^Error gathering data on node (\S+): (.*)$", re.MULTILINE)
_DISK_ACTIVATED = re.compile(r"^Activating disks for instance '([^']+)'", re.MULTILINE)
_DISK_MISSING = re.compile(r"^Instance (\S+) has missing logical volumes:$", re.MULTILINE)


@dataclass(frozen=True)
class VerifyIssue:
    """One finding of `gnt-cluster verify --error-codes` (ignored codes are demoted to WARNING)."""

    level: str
    code: str
    item_type: str
    item: str
    message: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `gnt-cluster verify`: exit code and the parsed findings."""

    rc: int | None
    issues: tuple[VerifyIssue, ...]
    output: str

    @property
    def errors(self) -> list[VerifyIssue]:
        """Findings at ERROR level."""
        return [issue for issue in self.issues if issue.level == "ERROR"]

    @property
    def warnings(self) -> list[VerifyIssue]:
        """Findings at WARNING level (including the ignored error codes)."""
        return [issue for issue in self.issues if issue.level == "WARNING"]

    @property
    def ok(self) -> bool:
        """True when verify exited 0 and reported no error."""
        return self.rc == 0 and not self.errors


@dataclass(frozen=True)
class VerifyDisksResult:
    """Outcome of `gnt-cluster verify-disks` (which also activates inactive disks)."""

    rc: int | None
    bad_nodes: dict[str, str] = field(default_factory=dict)
    activated: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    output: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """True when no node failed and no instance has missing volumes."""
        return self.rc == 0 and not self.bad_nodes and not self.missing


@dataclass(frozen=True)
class HbalMove:
    """One step of hbal's solution (`  1. inst node1:node2 => node3:node2 3.1 a=f r:node3`), names as hbal prints
    them (the cluster's common domain suffix stripped); secondaries None for templates without one."""

    number: int
    instance: str
    old_primary: str
    old_secondary: str | None
    new_primary: str
    new_secondary: str | None
    score: float
    """The cluster score after this step."""
    actions: tuple[str, ...]
    """hbal's `a=` codes in order: `f` (fail over to the secondary), `fa:NODE` (to NODE, shared storage), `r:NODE`
    (replace the secondary with NODE)."""


@dataclass(frozen=True)
class HbalPlan:
    """What hbal found (and, with execute, did): scores and the instance moves of the solution."""

    rc: int | None
    initial_score: float | None
    final_score: float | None
    moves: tuple[str, ...]
    executed: bool
    output: str
    solution: tuple[HbalMove, ...] = ()
    """The moves parsed, in order (a line mangled by stderr output interleaved by SSH is missing here)."""
    length: int | None = None
    """hbal's `Solution length=N` (None when it printed none), to check that every move was parsed."""


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of a command without a richer parser (node add, renew-crypto)."""

    rc: int | None
    output: str
    skipped: bool = False


def parse_verify(output: str) -> list[VerifyIssue]:
    """Findings of `gnt-cluster verify --error-codes` output (`- LEVEL:CODE:TYPE:ITEM:MESSAGE` lines)."""
    issues = []
    for line in output.splitlines():
        match = _VERIFY_LINE.search(line)
        if match:
            level, code, item_type, item, message = match.groups()
            issues.append(VerifyIssue(level, code, item_type, item, message.strip()))
    return issues


def parse_verify_disks(rc: int | None, output: str) -> VerifyDisksResult:
    """The nodes that failed, instances whose disks were activated and instances with missing volumes."""
    return VerifyDisksResult(
        rc=rc,
        bad_nodes=dict(_DISK_NODE_ERROR.findall(output)),
        activated=tuple(_DISK_ACTIVATED.findall(output)),
        missing=tuple(_DISK_MISSING.findall(output)),
        output=output,
    )


def parse_hbal(rc: int | None, output: str, *, executed: bool) -> HbalPlan:
    """Scores and moves from hbal's output ("Cluster score improved from A to B", "  1. inst a => b ...")."""
    improved = _SCORE.search(output)
    initial = _INITIAL_SCORE.search(output)
    return HbalPlan(
        rc=rc,
        initial_score=float(improved.group(1)) if improved else (float(initial.group(1)) if initial else None),
        final_score=float(improved.group(2)) if improved else None,
        moves=tuple(line.strip() for line in _MOVE.findall(output)),
        executed=executed,
        output=output,
        solution=tuple(move for line in output.splitlines() if (move := parse_hbal_move(line)) is not None),
        length=int(length.group(1)) if (length := _SOLUTION_LENGTH.search(output)) else None,
    )


def parse_hbal_move(line: str) -> HbalMove | None:
    """One solution line of hbal parsed, None for other lines.

    hbal prints them as ``%3d. %-*s %-*s => %-*s %12.8f a=%s``.
    """
    match = _SOLUTION_LINE.match(line)
    if not match:
        return None
    number, instance, old, new, score, actions = match.groups()
    old_primary, _, old_secondary = old.partition(":")
    new_primary, _, new_secondary = new.partition(":")
    return HbalMove(int(number), instance, old_primary, old_secondary or None, new_primary, new_secondary or None,
                    float(score), tuple(actions.split()))


def parse_job_id(output: str) -> int | None:
    """The job id a `--submit` command printed (`JobID: 123`), None if there is none."""
    match = _JOB_ID.search(output)
    return int(match.group(1)) if match else None


def verify_argv(ignore: Sequence[str], group: str | None) -> list[str]:
    """The argv of `gnt-cluster verify --error-codes`, `-I CODE` per ignored code and `-g GROUP`; codes are checked."""
    argv = ["gnt-cluster", "verify", "--error-codes"]
    for code in ignore:
        if not _VERIFY_CODE.match(code):
            raise ValueError(f"not a cluster verify error code: {code!r}")
        argv += ["-I", code]
    if group:
        argv += ["-g", group]
    return argv


class GntCommands:
    """Runs gnt-* commands on the cluster's current master through Remote."""

    def __init__(
        self, remote: Remote, master: Callable[[], str], *, verify_ignore: Sequence[str], timeout: float
    ) -> None:
        """`master` returns the master's hostname (asked each time: the master can fail over)."""
        self._remote = remote
        self._master = master
        self.verify_ignore = tuple(verify_ignore)
        self.timeout = timeout

    def on(self, master: str) -> GntCommands:
        """The same commands run on `master` without asking who the master is (the RAPI may not answer, e.g.
        while its certificate is being replaced)."""
        return GntCommands(self._remote, lambda: master, verify_ignore=self.verify_ignore, timeout=self.timeout)

    def run(
        self, argv: Sequence[str], *, is_safe: bool, timeout: float | None = None, ok_codes: Sequence[int] = (0,)
    ) -> HostResult:
        """Run one command on the master; raise GntCommandError unless it exits with one of ok_codes.

        An unreachable master or a timeout raise too (rc None). In dry-run an unsafe command is
        only recorded, and its result has status SKIPPED.
        """
        master = validate_host(self._master())
        result = self._remote.hosts([master]).run_sync(
            argv, is_safe=is_safe, timeout=timeout or self.timeout, ok_codes=list(ok_codes)
        )[master]
        if result.status in (HostStatus.OK, HostStatus.SKIPPED):
            return result
        rc = result.rc if result.status is HostStatus.FAILED else None
        raise GntCommandError(command_line(argv), master, rc, f"[{result.status}] {result.output}")

    def cluster_verify(
        self, *, ignore: Sequence[str] | None = None, group: str | None = None, timeout: float | None = None
    ) -> VerifyResult:
        """`gnt-cluster verify`, ignoring the cluster's verify_ignore codes (or `ignore`); read-only."""
        argv = verify_argv(self.verify_ignore if ignore is None else ignore, group)
        result = self.run(argv, is_safe=True, timeout=timeout, ok_codes=(0, 1))
        return VerifyResult(rc=result.rc, issues=tuple(parse_verify(result.output)), output=result.output)

    def verify_disks(self, *, group: str | None = None, timeout: float | None = None) -> VerifyDisksResult:
        """`gnt-cluster verify-disks`; not safe (it activates inactive disks), so skipped in dry-run."""
        argv = ["gnt-cluster", "verify-disks"] + (["-g", group] if group else [])
        result = self.run(argv, is_safe=False, timeout=timeout, ok_codes=(0, 1))
        if result.status is HostStatus.SKIPPED:
            return VerifyDisksResult(rc=None, output=result.output, skipped=True)
        return parse_verify_disks(result.rc, result.output)

    def node_add(
        self,
        node: str,
        *,
        group: str | None = None,
        secondary_ip: str | None = None,
        readd: bool = False,
        ssh_key_check: bool = True,
        master_capable: bool | None = None,
        vm_capable: bool | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """`gnt-node add NODE` (the RAPI has no node add); skipped in dry-run."""
        argv = ["gnt-node", "add"]
        if group:
            argv += ["-g", group]
        if secondary_ip:
            argv += ["-s", validate_host(secondary_ip)]
        if readd:
            argv.append("--readd")
        if not ssh_key_check:
            argv.append("--no-ssh-key-check")
        if master_capable is not None:
            argv.append(f"--master-capable={'yes' if master_capable else 'no'}")
        if vm_capable is not None:
            argv.append(f"--vm-capable={'yes' if vm_capable else 'no'}")
        argv.append(validate_host(node))
        return self._plain(argv, is_safe=False, timeout=timeout)

    def node_remove(self, node: str, *, dry_run: bool = False, timeout: float | None = None) -> CommandResult:
        """`gnt-node remove NODE` (the RAPI has no node remove); skipped in dry-run. With dry_run, `--dry-run` makes
        Ganeti only check the removal (the master, instances still on the node), so the command is safe."""
        argv = ["gnt-node", "remove", *(["--dry-run"] if dry_run else []), validate_host(node)]
        return self._plain(argv, is_safe=dry_run, timeout=timeout)

    def renew_crypto(
        self,
        *,
        cluster_certificate: bool = False,
        node_certificates: bool = False,
        rapi_certificate: str | None = None,
        new_rapi_certificate: bool = False,
        spice_certificate: bool = False,
        confd_hmac_key: bool = False,
        ssh_keys: bool = False,
        ssh_key_check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """`gnt-cluster renew-crypto --force ...`; skipped in dry-run.

        Ganeti 3.0.2 reports success without installing a `rapi_certificate` unless a new confd
        HMAC key is asked for too, so that combination is required here.
        """
        if rapi_certificate and not confd_hmac_key:
            raise ValueError("rapi_certificate needs confd_hmac_key=True (Ganeti 3.0.2 ignores it otherwise)")
        argv = ["gnt-cluster", "renew-crypto", "--force"]
        flags = {
            "--new-cluster-certificate": cluster_certificate,
            "--new-node-certificates": node_certificates,
            "--new-rapi-certificate": new_rapi_certificate,
            "--new-spice-certificate": spice_certificate,
            "--new-confd-hmac-key": confd_hmac_key,
            "--new-ssh-keys": ssh_keys,
            "--no-ssh-key-check": not ssh_key_check,
        }
        argv += [flag for flag, wanted in flags.items() if wanted]
        if rapi_certificate:
            argv.append(f"--rapi-certificate={rapi_certificate}")
        if len(argv) == 3:
            raise ValueError("renew_crypto: nothing to renew")
        return self._plain(argv, is_safe=False, timeout=timeout)

    def hbal(self, *, group: str | None = None, execute: bool = False, timeout: float | None = None,
             no_disk_moves: bool = False, exclude_instances: Sequence[str] = ()) -> HbalPlan:
        """Plan (`hbal -L`, read-only) or run (`-X`) a rebalance of a node group; no_disk_moves and
        exclude_instances are hbal's `--no-disk-moves` and `--exclude-instances=A,B`.

        With execute in dry-run, the `-X` run is recorded as planned and the read-only plan is
        computed instead, so the preview shows the moves hbal would make.
        """
        argv = ["hbal", "-L"] + (["-G", group] if group else [])
        argv += ["--no-disk-moves"] if no_disk_moves else []
        if exclude_instances:
            argv.append("--exclude-instances=" + ",".join(validate_host(name) for name in exclude_instances))
        if execute:
            result = self.run([*argv, "-X"], is_safe=False, timeout=timeout)
            if result.status is not HostStatus.SKIPPED:
                return parse_hbal(result.rc, result.output, executed=True)
        result = self.run(argv, is_safe=True, timeout=timeout)
        return parse_hbal(result.rc, result.output, executed=False)

    def submit_instance_move(
        self,
        instance: str,
        node: str,
        *,
        shutdown_timeout: int | None = None,
        ignore_consistency: bool = False,
        dry_run: bool,
    ) -> int:
        """Submit `gnt-instance move` (no RAPI resource exists) and return its job id.

        With dry_run, `--dry-run` makes Ganeti only check the move, so the command is safe.
        """
        argv = ["gnt-instance", "move", "--submit", "--force", "-n", validate_host(node)]
        if shutdown_timeout is not None:
            argv.append(f"--shutdown-timeout={int(shutdown_timeout)}")
        if ignore_consistency:
            argv.append("--ignore-consistency")
        if dry_run:
            argv.append("--dry-run")
        argv.append(validate_host(instance))
        result = self.run(argv, is_safe=dry_run)
        job_id = parse_job_id(result.output)
        if job_id is None:
            raise GntCommandError(command_line(argv), self._master(), result.rc, "no 'JobID:' in the output")
        return job_id

    def _plain(self, argv: list[str], *, is_safe: bool, timeout: float | None) -> CommandResult:
        result = self.run(argv, is_safe=is_safe, timeout=timeout)
        return CommandResult(rc=result.rc, output=result.output, skipped=result.status is HostStatus.SKIPPED)
