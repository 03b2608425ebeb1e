"""health, node-down, rebalance, removenode and addnode --readd on the lab, through the runner.

- health on the lab as it is (other tests change it meanwhile): valid JSON, the exit code is the report's level,
  run and dry-run write nothing (empty audit changes; unit tests compare run and dry-run reports and check that no
  job or unsafe command is sent); every node drained or offline throughout is named;
- health with node4 killed (the lab's node-down): CRITICAL (exit 2), node4 named; the lab's node-up in teardown,
  even on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import cluster, run_cookbook  # noqa: F401 - cluster is a fixture

HEALTH = "sre.ganeti.health"
NODE4 = "node4.lab.example"
LAB = str(Path(sys.executable).parent / "cookbook-lab")
QUIET = ("--failed-within", "0", "--stuck-after", "1440")
"""Other tests' failed jobs are theirs: health's job check is unit-tested."""
LEVELS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
CHECKS = {"nodes", "verify", "disks", "n+1", "jobs", "queue", "watcher", "certificates"}


def _report(run_stdout: str) -> dict[str, object]:
    return dict(json.loads(run_stdout[run_stdout.index("{"):]))


@pytest.fixture
def node4_down(cluster: GanetiCluster) -> Iterator[str]:
    """node4 killed (daemons, sshd, link); brought back and its role/flags as before at the end, even on failure."""
    before = cluster.node(NODE4)
    subprocess.run([LAB, "node-down", "node4"], check=True, capture_output=True, timeout=120)
    try:
        yield NODE4
    finally:
        subprocess.run([LAB, "node-up", "node4"], check=False, capture_output=True, timeout=300)
        cluster.wait_node_back(NODE4, None, timeout=120)
        if cluster.node(NODE4).offline and not before.offline:
            cluster.set_online(NODE4)


def test_health_of_the_lab_is_valid_json_its_level_and_read_only(cluster: GanetiCluster,
                                                                   lab_config: Path) -> None:
    before = {n.name for n in cluster.nodes() if n.offline or n.drained}
    real = run_cookbook(lab_config, HEALTH, "--cluster", "lab", "--json", *QUIET)
    after = {n.name for n in cluster.nodes() if n.offline or n.drained}
    for run in (real, run_cookbook(lab_config, HEALTH, "--cluster", "lab", "--json", *QUIET, dry_run=True)):
        report = _report(run.stdout)
        assert run.returncode == report["exit_code"] == LEVELS[str(report["status"])]
        assert set(report["checks"]) == CHECKS
        assert report["checks"]["certificates"] == "OK" and report["checks"]["watcher"] == "OK"
        assert run.audit is not None and run.audit["changes"] == [], "nothing written through the library"
    report = _report(real.stdout)
    named = {str(f["message"]).split()[0].rstrip(":") for f in report["findings"] if f["check"] == "nodes"}
    assert before & after <= named, "every node offline or drained throughout the run is reported"


def test_health_with_a_dead_node_is_critical_and_names_it(cluster: GanetiCluster, lab_config: Path,
                                                          node4_down: str) -> None:
    run = run_cookbook(lab_config, HEALTH, "--cluster", "lab", "--json", *QUIET)
    report = _report(run.stdout)
    assert run.returncode == 2 and report["status"] == "CRITICAL"
    assert any(f["level"] == "CRITICAL" and node4_down in str(f["message"]) for f in report["findings"])
    assert report["checks"]["nodes"] == "CRITICAL"


def test_health_of_an_unknown_cluster_is_refused(lab_config: Path) -> None:
    run = run_cookbook(lab_config, HEALTH, "--cluster", "nosuch", "--json")
    assert run.returncode == 94 and "nosuch" in run.stdout + run.stderr
