"""One VM's whole life on the lab, through the runner: makevm (sharedfile, so it can migrate) -> resize-vm (memory
2 GB: Ganeti and NetBox agree) -> disk add 1 GB (Ganeti and NetBox agree) -> migrate-vm to the other node of group A
-> stop-vm / start-vm -> reinstall-vm -> a resize whose reboot fails (its disk file moved away) puts the old size
back in Ganeti and NetBox -> decommission-vm: afterwards nothing of it is left in Ganeti, NetBox (VM,
interfaces, addresses) or DNS (A, AAAA, PTR). Before each step its dry-run changes nothing (Ganeti: no job but
Ganeti's own checks, the instance as it was; NetBox: the VM, interfaces, addresses and their change log; DNS: the
records); bad input (a disk smaller than now, an unknown disk index, memory the group cannot hold, the wrong FQDN
typed at a confirmation) is refused with a clear error and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import Run, ganeti, last_job_id, netbox, planned_only, real_jobs_since, run_cookbook
from tests.lab.vm_life_lab import VMState, make_vm, own_config, vm_names  # noqa: F401 - vm_names is a fixture


@pytest.fixture
def config(lab_part: Callable[[str], dict[str, Any]], lab_config: Path, tmp_path: Path) -> Path:
    """This test's configuration (skips when Ganeti, NetBox, DNS or etcd are down)."""
    for part in ("ganeti", "netbox", "dns", "etcd"):
        lab_part(part)
    return own_config(lab_config, tmp_path / "run")


class Life:
    """Runs the steps of one VM's life: each one's dry-run first (which must change nothing), then for real."""

    def __init__(self, config: Path, fqdn: str) -> None:
        """Steps of VM fqdn with configuration config."""
        self.config = config
        self.fqdn = fqdn
        self.cluster: GanetiCluster = ganeti(config)

    def unchanged(self, *args: str, exit_code: int = 0, message: str = "", dry_run: bool = False) -> Run:
        """Run a cookbook that must change nothing (a dry-run or a refusal); check it did not."""
        before, marker = VMState.read(self.config, self.fqdn), last_job_id(self.cluster)
        run = run_cookbook(self.config, *args, dry_run=dry_run)
        assert run.returncode == exit_code, run.stderr[-3000:]
        assert message in run.stderr
        if dry_run:
            assert planned_only(run)
        assert real_jobs_since(self.cluster, marker, self.fqdn) == []
        assert VMState.read(self.config, self.fqdn) == before
        return run

    def step(self, cookbook: str, *args: str) -> VMState:
        """Dry-run the step (nothing changes), then run it (exit 0); what Ganeti, NetBox and DNS hold afterwards."""
        self.unchanged(f"sre.ganeti.{cookbook}", "--cluster", "lab", *args, dry_run=True)
        run = run_cookbook(self.config, f"sre.ganeti.{cookbook}", "--cluster", "lab", "-t", "T14014", *args)
        assert run.returncode == 0, run.stderr[-3000:]
        return VMState.read(self.config, self.fqdn)

    def netbox_vm(self) -> dict[str, Any]:
        """The NetBox VM."""
        return netbox(self.config).get("vm", name=self.fqdn)


def test_one_vm_from_makevm_to_decommission(config: Path, vm_names: Callable[[str], str]) -> None:  # noqa: F811
    fqdn = make_vm(config, vm_names("life"), "--disk-template", "sharedfile")
    life = Life(config, fqdn)
    born = VMState.read(config, fqdn)
    assert born.instance is not None and born.instance["disk_template"] == "sharedfile"
    assert born.vms and born.interfaces and len(born.addresses) == 2 and born.dns["A"] and born.dns["AAAA"]

    # bad input: refused, nothing changed
    life.unchanged("sre.ganeti.resize-vm", "--cluster", "lab", "--memory", "64", fqdn, exit_code=10)
    life.unchanged("sre.ganeti.disk", "--cluster", "lab", fqdn, "grow", "0", "0.5", exit_code=10)
    life.unchanged("sre.ganeti.disk", "--cluster", "lab", fqdn, "grow", "3", "2", exit_code=10)
    life.unchanged("sre.ganeti.decommission-vm", "--cluster", "lab", "--confirm-fqdn", f"x{fqdn}", fqdn,
                   exit_code=99, message=f"--confirm-fqdn x{fqdn} is not {fqdn}: nothing done")
    life.unchanged("sre.ganeti.reinstall-vm", "--cluster", "lab", "--confirm-fqdn", f"x{fqdn}", fqdn,
                   exit_code=99, message="nothing done")

    resized = life.step("resize-vm", "--memory", "2", fqdn)
    assert resized.instance is not None and resized.instance["beparams"]["maxmem"] == 2048
    assert life.netbox_vm()["memory"] == 2048

    grown = life.step("disk", fqdn, "add", "1")
    assert grown.instance is not None and grown.instance["disk.sizes"] == [1024, 1024]
    assert life.netbox_vm()["disk"] == 2048

    group_a = sorted(life.cluster.group("A")["node_list"])
    source = grown.instance["pnode"]
    target = next(node for node in group_a if node != source)
    migrated = life.step("migrate-vm", fqdn)
    assert migrated.instance is not None and migrated.instance["pnode"] == target

    stopped = life.step("stop-vm", fqdn)
    assert stopped.instance is not None and stopped.instance["admin_state"] == "down"
    assert life.netbox_vm()["status"]["value"] == "offline"
    started = life.step("start-vm", fqdn)
    assert started.instance is not None and started.instance["admin_state"] == "up"
    assert life.netbox_vm()["status"]["value"] == "active"

    marker = last_job_id(life.cluster)
    reinstalled = life.step("reinstall-vm", "--confirm-fqdn", fqdn, fqdn)
    assert reinstalled.instance is not None and reinstalled.instance["admin_state"] == "up"
    assert any("INSTANCE_REINSTALL" in str(job["summary"]) for job in real_jobs_since(life.cluster, marker, fqdn))
    assert life.cluster.instance(fqdn).running and life.netbox_vm()["status"]["value"] == "active"

    disk = next((ClusterPaths.of(Lab()).shared_storage / fqdn).glob("*.sharedfile.disk0"))
    away = disk.with_name(f"{disk.name}.away")
    disk.rename(away)  # Ganeti's reboot cannot set the disk up: the resize's reboot fails
    try:
        failed = run_cookbook(config, "sre.ganeti.resize-vm", "--cluster", "lab", "--memory", "3", fqdn)
    finally:
        away.rename(disk)
    assert failed.returncode == 99 and "INSTANCE_REBOOT" in failed.stderr, failed.stderr[-3000:]
    kept = VMState.read(config, fqdn)
    assert kept.instance is not None and kept.instance["beparams"]["maxmem"] == 2048, "the old size is back"
    assert life.netbox_vm()["memory"] == 2048

    gone = life.step("decommission-vm", "--confirm-fqdn", fqdn, fqdn)
    assert gone.gone(), gone
