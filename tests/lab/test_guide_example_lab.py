"""The guide's cookbook (docs/example: team.drain-node) runs on the lab through the real runner, from a tree
outside the repository's cookbooks/: a dry-run drain of a node running a test instance sends its migration to
Ganeti as a dry-run job and changes nothing; the master is refused before anything is locked (exit 94).

A real drain is left to the unit test on the fakes: draining a node of the shared lab would move other tests'
instances and change the capacity they see.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
)

TREE = Path(__file__).resolve().parents[2] / "docs" / "example"
"""The guide's tree: the folder holding cookbooks/team/drain-node.py."""
NAME = "team.drain-node"


@pytest.fixture
def config(tmp_path: Path, lab_config: Path) -> Path:
    """A copy of the lab config whose only cookbook tree is the guide's."""
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [str(TREE)]
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_dry_run_drain_sends_a_dry_run_job_and_changes_nothing(
        cluster: GanetiCluster, new_instance: Callable[..., str], config: Path) -> None:  # noqa: F811 - fixtures
    name = new_instance("sharedfile", group="B")
    node = cluster.instance(name).primary_node
    role = cluster.node_role(node)
    marker = last_job_id(cluster)
    planned = run_cookbook(config, NAME, "-r", "guide lab test", "--cluster", "lab", node, dry_run=True)
    assert planned.returncode == 0, planned.stderr
    assert planned_only(planned)
    assert planned.audit is not None
    changes = [(change["action"], change["target"], change["detail"].get("checked"))
               for change in planned.audit["changes"]]
    assert changes == [("node-role", node, False), ("node-migrate", node, True)]  # the migration: a dry-run job
    assert real_jobs_since(cluster, marker, node) == []
    assert cluster.node_role(node) == role
    assert cluster.instance(name).primary_node == node


def test_the_master_is_refused_before_anything_is_locked(cluster: GanetiCluster, config: Path) -> None:  # noqa: F811
    master = cluster.master()
    marker = last_job_id(cluster)
    refused = run_cookbook(config, NAME, "-r", "guide lab test", "--cluster", "lab", master)
    assert refused.returncode == 94
    assert f"{master} is the master of cluster lab" in refused.stderr
    assert real_jobs_since(cluster, marker, master) == []
