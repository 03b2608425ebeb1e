"""Lab nodes reboot and die for real: `reboot` inside a node restarts its sshd and Ganeti daemons with a new boot id
(the one Ganeti reports), so does Ganeti's own powercycle (`reboot -n -f`), node-down kills it and sets its link down,
and `cookbook-lab up` brings it back.

node4 (group B, a master candidate the other tests do not place instances on by name) is the node used.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import nodepower, sshd, topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import GanetiCluster, connect
from libcluster.remote import Remote

NODE = topology.node("node4")


@pytest.fixture(scope="module")
def root_config(lab: dict[str, Any]) -> Section:
    """The generated configuration of the lab (skips when its Ganeti part is not up)."""
    path = Path(lab.get("config", ""))
    if not (lab.get("ganeti") or {}).get("up") or not path.is_file():
        pytest.skip("lab Ganeti part or its generated configuration is not available")
    return config_module.load(path)


@pytest.fixture
def cluster(root_config: Section) -> GanetiCluster:
    """A read-write client of the lab cluster with SSH."""
    changes = ChangeLog(dry_run=False)
    return connect(root_config, "lab", dry_run=False, changes=changes,
                   remote=Remote(root_config.section("remote"), dry_run=False, changes=changes))


LAB = [str(Path(sys.executable).parent / "cookbook-lab")]


def _ssh(node: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run command on a lab node as the runner does (the lab's ssh_config)."""
    config = sshd.ssh_config_file(ClusterPaths.of(Lab()))
    return subprocess.run(["ssh", "-F", str(config), node, command], capture_output=True, text=True, timeout=60,
                          check=False)


def test_reboot_inside_a_node_gives_it_a_new_boot_id_and_restarts_its_daemons(cluster: GanetiCluster) -> None:
    before = cluster.boot_ids()
    assert len(set(before.values())) == len(before), f"every node has its own boot id: {before}"
    started = time.monotonic()
    answer = _ssh(NODE.fqdn, "reboot")
    assert "rebooting" in answer.stderr
    time.sleep(1)
    assert not sshd.port_open(NODE.ip, sshd.SSH_PORT), "sshd is down while the node reboots"
    new = cluster.wait_node_back(NODE.fqdn, before[NODE.fqdn], timeout=120)
    took = time.monotonic() - started
    assert new != before[NODE.fqdn]
    after = cluster.boot_ids()
    assert after[NODE.fqdn] == new
    assert {name: value for name, value in after.items() if name != NODE.fqdn} == \
        {name: value for name, value in before.items() if name != NODE.fqdn}, "only the rebooted node changed"
    assert nodepower.DOWNTIME <= took < 60
    assert _ssh(NODE.fqdn, "cat /proc/sys/kernel/random/boot_id").stdout.strip() == new


def test_node_down_then_up_repairs_it_with_a_new_boot_id(cluster: GanetiCluster) -> None:
    before = cluster.boot_ids()[NODE.fqdn]
    down = subprocess.run([*LAB, "node-down", NODE.short], capture_output=True,
                          text=True, timeout=60, check=False)
    try:
        assert down.returncode == 0, down.stderr
        assert not nodepower.link_up(NODE)
        assert not sshd.port_open(NODE.ip, sshd.SSH_PORT) and not sshd.port_open(NODE.ip, 1811)
        assert cluster.boot_ids()[NODE.fqdn] is None, "noded does not answer Ganeti"
    finally:
        up = subprocess.run([*LAB, "up"], capture_output=True, text=True,
                            timeout=600, check=False)
    assert up.returncode == 0, up.stderr[-2000:]
    assert nodepower.link_up(NODE)
    new = cluster.wait_node_back(NODE.fqdn, before, timeout=60)
    assert new != before


def test_a_node_marked_to_stay_down_does_not_come_back_until_node_up(cluster: GanetiCluster) -> None:
    before = cluster.boot_ids()[NODE.fqdn]
    run = LAB
    try:
        assert subprocess.run([*run, "node-down", "--at-reboot", NODE.short], timeout=60, check=False).returncode == 0
        assert sshd.port_open(NODE.ip, sshd.SSH_PORT), "--at-reboot kills nothing now"
        assert subprocess.run([*run, "node-reboot", NODE.short], timeout=60, check=False).returncode == 0
        time.sleep(nodepower.DOWNTIME + nodepower.STOP_GRACE + 3)
        assert not sshd.port_open(NODE.ip, sshd.SSH_PORT)
        assert cluster.boot_ids()[NODE.fqdn] is None
    finally:
        assert subprocess.run([*run, "node-up", NODE.short], timeout=120, check=False).returncode == 0
    assert cluster.wait_node_back(NODE.fqdn, before, timeout=60) != before


def test_ganeti_powercycle_reboots_only_the_lab_node(cluster: GanetiCluster) -> None:
    before = cluster.boot_ids()
    answer = _ssh(cluster.master(), f"gnt-node powercycle --yes --force {NODE.fqdn}")
    assert answer.returncode == 0 and "Reboot scheduled" in answer.stdout + answer.stderr, answer.stderr
    new = cluster.wait_node_back(NODE.fqdn, before[NODE.fqdn], timeout=120)
    assert new != before[NODE.fqdn]
    assert {name: value for name, value in cluster.boot_ids().items() if name != NODE.fqdn} == \
        {name: value for name, value in before.items() if name != NODE.fqdn}


def _has_master_ip(node: topology.Node) -> bool:
    shown = subprocess.run(["ip", "-n", node.netns, "-o", "-4", "address", "show", "dev", topology.NODE_BRIDGE],
                           capture_output=True, text=True, timeout=30, check=True)
    return f" {topology.MASTER_IP}/" in shown.stdout


def test_a_node_killed_holding_the_master_ip_comes_back_without_it(cluster: GanetiCluster) -> None:
    master = cluster.master()
    try:
        assert subprocess.run([*LAB, "node-down", NODE.short], timeout=60, check=False).returncode == 0
        # as a master killed mid-failover keeps it (its link is down: the cluster IP still answers from the master)
        subprocess.run(["ip", "-n", NODE.netns, "address", "add", f"{topology.MASTER_IP}/32", "dev",
                        topology.NODE_BRIDGE], timeout=30, check=True)
        assert subprocess.run([*LAB, "node-up", NODE.short], timeout=120, check=False).returncode == 0
        assert not _has_master_ip(NODE), "a machine boots without the master IP"
        assert cluster.wait_node_back(NODE.fqdn, None, timeout=60) and cluster.master() == master
    finally:
        if _has_master_ip(NODE):
            subprocess.run(["ip", "-n", NODE.netns, "address", "del", f"{topology.MASTER_IP}/32", "dev",
                            topology.NODE_BRIDGE], timeout=30, check=False)
        subprocess.run([*LAB, "up"], capture_output=True, timeout=600, check=False)
