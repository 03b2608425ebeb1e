"""libcluster.ganeti.nodes on libcluster.testing's FakeCluster: roles, drain/undrain, the per-instance plan, moves,
N+1, waiting for a node, master failover's refusals and dry-run."""

from __future__ import annotations

from typing import Any, cast

import pytest

from libcluster.ganeti import GanetiCluster, GanetiError, JobFailedError
from libcluster.ganeti import nodes as node_ops
from libcluster.ganeti.errors import GntCommandError
from libcluster.ganeti.nodes import CANDIDATE_TAG, MoveAction, NodeStateError, Role
from libcluster.testing.ganeti import FakeCluster

NODE = "node2.example"


def _cluster(*, dry_run: bool = False) -> FakeCluster:
    cluster = FakeCluster(dry_run=dry_run)
    cluster.add_node("node3.example", "A", master_candidate=True)
    return cluster


def test_one_role_vocabulary_for_words_and_letters() -> None:
    assert Role.parse("C") is Role.parse("master-candidate") is Role.CANDIDATE
    assert [role.letter for role in Role] == ["M", "C", "R", "D", "O"]
    with pytest.raises(ValueError, match=r"not a Ganeti node role: 'boss'.*master-candidate \(C\)"):
        Role.parse("boss")


def test_drain_of_a_candidate_tags_it_and_undrain_gives_the_role_back() -> None:
    cluster = _cluster()
    cluster.nodes_by_name[NODE]["master_candidate"] = True
    change = cluster.drain(NODE)
    assert (change.old, change.new) == (Role.CANDIDATE, Role.DRAINED)
    assert cluster.node(NODE).role == "D" and CANDIDATE_TAG in cluster.node(NODE).tags
    assert ("node_role", NODE, "drained", {"auto_promote": True}) in cluster.calls
    back = cluster.undrain(NODE)
    assert back.new is Role.CANDIDATE and cluster.node(NODE).role == "C" and not cluster.node(NODE).tags


def test_undrain_never_demotes_a_candidate_and_drain_of_a_regular_node_is_undrained_to_regular() -> None:
    cluster = _cluster()
    assert cluster.undrain("node3.example").job_id is None and cluster.node("node3.example").role == "C"
    assert cluster.calls == []
    cluster.drain(NODE)
    assert not cluster.node(NODE).tags, "a regular node is not tagged"
    assert cluster.undrain(NODE).new is Role.REGULAR


def test_the_master_an_unknown_node_and_an_offline_one_are_refused_before_anything_is_sent() -> None:
    cluster = _cluster()
    with pytest.raises(NodeStateError, match="master-failover"):
        cluster.drain("node1.example")
    with pytest.raises(NodeStateError, match=r"no node nodeX\.example in cluster lab"):
        cluster.drain("nodeX.example")
    cluster.nodes_by_name[NODE]["offline"] = True
    with pytest.raises(NodeStateError, match="offline"):
        cluster.drain(NODE)
    assert cluster.calls == [] and cluster.job_list == []


def test_drain_in_dry_run_changes_nothing() -> None:
    cluster = _cluster(dry_run=True)
    cluster.nodes_by_name[NODE]["master_candidate"] = True
    change = cluster.drain(NODE)
    assert change.new is Role.DRAINED and change.job_id is None
    assert cluster.node(NODE).role == "C" and not cluster.node(NODE).tags and cluster.job_list == []


def test_plan_checks_each_primary_and_refuses_local_templates_naming_changedisk() -> None:
    cluster = _cluster()
    cluster.add_instance("file1", "file", pnode=NODE)
    cluster.add_instance("shared1", "sharedfile", pnode=NODE)
    cluster.add_instance("stopped1", "diskless", up=False, pnode=NODE)
    plan = cluster.plan_node_moves(NODE)
    moves = {move.instance: move for move in plan.moves}
    assert not plan.ok and [move.instance for move in plan.blocked] == ["file1"]
    assert "sre.ganeti.changedisk --cluster lab --disk-template sharedfile file1" in str(moves["file1"].error)
    assert (moves["shared1"].action, moves["shared1"].target) == (MoveAction.MIGRATE, "node1.example")
    assert (moves["stopped1"].action, moves["stopped1"].target) == (MoveAction.FAILOVER, "node1.example")
    assert "shared1: migrate -> node1.example" in plan.lines()
    assert {i["pnode"] for i in cluster.instances_by_name.values()} == {NODE}, "checks move nothing"


def test_a_failed_check_blocks_the_plan_with_ganeti_error() -> None:
    cluster = _cluster()
    cluster.add_instance("shared1", "sharedfile", pnode=NODE)
    cluster.errors["move_check"] = JobFailedError(
        7, status="error", error_type="OpPrereqError", message="insufficient memory",
        classification="insufficient_resources", summary="INSTANCE_MIGRATE(shared1)")
    [move] = cluster.plan_node_moves(NODE).blocked
    assert "insufficient memory" in str(move.error) and move.action is MoveAction.MIGRATE


def test_move_primary_migrates_running_fails_over_stopped_and_refuses_file() -> None:
    cluster = _cluster()
    cluster.add_instance("shared1", "sharedfile", pnode=NODE)
    cluster.add_instance("stopped1", "diskless", up=False, pnode=NODE)
    cluster.add_instance("file1", "file", pnode=NODE)
    assert cluster.move_primary("shared1").wait().value == "node1.example"
    assert cluster.move_primary("stopped1").wait().value == "node1.example"
    assert [call[0] for call in cluster.calls] == ["migrate", "failover"]
    with pytest.raises(NodeStateError, match="file1: disk template file cannot"):
        cluster.move_primary("file1")


def test_n_plus_one_names_what_the_other_nodes_lack() -> None:
    cluster = _cluster()
    for name in cluster.nodes_by_name:
        cluster.nodes_by_name[name]["mfree"] = 512
    cluster.add_instance("big", "sharedfile", pnode=NODE)
    cluster.instances_by_name["big"]["beparams"] = {"maxmem": 2048}
    [problem] = cluster.n_plus_one(NODE)
    assert "need 2.0 GiB (1 instances)" in problem and "node3.example 512.0 MiB" in problem
    cluster.instances_by_name["big"]["beparams"] = {"maxmem": 256}
    assert cluster.n_plus_one(NODE) == []


def test_wait_node_back_needs_a_new_boot_id_and_ssh() -> None:
    cluster = _cluster()
    old = cluster.boot_ids()[NODE]
    cluster.down_nodes.add(NODE)
    with pytest.raises(GanetiError, match=r"noded does not answer"):
        cluster.wait_node_back(NODE, old, timeout=0)
    cluster.down_nodes.clear()
    with pytest.raises(GanetiError, match="is not back"):
        cluster.wait_node_back(NODE, old, timeout=0)
    cluster.nodes_by_name[NODE]["bootid"] = "new-id"
    assert cluster.wait_node_back(NODE, old, timeout=0) == "new-id"


def test_real_master_failover_refuses_a_non_candidate_and_only_records_in_dry_run() -> None:
    cluster = _cluster(dry_run=True)
    real = cast(GanetiCluster, cluster)
    with pytest.raises(NodeStateError, match=r"regular.*only a master candidate"):
        node_ops.master_failover(real, NODE)
    assert node_ops.master_failover(real, "node3.example") == "node1.example"
    runs = [call[1] for call in cluster.calls if call[0] == "run"]
    assert runs == ["gnt-cluster queue drain", "gnt-cluster master-failover"]


def test_real_master_failover_waits_for_the_queue_then_the_rapi() -> None:
    cluster = _cluster()
    real = cast(GanetiCluster, cluster)
    cluster.commands.outputs["gnt-job list"] = "12 success\n13 running\n"  # type: ignore[attr-defined]
    ticks = iter(range(1000))
    with pytest.raises(GanetiError, match=r"jobs 13 still unfinished on node1\.example"):
        node_ops.master_failover(real, "node3.example", timeout=3, clock=lambda: next(ticks), sleep=lambda s: None)
    runs = [call[1] for call in cluster.calls if call[0] == "run"]
    assert runs[0] == "gnt-cluster queue drain" and runs[-1] == "gnt-cluster queue undrain"
    assert "gnt-cluster master-failover" not in runs


def test_real_master_failover_undrains_the_queue_when_the_job_list_fails() -> None:
    cluster = _cluster()
    real = cast(GanetiCluster, cluster)
    commands = cluster.commands
    original = commands.run

    def run(argv: list[str], **options: Any) -> Any:
        if argv[:2] == ["gnt-job", "list"]:  # seen on the lab: the old master became unreachable
            raise GntCommandError("gnt-job list", "node1.example", None, "[unreachable]")
        return original(argv, **options)

    commands.run = run  # type: ignore[method-assign, assignment]
    with pytest.raises(GntCommandError):
        node_ops.master_failover(real, "node3.example", timeout=3, sleep=lambda s: None)
    runs = [call[1] for call in cluster.calls if call[0] == "run"]
    assert runs == ["gnt-cluster queue drain", "gnt-cluster queue undrain"], "the queue is not left drained"
