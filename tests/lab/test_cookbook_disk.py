"""sre.ganeti.disk on the lab, run as an operator types it: add and grow (Ganeti and NetBox agree), bad input
(a smaller size, an unknown index, remove on a running instance, a wrong or missing confirmation) refused with
nothing changed, a remove of a stopped instance's disk after the typed confirmation, dry-runs that change nothing,
and the rollback that removes a disk the run just added. Each test makes its own instance and NetBox VM."""

from __future__ import annotations

from collections.abc import Callable

from tests.lab.cookbook_lab import cluster, planned_only  # noqa: F401 - the cluster fixture
from tests.lab.vm_size_lab import SizedVM, sized_vm_fixture  # noqa: F401 - the sized_vm fixture


def test_add_1_gb_and_grow_ganeti_and_netbox_agree(sized_vm: Callable[[], SizedVM]) -> None:
    """add 1 (dry-run first: nothing changes), then grow the new disk to 2.5 GB: Ganeti's disks and NetBox's total
    follow, and the output says what the guest must do."""
    vm = sized_vm()
    with vm.unchanged():
        dry = vm.run("disk", vm.name, "add", "1", dry_run=True)
        assert dry.returncode == 0 and planned_only(dry)
    added = vm.run("disk", "-t", "T14014", vm.name, "add", "1")
    assert added.returncode == 0, added.stderr
    assert vm.ganeti_sizes()["disks"] == [1024, 1024] and vm.netbox_sizes()["disk"] == 2048
    assert "device names may change" in added.stderr
    with vm.unchanged():
        assert vm.run("disk", vm.name, "grow", "1", "2.5", dry_run=True).returncode == 0
    grown = vm.run("disk", vm.name, "grow", "1", "2.5")
    assert grown.returncode == 0, grown.stderr
    assert vm.ganeti_sizes()["disks"] == [1024, 2560] and vm.netbox_sizes()["disk"] == 3584
    assert "grow the partition and filesystem" in grown.stderr


def test_bad_input_is_refused_and_nothing_changes(sized_vm: Callable[[], SizedVM]) -> None:
    """A grow to a smaller size or to the same size, an unknown disk index, a remove on a running instance, a
    disk larger than the nodes' free storage: exit 10 naming the problem; nothing changed in Ganeti or NetBox."""
    vm = sized_vm()
    cases = {
        ("grow", "0", "0.5"): "512.0 MiB is smaller; a disk only grows",
        ("grow", "0", "1"): "1.0 GiB is its size now",
        ("grow", "3", "2"): f"{vm.name} has no disk 3 (its disks: 0 (1.0 GiB))",
        ("remove", "0"): "a disk is removed only from a stopped instance",
        ("add", "900"): "free storage",
    }
    with vm.unchanged():
        for args, message in cases.items():
            result = vm.run("disk", "--confirm", f"0:{vm.name}", vm.name, *args) if args[0] == "remove" else \
                vm.run("disk", vm.name, *args)
            assert result.returncode == 10, (args, result.stderr)
            assert message in result.stderr and "nothing was changed" in result.stderr


def test_remove_needs_the_typed_confirmation_then_removes(sized_vm: Callable[[], SizedVM]) -> None:
    """On a stopped instance with two disks: -y alone (no terminal) and a wrong --confirm are refused with nothing
    changed; the dry-run changes nothing; --confirm 1:FQDN removes disk 1 and NetBox's total follows."""
    vm = sized_vm()
    assert vm.run("disk", vm.name, "add", "1").returncode == 0
    vm.cluster.shutdown_instance(vm.name, timeout=0).wait()
    with vm.unchanged():
        unconfirmed = vm.run("disk", vm.name, "remove", "1")
        assert unconfirmed.returncode == 99 and f"--confirm 1:{vm.name}" in unconfirmed.stderr
        wrong = vm.run("disk", "--confirm", f"0:{vm.name}", vm.name, "remove", "1")
        assert wrong.returncode == 99 and f"is not 1:{vm.name}" in wrong.stderr
        dry = vm.run("disk", "--confirm", f"1:{vm.name}", vm.name, "remove", "1", dry_run=True)
        assert dry.returncode == 0 and planned_only(dry)
    removed = vm.run("disk", "--confirm", f"1:{vm.name}", vm.name, "remove", "1")
    assert removed.returncode == 0, removed.stderr
    assert vm.ganeti_sizes()["disks"] == [1024] and vm.netbox_sizes()["disk"] == 1024


def test_rollback_removes_the_disk_it_added(sized_vm: Callable[[], SizedVM]) -> None:
    """A step after the add fails for real: NetBox refuses the run's token when the VM's disk total is recorded.
    The rollback removes the disk the run added (the instance is stopped: Ganeti removes a disk only from a stopped
    instance without hotplug); NetBox is unchanged."""
    vm = sized_vm()
    vm.cluster.shutdown_instance(vm.name, timeout=0).wait()
    refused = vm.with_netbox_token("0123456789abcdef0123456789abcdef01234567")
    result = refused.run("disk", vm.name, "add", "1")
    assert result.returncode == 99, result.stderr
    assert "Undo: remove disk cookbooks-" in result.stderr
    assert vm.ganeti_sizes()["disks"] == [1024] and vm.netbox_sizes()["disk"] == 1024
