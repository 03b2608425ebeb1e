"""sre.ganeti.rebalance and libcluster.ganeti.rebalance without the lab: hbal's solution lines parsed (a real lab
output, stderr interleaved by SSH), short names mapped, plans refused before anything changes (unknown group, an
excluded instance not in the group, an action word not known, actions not leading where the line says, a line that
could not be read), and on the fake cluster: the moves in hbal's order with their locks and undo, the dry-run,
Ctrl-C (what was done, in progress, not started; moved back), an instance moved since the plan. DRBD plans (f,
r:NODE: migrations and secondary replacements) run on the fake only: the lab has no DRBD."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest

from libcluster.ganeti import GanetiCluster, rebalance
from libcluster.ganeti.commands import HbalMove, HbalPlan, parse_hbal
from libcluster.ganeti.rebalance import RebalanceError
from libcluster.testing import FakeCluster, FakeCtx, InterruptedWait, load_config, load_cookbook, run_runner

TREE = Path(__file__).resolve().parents[2]
N1, N2, N3 = "node1.example", "node2.example", "node3.example"
LAB_OUTPUT = (  # hbal -L -G A on the lab (2026-12-06), stdout and stderr merged by cumin as they came
    "WLoaded 4 nodes, 4 instances\nGroup size 2 nodes, 4 instances\nSelected node group: A\n"
    "Initial check done: 0 bad nodes, 0 bad instances.\nInitial score: 9.00929268\nTrying to minimize the CV...\n"
    "    1. rbx-8a8b48 node1       => node2         4.50398258 a=fa:node2\n"
    "    2. rbx-a04989 node1       => node2         0.00132753 a=fa:node2\n"
    "Cluster score improved from 9.00929268 to 0.00132753\nSolution length=2\n"
    "arning: cluster has inconsistent data:\n  - node node4.lab.example is missing 1200 MB ram and 174 GB disk\n")
PLAN = ("Initial score: 9.00000000\nTrying to minimize the CV...\n"
        "    1. vm1 node1 => node2 4.50000000 a=fa:node2\n"
        "    2. vm4 node1 => node3 1.20000000 a=fa:node3\n"
        "Cluster score improved from 9.00000000 to 1.20000000\nSolution length=2\n")
AFTER = "Initial score: 1.20000000\nTrying to minimize the CV...\nNo solution found\n"


class ScriptedHbal:
    """cluster.commands.hbal answering the plan first, then AFTER (the score once moved); records its options."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> HbalPlan:
        self.calls.append(options)
        output = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        return parse_hbal(0, output, executed=False)


def _cluster(hbal: ScriptedHbal) -> FakeCluster:
    cluster = FakeCluster()
    cluster.add_node(N3, "A")
    cluster.add_node("node4.example", "B")
    for name in ("vm1.example", "vm2.example", "vm3.example"):
        cluster.add_instance(name, "sharedfile", pnode=N1)
    cluster.add_instance("vm4.example", "sharedfile", up=False, pnode=N1)
    cluster.add_instance("other.example", "sharedfile", pnode="node4.example")
    cluster.commands.hbal = hbal  # type: ignore[method-assign]
    return cluster


def _runner(tmp_path: Path, cluster: FakeCluster, argv: list[str], *, dry_run: bool = False) -> tuple[Any, FakeCtx]:
    cluster.dry_run = cluster.changes.dry_run = dry_run
    ctx = FakeCtx(load_config(tmp_path), dry_run=dry_run, clusters={"lab": cluster}, name="sre.ganeti.rebalance")
    cookbook = load_cookbook(TREE, "sre.ganeti.rebalance").Rebalance(ctx)
    return cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", *argv])), ctx


def _moves(cluster: FakeCluster) -> list[tuple[Any, ...]]:
    return [call for call in cluster.calls if call[0] in ("migrate", "failover")]


def test_the_lab_output_parses_into_moves() -> None:
    plan = parse_hbal(0, LAB_OUTPUT, executed=False)
    assert plan.length == 2 and plan.initial_score == 9.00929268 and plan.final_score == 0.00132753
    assert plan.solution == (
        HbalMove(1, "rbx-8a8b48", "node1", None, "node2", None, 4.50398258, ("fa:node2",)),
        HbalMove(2, "rbx-a04989", "node1", None, "node2", None, 0.00132753, ("fa:node2",)))
    drbd = parse_hbal(0, "    1. vm1 node1:node2 => node3:node2 3.10000000 a=f r:node3 f\n", executed=False)
    assert drbd.solution[0].old_secondary == "node2" and drbd.solution[0].actions == ("f", "r:node3", "f")


def test_plans_that_cannot_be_run_are_refused() -> None:
    hosted = {i.name: i for i in _cluster(ScriptedHbal(PLAN)).instances() if i.primary_node == N1}
    nodes = (N1, N2, N3)
    ok = rebalance.from_hbal("lab", "A", nodes, hosted, parse_hbal(0, PLAN, executed=False))
    assert [(m.instance, m.source, m.target, m.stopped) for m in ok.moves] == [
        ("vm1.example", N1, N2, False), ("vm4.example", N1, N3, True)]
    for unknown, word in ((PLAN.replace("a=fa:node3", "a=x:node3"), "x:node3"),
                          (PLAN.replace("a=fa:node3", "a=fa:node3 f"), "f")):  # f of an instance without secondary
        with pytest.raises(RebalanceError, match=f"step 2 .*: action '{word}' is not one this cookbook runs"):
            rebalance.from_hbal("lab", "A", nodes, hosted, parse_hbal(0, unknown, executed=False))
    elsewhere = PLAN.replace("node1 => node3 1.20000000 a=fa:node3", "node1 => node3 1.20000000 a=fa:node2")
    with pytest.raises(RebalanceError, match=f"step 2 .*: its actions lead to {N2}, not to {N3} as its line says"):
        rebalance.from_hbal("lab", "A", nodes, hosted, parse_hbal(0, elsewhere, executed=False))
    mangled = PLAN.replace("    2. vm4", "W    2. vm4")
    with pytest.raises(RebalanceError, match="hbal printed 2 moves, 1 could be read"):
        rebalance.from_hbal("lab", "A", nodes, hosted, parse_hbal(0, mangled, executed=False))
    with pytest.raises(RebalanceError, match="matches 2"):
        rebalance.full_name("vm1", ["vm1.example", "vm1.example.org"], "instance")


def test_bad_input_is_refused_before_hbal_and_any_write(tmp_path: Path) -> None:
    hbal = ScriptedHbal(PLAN)
    cluster = _cluster(hbal)
    with pytest.raises(RebalanceError, match=re.escape("other.example, nosuch.example not in group A")):
        _runner(tmp_path, cluster, ["--group", "A", "--exclude-instances", "vm2.example", "other.example",
                                    "nosuch.example"])
    with pytest.raises(RebalanceError, match=r"no node group C in cluster lab \(groups: A, B\)"):
        rebalance.plan(cast(GanetiCluster, cluster), "C")
    assert hbal.calls == [] and _moves(cluster) == []


def test_the_moves_run_in_order_locked_and_undoable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hbal = ScriptedHbal(PLAN, AFTER)
    cluster = _cluster(hbal)
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A", "--no-disk-moves", "--exclude-instances", "vm2.example"])
    assert run_runner(runner, ctx).exit_code == 0
    assert hbal.calls[0] == {"group": "A", "no_disk_moves": True, "exclude_instances": ["vm2.example"]}
    assert _moves(cluster) == [("migrate", "vm1.example", {"target_node": N2, "allow_failover": None}),
                               ("migrate", "vm4.example", {"target_node": N3, "allow_failover": True})]
    assert cluster.instance("vm1.example").primary_node == N2 and cluster.instance("vm4.example").primary_node == N3
    assert ctx.locks.taken == ["ganeti/lab/group/A", *(f"ganeti/lab/node/{n}" for n in (N1, N2, N3)),
                               "ganeti/lab/instance/vm1.example", "ganeti/lab/instance/vm4.example"]
    assert [undo.action for _, undo in ctx.undo.steps] == ["instance-migrate", "instance-migrate"]
    assert "2 move(s) done; score 9.0000 before, 1.2000 now" in capsys.readouterr().out


def test_dry_run_prints_the_plan_and_moves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster(ScriptedHbal(PLAN))
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"], dry_run=True)
    assert run_runner(runner, ctx).exit_code == 0
    out = capsys.readouterr().out
    assert "score now 9.0000, after the plan 1.2000" in out
    assert f"1. vm1.example: {N1} -> {N2} (live migration to {N2}; score after 4.5000)" in out
    assert f"2. vm4.example: {N1} -> {N3} (stopped instance: failover to {N3}; score after 1.2000)" in out
    assert {i.name: i.primary_node for i in cluster.instances()}["vm1.example"] == N1
    assert all(change.dry_run for change in ctx.changes.changes)


def test_ctrl_c_stops_says_what_was_done_and_moves_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster(ScriptedHbal(PLAN, AFTER))
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    migrate = cluster.migrate_instance
    cluster.migrate_instance = lambda name, **options: (  # type: ignore[method-assign]
        InterruptedWait(migrate(name, **options), "the migration of vm4") if name == "vm4.example"
        else migrate(name, **options))
    assert run_runner(runner, ctx).exit_code == 97
    out = capsys.readouterr().out
    assert f"done: vm1.example: {N1} -> {N2}" in out and "in progress (job 42): vm4.example" in out
    assert cluster.instance("vm1.example").primary_node == N1 and cluster.instance("vm4.example").primary_node == N1


def test_an_instance_moved_since_the_plan_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster(ScriptedHbal(PLAN))
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    cluster.instances_by_name["vm1.example"]["pnode"] = N3
    assert run_runner(runner, ctx).exit_code == 99
    assert _moves(cluster) == []
    assert f"not started: vm4.example: {N1} -> {N3}" in capsys.readouterr().out


def test_a_drbd_failover_step_goes_to_the_secondary_without_a_target(tmp_path: Path) -> None:
    """hbal's `f` (DRBD, unit-tested only: the lab has no DRBD): Ganeti refuses a target node for it."""
    cluster = _cluster(ScriptedHbal("    1. mirror node1:node2 => node2:node1 1.00000000 a=f\nSolution length=1\n",
                                    AFTER))
    cluster.add_instance("mirror.example", "drbd", pnode=N1, snodes=[N2])
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    assert run_runner(runner, ctx).exit_code == 0
    assert _moves(cluster) == [("migrate", "mirror.example", {"target_node": None, "allow_failover": None})]
    assert cluster.instance("mirror.example").primary_node == N2


DRBD = ("Initial score: 5.00000000\n"
        "    1. mirror node1:node2 => node3:node2 3.10000000 a=f r:node3 f\n"
        "Cluster score improved from 5.00000000 to 3.10000000\nSolution length=1\n")
"""hbal's ReplacePrimary (`f r:NODE f`): to the secondary, the old primary's disks replaced by node3's, to node3."""


def _drbd(*outputs: str) -> FakeCluster:
    cluster = _cluster(ScriptedHbal(*outputs))
    cluster.add_instance("mirror.example", "drbd", pnode=N1, snodes=[N2])
    return cluster


def _writes(cluster: FakeCluster) -> list[tuple[Any, ...]]:
    return [call for call in cluster.calls if call[0] in ("migrate", "failover", "replace_secondary")]


def _nodes(cluster: FakeCluster) -> tuple[str, list[str]]:
    instance = cluster.instances_by_name["mirror.example"]
    return instance["pnode"], instance["snodes"]


def test_a_drbd_plan_runs_its_actions_in_hbals_order_with_their_undo(tmp_path: Path) -> None:
    cluster = _drbd(DRBD, AFTER)
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    assert run_runner(runner, ctx).exit_code == 0
    assert _writes(cluster) == [("migrate", "mirror.example", {"target_node": None, "allow_failover": None}),
                                ("replace_secondary", "mirror.example", N3, {}),
                                ("migrate", "mirror.example", {"target_node": None, "allow_failover": None})]
    assert _nodes(cluster) == (N3, [N2])
    assert "ganeti/lab/instance/mirror.example" in ctx.locks.taken
    steps = [(undo.action, undo.args["node"]) for _, undo in ctx.undo.steps]
    assert steps == [("instance-migrate", N1), ("instance-replace-disks", N1), ("instance-migrate", N2)]
    assert ctx.undo.steps[1][1].args["new_node"] == N3


def test_ctrl_c_in_a_drbd_step_takes_back_each_action_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _drbd(DRBD, AFTER)
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    migrate = cluster.migrate_instance
    cluster.migrate_instance = lambda name, **options: (  # type: ignore[method-assign]
        InterruptedWait(migrate(name, **options), "the last migration")
        if any(call[0] == "replace_secondary" for call in cluster.calls) else migrate(name, **options))
    assert run_runner(runner, ctx).exit_code == 97
    assert "in progress (job 42, action 3 of 3): mirror.example" in capsys.readouterr().out
    assert _writes(cluster)[3:] == [("migrate", "mirror.example", {"target_node": N2}),
                                    ("replace_secondary", "mirror.example", N1),
                                    ("migrate", "mirror.example", {"target_node": N1})]
    assert _nodes(cluster) == (N1, [N2])


def test_a_replacement_that_ended_elsewhere_stops_and_is_taken_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cluster = _drbd(DRBD)
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"])
    replace = cluster.replace_secondary
    cluster.replace_secondary = lambda name, node: replace(name, "node4.example")  # type: ignore[method-assign]
    assert run_runner(runner, ctx).exit_code == 99
    assert "mirror.example's secondary is node4.example, not node3.example as planned" in caplog.text
    assert [call[0] for call in _writes(cluster)] == ["migrate", "replace_secondary", "replace_secondary", "migrate"]
    assert _nodes(cluster) == (N1, [N2])


def test_a_drbd_dry_run_prints_each_action_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _drbd(DRBD)
    runner, ctx = _runner(tmp_path, cluster, ["--group", "A"], dry_run=True)
    assert run_runner(runner, ctx).exit_code == 0
    assert (f"1. mirror.example: {N1}:{N2} -> {N3}:{N2} (live migration to the secondary {N2}, replace secondary "
            f"with {N3}, live migration to the secondary {N3}; score after 3.1000)") in capsys.readouterr().out
    assert [call[0] for call in _writes(cluster)] == ["migrate"]  # the later actions would be checked on old nodes
    assert _nodes(cluster) == (N1, [N2])
    assert [change.action for change in cluster.changes.changes] == ["migrate"]
    assert all(change.dry_run for change in cluster.changes.changes)


def test_an_unknown_action_word_is_refused_before_any_write(tmp_path: Path) -> None:
    cluster = _drbd(DRBD.replace("a=f r:node3 f", "a=f r:node3 x f"))
    with pytest.raises(RebalanceError, match=r"step 1 .*: action 'x' is not one this cookbook runs"):
        _runner(tmp_path, cluster, ["--group", "A"])
    assert _writes(cluster) == [] and _nodes(cluster) == (N1, [N2])
