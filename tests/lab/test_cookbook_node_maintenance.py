"""drain-node, reboot-nodes and master-failover on the lab, through the runner, on group B (node3, node4: group A
holds other tests' file instances, which cannot move).

- bad input (an unknown node, a node of another cluster, the master for drain, an unknown group) exits 94 with
  nothing changed;
- drain-node's dry-run changes nothing (node flags, instance placement, no job but Ganeti's dry-run checks),
  a real drain moves the running sharedfile instance live, --undrain gives the candidate role back;
- the rolling reboot of group B, with the master failed over into it first (master-failover "there"): each node's
  boot id changes, the instances (one running sharedfile instance per node) are only migrated, never stopped,
  the master is rebooted last after a failover to the other node and the role ends where the run says; then
  master-failover back to the first master;
- a node that does not come back (the lab's node-down --at-reboot) stops the rollout: it is left drained, the
  other node untouched; the lab's node-up brings it back and drain-node --undrain returns it to service.

Instances are named `nm-<random>.lab.example` and removed at the end.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
from libcluster.ganeti.nodes import CANDIDATE_TAG
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster is a fixture
    cluster,
    last_job_id,
    planned_only,
    real_jobs_since,
    remote,
    run_cookbook,
)
from tests.lab.node_lab import LAB, lab_as_found, on_node  # noqa: F401 - fixtures

DRAIN, REBOOT, FAILOVER = "sre.ganeti.drain-node", "sre.ganeti.reboot-nodes", "sre.ganeti.master-failover"
NODE3, NODE4 = "node3.lab.example", "node4.lab.example"


def _state(cluster: GanetiCluster, nodes: list[str], instances: list[str]) -> tuple[object, ...]:
    """What must not change: node roles and tags, instance placement and state."""
    return (tuple((cluster.node(n).role, tuple(cluster.node(n).tags)) for n in nodes),
            tuple((cluster.instance(i).primary_node, cluster.instance(i).status) for i in instances))


def test_bad_input_is_refused_and_changes_nothing(cluster: GanetiCluster, lab_config: Path) -> None:
    master = cluster.master()
    before, marker = _state(cluster, [master, NODE3], []), last_job_id(cluster)
    cases = [
        ((DRAIN, "--cluster", "lab", "node9.lab.example"), "no node node9.lab.example in cluster lab"),
        ((DRAIN, "--cluster", "lab", "node3.other.example"), "no node node3.other.example in cluster lab"),
        ((DRAIN, "--cluster", "lab", master), "sre.ganeti.master-failover"),
        ((REBOOT, "--cluster", "lab", "--group", "Z"), "no node group Z in cluster lab"),
        ((REBOOT, "--cluster", "lab", "--nodes", "node9.lab.example"), "no node node9.lab.example in cluster lab"),
        ((FAILOVER, "--cluster", "lab", "--to", master), "already the master"),
        ((FAILOVER, "--cluster", "lab", "--no-voting"), "--no-voting is for two-node clusters only"),
    ]
    for argv, message in cases:
        run = run_cookbook(lab_config, *argv)
        assert run.returncode == 94 and message in run.stderr, (argv, run.stderr)
    assert _state(cluster, [master, NODE3], []) == before
    assert real_jobs_since(cluster, marker, NODE3) == [] and real_jobs_since(cluster, marker, master) == []


def test_drain_dry_run_changes_nothing_then_drain_and_undrain(cluster: GanetiCluster, on_node: Callable[[str], str],
                                                             lab_config: Path) -> None:
    vm = on_node(NODE3)
    before, marker = _state(cluster, [NODE3, NODE4], [vm]), last_job_id(cluster)
    dry = run_cookbook(lab_config, DRAIN, "--cluster", "lab", NODE3, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry), dry.stderr
    assert f"{vm}: migrate -> {NODE4}" in dry.stdout, "the node Ganeti's check chose"
    assert _state(cluster, [NODE3, NODE4], [vm]) == before
    assert real_jobs_since(cluster, marker, NODE3) == [] and real_jobs_since(cluster, marker, vm) == []
    try:
        done = run_cookbook(lab_config, DRAIN, "--cluster", "lab", "-t", "T13001", NODE3)
        assert done.returncode == 0, done.stderr
        assert f"{vm}: now on {NODE4}" in done.stdout
        node, instance = cluster.node(NODE3), cluster.instance(vm)
        assert node.drained and CANDIDATE_TAG in node.tags
        assert instance.primary_node == NODE4 and instance.running
        assert [job["summary"] for job in real_jobs_since(cluster, marker, vm)] == [[f"INSTANCE_MIGRATE({vm})"]]
    finally:
        back = run_cookbook(lab_config, DRAIN, "--cluster", "lab", "--undrain", NODE3)
    assert back.returncode == 0 and f"{NODE3} was drained, is now master-candidate" in back.stdout
    assert cluster.node(NODE3).role == "C" and CANDIDATE_TAG not in cluster.node(NODE3).tags


@pytest.mark.node_failures
def test_rolling_reboot_of_a_group_with_the_master_last(cluster: GanetiCluster, on_node: Callable[[str], str],
                                                       lab_config: Path, lab_as_found: str) -> None:
    first_master = lab_as_found
    vms = [on_node(NODE3), on_node(NODE4)]
    there = run_cookbook(lab_config, FAILOVER, "--cluster", "lab", "--to", NODE3)
    assert there.returncode == 0 and cluster.master() == NODE3, there.stderr
    boots, marker = cluster.boot_ids(), last_job_id(cluster)
    run = run_cookbook(lab_config, REBOOT, "--cluster", "lab", "-t", "T13002", "--group", "B")
    assert run.returncode == 0, run.stderr
    order = [line for line in run.stderr.splitlines() if "draining and rebooting" in line]
    assert [NODE4 in order[0], NODE3 in order[1]] == [True, True], "the master last"
    assert f"master role moved from {NODE3} to {NODE4}" in run.stderr
    ends = re.search(r"The master role ends on (\S+)", run.stdout)
    assert ends and ends.group(1) == cluster.master() == NODE4
    after = cluster.boot_ids()
    assert after[NODE3] != boots[NODE3] and after[NODE4] != boots[NODE4], "both nodes rebooted"
    assert {n: after[n] for n in after if n not in (NODE3, NODE4)} == \
        {n: boots[n] for n in boots if n not in (NODE3, NODE4)}, "the other group untouched"
    for vm in vms:
        assert cluster.instance(vm).running
        summaries = {summary for job in real_jobs_since(cluster, marker, vm) for summary in job["summary"]}
        assert summaries == {f"INSTANCE_MIGRATE({vm})"}, f"only migrated, never stopped: {summaries}"
    assert {cluster.node(n).role for n in (NODE3,)} == {"C"} and not cluster.node(NODE3).drained
    back = run_cookbook(lab_config, FAILOVER, "--cluster", "lab", "--to", first_master)
    assert back.returncode == 0 and cluster.master() == first_master, back.stderr
    assert cluster.node(NODE4).role == "C"


@pytest.mark.node_failures
def test_a_node_that_does_not_come_back_stops_the_rollout_drained(cluster: GanetiCluster,
                                                                  on_node: Callable[[str], str],
                                                                  lab_config: Path, lab_as_found: str) -> None:
    vm = on_node(NODE3)
    boots, marker = cluster.boot_ids(), last_job_id(cluster)
    subprocess.run([LAB, "node-down", "--at-reboot", "node3"], check=True, timeout=60)
    try:
        run = run_cookbook(lab_config, REBOOT, "--cluster", "lab", "--group", "B", "--timeout", "15")
        assert run.returncode == 1
        assert f"{NODE3} FAILED" in run.stderr and f"{NODE3} is left drained, rollout stopped" in run.stderr
        assert cluster.node(NODE3).drained
        assert cluster.boot_ids()[NODE4] == boots[NODE4] and cluster.node(NODE4).role == "C", "node4 untouched"
        assert real_jobs_since(cluster, marker, NODE4) == []
        assert cluster.instance(vm).primary_node == NODE4 and cluster.instance(vm).running
    finally:
        subprocess.run([LAB, "node-up", "node3"], check=True, timeout=120)  # on failure too: no later reboot stays down
    cluster.wait_node_back(NODE3, None, timeout=120)
    undrain = run_cookbook(lab_config, DRAIN, "--cluster", "lab", "--undrain", NODE3)
    assert undrain.returncode == 0 and cluster.node(NODE3).role == "C"

