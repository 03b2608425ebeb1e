"""sre.ganeti.health on the fake cluster: each check's level, the Nagios exit code (CRITICAL before UNKNOWN
before WARNING), JSON output, and that nothing is written: no job, no unsafe command (a run equals its dry-run)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libcluster.ganeti import health
from libcluster.ganeti.commands import VerifyResult, parse_verify
from libcluster.ganeti.health import Level
from libcluster.testing import FakeCluster, FakeCtx, FakeRemote, load_config, load_cookbook, run_runner

TREE = Path(__file__).resolve().parents[2]
N1, N2 = "node1.example", "node2.example"
WRITES = ("node_role", "migrate", "failover", "evacuate_node", "create", "remove", "shutdown", "startup", "modify")


def _cluster(*, queue: str = "The drain flag is unset", watcher: str = "The watcher is not paused.") -> FakeCluster:
    cluster = FakeCluster()
    commands: Any = cluster.commands
    commands.outputs = {"gnt-cluster queue info": queue, "gnt-cluster watcher info": watcher}
    return cluster


@pytest.fixture(autouse=True)
def certs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The certificate survey (SSH and TLS, tested with renew-crypto) answers this list."""
    found: list[Any] = []
    monkeypatch.setattr(health.certificates, "survey", lambda *args: found)
    return found


def _run(tmp_path: Path, cluster: FakeCluster, argv: list[str], capsys: pytest.CaptureFixture[str], *,
         dry_run: bool = False) -> tuple[int, str, FakeRemote]:
    module = load_cookbook(TREE, "sre.ganeti.health")
    remote = FakeRemote(dry_run=dry_run)
    ctx = FakeCtx(load_config(tmp_path), dry_run=dry_run, clusters={"lab": cluster}, remote=remote,
                  name="sre.ganeti.health")
    cookbook = module.Health(ctx)
    runner = cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", *argv]))
    code = run_runner(runner, ctx).exit_code
    return code, capsys.readouterr().out, remote


def test_verify_findings_leave_out_ignored_codes_and_sort_disk_codes() -> None:
    output = ("- WARNING:ENODESETUP:node:n1:procfs\n- ERROR:ENODEDRBD:node:n2:drbd minor 0 is not active\n"
              "- ERROR:ENODEVERSION:node:n2:version differs\n")
    found = health.verify_findings(VerifyResult(rc=1, issues=tuple(parse_verify(output)), output=output),
                                   ("ENODESETUP",))
    assert [(f.check, f.level) for f in found] == [("disks", Level.CRITICAL), ("verify", Level.CRITICAL)]
    broken = health.verify_findings(VerifyResult(rc=1, issues=(), output="Job queue is drained"))
    assert broken[0].level is Level.CRITICAL and "Job queue is drained" in broken[0].message


def test_job_findings_stuck_and_recently_failed_not_dry_run_checks() -> None:
    now = 100_000.0
    jobs = [{"id": 1, "status": "running", "received_ts": [now - 7200, 0], "summary": ["OP_A"]},
            {"id": 2, "status": "running", "received_ts": [now - 60, 0]},
            {"id": 3, "status": "error", "end_ts": [now - 120, 0], "summary": ["OP_B"]},
            {"id": 4, "status": "error", "end_ts": [now - 7200, 0]},
            {"id": 5, "status": "error", "end_ts": [now - 10, 0], "ops": [{"dry_run": True}]}]
    found = health.job_findings(jobs, now, stuck_after=3600, failed_within=3600)
    assert [f.message.split()[1] for f in found] == ["1", "3"]


def test_queue_watcher_and_certificate_levels() -> None:
    assert health.queue_findings("The drain flag is set")[0].level is Level.CRITICAL
    assert health.queue_findings("The drain flag is unset") == []
    assert health.queue_findings("garbage")[0].level is Level.UNKNOWN
    assert health.watcher_findings("The watcher is paused until Sun Dec  6 15:00:00 2026.")[0].level is Level.WARNING
    assert health.watcher_findings("The watcher is not paused.") == []


def test_report_level_critical_before_unknown_before_warning() -> None:
    report = health.Report("lab", ["a", "b"], [health.Finding("a", Level.WARNING, "w"),
                                               health.Finding("b", Level.UNKNOWN, "u")])
    assert report.level is Level.UNKNOWN
    report.findings.append(health.Finding("a", Level.CRITICAL, "c"))
    assert report.level is Level.CRITICAL and report.summary().startswith("CRITICAL: cluster lab: 1 critical")
    assert health.Report("lab", ["a"]).level is Level.OK


def test_healthy_cluster_exits_0_and_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster()
    code, out, remote = _run(tmp_path, cluster, ["--json"], capsys)
    report = json.loads(out[out.index("{"):])
    assert code == 0 and report["status"] == "OK" and report["findings"] == [], report["findings"]
    assert set(report["checks"]) == {"nodes", "verify", "disks", "n+1", "jobs", "queue", "watcher", "certificates"}
    assert not [call for call in cluster.calls if call[0] in WRITES]
    assert all(call[2] for call in cluster.calls if call[0] == "run"), "only read-only commands"
    assert all(safe for _, _, safe in remote.calls)


def test_offline_node_drained_queue_paused_watcher_expired_cert(tmp_path: Path, certs: list[Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    certs.append(health.certificates.Cert("RAPI over TLS", "lab", datetime.now(UTC) - timedelta(days=1), "AA"))
    cluster = _cluster(queue="The drain flag is set", watcher="The watcher is paused until Sun Dec  6 2026.")
    cluster.nodes_by_name[N2]["offline"] = True
    code, out, _ = _run(tmp_path, cluster, [], capsys)
    assert code == 2
    assert f"WARNING  nodes: {N2} is offline" in out
    assert "CRITICAL queue: the job queue is drained" in out and "WARNING  watcher: The watcher is paused" in out
    assert "CRITICAL certificates: RAPI over TLS (lab): EXPIRED" in out
    assert out.rstrip().splitlines()[-1].startswith("CRITICAL: cluster lab")


def test_a_check_that_fails_is_unknown_and_dry_run_equals_run(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster(watcher="")
    cluster.job_list = [{"id": 9, "status": "error", "end_ts": [int(time.time()) - 5, 0], "summary": ["OP_X"]}]
    real = _run(tmp_path, cluster, ["--json"], capsys)
    dry = _run(tmp_path, cluster, ["--json"], capsys, dry_run=True)
    assert real[0] == dry[0] == 3
    assert json.loads(real[1][real[1].index("{"):]) == json.loads(dry[1][dry[1].index("{"):])
