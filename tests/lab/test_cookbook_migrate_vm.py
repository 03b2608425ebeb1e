"""migrate-vm and failover-vm on the lab: a sharedfile instance is live-migrated to the other node of group A (it
keeps running, its node changes, the job reports the node); a stopped one is failed over (it stays stopped on the
other node); dry-runs name the node Ganeti's check chose and leave no real job; a file instance, an unknown --to
node and a node of group B are refused with a clear error before any job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
)

MIGRATE = "sre.ganeti.migrate-vm"
FAILOVER = "sre.ganeti.failover-vm"


def _other_node(cluster: GanetiCluster, name: str) -> str:
    primary = cluster.instance(name).primary_node
    (other,) = [node for node in cluster.group("A").nodes if node != primary]
    return other


def test_migrate_to_the_other_node_of_the_group(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                lab_config: Path) -> None:
    name = new_instance("sharedfile")
    before, other = cluster.instance(name).primary_node, _other_node(cluster, name)
    marker = last_job_id(cluster)
    dry = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", name, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry)
    assert f"Ganeti's check passed: {name} would be migrated to {other}" in dry.stdout
    assert real_jobs_since(cluster, marker, name) == [] and cluster.instance(name).primary_node == before
    done = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", "-t", "T14002", "--to", other, name)
    assert done.returncode == 0 and f"{name} runs on {other} (was on {before})" in done.stdout
    state = cluster.instance(name)
    assert state.primary_node == other and state.running
    assert [job["summary"] for job in real_jobs_since(cluster, marker, name)] == [[f"INSTANCE_MIGRATE({name})"]]


def test_failover_of_a_stopped_instance(cluster: GanetiCluster, new_instance: Callable[..., str],
                                        lab_config: Path) -> None:
    name = new_instance("sharedfile")
    cluster.shutdown_instance(name, timeout=0).wait()
    before, other = cluster.instance(name).primary_node, _other_node(cluster, name)
    marker = last_job_id(cluster)
    refused = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", name)
    assert refused.returncode == 94 and "fail it over with sre.ganeti.failover-vm" in refused.stderr
    dry = run_cookbook(lab_config, FAILOVER, "--cluster", "lab", name, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry) and f"would be failed over to {other}" in dry.stdout
    assert real_jobs_since(cluster, marker, name) == []
    done = run_cookbook(lab_config, FAILOVER, "--cluster", "lab", name)
    assert done.returncode == 0 and f"{name} is ADMIN_down on {other} (was on {before})" in done.stdout
    state = cluster.instance(name)
    assert state.primary_node == other and state.admin_state == "down"


def test_bad_targets_and_templates_are_refused(cluster: GanetiCluster, new_instance: Callable[..., str],
                                               lab_config: Path) -> None:
    shared, local = new_instance("sharedfile"), new_instance("file")
    group_b = sorted(cluster.group("B").nodes)[0]
    marker = last_job_id(cluster)
    file_run = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", local)
    assert file_run.returncode == 94
    assert "disk template file cannot be migrated or failed over" in file_run.stderr
    assert "sre.ganeti.changedisk" in file_run.stderr
    unknown = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", "--to", "node9.lab.example", shared)
    assert unknown.returncode == 94 and "no node node9.lab.example in cluster lab" in unknown.stderr
    other_group = run_cookbook(lab_config, FAILOVER, "--cluster", "lab", "--to", group_b, shared)
    assert other_group.returncode == 94 and f"node {group_b} is not in the node group" in other_group.stderr
    no_vm = run_cookbook(lab_config, MIGRATE, "--cluster", "lab", "nosuch-vm.lab.example")
    assert no_vm.returncode == 94 and "no instance nosuch-vm.lab.example in cluster lab" in no_vm.stderr
    assert real_jobs_since(cluster, marker, shared) == [] and real_jobs_since(cluster, marker, local) == []
