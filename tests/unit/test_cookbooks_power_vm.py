"""start-vm, stop-vm, migrate-vm, failover-vm and reinstall-vm on the fakes: order of steps, NetBox status, refusals
before any change, confirmations (-y never answers the typed ones), rollback; the node a migrate reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libcluster.cookbook import EXIT_EXCEPTION, EXIT_ROLLBACK_FAILED
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.ganeti.cluster import selected_node
from libcluster.ganeti.jobs import LogEntry
from libcluster.interactive import AbortError, InputError
from libcluster.netbox import NetBoxUnavailable
from libcluster.resources import instance_lock
from libcluster.testing import FakeCluster, FakeCtx, FakeNetBox, FakeRemote, load_config, load_cookbook, ok, run_runner

TREE = Path(__file__).resolve().parents[2]
VM = "vm1.lab.example"


def _netbox(status: str = "active") -> FakeNetBox:
    return FakeNetBox({"cluster-group": [{"id": 1, "name": "lab"}],
                       "cluster": [{"id": 10, "name": "A", "group": {"id": 1}}],
                       "vm": [{"id": 5, "name": VM, "cluster": {"id": 10}, "status": {"value": status}}]})


def _ctx(tmp_path: Path, cluster: FakeCluster, netbox: FakeNetBox | None = None, **overrides: Any) -> FakeCtx:
    return FakeCtx(load_config(tmp_path, **overrides), clusters={"lab": cluster}, netbox=netbox or _netbox(),
                   remote=FakeRemote(lambda host, line: ok()), base_dirs=[TREE])


def _runner(name: str, ctx: FakeCtx, *argv: str) -> Any:
    module = load_cookbook(TREE, f"sre.ganeti.{name}")
    cookbook = next(value for value in vars(module).values()
                    if isinstance(value, type) and value.__module__ == module.__name__ and hasattr(value, "get_runner"))
    args = cookbook(ctx).argument_parser().parse_args(["--cluster", "lab", *argv])
    return cookbook(ctx).get_runner(args)


def _with_disk(cluster: FakeCluster, template: str = "sharedfile") -> FakeCluster:
    """cluster with VM running on template, with one disk of 1 GiB."""
    cluster.add_instance(VM, template)
    cluster.instances_by_name[VM]["disk.sizes"] = [1024]
    return cluster


def _status(netbox: FakeNetBox) -> Any:
    return netbox.store["vm"][0]["status"]


# stop-vm / start-vm

def test_stop_depools_when_asked_shuts_down_and_netbox_follows(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, "sharedfile")
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    assert _runner("stop-vm", ctx, "--depool", "--shutdown-timeout", "7", VM).run() == 0
    assert [call[1] for call in ctx.remote().calls] == ["depool"]
    assert cluster.calls == [("shutdown", VM, {"timeout": 7})]
    assert cluster.instance(VM).admin_state == "down" and _status(ctx.netbox()) == "offline"
    assert ctx.locks.taken == [instance_lock("lab", VM)]


def test_stop_without_depool_runs_no_command(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM)
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    assert _runner("stop-vm", ctx, VM).run() == 0
    assert ctx.remote().calls == [] and [call[0] for call in cluster.calls] == ["shutdown"]


def test_stop_rolls_back_when_netbox_fails(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM)
    netbox = _netbox()
    ctx = _ctx(tmp_path, cluster, netbox, depool_command="depool", pool_command="pool")
    runner = _runner("stop-vm", ctx, "--depool", VM)
    netbox.error = NetBoxUnavailable("cannot reach NetBox")
    outcome = run_runner(runner, ctx)
    assert outcome.exit_code == EXIT_EXCEPTION
    assert [call[0] for call in cluster.calls] == ["shutdown", "startup"]
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool"], "started again, so pooled again"


def test_stop_and_start_refuse_the_wrong_state_and_unknown_instances(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, up=False)
    ctx = _ctx(tmp_path, cluster)
    with pytest.raises(LibclusterError, match="already administratively down"):
        _runner("stop-vm", ctx, VM)
    with pytest.raises(LibclusterError, match=r"no instance other.lab.example in cluster lab"):
        _runner("start-vm", ctx, "other.lab.example")
    cluster.add_instance(VM)
    with pytest.raises(LibclusterError, match="not down: nothing to start"):
        _runner("start-vm", ctx, VM)
    assert cluster.calls == []


def test_start_waits_sets_active_and_pools_when_asked(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, up=False)
    netbox = _netbox("offline")
    ctx = _ctx(tmp_path, cluster, netbox, depool_command="depool", pool_command="pool")
    assert _runner("start-vm", ctx, "--pool", VM).run() == 0
    assert cluster.calls == [("startup", VM, {})] and _status(netbox) == "active"
    assert [call[1] for call in ctx.remote().calls] == ["pool"]


def test_a_vm_netbox_does_not_hold_is_reported_not_created(tmp_path: Path, caplog: Any) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, up=False)
    netbox = _netbox()
    netbox.store["vm"] = []
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner("start-vm", ctx, VM).run() == 0
    assert netbox.created == [] and netbox.updates == []
    assert f"NetBox has 0 VMs named {VM} in cluster group lab: status active not recorded" in caplog.text


def test_dry_run_of_stop_changes_nothing(tmp_path: Path) -> None:
    cluster = FakeCluster(dry_run=True)
    cluster.add_instance(VM)
    netbox = _netbox()
    netbox.dry_run = True
    ctx = _ctx(tmp_path, cluster, netbox)
    ctx.dry_run = True
    assert _runner("stop-vm", ctx, VM).run() == 0
    assert cluster.instance(VM).admin_state == "up" and _status(netbox) == {"value": "active"}


# migrate-vm

def test_migrate_checks_and_reports_the_new_node(tmp_path: Path, capsys: Any) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, "sharedfile")
    ctx = _ctx(tmp_path, cluster)
    assert _runner("migrate-vm", ctx, "--to", "node2.example", VM).run() == 0
    assert cluster.calls == [("migrate", VM, {"mode": "live", "target_node": "node2.example"})]
    assert cluster.instance(VM).primary_node == "node2.example"
    assert f"{VM} runs on node2.example (was on node1.example)" in capsys.readouterr().out


def test_migrate_refuses_bad_input_before_any_change(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_node("node3.example", "B")
    cluster.add_instance(VM, "file")
    cluster.add_instance("stopped.lab.example", "sharedfile", up=False)
    cluster.add_instance("big.lab.example", "sharedfile")
    cluster.instances_by_name["big.lab.example"]["beparams"] = {"maxmem": 4096}
    cluster.nodes_by_name["node2.example"]["mfree"] = 1024
    ctx = _ctx(tmp_path, cluster)
    with pytest.raises(LibclusterError, match=r"disk template file.*sre.ganeti.changedisk"):
        _runner("migrate-vm", ctx, VM)
    with pytest.raises(LibclusterError, match=r"fail it over with sre.ganeti.failover-vm"):
        _runner("migrate-vm", ctx, "stopped.lab.example")
    with pytest.raises(LibclusterError, match=r"no node nowhere.example in cluster lab"):
        _runner("migrate-vm", ctx, "--to", "nowhere.example", "big.lab.example")
    with pytest.raises(LibclusterError, match=r"node node3.example is not in the node group"):
        _runner("migrate-vm", ctx, "--to", "node3.example", "big.lab.example")
    with pytest.raises(LibclusterError, match=r"4096 MiB of memory big.lab.example needs \(node2.example 1024 MiB"):
        _runner("migrate-vm", ctx, "big.lab.example")
    assert cluster.calls == []


def test_a_failure_after_the_migrate_migrates_back(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, "sharedfile")
    ctx = _ctx(tmp_path, cluster)
    runner = _runner("migrate-vm", ctx, VM)
    original = cluster._move

    def move_and_stop(name: str, target: str | None) -> None:
        original(name, target)
        cluster.instances_by_name[name].update(status="ERROR_down")

    cluster._move = move_and_stop  # type: ignore[method-assign]
    assert run_runner(runner, ctx).exit_code == EXIT_EXCEPTION
    assert cluster.calls[-1] == ("migrate", VM, {"target_node": "node1.example"})
    assert cluster.instance(VM).primary_node == "node1.example"


def test_the_iallocator_choice_is_read_from_the_job_log() -> None:
    line = "Selected nodes for instance t-1.lab.example via iallocator hail: node2.lab.example"
    log = [LogEntry(7, 1, 0.0, "message", "* checking"), LogEntry(7, 2, 0.0, "message", line)]
    assert selected_node(log, "t-1.lab.example") == "node2.lab.example"
    assert selected_node(log, "t-2.lab.example") is None
    drbd = "Selected nodes for instance x.lab.example via iallocator hail: node3.lab.example, node4.lab.example"
    assert selected_node([LogEntry(7, 1, 0.0, "message", drbd)], "x.lab.example") == "node3.lab.example"


# failover-vm

def test_failover_of_a_stopped_instance_moves_it(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, "sharedfile", up=False)
    ctx = _ctx(tmp_path, cluster)
    assert _runner("failover-vm", ctx, VM).run() == 0
    assert cluster.instance(VM).primary_node == "node2.example" and cluster.instance(VM).admin_state == "down"
    assert [call[0] for call in cluster.calls] == ["failover"]


def test_ignore_consistency_needs_the_typed_second_confirmation(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, "sharedfile")
    ctx = _ctx(tmp_path, cluster)
    with pytest.raises(InputError):  # -y answers confirmations only: no typed answer, nothing done
        _runner("failover-vm", ctx, "--ignore-consistency", VM).run()
    ctx.answers = ["yes"]
    with pytest.raises(AbortError, match="not confirmed"):
        _runner("failover-vm", ctx, "--ignore-consistency", VM).run()
    assert cluster.calls == []
    ctx.answers = ["ignore consistency"]
    assert _runner("failover-vm", ctx, "--ignore-consistency", VM).run() == 0
    assert cluster.calls[0][2]["ignore_consistency"] is True


# reinstall-vm

def test_reinstall_needs_the_fqdn_and_never_takes_y(tmp_path: Path, monkeypatch: Any) -> None:
    cluster = _with_disk(FakeCluster())
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    with pytest.raises(AbortError, match=f"--confirm-fqdn vm2.lab.example is not {VM}: nothing done"):
        _runner("reinstall-vm", ctx, "--os", "noop", "--confirm-fqdn", "vm2.lab.example", VM).run()
    monkeypatch.setattr("libcluster.vmops.is_terminal", lambda: False)
    with pytest.raises(InputError, match="-y does not answer this"):
        _runner("reinstall-vm", ctx, "--os", "noop", VM).run()
    monkeypatch.setattr("libcluster.vmops.is_terminal", lambda: True)
    ctx.answers = ["vm1"]
    with pytest.raises(AbortError, match="typed 'vm1'"):
        _runner("reinstall-vm", ctx, "--os", "noop", VM).run()
    assert cluster.calls == [] and ctx.remote().calls == [] and ctx.locks.taken == []


def test_reinstall_depools_reinstalls_and_pools(tmp_path: Path) -> None:
    cluster = _with_disk(FakeCluster())
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    assert _runner("reinstall-vm", ctx, "--os", "noop", "--confirm-fqdn", VM, VM).run() == 0
    assert cluster.calls == [("reinstall", VM, {"os_name": "noop", "start": True})]
    assert [call[1] for call in ctx.remote().calls] == ["depool", "pool"]


def test_a_failed_reinstall_leaves_the_vm_depooled(tmp_path: Path, caplog: Any) -> None:
    cluster = _with_disk(FakeCluster())
    cluster.errors["reinstall"] = JobFailedError(1, status="error", error_type="OpExecError", message="os failed",
                                                 classification=None, summary=None)
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    runner = _runner("reinstall-vm", ctx, "--os", "noop", "--confirm-fqdn", VM, VM)
    assert run_runner(runner, ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert [call[1] for call in ctx.remote().calls] == ["depool"]
    assert f"{VM} is left DEPOOLED (its reinstall failed: Ganeti job 1 error)" in caplog.text


def test_reinstall_refuses_an_unknown_os_and_a_diskless_instance(tmp_path: Path) -> None:
    cluster = _with_disk(FakeCluster())
    with pytest.raises(LibclusterError, match=r"OS 'debian' is not offered by cluster lab \(offered: noop\)"):
        _runner("reinstall-vm", _ctx(tmp_path, cluster), "--os", "debian", VM)
    cluster.add_instance("nodisk.lab.example", "diskless")
    with pytest.raises(LibclusterError, match="has no disks: Ganeti cannot reinstall it"):
        _runner("reinstall-vm", _ctx(tmp_path, cluster), "--os", "noop", "nodisk.lab.example")
    assert cluster.calls == []
