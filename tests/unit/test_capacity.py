"""Capacity computation over real RAPI bodies recorded from Ganeti 3.0.2."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from libcluster import capacity


@pytest.fixture(scope="module")
def transcript(recorded_dir: Path) -> list[dict[str, Any]]:
    """Every request/response pair of the recorded RAPI session."""
    path = recorded_dir / "ganeti" / "rapi-transcript-3.0.2.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _last(transcript: list[dict[str, Any]], path: str, **params: Any) -> Any:
    hits = [e for e in transcript if e.get("method") == "GET" and e["path"] == path and (e.get("params") or {}) == params]
    return copy.deepcopy(hits[-1]["response"])


@pytest.fixture
def cluster(transcript: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    """Nodes and groups of the 3-node recording, plus its two real instances (diskless and sharedfile)."""
    nodes = _last(transcript, "/2/nodes", bulk=1)
    groups = _last(transcript, "/2/groups", bulk=1)
    instances = [_last(transcript, "/2/instances/inst4.gl.test"), _last(transcript, "/2/instances/inst5.gl.test")]
    return nodes, groups, instances


def test_format_mib_picks_readable_units() -> None:
    assert capacity.format_mib(512) == "512.0 MiB"
    assert capacity.format_mib(23531) == "23.0 GiB"
    assert capacity.format_mib(3 * 1024 * 1024) == "3.0 TiB"


def test_group_sums_match_the_recorded_nodes(cluster: tuple[list[dict], list[dict], list[dict]]) -> None:
    nodes, groups, instances = cluster
    (group,) = capacity.group_capacity("gl", nodes, groups, instances)
    assert group.group == "default"
    assert group.nodes == len(nodes) == 3
    assert group.instances == 2
    assert group.memory_free == sum(n["mfree"] for n in nodes)
    assert group.disk_free == sum(n["dfree"] for n in nodes)
    assert group.cores == sum(n["ctotal"] for n in nodes)
    assert group.memory_allocated == sum(i["beparams"]["maxmem"] for i in instances)
    assert group.vcpus_allocated == sum(i["beparams"]["vcpus"] for i in instances)
    assert group.vcpu_ratio_limit == 4.0
    assert group.vcpu_ratio == pytest.approx(group.vcpus_allocated / group.cores)
    assert group.survives_node_loss is True
    best = max(nodes, key=lambda n: (n["mfree"], n["dfree"]))
    assert group.largest_vm_memory == min(best["mfree"], 32768)  # ipolicy max memory-size caps it
    assert group.largest_vm_disk == min(best["dfree"], 1048576)


def test_node_loss_fails_when_the_others_lack_memory(cluster: tuple[list[dict], list[dict], list[dict]]) -> None:
    nodes, groups, instances = cluster
    big = max(instances, key=capacity.instance_memory)
    for node in nodes:
        if node["name"] != big["pnode"]:
            node["mfree"] = capacity.instance_memory(big) - 1
    (group,) = capacity.group_capacity("gl", nodes, groups, instances)
    assert group.survives_node_loss is False
    assert group.node_loss_failures == [big["pnode"]]


def test_drained_nodes_do_not_count_as_free(cluster: tuple[list[dict], list[dict], list[dict]]) -> None:
    nodes, groups, instances = cluster
    nodes[0]["drained"] = True
    (group,) = capacity.group_capacity("gl", nodes, groups, instances)
    assert group.memory_free == sum(n["mfree"] for n in nodes[1:])


def test_totals_sum_groups_and_keep_the_best_fit(cluster: tuple[list[dict], list[dict], list[dict]]) -> None:
    nodes, groups, instances = cluster
    other = copy.deepcopy(groups[0]) | {"name": "B", "uuid": "b-uuid"}
    extra = copy.deepcopy(nodes[0]) | {"name": "nodeB.gl.test", "group.uuid": "b-uuid", "mfree": 99999}
    caps = capacity.group_capacity("gl", nodes + [extra], groups + [other], instances)
    total = capacity.cluster_totals("gl", caps)
    assert [c.group for c in caps] == ["B", "default"]
    assert total.nodes == 4
    assert total.memory_free == sum(c.memory_free for c in caps)
    assert total.largest_vm_memory == 32768  # group B's node has 99999 free, capped by policy
    assert total.survives_node_loss is False  # a one-node group cannot survive losing it
