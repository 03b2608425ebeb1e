"""addnode on the lab with the spare node5: dry-run and bad input change nothing; a real add lands in Ganeti's
group B and NetBox's cluster B; a pre-check failure (master's key missing after `gnt-node remove`) names the fix.

The spare is always put back as the lab prepares it: out of the cluster, no Ganeti daemon, the members'
root keys authorized again (libcluster.lab.cluster.authorize_spares), its NetBox device in no cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.cookbook_lab import (  # noqa: F401 - cluster is a fixture
    cluster,
    jobs_since,
    last_job_id,
    netbox,
    netbox_changes,
    planned_only,
    remote,
    run_cookbook,
)
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.lab import netns, topology
from libcluster.lab import cluster as lab_cluster
from libcluster.lab.clusterfs import ClusterPaths
from libcluster.lab.common import Lab

ADDNODE = "sre.ganeti.addnode"
SPARE = topology.spare_nodes()[0]


def _is_member(cluster: GanetiCluster) -> bool:
    try:
        cluster.node(SPARE.fqdn)
    except RapiNotFoundError:
        return False
    return True


def _ganeti_daemons() -> list[str]:
    return sorted(name for name in netns.process_names(netns.netns_pids(SPARE.netns)).values()
                  if name.startswith("ganeti-"))


def _device(lab_config: Path) -> dict:
    return netbox(lab_config).get("device", name=SPARE.fqdn)


def _restore_spare(cluster: GanetiCluster, lab_config: Path) -> None:
    """Put the spare back as `cookbook-lab up` leaves it."""
    if _is_member(cluster):
        cluster.commands.run(["gnt-node", "remove", SPARE.fqdn], is_safe=False)
    if _ganeti_daemons():
        remote(lab_config).hosts([SPARE.fqdn]).run_sync(["/usr/lib/ganeti/daemon-util", "stop-all"])
    paths = ClusterPaths.of(Lab())
    lab_cluster.authorize_spares(paths, [node["name"] for node in cluster.nodes()])
    # Each add gives the node a new root key that it also authorizes for itself; `gnt-node remove` leaves it.
    authorized = paths.node_path(SPARE, "/root/.ssh/authorized_keys")
    lines = authorized.read_text().splitlines()
    kept = [line for line in lines if not line.endswith(f" root@{SPARE.fqdn}")]
    if kept != lines:
        authorized.write_text("".join(f"{line}\n" for line in kept))
    device = _device(lab_config)
    if device["cluster"] is not None:
        netbox(lab_config).update("device", [{"id": device["id"], "cluster": None}])


@pytest.fixture
def spare(cluster: GanetiCluster, lab_config: Path) -> Iterator[str]:
    """The spare node's FQDN (skips if it is not spare now); restored as the lab prepares it afterwards."""
    if _is_member(cluster):
        pytest.skip(f"{SPARE.fqdn} is in the cluster: not a spare now")
    try:
        yield SPARE.fqdn
    finally:
        _restore_spare(cluster, lab_config)
        assert not _is_member(cluster) and _ganeti_daemons() == [] and _device(lab_config)["cluster"] is None
        probe = cluster.commands.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                                      "UserKnownHostsFile=/dev/null", SPARE.fqdn, "true"], is_safe=True)
        assert probe.rc == 0, "the master must reach the spare again"


def test_dry_run_and_bad_input_change_nothing(cluster: GanetiCluster, spare: str, lab_config: Path) -> None:
    device_id = _device(lab_config)["id"]
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "dcim.device", device_id)
    dry = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", spare, dry_run=True)
    assert dry.returncode == 0
    assert f"Would remote command {cluster.master()} (commands=['gnt-node add -g B --no-ssh-key-check {spare}'])" \
        in dry.stderr
    assert "Would netbox device-update" in dry.stderr and "Pre-check virtualization: OK" in dry.stderr
    for argv, message in [
        (["--cluster", "lab", "--group", "C", spare], "unknown node group 'C' (configured: A, B)"),
        (["--cluster", "nope", "--group", "B", spare], "unknown Ganeti cluster 'nope'"),
        (["--cluster", "lab", "--group", "A", "node3.lab.example"],
         "node3.lab.example is already a node of cluster lab (group B): nothing to do"),
    ]:
        done = run_cookbook(lab_config, ADDNODE, *argv)
        assert done.returncode == 94 and message in done.stderr, argv
    assert not _is_member(cluster) and _device(lab_config)["cluster"] is None
    assert jobs_since(cluster, marker, spare) == []
    assert netbox_changes(lab_config, "dcim.device", device_id) == changes
    assert planned_only(dry) and [c["action"] for c in dry.audit["changes"]] == ["command", "device-update"]


def test_a_missing_volume_group_stops_the_add_with_the_fix(cluster: GanetiCluster, spare: str, lab_config: Path,
                                                          tmp_path: Path) -> None:
    config = yaml.safe_load(lab_config.read_text())
    config["ganeti"]["clusters"]["lab"]["volume_group"] = "xenvg"  # the lab's nodes have no LVM
    with_vg = tmp_path / "config.yaml"
    with_vg.write_text(yaml.safe_dump(config))
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "dcim.device", _device(lab_config)["id"])
    done = run_cookbook(with_vg, ADDNODE, "--cluster", "lab", "--group", "B", spare)
    assert done.returncode == 1
    assert "Pre-check failed: volume group xenvg:" in done.stderr and 'Volume group "xenvg" not found' in done.stderr
    assert f"create the LVM volume group xenvg on {spare}" in done.stderr
    assert not _is_member(cluster) and jobs_since(cluster, marker, spare) == []
    assert netbox_changes(lab_config, "dcim.device", _device(lab_config)["id"]) == changes


def test_add_to_group_b_then_a_failed_precheck_names_the_fix(cluster: GanetiCluster, spare: str,
                                                            lab_config: Path) -> None:
    marker = last_job_id(cluster)
    done = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", spare)
    assert done.returncode == 0
    assert cluster.node(spare)["group.uuid"] == cluster.group("B")["uuid"]
    netbox_b = netbox(lab_config).get("cluster", name="B")
    assert _device(lab_config)["cluster"]["id"] == netbox_b["id"]
    assert [(job["summary"], job["status"]) for job in jobs_since(cluster, marker, spare)] == [
        ([f"NODE_ADD({spare})"], "success")]

    # `gnt-node remove` deletes the master's key on the removed node: adding it again must stop at the
    # first pre-check with the fix, before any change.
    cluster.commands.run(["gnt-node", "remove", spare], is_safe=False)
    netbox(lab_config).update("device", [{"id": _device(lab_config)["id"], "cluster": None}])
    again = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", spare)
    assert again.returncode == 1
    assert f"Pre-check failed: SSH from the master: {cluster.master()} cannot log in to {spare}" in again.stderr
    assert f"/root/.ssh/id_rsa.pub to /root/.ssh/authorized_keys on {spare}" in again.stderr
    assert not _is_member(cluster) and _device(lab_config)["cluster"] is None
