"""The node API (libcluster.ganeti.nodes through GanetiCluster) on the lab cluster: drain/undrain keep a master
candidate's role, the per-instance dry-run of a node's moves says what Ganeti's node-level dry-run does not, and a
reboot through the library is waited for (new boot id, noded and SSH back); offline/online keep a candidate too,
verify-disks runs until clean, and a master failover goes there and back (the RAPI URL, the cluster IP, follows).

node4 (group B) is drained and rebooted; instances are named `cbn-<random>` and removed at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import GanetiCluster, connect
from libcluster.ganeti.nodes import CANDIDATE_TAG, MoveAction, NodeStateError, Role
from libcluster.remote import Remote
from tests.lab.node_lab import lab_as_found  # noqa: F401 - a fixture

NODE = "node4.lab.example"
PEER = "node3.lab.example"


@pytest.fixture(scope="module")
def root_config(lab: dict[str, Any]) -> Section:
    """The generated configuration of the lab (skips when its Ganeti part is not up)."""
    path = Path(lab.get("config", ""))
    if not (lab.get("ganeti") or {}).get("up") or not path.is_file():
        pytest.skip("lab Ganeti part or its generated configuration is not available")
    return config_module.load(path)


def _client(config: Section, *, dry_run: bool = False) -> GanetiCluster:
    changes = ChangeLog(dry_run=dry_run)
    return connect(config, "lab", dry_run=dry_run, changes=changes,
                   remote=Remote(config.section("remote"), dry_run=dry_run, changes=changes))


@pytest.fixture
def cluster(root_config: Section) -> GanetiCluster:
    """A read-write client of the lab cluster with SSH."""
    return _client(root_config)


@pytest.fixture
def instances(cluster: GanetiCluster) -> Iterator[Callable[[str, bool], str]]:
    """Creates instances on NODE (template, running?) and removes them at the end."""
    names: list[str] = []

    def make(template: str, start: bool = True) -> str:
        name = f"cbn-{secrets.token_hex(4)}.lab.example"
        names.append(name)
        cluster.create_instance(name, disk_template=template, disks=[] if template == "diskless" else [1024],
                                os_type="noop", memory=128, vcpus=1, pnode=NODE, name_check=False,
                                start=start).wait(timeout=300)
        return name

    yield make
    for name in names:
        if name in cluster.instance_names():
            cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def test_drain_and_undrain_keep_a_master_candidate_and_refuse_the_master(cluster: GanetiCluster) -> None:
    assert cluster.node_role(NODE) == Role.CANDIDATE.value
    with pytest.raises(NodeStateError, match="master-failover"):
        cluster.drain(cluster.master())
    try:
        change = cluster.drain(NODE)
        assert (change.old, change.new) == (Role.CANDIDATE, Role.DRAINED) and change.job_id
        node = cluster.node(NODE)
        assert Role.of(node) is Role.DRAINED and node.drained and CANDIDATE_TAG in node.tags
        assert cluster.drain(NODE).job_id is None, "already drained: nothing sent"
    finally:
        back = cluster.undrain(NODE)
    assert back.new is Role.CANDIDATE, "a candidate taken out by drain() is a candidate again"
    node = cluster.node(NODE)
    assert node.role == Role.CANDIDATE.letter and CANDIDATE_TAG not in node.tags
    again = cluster.undrain(NODE)
    assert again.job_id is None and cluster.node_role(NODE) == "master-candidate", "never demoted"


def test_node_dry_run_checks_each_instance_where_ganeti_node_dry_run_says_success(
        root_config: Section, cluster: GanetiCluster, instances: Callable[[str, bool], str]) -> None:
    local = instances("file", True)
    shared = instances("sharedfile", True)
    stopped = instances("diskless", False)
    dry = _client(root_config, dry_run=True)
    node_level = dry.migrate_node(NODE).wait(timeout=300)
    assert node_level.status == "success", "Ganeti's own node-level dry-run checks nothing per instance"
    plan = dry.plan_node_moves(NODE)
    moves = {move.instance: move for move in plan.moves}
    ours = (local, shared, stopped)  # other instances on the shared node (other tests') are not this test's
    assert not plan.ok and [move.instance for move in plan.blocked if move.instance in ours] == [local]
    assert moves[local].action is MoveAction.REFUSED and "sre.ganeti.changedisk" in str(moves[local].error)
    assert local in str(moves[local].error)
    assert moves[shared].action is MoveAction.MIGRATE and moves[shared].target == PEER and moves[shared].job_id
    assert moves[stopped].action is MoveAction.FAILOVER and moves[stopped].target == PEER
    assert {name: cluster.instance(name).primary_node for name in ours} == \
        dict.fromkeys(ours, NODE), "the checks moved nothing"
    moved = cluster.move_primary(shared).wait(timeout=300)
    assert moved.value == PEER == cluster.instance(shared).primary_node, "the node Ganeti chose, as a value"
    assert cluster.instance(shared).running, "migrated live, never stopped"


def test_reboot_through_the_library_is_waited_for(root_config: Section, cluster: GanetiCluster) -> None:
    old = cluster.boot_ids()[NODE]
    remote = Remote(root_config.section("remote"), dry_run=False, changes=ChangeLog(dry_run=False))
    remote.hosts([NODE]).run_sync("reboot", is_safe=False, timeout=30)
    new = cluster.wait_node_back(NODE, old, timeout=120)
    assert new != old and cluster.boot_ids()[NODE] == new and cluster.answers_ssh(NODE)
    assert cluster.node(NODE).role == "C"




def test_offline_and_online_keep_the_candidate_and_verify_disks_is_clean(cluster: GanetiCluster) -> None:
    try:
        assert cluster.set_offline(NODE).new is Role.OFFLINE
        node = cluster.node(NODE)
        assert node.role == "O" and node.offline and CANDIDATE_TAG in node.tags
    finally:
        back = cluster.set_online(NODE)
    assert back.new is Role.CANDIDATE and cluster.node(NODE).role == "C" and not cluster.node(NODE).tags
    result = cluster.verify_disks_until_clean(timeout=120)
    assert result.ok and not result.skipped and result.rc == 0

@pytest.mark.node_failures
def test_master_failover_there_and_back_and_the_rapi_url_follows(root_config: Section, cluster: GanetiCluster,
                                                                 lab_as_found: str) -> None:
    old = lab_as_found
    group = cluster.node(old).group_uuid
    candidate = next(node.name for node in cluster.nodes() if node.role == "C" and node.group_uuid == group)
    with pytest.raises(NodeStateError, match="already the master"):
        cluster.master_failover(old)
    dry = _client(root_config, dry_run=True)
    assert dry.master_failover(candidate) == old and cluster.master() == old, "dry-run: only recorded"
    planned = [" ".join(change["detail"]["commands"]) for change in dry.changes.as_list()]
    assert planned == ["gnt-cluster queue drain", "gnt-cluster master-failover"], planned
    assert cluster.master_failover(candidate, timeout=180) == candidate
    assert cluster.info()["master"] == candidate, "the same RAPI URL (the cluster IP) answers from the new master"
    assert cluster.node(old).role == "C"
    assert cluster.master_failover(old, timeout=180) == old
    assert cluster.master() == old
