"""removenode and addnode --readd on the fake cluster.

removenode: refusals before anything changes (unknown node, the master, a file instance, an offline node still
holding instances, no room in the group); the real run drains, migrates the running primary, fails the stopped one
over, evacuates DRBD secondaries (the lab has no DRBD: only here), takes the NetBox device out of its cluster and
runs `gnt-node remove`; a failed removal is rolled back (undrained, device back in its cluster); the NetBox undo of a
node that did leave Ganeti leaves the device out; dry-run changes nothing; an offline empty node is removed without
a drain; a device of another cluster group is left alone.

addnode --readd: `gnt-node add --readd` without a group, the master candidate role given back from the tag
node-down left, the NetBox device active again in its group's cluster, hooks installed; refusals (a node not in the
cluster, the master, --group with --readd).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from libcluster import config as config_module
from libcluster.errors import LibclusterError
from libcluster.ganeti.errors import GntCommandError
from libcluster.ganeti.nodes import CANDIDATE_TAG, NodeStateError
from libcluster.resources import instance_lock, node_lock
from libcluster.testing import FakeCluster, FakeCtx, FakeNetBox, FakeRemote, load_config, load_cookbook, ok, run_runner

TREE = Path(__file__).resolve().parents[2]
N1, N2, N3 = "node1.example", "node2.example", "node3.example"
WRITES = ("node_role", "migrate", "failover", "evacuate_node", "node_remove", "node_add")


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.nodes_by_name[N2]["master_candidate"] = True
    cluster.add_node(N3, "A", master_candidate=True)
    return cluster


def _netbox(cluster_id: int | None = 11) -> FakeNetBox:
    return FakeNetBox({
        "device": [{"id": 7, "name": N3, "status": {"value": "active"},
                    "cluster": {"id": cluster_id, "name": "A"} if cluster_id else None}],
        "cluster-group": [{"id": 1, "name": "lab", "slug": "lab"}],
        "cluster": [{"id": 11, "name": "A", "group": {"id": 1}}, {"id": 12, "name": "B", "group": {"id": 1}},
                    {"id": 21, "name": "other", "group": {"id": 2}}],
    })


def _runner(tmp_path: Path, cluster: FakeCluster, argv: list[str], *, dry_run: bool = False,
            netbox: FakeNetBox | None = None) -> tuple[Any, FakeCtx, FakeNetBox]:
    netbox = netbox or _netbox()
    netbox.dry_run = netbox.changes.dry_run = dry_run
    ctx = FakeCtx(load_config(tmp_path), dry_run=dry_run, clusters={"lab": cluster}, netbox=netbox,
                  name="sre.ganeti.removenode", base_dirs=[TREE])
    cookbook = load_cookbook(TREE, "sre.ganeti.removenode").RemoveNode(ctx)
    args = cookbook.argument_parser().parse_args(["--cluster", "lab", *argv])
    return cookbook.get_runner(args), ctx, netbox


def _writes(cluster: FakeCluster) -> list[Any]:
    return [call for call in cluster.calls if call[0] in WRITES]


def test_refusals_change_nothing(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("local.example", "file", pnode=N3)
    cases = [("node9.example", "no node node9.example in cluster lab"), (N1, "sre.ganeti.master-failover"),
             (N3, "sre.ganeti.changedisk --cluster lab --disk-template sharedfile local.example")]
    for node, message in cases:
        with pytest.raises(NodeStateError, match=message) as caught:
            _runner(tmp_path, cluster, [node])
        assert "--shutdown-plain" not in str(caught.value), "removenode has no --shutdown-plain"
    cluster.instances_by_name.clear()
    cluster.add_instance("shared.example", "sharedfile", pnode=N3)
    cluster.nodes_by_name[N3]["offline"] = True
    with pytest.raises(NodeStateError, match=r"offline and still holds shared\.example: .*sre\.ganeti\.node-down"):
        _runner(tmp_path, cluster, [N3])
    assert _writes(cluster) == [] and N3 in cluster.nodes_by_name


def test_no_room_in_the_group_is_refused(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("big.example", "sharedfile", pnode=N3)
    cluster.instances_by_name["big.example"]["beparams"] = {"maxmem": 4096, "minmem": 4096}
    for node, free in ((N1, 512), (N2, 512), (N3, 8192)):
        cluster.nodes_by_name[node]["mfree"] = free
    with pytest.raises(NodeStateError, match="cannot hold its running primaries"):
        _runner(tmp_path, cluster, [N3])
    assert _writes(cluster) == []


def test_drain_moves_netbox_and_removal(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N3)
    cluster.add_instance("stopped.example", "sharedfile", up=False, pnode=N3)
    cluster.add_instance("mirror.example", "drbd", pnode=N1, snodes=[N3])
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 0
    assert N3 not in cluster.nodes_by_name
    for name in ("run.example", "stopped.example"):
        assert cluster.instance(name).primary_node in (N1, N2)
    assert N3 not in cluster.instance("mirror.example").secondary_nodes
    kinds = [call[0] for call in _writes(cluster)]
    assert kinds.index("node_role") < kinds.index("migrate") < kinds.index("node_remove")
    assert {"failover", "evacuate_node"} <= set(kinds)
    assert netbox.updates == [("device", [{"id": 7, "cluster": None}])]
    assert [undo.action for _, undo in ctx.undo.steps] == ["netbox-cluster"], "only the NetBox change is undone"
    assert {node_lock("lab", N3), instance_lock("lab", "run.example")} <= set(ctx.locks.taken)


def test_a_failed_removal_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N3)

    def refuse(node: str, **_: Any) -> Any:
        raise GntCommandError(f"gnt-node remove {node}", N1, 1, "refused")

    monkeypatch.setattr(cluster.commands, "node_remove", refuse)
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 99
    node = cluster.node(N3)
    assert not node.drained and node.role == "C" and CANDIDATE_TAG not in node.tags, "undrained, candidate again"
    assert cluster.instance("run.example").primary_node != N3, "moved instances stay where Ganeti put them"
    assert netbox.store["device"][0]["cluster"] == {"id": 11}, "the device is back in its cluster"


def test_a_node_drained_before_the_run_stays_drained_on_rollback(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = _cluster()
    cluster.nodes_by_name[N3].update(drained=True, master_candidate=False)

    def refuse(node: str, **_: Any) -> Any:
        raise GntCommandError(f"gnt-node remove {node}", N1, 1, "refused")

    monkeypatch.setattr(cluster.commands, "node_remove", refuse)
    runner, ctx, _ = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 99
    assert cluster.node(N3).drained


def test_a_verify_error_about_the_group_after_the_removal_fails_without_a_rollback(tmp_path: Path) -> None:
    cluster = _cluster()
    cast(Any, cluster.commands).verify_outputs.append((1, f"  - ERROR:ENODEVERSION:node:{N2}:version mismatch"))
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 1
    assert N3 not in cluster.nodes_by_name and netbox.store["device"][0]["cluster"] is None, "nothing undone"


def test_the_netbox_undo_leaves_the_device_out_once_the_node_left_ganeti(tmp_path: Path) -> None:
    cluster = _cluster()
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 0
    [(_, undo)] = ctx.undo.steps
    module = load_cookbook(TREE, "sre.ganeti.removenode")
    assert module.undo(ctx, undo.action, undo.args) == "absent"
    assert netbox.store["device"][0]["cluster"] is None


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.dry_run = True
    cluster.add_instance("run.example", "sharedfile", pnode=N3)
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3], dry_run=True)
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.node(N3).role == "C" and cluster.instance("run.example").primary_node == N3
    assert netbox.store["device"][0]["cluster"] == {"id": 11, "name": "A"}
    assert ("node_remove", N3) in cluster.calls, "recorded as planned: Ganeti checks it only once the node is empty"
    assert all(change.dry_run for change in ctx.changes.changes)
    empty = _cluster()
    empty.dry_run = True
    runner, ctx, _ = _runner(tmp_path, empty, [N3], dry_run=True)
    assert run_runner(runner, ctx).exit_code == 0
    assert ("node_remove", N3, {"dry_run": True}) in empty.calls, "Ganeti's own check of an empty node's removal"
    assert N3 in empty.nodes_by_name


def test_an_offline_empty_node_is_removed_without_a_drain(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.nodes_by_name[N3]["offline"] = True
    runner, ctx, _ = _runner(tmp_path, cluster, [N3])
    assert run_runner(runner, ctx).exit_code == 0
    assert [call[0] for call in _writes(cluster)] == ["node_remove"] and N3 not in cluster.nodes_by_name


def test_a_device_of_another_cluster_group_is_left_alone(tmp_path: Path) -> None:
    cluster = _cluster()
    runner, ctx, netbox = _runner(tmp_path, cluster, [N3], netbox=_netbox(cluster_id=21))
    assert run_runner(runner, ctx).exit_code == 0
    assert N3 not in cluster.nodes_by_name and netbox.updates == []


# addnode --readd ----------------------------------------------------------------------------------------------

NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcOnpCghuLm9Gll/v8g+4AyHDbDzBvLpoIMWiiSbR1w"
NODE_FP = "SHA256:7buM858RxMBOOJgQFBHi4SgR4xvr/2KcHxPOwZ0P+as"


def _healthy(host: str, line: str) -> Any:
    """A node that passes addnode's pre-checks (see tests/unit/test_cookbooks_addnode.py)."""
    answers = {
        f"ssh-keyscan -T 10 {N3}": ok(f"{N3} {NODE_KEY}\n"),
        "gnt-cluster --version": ok("gnt-cluster (ganeti 3.0.2-3) 3.0.2\n"),
        f"getent hosts {N3}": ok(f"198.51.100.13   {N3}\n"),
        "hostname -I": ok("198.51.100.13 \n"),
        "ip -br link show type bridge dev br0": ok("br0 UP 2a:4c:c0:7c:0a:85 <BROADCAST,UP>\n"),
        "vgs --noheadings -o vg_name ganeti": ok("  ganeti\n"),
    }
    return answers.get(line, ok())


def _readd(tmp_path: Path, cluster: FakeCluster, argv: list[str], *, dry_run: bool = False,
           netbox: FakeNetBox | None = None) -> tuple[Any, FakeCtx, FakeNetBox]:
    netbox = netbox or _netbox()
    load_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "hooks": {"etcd_url": "http://198.51.100.2:2379"}}))
    ctx = FakeCtx(config_module.load(path), dry_run=dry_run, clusters={"lab": cluster}, netbox=netbox,
                  remote=FakeRemote(_healthy, dry_run=dry_run), name="sre.ganeti.addnode", base_dirs=[TREE])
    cookbook = load_cookbook(TREE, "sre.ganeti.addnode").AddNode(ctx)
    args = cookbook.argument_parser().parse_args(["--cluster", "lab", "--ssh-host-key-fingerprint", NODE_FP,
                                                  *argv])
    return cookbook.get_runner(args), ctx, netbox


def _down(cluster: FakeCluster) -> None:
    """N3 as node-down leaves it: offline, tagged as a former candidate."""
    cluster.nodes_by_name[N3].update(offline=True, master_candidate=False, tags=[CANDIDATE_TAG])


def test_readd_brings_the_node_back_as_candidate_and_active(tmp_path: Path) -> None:
    cluster = _cluster()
    _down(cluster)
    netbox = _netbox()
    netbox.store["device"][0]["status"] = {"value": "failed"}
    runner, ctx, _ = _readd(tmp_path, cluster, ["--readd", N3], netbox=netbox)
    assert run_runner(runner, ctx).exit_code == 0
    assert [call for call in cluster.calls if call[0] == "node_add"] == [("node_add", N3, {"readd": True,
                                                                                          "ssh_key_check": True})]
    node = cluster.node(N3)
    assert node.role == "C" and CANDIDATE_TAG not in node.tags and node.group_uuid == "uuid-A"
    assert netbox.store["device"][0]["status"] == "active"
    assert ctx.cookbooks == [("sre.ganeti.install-hooks", ["--cluster", "lab", "--node", N3])]
    assert node_lock("lab", N3) in ctx.locks.taken


def test_readd_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster = FakeCluster(dry_run=True)
    cluster.add_node(N3, "A")
    _down(cluster)
    runner, ctx, netbox = _readd(tmp_path, cluster, ["--readd", N3], dry_run=True, netbox=_netbox())
    netbox.dry_run = netbox.changes.dry_run = True
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.node(N3).offline and CANDIDATE_TAG in cluster.node(N3).tags
    assert all(change.dry_run for change in ctx.changes.changes)


def test_readd_refuses_a_node_not_in_the_cluster_the_master_and_a_group(tmp_path: Path) -> None:
    cluster = _cluster()
    for argv, message in ((["--readd", "node9.example"], "no node node9.example in cluster lab: add it"),
                          (["--readd", N1], "the master"),
                          (["--readd", "--group", "A", N3], "--readd keeps the node's group")):
        with pytest.raises(LibclusterError, match=message):
            _readd(tmp_path, cluster, argv)
    with pytest.raises(ValueError, match=r"several node groups .*: pass --group"):
        _readd(tmp_path, cluster, [N3])
    assert _writes(cluster) == []
