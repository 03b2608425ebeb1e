"""decommission-vm on the fakes: the plan names what goes and what is kept, the typed FQDN (never -y) comes before
any change, the Ganeti remove comes first and a failed one touches nothing else, then NetBox and DNS go through
sync.instance.Follower.retire (an address named after another host is kept with its records); dry-run changes
nothing; an instance Ganeti no longer has is only cleaned from NetBox and DNS."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import dns.name
import dns.rdatatype
import pytest

from libcluster.cookbook import EXIT_EXCEPTION
from libcluster.dns.protection import owns_nothing
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.interactive import AbortError, InputError
from libcluster.resources import instance_lock
from libcluster.testing import (
    BASE_CONFIG,
    FakeCluster,
    FakeCtx,
    FakeDNSServer,
    FakeNetBox,
    fake_dns,
    load_config,
    load_cookbook,
    run_runner,
)

TREE = Path(__file__).resolve().parents[2]
VM = "vm1.lab.example"
OTHER = "service.lab.example"
ZONES = ["lab.example", "100.51.198.in-addr.arpa"]


def _netbox(*, dry_run: bool = False) -> FakeNetBox:
    vm = {"id": 5}
    return FakeNetBox({
        "cluster-group": [{"id": 1, "name": "lab"}],
        "cluster": [{"id": 10, "name": "A", "group": {"id": 1}}],
        "vm": [{"id": 5, "name": VM, "cluster": {"id": 10, "name": "A"}, "status": {"value": "active"}}],
        "vm-interface": [{"id": 7, "name": "eth0", "virtual_machine": vm}],
        "ip-address": [
            {"id": 9, "address": "198.51.100.5/26", "dns_name": VM, "status": "active", "assigned_object_id": 7,
             "virtual_machine": vm},
            {"id": 11, "address": "198.51.100.6/26", "dns_name": OTHER, "status": "active", "assigned_object_id": 7,
             "virtual_machine": vm},
        ]}, dry_run=dry_run)


def _ctx(tmp_path: Path, cluster: FakeCluster, netbox: FakeNetBox, *, dry_run: bool = False) -> FakeCtx:
    config = load_config(tmp_path, {**BASE_CONFIG, "dns": {"server": "192.0.2.53", "tsig_name": "t", "zones": ZONES}})
    ctx = FakeCtx(config, clusters={"lab": cluster}, netbox=netbox, dns_zones=ZONES, dry_run=dry_run,
                  base_dirs=[TREE])
    setup = fake_dns(ZONES)
    setup.server = ctx.dns().server
    setup.set_host(VM, ["198.51.100.5"], owns=owns_nothing)
    setup.set_host(OTHER, ["198.51.100.6"], owns=owns_nothing)
    return ctx


def _cluster(*, present: bool = True) -> FakeCluster:
    cluster = FakeCluster()
    if present:
        cluster.add_instance(VM)
    return cluster


def _runner(ctx: FakeCtx, *argv: str) -> Any:
    module = load_cookbook(TREE, "sre.ganeti.decommission-vm")
    cookbook = module.DecommissionVM(ctx)
    return cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", *argv, VM]))


def _records(ctx: FakeCtx, name: str) -> list[str]:
    server = cast(FakeDNSServer, ctx.dns().server)
    rrset = server.rrsets.get((dns.name.from_text(name), dns.rdatatype.A))
    return sorted(rdata.to_text() for rdata in rrset) if rrset else []


def test_the_plan_then_the_remove_then_netbox_and_dns_keeping_what_is_not_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner(ctx, "--confirm-fqdn", VM, "--shutdown-timeout", "30").run() == 0
    plan = capsys.readouterr().out
    assert f"Decommissioning {VM} (cluster lab): this cannot be undone." in plan
    assert "shut down (forced off after 30 s) and removed with its disks" in plan
    assert f"NetBox: VM {VM} (id 5, cluster A) deleted" in plan and "interface eth0 (id 7) deleted" in plan
    assert "address 198.51.100.5/26 (id 9) released" in plan
    assert f"KEPT: address 198.51.100.6/26 (id 11) named {OTHER}: not its own" in plan
    assert f"- {VM}. 3600 A 198.51.100.5" in plan and f"- 5.100.51.198.in-addr.arpa. 3600 PTR {VM}." in plan
    assert cluster.calls == [("remove", VM, {"shutdown_timeout": 30})]
    assert VM not in cluster.instances_by_name
    assert netbox.store["vm"] == [] and [ip["id"] for ip in netbox.store["ip-address"]] == [11]
    assert netbox.store["ip-address"][0]["assigned_object_id"] is None and netbox.store["ip-address"][0]["dns_name"]
    assert _records(ctx, VM) == [] and _records(ctx, OTHER) == ["198.51.100.6"]
    assert ctx.locks.taken == [instance_lock("lab", VM)]


@pytest.mark.parametrize(("argv", "error", "message"), [
    (("--confirm-fqdn", "vm2.lab.example"), AbortError, f"--confirm-fqdn vm2.lab.example is not {VM}: nothing done"),
    ((), InputError, f"repeat it with --confirm-fqdn {VM} \\(-y does not answer this\\)"),
])
def test_without_the_right_fqdn_nothing_changes(tmp_path: Path, argv: tuple[str, ...], error: type[Exception],
                                                message: str) -> None:
    cluster, netbox = _cluster(), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    with pytest.raises(error, match=message):
        _runner(ctx, *argv).run()
    assert cluster.calls == [] and (netbox.created, netbox.updates, netbox.deleted) == ([], [], [])
    assert _records(ctx, VM) == ["198.51.100.5"] and ctx.confirmations == []


def test_a_failed_remove_touches_nothing_else(tmp_path: Path) -> None:
    cluster, netbox = _cluster(), _netbox()
    cluster.errors["remove"] = JobFailedError(4, status="error", error_type="OpExecError",
                                              message="cannot remove disks", classification=None, summary=None)
    ctx = _ctx(tmp_path, cluster, netbox)
    outcome = run_runner(_runner(ctx, "--confirm-fqdn", VM), ctx)
    assert outcome.exit_code == EXIT_EXCEPTION
    assert (netbox.updates, netbox.deleted) == ([], []) and len(netbox.store["ip-address"]) == 2
    assert _records(ctx, VM) == ["198.51.100.5"] and VM in cluster.instances_by_name


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster, netbox = FakeCluster(dry_run=True), _netbox(dry_run=True)
    cluster.add_instance(VM)
    ctx = _ctx(tmp_path, cluster, netbox, dry_run=True)
    assert _runner(ctx, "--confirm-fqdn", VM).run() == 0
    assert VM in cluster.instances_by_name and len(netbox.store["vm"]) == 1 and len(netbox.store["ip-address"]) == 2
    assert _records(ctx, VM) == ["198.51.100.5"]
    planned = {(change["system"], change["action"], change["dry_run"])
               for log in (ctx.changes, cluster.changes, netbox.changes) for change in log.as_list()}
    assert {("ganeti", "remove", True), ("netbox", "vm-delete", True), ("dns", "record-delete", True)} <= planned


def test_an_instance_already_removed_is_only_cleaned_from_netbox_and_dns(tmp_path: Path) -> None:
    cluster, netbox = _cluster(present=False), _netbox()
    ctx = _ctx(tmp_path, cluster, netbox)
    assert _runner(ctx, "--confirm-fqdn", VM).run() == 0
    assert cluster.calls == [] and netbox.store["vm"] == [] and _records(ctx, VM) == []


def test_a_vm_in_neither_ganeti_nor_netbox_is_refused(tmp_path: Path) -> None:
    netbox = _netbox()
    netbox.store["vm"] = []
    with pytest.raises(LibclusterError, match=f"no instance {VM} in cluster lab and no NetBox VM of that name"):
        _runner(_ctx(tmp_path, _cluster(present=False), netbox), "--confirm-fqdn", VM)
