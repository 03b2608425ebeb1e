"""health, node-down, rebalance, removenode and addnode --readd on the lab, through the runner.

- health on the lab as it is (other tests change it meanwhile): valid JSON, the exit code is the report's level,
  run and dry-run write nothing (empty audit changes; unit tests compare run and dry-run reports and check that no
  job or unsafe command is sent); every node drained or offline throughout is named;
- health with node4 killed (the lab's node-down): CRITICAL (exit 2), node4 named;
- node-down refuses a live node, the master and an unknown node (94, roles unchanged); on killed node4 its dry-run
  changes nothing, the real run marks it offline, fails its running sharedfile instance over to a node Ganeti's
  iallocator chooses (running there) and sets its NetBox device to failed (put back in teardown).

The tests that kill node4 leave the lab as they found it, also when they fail (tests.lab.node_lab.lab_as_found:
node4 brought back, online, its candidate role given back), then remove their instance.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import cluster, netbox, planned_only, run_cookbook  # noqa: F401 - cluster is a fixture
from tests.lab.node_lab import LAB, lab_as_found, on_node  # noqa: F401 - fixtures

HEALTH, NODE_DOWN = "sre.ganeti.health", "sre.ganeti.node-down"
NODE4 = "node4.lab.example"
QUIET = ("--failed-within", "0", "--stuck-after", "1440")
"""Other tests' failed jobs are theirs: health's job check is unit-tested."""
LEVELS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
CHECKS = {"nodes", "verify", "disks", "n+1", "jobs", "queue", "watcher", "certificates"}


def _report(run_stdout: str) -> dict[str, object]:
    return dict(json.loads(run_stdout[run_stdout.index("{"):]))


def _kill(node: str) -> None:
    subprocess.run([LAB, "node-down", node.split(".")[0]], check=True, capture_output=True, timeout=120)


@pytest.fixture
def node4_down(lab_as_found: str) -> str:
    """node4 killed (daemons, sshd, link); the lab put back at the end by lab_as_found, also on failure."""
    _kill(NODE4)
    return NODE4


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


@pytest.mark.node_failures
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


def test_node_down_refuses_a_live_node_the_master_and_an_unknown_one(cluster: GanetiCluster,
                                                                      lab_config: Path) -> None:
    before = [(n.name, n.role) for n in cluster.nodes()]
    for node, message in ((NODE4, "it is not down"), (cluster.master(), "master-failover"),
                          ("node9.lab.example", "node9.lab.example")):
        run = run_cookbook(lab_config, NODE_DOWN, "--cluster", "lab", "-t", "T13001", node)
        assert run.returncode == 94 and message in run.stdout + run.stderr
    assert [(n.name, n.role) for n in cluster.nodes()] == before


@pytest.mark.node_failures
def test_node_down_of_a_killed_node_fails_its_sharedfile_instance_over(cluster: GanetiCluster, lab_config: Path,
                                                                        on_node: Callable[[str], str],
                                                                        lab_as_found: str) -> None:
    nb = netbox(lab_config)
    device = nb.find("device", name=NODE4)
    assert device is not None
    name = on_node(NODE4)
    try:
        _kill(NODE4)
        dry = run_cookbook(lab_config, NODE_DOWN, "--cluster", "lab", "-t", "T13001", NODE4, dry_run=True)
        assert dry.returncode == 0 and planned_only(dry)
        assert not cluster.node(NODE4).offline and cluster.instance(name).primary_node == NODE4
        run = run_cookbook(lab_config, NODE_DOWN, "--cluster", "lab", "-t", "T13001", NODE4)
        assert run.returncode == 0, run.stdout + run.stderr
        assert cluster.node(NODE4).offline
        instance = cluster.instance(name)
        assert instance.primary_node != NODE4 and instance.status == "running"
        assert (nb.find("device", name=NODE4) or {}).get("status", {}).get("value") == "failed"
    finally:
        nb.update("device", [{"id": device["id"], "status": device["status"]["value"]}])
