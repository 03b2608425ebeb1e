"""A cluster's health for monitoring, read-only: each check gives findings at a Nagios level (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN) and the report's level is the exit code of sre.ganeti.health.

Nothing here submits a job or runs a command that changes something: `gnt-cluster verify-disks` is NOT run (it
activates inactive disks); degraded disks come from `gnt-cluster verify`'s disk findings and from instances whose
node is down or offline (``ERROR_nodedown``/``ERROR_nodeoffline``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from libcluster import capacity
from libcluster.errors import LibclusterError
from libcluster.ganeti import certificates
from libcluster.ganeti.commands import VerifyResult
from libcluster.ganeti.models import Instance, Node
from libcluster.remote import Remote

if TYPE_CHECKING:
    from libcluster.ganeti.cluster import GanetiCluster

ACTIVE_JOB_STATUSES = ("queued", "waiting", "running")
FAILED_JOB_STATUSES = ("error",)
DISK_CODES = ("DRBD", "DISK", "LVM")
"""`gnt-cluster verify` codes naming any of these are disk findings (ENODEDRBD, EINSTANCEFAULTYDISK...)."""
LOST_NODE_STATES = ("ERROR_nodedown", "ERROR_nodeoffline")


class Level(IntEnum):
    """Nagios plugin levels, also the exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Finding:
    """One problem found by one check."""

    check: str
    level: Level
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"check": self.check, "level": self.level.name, "message": self.message}


@dataclass
class Report:
    """Every check run and its findings; a check with no finding is OK."""

    cluster: str
    checks: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> Level:
        """CRITICAL if any; else UNKNOWN if a check could not run; else WARNING if any; else OK."""
        levels = {finding.level for finding in self.findings}
        for level in (Level.CRITICAL, Level.UNKNOWN, Level.WARNING):
            if level in levels:
                return level
        return Level.OK

    def check_level(self, check: str) -> Level:
        """The worst level of one check's findings (OK without any)."""
        return max((f.level for f in self.findings if f.check == check), default=Level.OK)

    def summary(self) -> str:
        """The Nagios status line: `LEVEL: n critical, n warning, ... (cluster)`."""
        if not self.findings:
            return f"OK: cluster {self.cluster}: {len(self.checks)} checks passed"
        counts = {level: sum(1 for f in self.findings if f.level is level) for level in Level}
        parts = [f"{counts[level]} {level.name.lower()}" for level in (Level.CRITICAL, Level.UNKNOWN, Level.WARNING)
                 if counts[level]]
        return f"{self.level.name}: cluster {self.cluster}: {', '.join(parts)}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: status, exit code, every check's level, the findings."""
        return {"cluster": self.cluster, "status": self.level.name, "exit_code": int(self.level),
                "checks": {check: self.check_level(check).name for check in self.checks},
                "findings": [finding.as_dict() for finding in self.findings]}


def verify_findings(result: VerifyResult, ignore: Sequence[str] = ()) -> list[Finding]:
    """`gnt-cluster verify` issues: errors CRITICAL, warnings WARNING; disk codes under check `disks`; the codes
    in ignore (the cluster's verify_ignore, which `-I` only demotes to warnings) left out."""
    findings = []
    for issue in result.issues:
        if issue.code in ignore:
            continue
        check = "disks" if any(word in issue.code for word in DISK_CODES) else "verify"
        level = Level.CRITICAL if issue.level == "ERROR" else Level.WARNING
        findings.append(Finding(check, level, f"{issue.code} {issue.item}: {issue.message}"))
    if result.rc not in (0, 1) or (result.rc == 1 and not result.errors and not result.issues):
        tail = result.output.strip().splitlines()[-1:] or [""]
        findings.append(Finding("verify", Level.CRITICAL, f"gnt-cluster verify exited {result.rc}: {tail[0][:300]}"))
    return findings


def node_findings(nodes: Sequence[Node], boot_ids: Mapping[str, str | None]) -> list[Finding]:
    """Offline or drained nodes (WARNING) and online nodes whose noded does not answer (CRITICAL)."""
    findings = []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.offline:
            findings.append(Finding("nodes", Level.WARNING, f"{node.name} is offline"))
        elif boot_ids.get(node.name) is None:
            findings.append(Finding("nodes", Level.CRITICAL, f"{node.name}: its noded does not answer (node down?)"))
        elif node.drained:
            findings.append(Finding("nodes", Level.WARNING, f"{node.name} is drained"))
    return findings


def instance_findings(instances: Iterable[Instance]) -> list[Finding]:
    """Instances whose primary node is down or offline (CRITICAL: they do not run, their disks are not served)."""
    return [Finding("disks", Level.CRITICAL, f"{inst.name}: {inst.status} (primary {inst.primary_node})")
            for inst in sorted(instances, key=lambda i: i.name) if inst.status in LOST_NODE_STATES]


def n_plus_one_findings(groups: Iterable[capacity.GroupCapacity]) -> list[Finding]:
    """Groups that would not restart every instance after losing one node (WARNING); empty groups are left out."""
    findings = []
    for group in groups:
        if group.survives_node_loss or group.nodes == 0:
            continue
        why = (f"losing {', '.join(sorted(group.node_loss_failures))}" if group.node_loss_failures
               else "fewer than 2 usable nodes")
        findings.append(Finding("n+1", Level.WARNING, f"group {group.group} is not N+1: {why}"))
    return findings


def job_findings(jobs: Iterable[Mapping[str, Any]], now: float, *, stuck_after: float,
                 failed_within: float) -> list[Finding]:
    """Jobs queued or running longer than stuck_after seconds, and jobs failed in the last failed_within seconds
    (WARNING each); Ganeti's dry-run checks are not counted."""
    findings = []
    for job in sorted(jobs, key=lambda j: int(j["id"])):
        ops = job.get("ops") or []
        if ops and all(op.get("dry_run") for op in ops):
            continue
        summary = ", ".join(str(s) for s in job.get("summary") or [])
        status = job.get("status")
        received = _ts(job.get("received_ts"))
        ended = _ts(job.get("end_ts"))
        if status in ACTIVE_JOB_STATUSES and received is not None and now - received > stuck_after:
            findings.append(Finding("jobs", Level.WARNING,
                                    f"job {job['id']} ({summary}) {status} for {(now - received) / 60:.0f} min"))
        elif status in FAILED_JOB_STATUSES and ended is not None and now - ended <= failed_within:
            findings.append(Finding("jobs", Level.WARNING,
                                    f"job {job['id']} ({summary}) failed {(now - ended) / 60:.0f} min ago"))
    return findings


def _ts(value: Any) -> float | None:
    """A Ganeti timestamp ([seconds, microseconds]) in seconds."""
    if isinstance(value, list | tuple) and value:
        return float(value[0]) + (float(value[1]) / 1e6 if len(value) > 1 else 0.0)
    return None


def queue_findings(queue_info: str) -> list[Finding]:
    """A drained job queue (CRITICAL: Ganeti accepts no job), from `gnt-cluster queue info`."""
    if "drain flag is set" in queue_info:
        return [Finding("queue", Level.CRITICAL, "the job queue is drained (gnt-cluster queue undrain)")]
    if "drain flag is unset" not in queue_info:
        return [Finding("queue", Level.UNKNOWN, f"unexpected queue info: {queue_info.strip()[:200]}")]
    return []


def watcher_findings(watcher_info: str) -> list[Finding]:
    """A paused watcher (WARNING: nothing restarts instances or re-activates disks), from `gnt-cluster watcher
    info`."""
    if "is paused" in watcher_info:
        return [Finding("watcher", Level.WARNING, watcher_info.strip().splitlines()[0])]
    if "not paused" not in watcher_info:
        return [Finding("watcher", Level.UNKNOWN, f"unexpected watcher info: {watcher_info.strip()[:200]}")]
    return []


def certificate_findings(certs: Iterable[certificates.Cert], now: datetime, warning_days: int) -> list[Finding]:
    """Certificates as renew-crypto --check-only sees them: expired CRITICAL, any other problem WARNING."""
    findings = []
    for cert in certificates.problems(list(certs), now, warning_days):
        status = certificates.status(cert, now, warning_days)
        level = Level.CRITICAL if status == "EXPIRED" else Level.WARNING
        findings.append(Finding("certificates", level, f"{cert.name} ({cert.where}): {status}"))
    return findings


def collect(cluster: GanetiCluster, remote: Remote, *, ca_file: str | None, warning_days: int,
            stuck_after: float, failed_within: float) -> Report:
    """Run every check (reads only); a check that cannot run gives an UNKNOWN finding, the others still run."""
    report = Report(cluster.name)
    master: list[str] = []

    def nodes() -> list[Finding]:
        master.append(cluster.master())
        return node_findings(cluster.nodes(), cluster.boot_ids())

    def certs() -> list[Finding]:
        online = sorted(node.name for node in cluster.nodes() if not node.offline)
        found = certificates.survey(remote, master[0] if master else cluster.master(), online, cluster.rapi.url,
                                    ca_file)
        return certificate_findings(found, datetime.now(UTC), warning_days)

    def run(argv: list[str]) -> str:
        return cluster.commands.run(argv, is_safe=True).output

    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("nodes", nodes),
        ("verify", lambda: verify_findings(cluster.commands.cluster_verify(), cluster.commands.verify_ignore)),
        ("disks", lambda: instance_findings(cluster.instances())),
        ("n+1", lambda: n_plus_one_findings(capacity.group_capacity(cluster.name, cluster.nodes(),
                                                                    cluster.groups(), cluster.instances()))),
        ("jobs", lambda: job_findings(cluster.jobs(bulk=True), time.time(), stuck_after=stuck_after,
                                      failed_within=failed_within)),
        ("queue", lambda: queue_findings(run(["gnt-cluster", "queue", "info"]))),
        ("watcher", lambda: watcher_findings(run(["gnt-cluster", "watcher", "info"]))),
        ("certificates", certs),
    ]
    for name, check in checks:
        report.checks.append(name)
        try:
            report.findings.extend(check())
        except (LibclusterError, OSError) as exc:
            report.findings.append(Finding(name, Level.UNKNOWN, f"check failed: {exc}"))
    return report
