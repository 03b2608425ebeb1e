"""libcluster.testing: the fakes match the real classes (and a drift is caught), behave like the cluster, DNS
and locks they stand for, and a cookbook tree outside this repository tests its cookbook with them under pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from libcluster import resources
from libcluster.dns.protection import owns_everything, owns_nothing
from libcluster.ganeti import RapiNotFoundError
from libcluster.remote import command_undo
from libcluster.testing import (
    FAKES,
    FakeCluster,
    FakeCtx,
    FakeDNSServer,
    FakeNetBox,
    FakeRemote,
    check_fakes,
    failed,
    fake_dns,
    load_config,
    ok,
)
from libcluster.testing.conformance import problems


def test_every_fake_has_the_methods_of_its_real_class_with_the_same_signatures() -> None:
    assert check_fakes() == []
    assert {real.__name__ for _, real in FAKES} >= {"Context", "GanetiCluster", "GntCommands", "NetBox", "Remote",
                                                     "RemoteHosts", "Server", "Job", "Locks"}


def test_a_fake_that_drifted_from_its_real_class_is_named() -> None:
    class Drifted(FakeCluster):
        def instance(self, name: str, bulk: bool = False) -> Any:  # type: ignore[override]  # the drift under test
            """A parameter the real one does not have."""
            return None

        def startup_instance(self, name: str, *, force: bool = False) -> Any:  # type: ignore[override]
            """no_remember is missing."""
            return None

        def rebalance(self) -> None:
            """A method the real class does not have."""

    found = problems(Drifted, FakeCluster.REAL)
    assert any(line.startswith("Drifted.instance(self, name: str, bulk: bool = False)") for line in found)
    assert any(line.startswith("Drifted.instance returns Any where the real one returns Instance") for line in found)
    assert any(line.startswith("Drifted.startup_instance(") and "no_remember" in line for line in found)
    assert "Drifted.rebalance: GanetiCluster has no rebalance (a test helper belongs in HELPERS)" in found


def test_a_node_drain_moves_its_instances_and_dry_run_changes_nothing() -> None:
    cluster = FakeCluster()
    cluster.add_node("node3.example", "A")
    cluster.add_instance("vm1.example", pnode="node2.example")
    cluster.add_instance("vm2.example", "drbd", pnode="node2.example", snodes=["node3.example"])
    assert cluster.node("node2.example").primary_instances == ("vm1.example", "vm2.example")
    cluster.set_node_role("node2.example", "drained").wait()
    assert cluster.node_role("node2.example") == "drained" and cluster.node("node2.example").role == "D"
    cluster.migrate_node("node2.example").wait()
    assert cluster.node("node2.example").primary_instances == ()
    assert cluster.instance("vm2.example").primary_node == "node3.example"
    assert cluster.instance("vm2.example").secondary_nodes == ("node2.example",)
    assert [job.summary for job in map(cluster.job, (1, 2))] == [("node_role node2.example",),
                                                                 ("migrate_node node2.example",)]
    assert cluster.calls == [("node_role", "node2.example", "drained", {}), ("migrate_node", "node2.example", {})]

    planned = FakeCluster(dry_run=True)
    planned.add_instance("vm1.example")
    assert planned.shutdown_instance("vm1.example", timeout=5).wait().skipped
    assert planned.instance("vm1.example").running and planned.jobs() == []
    with pytest.raises(RapiNotFoundError):
        planned.instance("vm9.example")


def test_the_dns_fake_applies_updates_with_their_prerequisites() -> None:
    dns = fake_dns(["lab.example", "2.0.192.in-addr.arpa"])
    dns.set_host("vm1.lab.example", ["192.0.2.5"], owns=owns_nothing)
    assert dns.resolve("vm1.lab.example") == ["192.0.2.5"]
    assert dns.resolve("5.2.0.192.in-addr.arpa", "PTR") == ["vm1.lab.example."]
    stale = dns.host_diff("vm1.lab.example", [], owns=owns_everything)
    dns.set_host("vm1.lab.example", ["192.0.2.6"], owns=owns_everything)  # changed behind the stale diff
    with pytest.raises(Exception, match="prerequisite failed"):
        dns.apply(stale)
    assert dns.resolve("vm1.lab.example") == ["192.0.2.6"]
    dns.remove_host("vm1.lab.example", owns=owns_everything)
    assert dns.resolve("vm1.lab.example") == [] and isinstance(dns.server, FakeDNSServer)


def test_netbox_writes_are_undone_in_reverse_and_a_changed_object_is_left_alone(tmp_path: Path) -> None:
    netbox = FakeNetBox({"vm": [{"id": 7, "name": "vm1.lab.example", "cluster": {"id": 1}, "status": "active"}]})
    ctx = FakeCtx(load_config(tmp_path), netbox=netbox, dns_zones=["lab.example"])
    (made,) = ctx.netbox(read_write=True).create("ip-address", [{"address": "192.0.2.9/24",
                                                                  "dns_name": "vm1.lab.example"}])
    ctx.netbox(read_write=True).update("vm", [{"id": 7, "status": "offline"}])
    ctx.dns().set_host("vm1.lab.example", ["192.0.2.9"], owns=owns_nothing)
    assert [undo.action for _, undo in ctx.undo.steps] == ["ip-address-delete", "vm-restore", "rrset-restore"]
    assert ctx.undo.rollback() == []
    assert netbox.objects("ip-address") == [] and netbox.get("vm", id=7)["status"] == "active"
    assert ctx.dns().resolve("vm1.lab.example") == []

    ctx = FakeCtx(load_config(tmp_path), netbox=netbox)
    ctx.netbox(read_write=True).update("vm", [{"id": 7, "status": "offline"}])
    netbox.get("vm", id=7)["status"] = "planned"  # someone else changed it since
    (failure,) = ctx.undo.rollback()
    assert "changed since this write" in failure.error and netbox.get("vm", id=7)["status"] == "planned"
    assert made["id"] == 1


def test_a_command_undo_runs_where_its_check_passes(tmp_path: Path) -> None:
    remote = FakeRemote(lambda host, line: failed() if (host, line) == ("b.example", "depooled?") else ok())
    ctx = FakeCtx(load_config(tmp_path), remote=remote)
    undo = command_undo(["a.example", "b.example"], ["pool"], check="depooled?")
    ctx.remote().hosts(["a.example", "b.example"]).run_sync("depool", undo=undo)
    assert ctx.undo.rollback() == []
    assert remote.calls[2:] == [("a.example", "depooled?", True), ("b.example", "depooled?", True),
                                ("a.example", "pool", False)]


def test_the_context_takes_resource_locks_in_order_and_records_them(tmp_path: Path) -> None:
    ctx = FakeCtx(load_config(tmp_path))
    with resources.acquire(ctx, "lab", node="node2.example", instances=["vm2.example", "vm1.example"]), \
            ctx.lock("mine"):
        assert ctx.locks.held_keys()[-1] == "custom/mine"
    assert ctx.locks.taken == [resources.node_lock("lab", "node2.example"),
                               resources.instance_lock("lab", "vm1.example"),
                               resources.instance_lock("lab", "vm2.example"), "custom/mine"]
    assert ctx.locks.held_keys() == []


TREE_COOKBOOK = '''
"""Stop one instance (an example cookbook of another team's tree)."""

import argparse

from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster import resources
from libcluster.cookbook import CookbookBase, CookbookRunnerBase


class StopVM(CookbookBase):
    """Shut an instance down under its lock."""

    def argument_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(description=self.__doc__)
        add_location_args(parser, group=False)
        parser.add_argument("fqdn", type=fqdn_argument)
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        cluster_settings(self.ctx.config, args)
        return Runner(self.ctx, self.ctx.ganeti(args.cluster), args.fqdn)


class Runner(CookbookRunnerBase):
    def __init__(self, ctx, cluster, fqdn):
        self.ctx, self.cluster, self.fqdn = ctx, cluster, fqdn

    def run(self) -> int:
        self.ctx.confirm(f"Stop {self.fqdn}?")
        with resources.acquire(self.ctx, self.cluster.name, instances=[self.fqdn]):
            self.cluster.shutdown_instance(self.fqdn, timeout=30).wait()
        return 0
'''

TREE_TEST = '''
from pathlib import Path

import pytest

from libcluster.errors import ConfigError
from libcluster.resources import instance_lock
from libcluster.testing import FakeCluster, FakeCtx, load_config, load_cookbook

TREE = Path(__file__).resolve().parents[1]


def test_the_instance_is_stopped_under_its_lock(tmp_path):
    module = load_cookbook(TREE, "team.stop-vm")
    cluster = FakeCluster()
    cluster.add_instance("vm1.lab.example")
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
    cookbook = module.StopVM(ctx)
    runner = cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", "vm1.lab.example"]))
    assert runner.run() == 0
    assert cluster.instance("vm1.lab.example").status == "ADMIN_down"
    assert cluster.calls == [("shutdown", "vm1.lab.example", {"timeout": 30})]
    assert ctx.locks.taken == [instance_lock("lab", "vm1.lab.example")]


def test_an_unknown_cluster_is_refused(tmp_path):
    cookbook = load_cookbook(TREE, "team.stop-vm").StopVM(FakeCtx(load_config(tmp_path)))
    with pytest.raises(ConfigError, match="nowhere"):
        cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "nowhere", "vm1.lab.example"]))
'''


def test_a_tree_outside_the_repository_tests_its_cookbook_with_the_library(tmp_path: Path) -> None:
    tree = tmp_path / "team-tree"
    (tree / "cookbooks" / "team").mkdir(parents=True)
    (tree / "cookbooks" / "team" / "stop-vm.py").write_text(textwrap.dedent(TREE_COOKBOOK))
    (tree / "tests").mkdir()
    (tree / "tests" / "test_stop_vm.py").write_text(textwrap.dedent(TREE_TEST))
    assert "sys.path" not in TREE_TEST + TREE_COOKBOOK
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
