"""sre.ganeti.resize-vm on the lab, run as an operator types it: Ganeti and NetBox agree on the new size, a size
the group cannot hold is refused with nothing changed, a reboot that fails puts the old size back, a dry-run
changes nothing. Each test makes its own instance and NetBox VM and removes them."""

from __future__ import annotations

from collections.abc import Callable

from tests.lab.cookbook_lab import cluster, planned_only  # noqa: F401 - the cluster fixture
from tests.lab.vm_size_lab import SizedVM, sized_vm_fixture  # noqa: F401 - the sized_vm fixture


def test_resize_memory_to_2_gb_ganeti_and_netbox_agree(sized_vm: Callable[[], SizedVM]) -> None:
    """The dry-run changes nothing; the run sets 2048 MiB (maxmem and minmem) and 2 vCPUs in Ganeti, reboots the
    instance through Ganeti (it runs again), and NetBox's VM says the same."""
    vm = sized_vm()
    with vm.unchanged():
        dry = vm.run("resize-vm", "--memory", "2", "--vcpus", "2", vm.name, dry_run=True)
        assert dry.returncode == 0 and planned_only(dry)
        assert "memory 128.0 MiB -> 2.0 GiB" in dry.stdout and "vCPUs 1 -> 2" in dry.stdout
    result = vm.run("resize-vm", "--memory", "2", "--vcpus", "2", "-t", "T14014", vm.name)
    assert result.returncode == 0, result.stderr
    assert "instance-reboot" in [change["action"] for change in result.audit["changes"]]  # type: ignore[index]
    assert vm.ganeti_sizes() == {"vcpus": 2, "maxmem": 2048, "minmem": 2048, "disks": [1024], "status": "running"}
    assert vm.netbox_sizes() == {"vcpus": 2, "memory": 2048, "disk": 1024}


def test_memory_the_group_cannot_hold_is_refused_and_nothing_changes(sized_vm: Callable[[], SizedVM]) -> None:
    """30 GB is inside the policy (max 32 GiB) but more than the primary node has free; 40 GB is outside the
    policy: exit 10 naming the reason, nothing changed in Ganeti or NetBox (dry-run and real run alike)."""
    vm = sized_vm()
    with vm.unchanged():
        for dry_run in (True, False):
            memory = vm.run("resize-vm", "--memory", "30", vm.name, dry_run=dry_run)
            assert memory.returncode == 10
            assert "free memory" in memory.stderr and "more is needed" in memory.stderr
            assert "nothing was changed" in memory.stderr
        policy = vm.run("resize-vm", "--memory", "40", vm.name)
        assert policy.returncode == 10
        assert "instance policy: memory 40960 MiB is outside [128, 32768] MiB" in policy.stderr


def test_a_failed_reboot_puts_the_old_size_back(sized_vm: Callable[[], SizedVM]) -> None:
    """The disk file of the instance is moved away on its node, so Ganeti's reboot fails ('not set up'): the run
    fails (99) and its rollback modifies the instance back to 128 MiB and 1 vCPU; NetBox is not touched."""
    vm = sized_vm()
    disk = vm.disk_file()
    away = disk.with_name(disk.name + ".away")
    disk.rename(away)
    try:
        result = vm.run("resize-vm", "--memory", "2", "--vcpus", "2", vm.name)
    finally:
        away.rename(disk)
    assert result.returncode == 99, result.stderr
    assert "JobFailedError" in result.stderr and "INSTANCE_REBOOT" in result.stderr
    assert f"Undo: modify back instance {vm.name}" in result.stderr
    sizes = vm.ganeti_sizes()
    assert (sizes["vcpus"], sizes["maxmem"], sizes["minmem"]) == (1, 128, 128)
    assert vm.netbox_sizes() == {"vcpus": 1, "memory": 128, "disk": 1024}


def test_no_reboot_says_the_size_applies_at_the_next_reboot(sized_vm: Callable[[], SizedVM]) -> None:
    """--no-reboot: Ganeti holds the new size, no reboot job runs, the output says when it takes effect."""
    vm = sized_vm()
    result = vm.run("resize-vm", "--memory", "1.5", "--no-reboot", vm.name)
    assert result.returncode == 0, result.stderr
    assert "TAKES EFFECT ONLY AT THE NEXT REBOOT THROUGH GANETI" in result.stderr
    assert "instance-reboot" not in [change["action"] for change in result.audit["changes"]]  # type: ignore[index]
    assert vm.ganeti_sizes()["maxmem"] == 1536 and vm.netbox_sizes()["memory"] == 1536
