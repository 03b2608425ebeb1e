"""The cookbook the guide walks through (docs/example, shown in docs/writing-a-cookbook.rst) does what the guide
says, run on libcluster.testing's fakes as the runner runs it: locks, confirmation, drain and migration,
dry-run, refusals in get_runner, and the rollback that gives the node its old role back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from libcluster.cookbook import EXIT_EXCEPTION
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.resources import instance_lock, node_lock
from libcluster.runner.execute import prepare_parser
from libcluster.testing import FakeCluster, FakeCtx, load_config, load_cookbook, run_runner

TREE = Path(__file__).resolve().parents[2] / "docs" / "example"
"""The guide's cookbook tree: the folder holding cookbooks/team/drain-node.py."""
NODE = "node2.example"


def _cluster(*, dry_run: bool = False) -> FakeCluster:
    """Cluster lab: node1 (master), node2 running vm1 (drbd, secondary node3) and vm2, node3."""
    cluster = FakeCluster(dry_run=dry_run)
    cluster.add_node("node3.example", "A")
    cluster.add_instance("vm1.example", template="drbd", pnode=NODE, snodes=["node3.example"])
    cluster.add_instance("vm2.example", pnode=NODE)
    return cluster


def _runner(ctx: FakeCtx, *argv: str) -> Any:
    """Parse argv as the runner does (its -r added to the cookbook's parser) and build the runner."""
    cookbook = load_cookbook(TREE, "team.drain-node").DrainNode(ctx)
    parser: argparse.ArgumentParser = cookbook.argument_parser()
    prepare_parser(cookbook, parser, "team.drain-node", "Infrastructure")
    return cookbook.get_runner(parser.parse_args(["-r", "disk replacement", *argv]))


def test_the_node_is_drained_and_its_instances_migrated_under_their_locks(tmp_path: Path) -> None:
    cluster = _cluster()
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
    outcome = run_runner(_runner(ctx, "--cluster", "lab", NODE), ctx)
    assert outcome.exit_code == 0
    assert cluster.node_role(NODE) == "drained"
    assert cluster.node(NODE).primary_instances == ()
    assert cluster.instance("vm1.example")["pnode"] == "node3.example"  # a drbd instance goes to its secondary
    assert ctx.locks.taken == [node_lock("lab", NODE), instance_lock("lab", "vm1.example"),
                               instance_lock("lab", "vm2.example")]
    assert ctx.confirmations == [f"Drain {NODE} and migrate its 2 primary instance(s) away?"]
    assert [call[0] for call in cluster.calls] == ["node_role", "migrate_node"]


def test_a_failed_migration_gives_the_node_its_old_role_back(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.errors["migrate_node"] = JobFailedError(4, status="error", error_type="OpPrereqError",
                                                    message="not enough memory", classification=None, summary=None)
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
    outcome = run_runner(_runner(ctx, "--cluster", "lab", NODE), ctx)
    assert outcome.exit_code == EXIT_EXCEPTION
    assert cluster.node_role(NODE) == "regular"
    assert cluster.calls[-1] == ("node_role", NODE, "regular")  # the undo the client registered, run by rollback
    assert [change["action"] for change in cluster.changes.as_list()] == ["node_role", "migrate_node", "node_role"]


def test_dry_run_changes_nothing_and_lists_the_planned_jobs(tmp_path: Path) -> None:
    cluster = _cluster(dry_run=True)
    ctx = FakeCtx(load_config(tmp_path), dry_run=True, clusters={"lab": cluster})
    assert run_runner(_runner(ctx, "--cluster", "lab", NODE), ctx).exit_code == 0
    assert cluster.node_role(NODE) == "regular"
    assert cluster.node(NODE).primary_instances == ("vm1.example", "vm2.example")
    assert [(change["action"], change["dry_run"]) for change in cluster.changes.as_list()] == [
        ("node_role", True), ("migrate_node", True)]


@pytest.mark.parametrize(("node", "problem"), [
    ("node1.example", "is the master of cluster lab"),
    ("node4.example", "/2/nodes/node4.example"),
])
def test_get_runner_refuses_before_anything_is_locked(tmp_path: Path, node: str, problem: str) -> None:
    cluster = _cluster()
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
    with pytest.raises(LibclusterError, match=problem):
        _runner(ctx, "--cluster", "lab", node)
    assert ctx.locks.taken == [] and cluster.calls == []


def test_an_unknown_cluster_is_refused_naming_it(tmp_path: Path) -> None:
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": _cluster()})
    with pytest.raises(LibclusterError, match="nope"):
        _runner(ctx, "--cluster", "nope", NODE)
