"""libcluster.ganeti.fit on records a real Ganeti 3.0.2 answered (the shared RAPI transcript): policy, memory with
N+1, free storage, disk index and grow checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from libcluster.capacity import format_mib
from libcluster.ganeti import Group, Instance, Node, fit


def _last(transcript: list[dict[str, Any]], path: str) -> Any:
    return [entry["response"] for entry in transcript if entry.get("method") == "GET" and entry.get("path") == path
            and entry.get("status") == 200][-1]


@pytest.fixture
def recorded(transcript: list[dict[str, Any]]) -> tuple[list[Node], Group, Instance, Instance]:
    """Three nodes of one group with their real free memory and storage, the group, inst2 (file, 2 disks) and inst5
    (sharedfile)."""
    nodes = [Node.from_rapi(raw) for raw in _last(transcript, "/2/nodes")]
    group = Group.from_rapi(_last(transcript, "/2/groups")[0])
    return (nodes, group, Instance.from_rapi(_last(transcript, "/2/instances/inst2.gl.test")),
            Instance.from_rapi(_last(transcript, "/2/instances/inst5.gl.test")))


def test_policy_checks_only_the_sizes_given(recorded: Any) -> None:
    _, group, _, _ = recorded
    assert fit.policy_problems(group.ipolicy, {"memory-size": 2048, "cpu-count": 8}) == []
    assert fit.policy_problems(group.ipolicy, {"memory-size": 64}) == ["memory 64 MiB is outside [128, 32768] MiB"]
    assert fit.policy_problems(group.ipolicy, {"cpu-count": 9, "disk-count": 17}) == [
        "vCPUs 9 is outside [1, 8]", "disks 17 is outside [1, 16]"]
    assert "disk template drbd is not allowed" in fit.policy_problems(group.ipolicy, {}, "drbd")[0]


def test_memory_more_than_the_primary_has_free_is_refused(recorded: Any) -> None:
    nodes, _, inst2, _ = recorded
    primary = next(node for node in nodes if node.name == inst2.primary_node)
    assert fit.memory_problems(inst2, 2048, nodes, [inst2]) == []
    too_much = (inst2.memory or 0) + (primary.memory_free or 0) + 1
    assert fit.memory_problems(inst2, too_much, nodes, [inst2]) == [
        f"primary node {primary.name} has {format_mib(primary.memory_free or 0)} free memory, "
        f"{format_mib(too_much - 128)} more is needed"]
    assert fit.memory_problems(inst2, 64, nodes, [inst2]) == []  # less memory always fits


def test_memory_that_breaks_n_plus_1_is_refused(recorded: Any) -> None:
    """inst5 (sharedfile, can fail over anywhere in the group) grown so that no other node could restart it."""
    nodes, _, _, inst5 = recorded
    others = [node.memory_free or 0 for node in nodes if node.name != inst5.primary_node]
    primary = next(node for node in nodes if node.name == inst5.primary_node)
    memory = max(others) + 1
    assert memory - 128 <= (primary.memory_free or 0)  # the primary itself has it: only N+1 fails
    problems = fit.memory_problems(inst5, memory, nodes, [inst5])
    assert problems == [f"N+1: with {format_mib(memory)} for {inst5.name}, the group could no longer "
                        f"restart the running instances of {inst5.primary_node} on its other nodes if that node failed"]


def test_a_drbd_secondary_needs_the_memory_too(recorded: Any) -> None:
    nodes, _, inst2, _ = recorded
    secondary = nodes[2]
    small = [dataclasses.replace(node, memory_free=100) if node is secondary else node for node in nodes]
    drbd = dataclasses.replace(inst2, disk_template="drbd", secondary_nodes=(secondary.name,))
    assert fit.memory_problems(drbd, 128 + 200, small, [drbd]) == [
        f"secondary node {secondary.name} has 100.0 MiB free memory, 200.0 MiB more is needed"]


def test_storage_on_each_node_holding_the_disks(recorded: Any) -> None:
    nodes, _, inst2, _ = recorded
    free = next(node.disk_free for node in nodes if node.name == inst2.primary_node) or 0
    assert fit.storage_problems(inst2, free, nodes) == []
    assert fit.storage_problems(inst2, free + 1, nodes) == [
        f"node {inst2.primary_node} has {format_mib(free)} free storage, "
        f"{format_mib(free + 1)} is needed"]
    unknown = [dataclasses.replace(node, disk_free=None) for node in nodes]
    assert "reports no free storage" in fit.storage_problems(inst2, 1, unknown)[0]


def test_disk_index_and_grow_size(recorded: Any) -> None:
    _, _, inst2, _ = recorded
    assert inst2.disk_sizes == (1088, 1024)
    assert fit.disk_problems(inst2, 1) == [] and fit.disk_problems(inst2, 0, 2048) == []
    assert fit.disk_problems(inst2, 2) == [f"{inst2.name} has no disk 2 (its disks: 0 (1.1 GiB), 1 (1.0 GiB))"]
    assert fit.disk_problems(inst2, -1) != []
    assert fit.disk_problems(inst2, 1, 512) == [
        f"disk 1 of {inst2.name} is 1.0 GiB: 512.0 MiB is smaller; a disk only grows, to a larger size (it never "
        "shrinks)"]
    assert "is its size now" in fit.disk_problems(inst2, 1, 1024)[0]
