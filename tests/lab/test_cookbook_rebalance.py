"""sre.ganeti.rebalance on the lab, through the runner, on group A made unbalanced: four sharedfile instances (three
running, one stopped), all on node1; every other instance of group A is passed to --exclude-instances, so that
only this test's instances move.

- bad input (an unknown cluster, an unknown group, an --exclude-instances name not in the group) exits 94 with
  nothing changed (placement, node roles, no job about the instances);
- the dry-run prints hbal's plan and the score before/after, and changes nothing (placement and state of the
  instances, node roles and tags, no job about them but Ganeti's dry-run checks, only planned changes audited);
- the real run makes the moves the dry-run printed (each instance ends where the plan puts it last), every move
  journaled, and the group's score (hbal -L, read here) is lower than before.

Instances are named `rb-<random>.lab.example` and removed at the end, also on failure.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster is a fixture
    cluster,
    last_job_id,
    planned_only,
    real_jobs_since,
    run_cookbook,
)

REBALANCE = "sre.ganeti.rebalance"
GROUP = "A"
PLAN_LINE = re.compile(r"^\s+\d+\. (\S+): (\S+) -> (\S+) \(", re.MULTILINE)


@pytest.fixture
def unbalanced(cluster: GanetiCluster) -> Iterator[list[str]]:
    """Four sharedfile instances (the last one stopped) on the first node of group A; removed at the end."""
    node = sorted(cluster.group(GROUP).nodes)[0]
    names = [f"rb-{secrets.token_hex(4)}.lab.example" for _ in range(4)]
    try:
        jobs = [cluster.create_instance(name, disk_template="sharedfile", disks=[1024], os_type="noop", memory=128,
                                        vcpus=1, pnode=node, name_check=False, start=index < 3)
                for index, name in enumerate(names)]
        for job in jobs:
            job.wait(timeout=300)
        yield names
    finally:
        existing = set(cluster.instance_names())
        for name in names:
            if name in existing:
                cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def _others(cluster: GanetiCluster, mine: list[str]) -> list[str]:
    """The instances of group A that are not this test's (other tests' leftovers): excluded from the moves."""
    nodes = set(cluster.group(GROUP).nodes)
    return sorted(i.name for i in cluster.instances() if i.primary_node in nodes and i.name not in mine)


def _state(cluster: GanetiCluster, instances: list[str]) -> tuple[object, ...]:
    """What a dry-run or a refusal must not change: node roles and tags, instance placement and state."""
    return (tuple((node.name, node.role, node.tags) for node in cluster.nodes()),
            tuple((cluster.instance(i).primary_node, cluster.instance(i).status) for i in instances))


def _no_job_about(cluster: GanetiCluster, marker: int, instances: list[str]) -> bool:
    return not any(real_jobs_since(cluster, marker, name) for name in instances)


def test_bad_input_is_refused_and_changes_nothing(cluster: GanetiCluster, lab_config: Path,
                                                  unbalanced: list[str]) -> None:
    before, marker = _state(cluster, unbalanced), last_job_id(cluster)
    outside = f"rb-{secrets.token_hex(4)}.lab.example"
    cases = [(["--cluster", "nosuch", "--group", GROUP], "unknown Ganeti cluster 'nosuch'"),
             (["--cluster", "lab", "--group", "nosuch"], "unknown node group 'nosuch'"),
             (["--cluster", "lab", "--group", GROUP, "--exclude-instances", unbalanced[0], outside],
              f"{outside} not in group {GROUP}")]
    for argv, message in cases:
        run = run_cookbook(lab_config, REBALANCE, *argv)
        assert run.returncode == 94 and message in run.stdout + run.stderr, run.stdout + run.stderr
    assert _state(cluster, unbalanced) == before
    assert _no_job_about(cluster, marker, unbalanced)


def test_dry_run_prints_the_plan_and_changes_nothing_then_the_run_moves_as_planned(
        cluster: GanetiCluster, lab_config: Path, unbalanced: list[str]) -> None:
    argv = ["--cluster", "lab", "-t", "T13001", "--group", GROUP, "--no-disk-moves"]
    others = _others(cluster, unbalanced)
    if others:
        argv += ["--exclude-instances", *others]
    before, marker = _state(cluster, unbalanced), last_job_id(cluster)
    dry = run_cookbook(lab_config, REBALANCE, *argv, dry_run=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = PLAN_LINE.findall(dry.stdout)
    assert planned, "hbal plans moves for four instances on one node"
    assert {name for name, _, _ in planned} <= set(unbalanced), "only this test's instances move"
    scores = re.search(r"score now ([0-9.]+), after the plan ([0-9.]+)", dry.stdout)
    assert scores is not None and float(scores.group(2)) < float(scores.group(1))
    assert _state(cluster, unbalanced) == before
    assert _no_job_about(cluster, marker, unbalanced) and planned_only(dry)

    run = run_cookbook(lab_config, REBALANCE, *argv)
    assert run.returncode == 0, run.stdout + run.stderr
    assert PLAN_LINE.findall(run.stdout) == planned, "the real run makes the moves the dry-run showed"
    wanted = {name: target for name, _, target in planned}  # an instance's last move is where it ends
    assert {name: cluster.instance(name).primary_node for name in wanted} == wanted
    assert all(cluster.instance(name).status == "running" for name in unbalanced[:3])
    moves = [c for c in run.audit["changes"] if c["action"] == "instance-migrate"] if run.audit else []
    assert [c["target"] for c in moves] == [name for name, _, _ in planned]
    after = cluster.commands.hbal(group=GROUP).initial_score
    assert after is not None and after < float(scores.group(1))
    assert re.search(r"\d+ move\(s\) done; score [0-9.]+ before, [0-9.]+ now", run.stdout)
