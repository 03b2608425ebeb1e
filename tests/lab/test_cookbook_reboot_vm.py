"""reboot-vm on the lab: cluster found through NetBox (VM -> cluster -> cluster group) or the RAPI, the reboot
job carries the reason, the instance runs afterwards; dry-run and unknown VMs change nothing. Depool and pool
commands run on a `guest-*` instance (with --depool only), which the lab's SSH config sends to the spare node's sshd
(its stand-in OS); a failed depool, or an interrupt once the VM is depooled, pools it again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.cookbook_interrupt import run_interrupted
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    netbox,
    netbox_changes,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
)
from libcluster.ganeti import GanetiCluster
from cookbook_lab import topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab

REBOOT = "sre.ganeti.reboot-vm"


@pytest.fixture
def in_netbox(lab_config: Path) -> Iterator[Callable[[str, str], int]]:
    """Records VMs in a NetBox cluster of the lab (as makevm would) and deletes them at the end; gives the VM id."""
    client = netbox(lab_config)
    created: list[dict] = []

    def add(name: str, group: str) -> int:
        cluster_id = client.get("cluster", name=group)["id"]
        created.extend(client.create("vm", [{"name": name, "cluster": cluster_id, "status": "active"}]))
        return int(created[-1]["id"])

    yield add
    if created:
        client.delete("vm", created)


def test_reboot_through_netbox_with_the_reason_in_the_job(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                          in_netbox: Callable[[str, str], int],
                                                          lab_config: Path) -> None:
    name = new_instance("file")
    vm_id = in_netbox(name, "A")
    reason = f"lab test {secrets.token_hex(3)}"
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "virtualization.virtualmachine", vm_id)
    dry = run_cookbook(lab_config, REBOOT, "-r", reason, name, dry_run=True)
    assert dry.returncode == 0 and f"{name} is in cluster lab (found by NetBox)" in dry.stderr
    assert "1. hard reboot through Ganeti" in dry.stdout and "Would ganeti instance-reboot" in dry.stderr
    assert real_jobs_since(cluster, marker, name) == [] and planned_only(dry)
    assert netbox_changes(lab_config, "virtualization.virtualmachine", vm_id) == changes
    done = run_cookbook(lab_config, REBOOT, "--type", "full", "--shutdown-timeout", "5", "-r", reason, name)
    assert done.returncode == 0
    assert f"{name} is in cluster lab (found by NetBox)" in done.stderr
    assert f"START - Cookbook {REBOOT} for {name} on cluster lab (full reboot): {reason}" in done.stderr
    (job,) = real_jobs_since(cluster, marker, name)
    assert job["summary"] == [f"INSTANCE_REBOOT({name})"] and job["status"] == "success"
    assert job["ops"][0]["reboot_type"] == "full"
    assert ["gnt:user", reason] in [entry[:2] for entry in job["ops"][0]["reason"]]
    assert cluster.instance(name)["status"] == "running"


def test_reboot_found_through_the_rapi(cluster: GanetiCluster, new_instance: Callable[..., str],
                                      lab_config: Path) -> None:
    name = new_instance("diskless")
    marker = last_job_id(cluster)
    done = run_cookbook(lab_config, REBOOT, "--type", "soft", name)
    assert done.returncode == 0
    assert f"{name} is in cluster lab (found by the clusters' RAPI)" in done.stderr
    assert [job["status"] for job in real_jobs_since(cluster, marker, name)] == ["success"]
    assert cluster.instance(name)["status"] == "running"


def test_unknown_vm_is_a_clear_error(lab_config: Path, cluster: GanetiCluster) -> None:
    done = run_cookbook(lab_config, REBOOT, "nope.lab.example")
    assert done.returncode == 94
    assert "nope.lab.example is not a VM of any configured Ganeti cluster (lab), per NetBox and RAPI" in done.stderr
    bad = run_cookbook(lab_config, REBOOT, "vm;reboot.lab.example")
    assert bad.returncode == 96 and "invalid hostname 'vm;reboot.lab.example'" in bad.stderr


def _with_pool_commands(lab_config: Path, tmp_path: Path, depool: str, pool: str) -> Path:
    """A copy of the lab config whose cluster has these depool and pool commands."""
    config = yaml.safe_load(lab_config.read_text())
    config["ganeti"]["clusters"]["lab"].update(depool_command=depool, pool_command=pool)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def guest(new_instance: Callable[..., str]) -> Iterator[tuple[str, str, Path]]:
    """A `guest-*` VM and its pool log: (VM name, log path on the guest, that file as seen from here, on the spare
    node that stands in for the guest); the file is removed at the end."""
    name = new_instance("diskless", prefix="guest")
    log = f"/root/pool-{name}.log"
    on_guest = ClusterPaths.of(Lab()).node_path(topology.spare_nodes()[0], log)
    yield name, log, on_guest
    on_guest.unlink(missing_ok=True)


def test_depool_and_pool_run_on_the_vm_around_the_reboot(cluster: GanetiCluster, guest: tuple[str, str, Path],
                                                         lab_config: Path, tmp_path: Path) -> None:
    name, log, on_guest = guest
    config = _with_pool_commands(lab_config, tmp_path, f"echo depooled $(hostname) >> {log}",
                                 f"echo pooled $(hostname) >> {log}")
    marker = last_job_id(cluster)
    dry = run_cookbook(config, REBOOT, "--depool", name, dry_run=True)
    assert dry.returncode == 0 and f"depool: echo depooled $(hostname) >> {log}" in dry.stdout
    assert not on_guest.exists() and real_jobs_since(cluster, marker, name) == []
    done = run_cookbook(config, REBOOT, "--depool", "-r", "pool test", name)
    assert done.returncode == 0
    # ran on the stand-in, in this order
    assert on_guest.read_text() == "depooled node5.lab.example\npooled node5.lab.example\n"
    assert [job["status"] for job in real_jobs_since(cluster, marker, name)] == ["success"]
    marker = last_job_id(cluster)
    failing = _with_pool_commands(lab_config, tmp_path, "echo cannot depool >&2; exit 3", f"echo pooled >> {log}")
    refused = run_cookbook(failing, REBOOT, "--depool", name)
    assert refused.returncode == 99 and "cannot depool" in refused.stderr
    assert real_jobs_since(cluster, marker, name) == []  # no reboot without a depool
    # the depool may have done part of its work and the VM was not rebooted: the rollback pools it again
    assert on_guest.read_text() == "depooled node5.lab.example\npooled node5.lab.example\npooled\n"


def test_without_depool_no_command_runs_on_the_vm(cluster: GanetiCluster, guest: tuple[str, str, Path],
                                                   lab_config: Path, tmp_path: Path) -> None:
    name, log, on_guest = guest
    config = _with_pool_commands(lab_config, tmp_path, f"echo depooled >> {log}", f"echo pooled >> {log}")
    marker = last_job_id(cluster)
    dry = run_cookbook(config, REBOOT, name, dry_run=True)
    assert dry.returncode == 0 and "depool:" not in dry.stdout and "pool:" not in dry.stdout
    done = run_cookbook(config, REBOOT, "-t", "T14003", name)
    assert done.returncode == 0 and "Running depool" not in done.stderr
    assert not on_guest.exists(), "configured depool/pool commands run only with --depool"
    assert [job["status"] for job in real_jobs_since(cluster, marker, name)] == ["success"]
    assert cluster.instance(name)["status"] == "running"


def test_interrupt_after_the_depool_pools_the_vm_again(cluster: GanetiCluster, guest: tuple[str, str, Path],
                                                       lab_config: Path, tmp_path: Path) -> None:
    name, log, on_guest = guest
    # the depool takes effect at once, then the command lingers (draining connections): SIGINT lands after it
    config = _with_pool_commands(lab_config, tmp_path, f"echo depooled >> {log}; sleep 10",
                                 f"echo pooled >> {log}")
    marker = last_job_id(cluster)
    done = run_interrupted(config, REBOOT, "--depool", name,
                           reached=lambda err: on_guest.exists() and "depooled" in on_guest.read_text())
    assert done.returncode == 97  # interrupted, rollback ran
    assert on_guest.read_text() == "depooled\npooled\n"
    assert f"Rollback: {name} runs, pooling it again" in done.stderr
    assert real_jobs_since(cluster, marker, name) == []  # interrupted before the reboot
    assert cluster.instance(name)["status"] == "running"
