"""stop-vm and start-vm on the lab: Ganeti's admin state and the NetBox VM status agree after each; each dry-run
leaves no Ganeti job other than Ganeti's own checks and no NetBox change; an unknown instance or an instance already
in the asked state is refused with a clear error and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
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
from tests.lab.test_cookbook_reboot_vm import _with_pool_commands, guest  # noqa: F401 - guest is a fixture

VM_TYPE = "virtualization.virtualmachine"


@pytest.fixture
def in_netbox(lab_config: Path) -> Iterator[Callable[[str], int]]:
    """Records a VM in NetBox cluster A of the lab (as makevm would) and deletes it at the end; gives its id."""
    client = netbox(lab_config)
    created: list[dict] = []

    def add(name: str) -> int:
        cluster_id = client.get("cluster", name="A")["id"]
        created.extend(client.create("vm", [{"name": name, "cluster": cluster_id, "status": "active"}]))
        return int(created[-1]["id"])

    yield add
    if created:
        client.delete("vm", created)


def _netbox_status(lab_config: Path, vm_id: int) -> str:
    return str(netbox(lab_config).get("vm", id=vm_id)["status"]["value"])


def test_stop_then_start_ganeti_and_netbox_agree(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                 in_netbox: Callable[[str], int], lab_config: Path) -> None:
    name = new_instance("sharedfile")
    vm_id = in_netbox(name)
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, VM_TYPE, vm_id)
    dry = run_cookbook(lab_config, "sre.ganeti.stop-vm", "--cluster", "lab", name, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry)
    assert real_jobs_since(cluster, marker, name) == []
    assert netbox_changes(lab_config, VM_TYPE, vm_id) == changes and cluster.instance(name).running
    stop = run_cookbook(lab_config, "sre.ganeti.stop-vm", "--cluster", "lab", "-t", "T14001", "--shutdown-timeout",
                        "5", name)
    assert stop.returncode == 0
    assert cluster.instance(name).admin_state == "down" and _netbox_status(lab_config, vm_id) == "offline"
    assert [job["summary"] for job in real_jobs_since(cluster, marker, name)] == [[f"INSTANCE_SHUTDOWN({name})"]]

    marker, changes = last_job_id(cluster), netbox_changes(lab_config, VM_TYPE, vm_id)
    dry = run_cookbook(lab_config, "sre.ganeti.start-vm", "--cluster", "lab", name, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry) and real_jobs_since(cluster, marker, name) == []
    assert netbox_changes(lab_config, VM_TYPE, vm_id) == changes and cluster.instance(name).admin_state == "down"
    start = run_cookbook(lab_config, "sre.ganeti.start-vm", "--cluster", "lab", "-t", "T14001", name)
    assert start.returncode == 0
    assert cluster.instance(name).running and _netbox_status(lab_config, vm_id) == "active"


def test_bad_input_is_refused_and_changes_nothing(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                  lab_config: Path) -> None:
    name = new_instance("diskless")
    marker = last_job_id(cluster)
    unknown = run_cookbook(lab_config, "sre.ganeti.stop-vm", "--cluster", "lab", "nosuch-vm.lab.example")
    assert unknown.returncode == 94 and "no instance nosuch-vm.lab.example in cluster lab" in unknown.stderr
    running = run_cookbook(lab_config, "sre.ganeti.start-vm", "--cluster", "lab", name)
    assert running.returncode == 94 and f"{name} is administratively up in Ganeti, not down" in running.stderr
    assert real_jobs_since(cluster, marker, name) == [] and cluster.instance(name).running


def test_depool_and_pool_only_when_asked(cluster: GanetiCluster, guest: tuple[str, str, Path],  # noqa: F811
                                         lab_config: Path, tmp_path: Path) -> None:
    name, log, on_guest = guest
    config = _with_pool_commands(lab_config, tmp_path, f"echo depooled >> {log}", f"echo pooled >> {log}")
    dry = run_cookbook(config, "sre.ganeti.stop-vm", "--cluster", "lab", "--depool", name, dry_run=True)
    assert dry.returncode == 0 and f"1. depool: echo depooled >> {log}" in dry.stdout and not on_guest.exists()
    assert run_cookbook(config, "sre.ganeti.stop-vm", "--cluster", "lab", "--depool", name).returncode == 0
    assert on_guest.read_text() == "depooled\n" and cluster.instance(name).admin_state == "down"
    assert run_cookbook(config, "sre.ganeti.start-vm", "--cluster", "lab", name).returncode == 0
    assert on_guest.read_text() == "depooled\n", "start-vm without --pool runs no pool command"
    assert run_cookbook(config, "sre.ganeti.stop-vm", "--cluster", "lab", name).returncode == 0
    assert run_cookbook(config, "sre.ganeti.start-vm", "--cluster", "lab", "--pool", name).returncode == 0
    assert on_guest.read_text() == "depooled\npooled\n" and cluster.instance(name).running
