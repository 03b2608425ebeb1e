"""resource-report on the lab, as the README demo runs it: one row per node group and a total, no lock."""

from __future__ import annotations

import json
from pathlib import Path

from tests.lab.cookbook_lab import cluster, run_cookbook  # noqa: F401 - cluster is a fixture
from libcluster.ganeti import GanetiCluster


def test_readme_demo_prints_every_group_and_a_total(cluster: GanetiCluster, lab_config: Path) -> None:
    done = run_cookbook(lab_config, "sre.ganeti.resource-report", "lab")
    assert done.returncode == 0
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    groups = {group["name"]: group for group in cluster.groups()}
    assert [row[1] for row in rows] == [*sorted(groups), "TOTAL"]
    for row in rows[:-1]:
        assert row[0] == "lab" and row[2] == str(groups[row[1]]["node_cnt"])
    assert rows[-1][2] == str(sum(group["node_cnt"] for group in groups.values()))
    assert "START -" not in done.stderr, "a report takes no lock and logs no START line"


def test_json_matches_ganeti_and_dry_run_prints_the_same(cluster: GanetiCluster, lab_config: Path) -> None:
    report = json.loads(run_cookbook(lab_config, "sre.ganeti.resource-report", "--format", "json", "lab").stdout)
    nodes = {node["name"]: node for node in cluster.nodes()}
    for row in report[:-1]:
        members = [node for node in nodes.values() if node["group.uuid"] == cluster.group(row["group"])["uuid"]]
        assert row["nodes"] == len(members)
        assert row["memory_total_mib"] == sum(node["mtotal"] for node in members)
        assert row["cores"] == sum(node["ctotal"] for node in members)
    assert report[-1]["group"] == "TOTAL" and report[-1]["nodes"] == len(nodes)
    dry = run_cookbook(lab_config, "sre.ganeti.resource-report", "lab", dry_run=True)
    assert dry.returncode == 0 and "TOTAL" in dry.stdout


def test_unknown_cluster_is_a_clear_error(lab_config: Path) -> None:
    done = run_cookbook(lab_config, "sre.ganeti.resource-report", "lab", "nope")
    assert done.returncode == 94
    assert "unknown Ganeti cluster 'nope' (configured under ganeti.clusters: lab)" in done.stderr
    assert done.stdout == ""
