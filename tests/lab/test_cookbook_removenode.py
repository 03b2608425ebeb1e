"""removenode and addnode --readd on the lab, through the runner, on group B's node4 (node3 takes its instance).

- bad input: removenode of an unknown node, of a node of another cluster, of the spare (not in the cluster) and of
  the master, addnode --readd of the spare and of the master: exit 94 with the reason, nothing changed (roles,
  membership, NetBox devices, no job about the nodes);
- removenode of node4 holding a running sharedfile instance: the dry-run changes nothing; the real run migrates the
  instance live to node3 (running there), node4 is gone from `gnt-node list` and its NetBox device from cluster B;
  a plain addnode (`gnt-node remove` cleaned the node up: it is added, not readded) brings it back into group B;
- node-down of killed node4 (offline, NetBox device failed), the lab's node-up, then addnode --readd: node4 online
  and a master candidate again (the tag node-down left is gone), its NetBox device active in cluster B.

Each test leaves node4 as the lab has it, also on failure (fixture node4_back): in the cluster, online, undrained,
in group B, a master candidate, its daemons running, its NetBox device active in cluster B, no host key line the
test pinned; the test's instance removed.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import sshd, topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.ganeti.nodes import CANDIDATE_TAG
from libcluster.hostkeys import GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS, parse_public_keys
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster is a fixture
    cluster,
    last_job_id,
    netbox,
    planned_only,
    real_jobs_since,
    remote,
    run_cookbook,
)

REMOVE, ADD, NODE_DOWN = "sre.ganeti.removenode", "sre.ganeti.addnode", "sre.ganeti.node-down"
NODE3, NODE4 = "node3.lab.example", "node4.lab.example"
SPARE = topology.spare_nodes()[0].fqdn
LAB = str(Path(sys.executable).parent / "cookbook-lab")
PATHS = ClusterPaths.of(Lab())


def _fingerprint() -> list[str]:
    """--ssh-host-key-fingerprint with node4's ed25519 host key, read from its /etc/ssh as on its console."""
    [key] = parse_public_keys(PATHS.node_path(topology.node("node4"), "/etc/ssh/ssh_host_ed25519_key.pub")
                              .read_text())
    return ["--ssh-host-key-fingerprint", key.fingerprint]


def _is_member(cluster: GanetiCluster, node: str) -> bool:
    try:
        cluster.node(node)
    except RapiNotFoundError:
        return False
    return True


def _listed(cluster: GanetiCluster) -> list[str]:
    """The node names `gnt-node list` prints on the master."""
    return cluster.commands.run(["gnt-node", "list", "--no-headers", "-o", "name"], is_safe=True).output.split()


def _pinned() -> dict[Path, list[str]]:
    """The known_hosts lines about node4 on every node (a test's additions are removed at the end)."""
    files = [PATHS.node_path(node, path) for node in topology.NODES for path in (GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS)]
    return {file: [line for line in file.read_text().splitlines() if line.startswith(f"{NODE4} ")]
            for file in files if file.exists()}


def _unpin(before: dict[Path, list[str]]) -> None:
    for file, lines in _pinned().items():
        added = [line for line in lines if line not in before.get(file, [])]
        if added:
            file.write_text("".join(f"{line}\n" for line in file.read_text().splitlines() if line not in added))


def _lab(*argv: str) -> None:
    subprocess.run([LAB, *argv], check=True, capture_output=True, timeout=900)


def _restore(cluster: GanetiCluster, lab_config: Path, device: dict[str, Any], pinned: dict[Path, list[str]]) -> None:
    """node4 back as the lab has it (see the module docstring), whatever the test left."""
    if not _is_member(cluster, NODE4):
        _lab("node-up", "node4")
        _lab("up")  # re-adds a missing member to its group (the master's keys authorized first) and starts its daemons
    node = cluster.node(NODE4)
    if node.offline or cluster.boot_ids().get(NODE4) is None:
        _lab("node-up", "node4")
    if cluster.node(NODE4).offline:
        cluster.set_online(NODE4)
    if cluster.node(NODE4).drained:
        cluster.undrain(NODE4)
    if not cluster.node(NODE4).master_candidate:
        cluster.set_node_role(NODE4, "master-candidate").wait()
    if CANDIDATE_TAG in cluster.node(NODE4).tags:
        cluster.remove_tags("node", NODE4, [CANDIDATE_TAG]).wait()
    remote(lab_config).hosts([NODE4]).run_sync("/usr/lib/ganeti/daemon-util start-all", is_safe=False,
                                               ok_codes=[])
    cluster.wait_node_back(NODE4, None, timeout=120)
    netbox(lab_config).update("device", [{"id": device["id"], "cluster": device["cluster"]["id"],
                                          "status": device["status"]["value"]}])
    _unpin(pinned)


@pytest.fixture
def node4_back(cluster: GanetiCluster, lab_config: Path) -> Iterator[dict[str, Any]]:
    """node4's NetBox device as the test starts; node4 restored at the end, even on failure."""
    device = netbox(lab_config).get("device", name=NODE4)
    assert _is_member(cluster, NODE4) and device["cluster"] is not None, "node4 must start in the cluster"
    pinned = _pinned()
    try:
        yield device
    finally:
        _restore(cluster, lab_config, device, pinned)
        node = cluster.node(NODE4)
        group = {g.uuid: g.name for g in cluster.groups()}[node.group_uuid]
        assert (group, node.role, cluster.master()) == ("B", "C", "node1.lab.example")


@pytest.fixture
def instance_on_node4(cluster: GanetiCluster) -> Iterator[str]:
    """A running sharedfile instance on node4, removed at the end."""
    name = f"rn-{secrets.token_hex(4)}.lab.example"
    cluster.create_instance(name, disk_template="sharedfile", disks=[1024], os_type="noop", memory=128, vcpus=1,
                            pnode=NODE4, name_check=False, start=True).wait(timeout=300)
    try:
        yield name
    finally:
        if name in cluster.instance_names():
            cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def _state(cluster: GanetiCluster, lab_config: Path) -> tuple[object, ...]:
    """What bad input must not change: the nodes (role, group, tags) and the NetBox devices' cluster and status."""
    devices = netbox(lab_config).objects("device", name=[node.fqdn for node in topology.NODES])
    return (sorted((n.name, n.role, n.group_uuid, tuple(n.tags)) for n in cluster.nodes()),
            sorted((d["name"], (d["cluster"] or {}).get("id"), d["status"]["value"]) for d in devices))


def test_bad_input_is_refused_and_changes_nothing(cluster: GanetiCluster, lab_config: Path) -> None:
    master = cluster.master()
    before, marker = _state(cluster, lab_config), last_job_id(cluster)
    cases = [
        ((REMOVE, "--cluster", "lab", "-t", "T13001", "node9.lab.example"), "no node node9.lab.example in cluster lab"),
        ((REMOVE, "--cluster", "lab", "-t", "T13001", "node4.other.example"),
         "no node node4.other.example in cluster lab"),
        ((REMOVE, "--cluster", "lab", "-t", "T13001", SPARE), f"no node {SPARE} in cluster lab"),
        ((REMOVE, "--cluster", "lab", "-t", "T13001", master), "sre.ganeti.master-failover"),
        ((ADD, "--cluster", "lab", "--readd", *_fingerprint(), SPARE), "add it with --group GROUP"),
        ((ADD, "--cluster", "lab", "--readd", *_fingerprint(), master), "Ganeti cannot readd the master"),
        ((ADD, "--cluster", "lab", "--readd", "--group", "B", *_fingerprint(), NODE4), "no --group"),
    ]
    for argv, message in cases:
        run = run_cookbook(lab_config, *argv)
        assert run.returncode == 94 and message in run.stderr, (argv, run.stderr)
    assert _state(cluster, lab_config) == before
    for node in (master, NODE4, SPARE):
        assert real_jobs_since(cluster, marker, node) == []


@pytest.mark.node_failures
def test_removenode_moves_the_instance_and_addnode_brings_the_node_back(
        cluster: GanetiCluster, lab_config: Path, node4_back: dict[str, Any], instance_on_node4: str) -> None:
    vm = instance_on_node4
    before, marker = _state(cluster, lab_config), last_job_id(cluster)
    dry = run_cookbook(lab_config, REMOVE, "--cluster", "lab", "-t", "T13001", NODE4, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry), dry.stderr
    assert f"{vm}: migrate -> {NODE3}" in dry.stdout and "leaves cluster B" in dry.stdout
    assert _state(cluster, lab_config) == before and cluster.instance(vm).primary_node == NODE4
    assert real_jobs_since(cluster, marker, NODE4) == [] and real_jobs_since(cluster, marker, vm) == []

    run = run_cookbook(lab_config, REMOVE, "--cluster", "lab", "-t", "T13001", NODE4)
    assert run.returncode == 0, run.stdout + run.stderr
    assert NODE4 not in _listed(cluster) and NODE3 in _listed(cluster)
    instance = cluster.instance(vm)
    assert instance.primary_node == NODE3 and instance.running
    assert [job["summary"] for job in real_jobs_since(cluster, marker, vm)] == [[f"INSTANCE_MIGRATE({vm})"]]
    assert netbox(lab_config).get("device", name=NODE4)["cluster"] is None

    sshd.authorize(PATHS, topology.node("node4"), [  # `gnt-node remove` deleted the members' keys on node4
        PATHS.node_path(topology.node(n.split(".")[0]), "/root/.ssh/id_rsa.pub").read_text().strip()
        for n in _listed(cluster)])
    back = run_cookbook(lab_config, ADD, "--cluster", "lab", "--group", "B", *_fingerprint(), NODE4)
    assert back.returncode == 0, back.stdout + back.stderr
    node = cluster.node(NODE4)
    assert NODE4 in _listed(cluster) and {g.uuid: g.name for g in cluster.groups()}[node.group_uuid] == "B"
    assert netbox(lab_config).get("device", name=NODE4)["cluster"]["name"] == "B"


@pytest.mark.node_failures
def test_node_down_then_readd_brings_the_node_back_online(cluster: GanetiCluster, lab_config: Path,
                                                          node4_back: dict[str, Any]) -> None:
    _lab("node-down", "node4")
    down = run_cookbook(lab_config, NODE_DOWN, "--cluster", "lab", "-t", "T13001", NODE4)
    assert down.returncode == 0, down.stdout + down.stderr
    assert cluster.node(NODE4).offline and CANDIDATE_TAG in cluster.node(NODE4).tags
    assert netbox(lab_config).get("device", name=NODE4)["status"]["value"] == "failed"
    _lab("node-up", "node4")
    marker = last_job_id(cluster)
    dry = run_cookbook(lab_config, ADD, "--cluster", "lab", "--readd", *_fingerprint(), NODE4, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry), dry.stdout + dry.stderr
    assert f"Would remote command {cluster.master()} (commands=['gnt-node add --readd {NODE4}'])" in dry.stderr
    assert cluster.node(NODE4).offline and real_jobs_since(cluster, marker, NODE4) == []

    run = run_cookbook(lab_config, ADD, "--cluster", "lab", "--readd", *_fingerprint(), NODE4)
    assert run.returncode == 0, run.stdout + run.stderr
    node = cluster.node(NODE4)
    assert not node.offline and node.role == "C" and CANDIDATE_TAG not in node.tags
    assert cluster.boot_ids().get(NODE4) is not None, "its noded answers"
    device = netbox(lab_config).get("device", name=NODE4)
    assert device["status"]["value"] == "active" and device["cluster"]["name"] == "B"
