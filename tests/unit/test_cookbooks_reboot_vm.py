"""reboot-vm: finding the cluster (NetBox, then RAPI), depool/reboot/pool order, waiting for running, and the
rollback after a failure or an interrupt (through the runner's own run-then-rollback code)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from libcluster.cookbook import EXIT_EXCEPTION, EXIT_INTERRUPTED, EXIT_ROLLBACK_FAILED
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.netbox import NetBoxUnavailable
from libcluster.resources import instance_lock
from libcluster.testing import (
    FakeCluster,
    FakeCtx,
    FakeNetBox,
    FakeRemote,
    failed,
    interrupt_the_wait_for,
    load_config,
    load_cookbook,
    ok,
    run_runner,
)

TREE = Path(__file__).resolve().parents[2]
"""This checkout: the folder holding cookbooks/."""

VM = "vm1.example.org"
REBOOT = "sre.ganeti.reboot-vm"
CLUSTER_GROUPS = [{"id": 1, "name": "lab", "slug": "lab"}, {"id": 2, "name": "Prod group", "slug": "prod-group"}]


@pytest.fixture
def reboot() -> Any:
    """The cookbook module."""
    return load_cookbook(TREE, "sre.ganeti.reboot-vm")


def _netbox(vm_cluster_group: int | None) -> FakeNetBox:
    """A NetBox with the VM in a cluster of that cluster group (no VM if None)."""
    clusters = [{"id": 10, "name": "A", "group": CLUSTER_GROUPS[0]},
                {"id": 20, "name": "A", "group": CLUSTER_GROUPS[1]}]
    vms = [] if vm_cluster_group is None else [
        {"id": 5, "name": VM, "cluster": {"id": 10 if vm_cluster_group == 1 else 20}}]
    return FakeNetBox({"vm": vms, "cluster": clusters})


def _clusters(*with_vm: str) -> dict[str, FakeCluster]:
    found = {name: FakeCluster(name) for name in ("lab", "prod")}
    for name in with_vm:
        found[name].add_instance(VM)
    return found


def _ctx(tmp_path: Path, netbox: FakeNetBox, clusters: dict[str, FakeCluster], **overrides: Any) -> FakeCtx:
    remote = FakeRemote(lambda host, line: ok())
    return FakeCtx(load_config(tmp_path, **overrides), clusters=clusters, netbox=netbox, remote=remote,
                   base_dirs=[TREE])  # the undo of the depool is this cookbook's own undo()


def test_cluster_found_through_netbox_cluster_group(reboot: Any, tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    clusters = _clusters("prod")
    assert reboot.find_cluster(_ctx(tmp_path, _netbox(2), clusters), VM) == "prod"
    assert "found by NetBox" in caplog.text


def test_rapi_is_asked_when_netbox_does_not_know_the_vm_or_is_down(reboot: Any, tmp_path: Path) -> None:
    assert reboot.find_cluster(_ctx(tmp_path, _netbox(None), _clusters("lab")), VM) == "lab"
    down = FakeNetBox({}, error=NetBoxUnavailable("GET virtualization/virtual-machines: cannot reach NetBox"))
    assert reboot.find_cluster(_ctx(tmp_path, down, _clusters("prod")), VM) == "prod"


def test_unknown_or_ambiguous_vm_is_a_clear_error(reboot: Any, tmp_path: Path) -> None:
    with pytest.raises(LibclusterError, match=r"not a VM of any configured Ganeti cluster \(lab, prod\)"):
        reboot.find_cluster(_ctx(tmp_path, _netbox(None), _clusters()), VM)
    with pytest.raises(LibclusterError, match=r"several clusters \(lab, prod\)"):
        reboot.find_cluster(_ctx(tmp_path, _netbox(None), _clusters("lab", "prod")), VM)


def _runner(reboot: Any, ctx: FakeCtx, *argv: str, depool: bool = True) -> Any:
    cookbook = reboot.RebootVM(ctx)
    args = cookbook.argument_parser().parse_args([*argv, *(["--depool"] if depool else []), VM])
    args.reason = getattr(args, "reason", "") or "kernel upgrade"  # -r is added by the runner
    return cookbook.get_runner(args)


def test_depool_reboot_wait_pool_in_that_order(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool --wait", pool_command="pool")
    runner = _runner(reboot, ctx, "--type", "full", "--shutdown-timeout", "45")
    assert runner.run() == 0
    assert [call[:2] for call in ctx.remote().calls] == [(VM, "depool --wait"), (VM, "pool")]
    assert all(is_safe is False for _, _, is_safe in ctx.remote().calls)
    assert clusters["lab"].calls == [("reboot", VM, {"reboot_type": "full", "shutdown_timeout": 45,
                                                     "reason": "kernel upgrade"})]
    assert ctx.locks.taken == [instance_lock("lab", VM)]
    assert runner.runtime_description == f"for {VM} on cluster lab (full reboot): kernel upgrade"


def test_without_depool_no_pool_command_runs_even_when_configured(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    runner = _runner(reboot, ctx, depool=False)
    assert runner.run() == 0
    assert ctx.remote().calls == [] and [call[0] for call in clusters["lab"].calls] == ["reboot"]
    assert ctx.undo.steps == []


def test_without_commands_only_the_reboot_runs(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters)
    assert _runner(reboot, ctx).run() == 0
    assert ctx.remote().calls == []
    assert [call[0] for call in clusters["lab"].calls] == ["reboot"]


def test_failed_reboot_leaves_the_vm_depooled_and_says_so(reboot: Any, tmp_path: Path, caplog: Any) -> None:
    clusters = _clusters("lab")
    clusters["lab"].errors["reboot"] = JobFailedError(3, status="error", error_type="OpExecError",
                                                      message="hypervisor error", classification=None, summary=None)
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    assert run_runner(_runner(reboot, ctx), ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert [call[1] for call in ctx.remote().calls] == ["depool"]
    assert (f"left behind: depooled VM {VM} (id unknown): LibclusterError: {VM} is left DEPOOLED (its reboot failed: "
            "Ganeti job 1 error): pool it by hand (pool) once it is healthy") in caplog.text


def test_failed_depool_stops_before_the_reboot_and_pools_again(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    ctx._remote = FakeRemote(lambda host, line: failed(2, "not pooled here") if line == "depool" else ok())
    outcome = run_runner(_runner(reboot, ctx), ctx)
    assert (outcome.exit_code, outcome.raised) == (EXIT_EXCEPTION, True)
    assert clusters["lab"].calls == []
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool"], "the VM was not rebooted: pooled again"


def test_an_interrupt_during_the_reboot_waits_for_it_and_pools_again(reboot: Any, tmp_path: Path,
                                                                     caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    clusters = _clusters("lab")
    interrupt_the_wait_for(clusters["lab"], "reboot", "instance-reboot vm1")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    outcome = run_runner(_runner(reboot, ctx), ctx)
    assert (outcome.exit_code, outcome.interrupted) == (EXIT_INTERRUPTED, True)
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool"]
    assert f"Rollback: {VM} runs, pooling it again" in caplog.text


def test_an_interrupt_during_the_depool_pools_again_without_rebooting(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")

    def respond(host: str, line: str) -> Any:
        if line == "depool":
            raise KeyboardInterrupt
        return ok()

    ctx._remote = FakeRemote(respond)
    assert run_runner(_runner(reboot, ctx), ctx).exit_code == EXIT_INTERRUPTED
    assert clusters["lab"].calls == []
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool"]


def test_an_interrupted_reboot_that_then_fails_leaves_the_vm_depooled(reboot: Any, tmp_path: Path,
                                                                       caplog: Any) -> None:
    clusters = _clusters("lab")
    clusters["lab"].errors["reboot"] = JobFailedError(3, status="error", error_type="OpExecError",
                                                      message="hypervisor error", classification=None, summary=None)
    interrupt_the_wait_for(clusters["lab"], "reboot", "instance-reboot vm1")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    assert run_runner(_runner(reboot, ctx), ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert [call[1] for call in ctx.remote().calls] == ["depool"]
    assert f"{VM} is left DEPOOLED (its reboot failed: Ganeti job 1 error): pool it by hand" in caplog.text


def test_a_pool_that_fails_in_the_rollback_says_the_vm_is_left_depooled(reboot: Any, tmp_path: Path,
                                                                        caplog: Any) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    ctx._remote = FakeRemote(lambda host, line: failed(5, "balancer down") if line == "pool" else ok())
    assert run_runner(_runner(reboot, ctx), ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool", "pool"]
    assert f"{VM} is left DEPOOLED, the pool command failed: pool it by hand (pool)" in caplog.text


def test_the_instance_lock_is_held_until_the_rollback_ends(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    events = ctx.locks.events
    ctx._remote = FakeRemote(lambda host, line: (events.append(("run", line)), failed(1) if line == "depool"
                                                 else ok())[1])
    assert run_runner(_runner(reboot, ctx), ctx).exit_code == EXIT_EXCEPTION
    key = instance_lock("lab", VM)
    assert events == [("take", key), ("run", "depool"), ("run", "pool"), ("release", key)]


def test_a_stopped_instance_is_refused(reboot: Any, tmp_path: Path) -> None:
    clusters = _clusters()
    clusters["lab"].add_instance(VM, up=False)
    with pytest.raises(LibclusterError, match="administratively down in Ganeti: start it"):
        _runner(reboot, _ctx(tmp_path, _netbox(1), clusters))


def test_dry_run_runs_no_command_on_the_vm(reboot: Any, tmp_path: Path) -> None:
    clusters = {name: FakeCluster(name, dry_run=True) for name in ("lab", "prod")}
    clusters["lab"].add_instance(VM)
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    ctx.dry_run = True
    ctx._remote = FakeRemote(lambda host, line: ok(), dry_run=True)
    assert _runner(reboot, ctx).run() == 0
    assert [(line, is_safe) for _, line, is_safe in ctx.remote().calls] == [("depool", False), ("pool", False)]
    assert [call[0] for call in clusters["lab"].calls] == ["reboot"]


def test_the_pool_undo_of_a_vm_removed_since_is_absent(reboot: Any, tmp_path: Path) -> None:
    """--recover of a depool whose VM was removed since (e.g. decommissioned): nothing to pool, no command run."""
    clusters = _clusters("lab")
    ctx = _ctx(tmp_path, _netbox(1), clusters, depool_command="depool", pool_command="pool")
    args = {"cookbook": REBOOT, "cluster": "lab", "fqdn": VM, "command": "pool", "after_job": 0}
    del clusters["lab"].instances_by_name[VM]
    assert reboot.undo(ctx, "pool", args) == "absent"
    assert ctx.remote().calls == []
