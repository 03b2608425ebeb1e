"""resize-vm and disk on the fakes: checks before any change, the order of steps, NetBox following, the typed
confirmation of a remove (never answered by -y), and the rollback (old sizes back, an added disk removed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from libcluster.cookbook import EXIT_EXCEPTION
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.interactive import AbortError, InputError
from libcluster.netbox import NetBoxUnavailable
from libcluster.resources import instance_lock
from libcluster.testing import FakeCluster, FakeCtx, FakeNetBox, FakeRemote, load_config, load_cookbook, ok, run_runner

TREE = Path(__file__).resolve().parents[2]
VM = "vm1.lab.example"
POLICY = {"minmax": [{"min": {"memory-size": 128, "cpu-count": 1, "disk-size": 1024, "disk-count": 1},
                      "max": {"memory-size": 32768, "cpu-count": 8, "disk-size": 1048576, "disk-count": 16}}]}


def _cluster(up: bool = True, disks: tuple[int, ...] = (1024,), mfree: int = 8192, dfree: int = 10240) -> FakeCluster:
    cluster = FakeCluster()
    cluster.group_list = [{**group, "ipolicy": cast(Any, POLICY)} for group in cluster.group_list]
    for node in ("node1.example", "node2.example"):
        cluster.add_node(node, "A", mfree=mfree, dfree=dfree)
    cluster.add_instance(VM, "sharedfile", up=up)
    cluster.instances_by_name[VM].update({"beparams": {"maxmem": 1024, "minmem": 1024, "vcpus": 1},
                                          "disk.sizes": list(disks), "disk.names": [None] * len(disks)})
    return cluster


def _netbox() -> FakeNetBox:
    return FakeNetBox({"cluster-group": [{"id": 1, "name": "lab"}],
                       "cluster": [{"id": 10, "name": "A", "group": {"id": 1}}],
                       "vm": [{"id": 5, "name": VM, "cluster": {"id": 10}, "vcpus": 1.0, "memory": 1024,
                               "disk": 1024}]})


def _ctx(tmp_path: Path, cluster: FakeCluster, netbox: FakeNetBox | None = None, **overrides: Any) -> FakeCtx:
    return FakeCtx(load_config(tmp_path, **overrides), clusters={"lab": cluster}, netbox=netbox or _netbox(),
                   remote=FakeRemote(lambda host, line: ok()), base_dirs=[TREE])


def _runner(name: str, ctx: FakeCtx, *argv: str) -> Any:
    module = load_cookbook(TREE, f"sre.ganeti.{name}")
    cookbook = next(value for value in vars(module).values()
                    if isinstance(value, type) and value.__module__ == module.__name__ and hasattr(value, "get_runner"))
    args = cookbook(ctx).argument_parser().parse_args(["--cluster", "lab", *argv])
    return cookbook(ctx).get_runner(args)


def _commands(ctx: FakeCtx) -> list[str]:
    return [call[1] for call in cast(FakeRemote, ctx.remote()).calls]


def _vm(netbox: FakeNetBox) -> dict[str, Any]:
    return dict(netbox.store["vm"][0])


# resize-vm

def test_resize_modifies_reboots_and_netbox_follows(tmp_path: Path) -> None:
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner("resize-vm", ctx, "--memory", "2", "--vcpus", "2", VM).run() == 0
    assert [call[0] for call in cluster.calls] == ["modify_backend", "reboot"]
    assert cluster.calls[0] == ("modify_backend", VM, {"vcpus": 2, "memory": 2048})
    assert cluster.instance(VM).memory == 2048 and cluster.instance(VM).vcpus == 2
    assert _vm(netbox)["memory"] == 2048 and _vm(netbox)["vcpus"] == 2
    assert ctx.locks.taken == [instance_lock("lab", VM)] and _commands(ctx) == []


def test_resize_depools_only_when_asked(tmp_path: Path) -> None:
    cluster = _cluster()
    ctx = _ctx(tmp_path, cluster, depool_command="depool", pool_command="pool")
    assert _runner("resize-vm", ctx, "--memory", "2", "--depool", VM).run() == 0
    assert _commands(ctx) == ["depool", "pool"]


def test_resize_checks_policy_and_memory_before_any_change(tmp_path: Path, caplog: Any) -> None:
    cluster, netbox = _cluster(mfree=512), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner("resize-vm", ctx, "--memory", "2", VM).run() == 10
    assert "primary node node1.example has 512.0 MiB free memory, 1.0 GiB more is needed" in caplog.text
    assert _runner("resize-vm", ctx, "--vcpus", "9", VM).run() == 10
    assert "instance policy: vCPUs 9 is outside [1, 8]" in caplog.text
    assert cluster.calls == [] and netbox.updates == []


def test_resize_refuses_nothing_to_change(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, _cluster())
    with pytest.raises(LibclusterError, match="nothing to change"):
        _runner("resize-vm", ctx, "--memory", "1", "--vcpus", "1", VM)
    with pytest.raises(ValueError, match="give --vcpus and/or --memory"):
        _runner("resize-vm", ctx, VM)


def test_a_failed_reboot_puts_the_old_sizes_back(tmp_path: Path) -> None:
    cluster, netbox = _cluster(), _netbox()
    cluster.errors["reboot"] = JobFailedError(7, status="error", error_type="OpExecError", message="boom",
                                              classification=None, summary="INSTANCE_REBOOT")
    ctx = _ctx(tmp_path, cluster, netbox)
    outcome = run_runner(_runner("resize-vm", ctx, "--memory", "2", "--vcpus", "2", VM), ctx)
    assert outcome.exit_code == EXIT_EXCEPTION
    assert [call[0] for call in cluster.calls] == ["modify_backend", "reboot", "modify_backend"]
    assert cluster.instance(VM).memory == 1024 and cluster.instance(VM).vcpus == 1
    assert netbox.updates == []


def test_no_reboot_modifies_only(tmp_path: Path, caplog: Any) -> None:
    cluster = _cluster()
    ctx = _ctx(tmp_path, cluster)
    assert _runner("resize-vm", ctx, "--memory", "1.5", "--no-reboot", VM).run() == 0
    assert [call[0] for call in cluster.calls] == ["modify_backend"]
    assert "TAKES EFFECT ONLY AT THE NEXT REBOOT THROUGH GANETI" in caplog.text


# disk

def test_disk_add_grow_and_netbox_total(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level("INFO")
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner("disk", ctx, VM, "add", "1.5").run() == 0
    assert cluster.instance(VM).disk_sizes == (1024, 1536) and _vm(netbox)["disk"] == 2560
    assert "device names may change" in caplog.text
    assert _runner("disk", ctx, VM, "grow", "0", "2").run() == 0
    assert cluster.instance(VM).disk_sizes == (2048, 1536) and _vm(netbox)["disk"] == 3584
    assert [call[0] for call in cluster.calls] == ["add_disk", "grow_disk_to"]


@pytest.mark.parametrize(("argv", "message"), [
    (("grow", "0", "0.5"), "is smaller; a disk only grows"),
    (("grow", "0", "1"), "is its size now"),
    (("grow", "4", "2"), f"{VM} has no disk 4"),
    (("remove", "0"), "a disk is removed only from a stopped instance"),
    (("add", "20"), "node node1.example has 10.0 GiB free storage, 20.0 GiB is needed"),
])
def test_disk_bad_input_changes_nothing(tmp_path: Path, caplog: Any, argv: tuple[str, ...], message: str) -> None:
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner("disk", ctx, VM, *argv).run() == 10
    assert message in caplog.text and cluster.calls == [] and netbox.updates == []


def test_remove_needs_index_and_fqdn_typed_never_y(tmp_path: Path) -> None:
    cluster, netbox = _cluster(up=False, disks=(1024, 2048)), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    with pytest.raises(InputError, match=f"--confirm 1:{VM}"):
        _runner("disk", ctx, VM, "remove", "1").run()
    with pytest.raises(AbortError, match=f"is not 1:{VM}"):
        _runner("disk", ctx, "--confirm", "1:other.lab.example", VM, "remove", "1").run()
    assert cluster.calls == []
    assert _runner("disk", ctx, "--confirm", f"1:{VM}", VM, "remove", "1").run() == 0
    assert cluster.instance(VM).disk_sizes == (1024,) and _vm(netbox)["disk"] == 1024


def test_rollback_removes_the_disk_it_added(tmp_path: Path) -> None:
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    runner = _runner("disk", ctx, VM, "add", "1")
    netbox.error = NetBoxUnavailable("cannot reach NetBox")
    outcome = run_runner(runner, ctx)
    assert outcome.exit_code == EXIT_EXCEPTION
    assert [call[0] for call in cluster.calls] == ["add_disk", "remove_disk"]
    assert cluster.instance(VM).disk_sizes == (1024,)


def test_dry_run_of_disk_and_resize_changes_nothing(tmp_path: Path) -> None:
    cluster, netbox = _cluster(), _netbox()
    cluster.dry_run = cluster.changes.dry_run = netbox.dry_run = True
    ctx = _ctx(tmp_path, cluster, netbox)
    ctx.dry_run = True
    assert _runner("disk", ctx, VM, "add", "1").run() == 0
    assert _runner("resize-vm", ctx, "--memory", "2", VM).run() == 0
    assert cluster.instance(VM).disk_sizes == (1024,) and cluster.instance(VM).memory == 1024
    assert _vm(netbox) == _netbox().store["vm"][0]
