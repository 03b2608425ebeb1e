"""sre.ganeti.node-down on the fake cluster: refusals before anything, the failover of mirrored primaries, a file
instance left and reported, DRBD secondaries evacuated (the lab has no DRBD: only here), the NetBox device failed,
--ignore-consistency's typed second confirmation (-y does not answer it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libcluster.ganeti.nodes import NodeStateError
from libcluster.interactive import AbortError
from libcluster.testing import FakeCluster, FakeCtx, FakeNetBox, load_config, load_cookbook, run_runner

TREE = Path(__file__).resolve().parents[2]
N1, N2, N3 = "node1.example", "node2.example", "node3.example"
WRITES = ("node_role", "failover", "migrate", "evacuate_node")


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.add_node(N3, "A")
    cluster.down_nodes.add(N2)
    return cluster


def _runner(tmp_path: Path, cluster: FakeCluster, argv: list[str], *, answers: tuple[str, ...] = (),
            dry_run: bool = False) -> tuple[Any, FakeCtx, FakeNetBox]:
    netbox = FakeNetBox({"device": [{"id": 7, "name": N2, "status": {"value": "active"}}]}, dry_run=dry_run)
    ctx = FakeCtx(load_config(tmp_path), dry_run=dry_run, clusters={"lab": cluster}, netbox=netbox,
                  name="sre.ganeti.node-down")
    ctx.answers.extend(answers)
    cookbook = load_cookbook(TREE, "sre.ganeti.node-down").NodeDown(ctx)
    args = cookbook.argument_parser().parse_args(["--cluster", "lab", *argv])
    return cookbook.get_runner(args), ctx, netbox


def test_refuses_an_unknown_node_the_master_and_a_live_node(tmp_path: Path) -> None:
    cluster = _cluster()
    for node, message in (("node9.example", "no node node9.example"), (N1, "master-failover"),
                          (N3, "it is not down")):
        with pytest.raises(NodeStateError, match=message):
            _runner(tmp_path, cluster, [node])
    assert not [call for call in cluster.calls if call[0] in WRITES]


def test_offline_failover_evacuate_netbox_and_what_is_left(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("shared.example", "sharedfile", pnode=N2)
    cluster.add_instance("local.example", "file", pnode=N2)
    cluster.add_instance("mirror.example", "drbd", pnode=N1, snodes=[N2])
    runner, ctx, netbox = _runner(tmp_path, cluster, [N2])
    assert run_runner(runner, ctx).exit_code == 1, "local.example is left: not redundant"
    assert cluster.node(N2).offline
    assert cluster.instance("shared.example").primary_node != N2
    assert cluster.instance("local.example").primary_node == N2
    assert N2 not in cluster.instance("mirror.example").secondary_nodes
    assert {"failover", "evacuate_node"} <= {call[0] for call in cluster.calls}
    assert netbox.updates == [("device", [{"id": 7, "status": "failed"}])]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.dry_run = True
    cluster.add_instance("shared.example", "sharedfile", pnode=N2)
    runner, ctx, netbox = _runner(tmp_path, cluster, [N2], dry_run=True)
    assert run_runner(runner, ctx).exit_code == 0
    assert not cluster.node(N2).offline and cluster.instance("shared.example").primary_node == N2
    assert netbox.store["device"][0]["status"] == {"value": "active"}


def test_ignore_consistency_needs_the_node_typed(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("mirror.example", "drbd", pnode=N2, snodes=[N1])
    runner, ctx, _ = _runner(tmp_path, cluster, ["--ignore-consistency", N2], answers=("yes",))
    with pytest.raises(AbortError, match="not node2.example"):
        runner.run()
    assert not [call for call in cluster.calls if call[0] in WRITES]
    runner, ctx, _ = _runner(tmp_path, cluster, ["--ignore-consistency", N2], answers=(N2,))
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.instance("mirror.example").primary_node == N1
    assert any(call[0] == "failover" and "ignore_consistency" in str(call) for call in cluster.calls)
