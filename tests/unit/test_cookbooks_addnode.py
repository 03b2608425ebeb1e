"""addnode: checks before any change, every pre-check's failure and fix, add/verify/NetBox, removal on new errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cookbook_fakes import (
    FakeCluster,
    FakeCtx,
    FakeNetBox,
    FakeRemote,
    failed,
    load_config,
    load_cookbook,
    ok,
)
from libcluster.errors import ConfigError, LibclusterError
from libcluster.interactive import AbortError
from libcluster.remote import HostStatus

NODE = "node9.example"
MASTER = "node1.example"
VERSION = "gnt-cluster (ganeti 3.0.2-3) 3.0.2"
ENODESETUP = "  - WARNING:ENODESETUP:node:node1.example:node setup error: no /proc/sysrq-trigger"


@pytest.fixture
def addnode() -> Any:
    """The cookbook module."""
    return load_cookbook("sre.ganeti.addnode")


def healthy(host: str, line: str) -> tuple[HostStatus, int, str]:
    """A node that passes every pre-check."""
    answers = {
        "gnt-cluster --version": ok(VERSION + "\n"),
        f"getent hosts {NODE}": ok(f"198.51.100.19   {NODE}\n"),
        "hostname -I": ok("198.51.100.19 \n"),
        "ip -br link show type bridge dev br0": ok("br0 UP 2a:4c:c0:7c:0a:85 <BROADCAST,UP>\n"),
        "vgs --noheadings -o vg_name ganeti": ok("  ganeti\n"),
    }
    return answers.get(line, ok())


def _netbox(device: bool = True) -> FakeNetBox:
    return FakeNetBox({
        "device": [{"id": 9, "name": NODE, "cluster": None}] if device else [],
        "cluster-group": [{"id": 1, "name": "lab", "slug": "lab"}],
        "cluster": [{"id": 11, "name": "A", "group": {"id": 1}}, {"id": 12, "name": "B", "group": {"id": 1}}],
    })


def _make(addnode: Any, tmp_path: Path, *, respond: Any = healthy, dry_run: bool = False, group: str = "B",
          netbox: FakeNetBox | None = None, **config: Any) -> tuple[Any, FakeCtx, FakeCluster]:
    cluster = FakeCluster(dry_run=dry_run)
    ctx = FakeCtx(load_config(tmp_path, **config), clusters={"lab": cluster}, dry_run=dry_run,
                  netbox=netbox or _netbox(), remote=FakeRemote(respond, dry_run=dry_run))
    if netbox is None:
        ctx.netbox().dry_run = dry_run
    cookbook = addnode.AddNode(ctx)
    args = cookbook.argument_parser().parse_args(["--cluster", "lab", "--group", group, NODE])
    return cookbook.get_runner(args), ctx, cluster


def test_node_is_added_verified_and_joins_the_netbox_cluster(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path, volume_group="ganeti")
    cluster.commands.verify_outputs = [(0, ENODESETUP)]
    assert runner.run() == 0
    assert cluster.calls == [("verify",), ("node_add", NODE, {"group": "B", "ssh_key_check": False}), ("verify",)]
    assert ctx.netbox().get("device", id=9)["cluster"] == {"id": 12}
    commands = [(host, line) for host, line, _ in ctx.remote().calls]
    assert commands[0] == (MASTER, "ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no "
                           f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@{NODE} true")
    assert (NODE, "vgs --noheadings -o vg_name ganeti") in commands and (NODE, "test -e /dev/kvm") in commands
    assert all(is_safe for _, _, is_safe in ctx.remote().calls)
    assert runner.lock_args.suffix == "lab" and runner.lock_args.concurrency == 1


BROKEN = [
    ("ssh -o", failed(255, "Permission denied (publickey)."), "SSH from the master",
     f"add {MASTER}'s /root/.ssh/id_rsa.pub to /root/.ssh/authorized_keys on {NODE}"),
    ("gnt-cluster --version", None, "same Ganeti version", f"install the master's Ganeti version on {NODE}"),
    ("getent hosts", ok("198.51.100.99 node9.example\n"), "name resolution", f"make {NODE} resolve"),
    ("ip -br link", failed(1, 'Device "br0" does not exist.'), "bridge br0", f"create bridge br0 on {NODE}"),
    ("vgs ", failed(5, 'Volume group "ganeti" not found'), "volume group ganeti",
     f"create the LVM volume group ganeti on {NODE}"),
    ("test -e /dev/kvm", failed(1), "virtualization", "enable virtualization"),
]


@pytest.mark.parametrize(("prefix", "answer", "check", "fix"), BROKEN, ids=[case[2] for case in BROKEN])
def test_each_failed_precheck_names_its_fix_and_changes_nothing(addnode: Any, tmp_path: Path, caplog: Any,
                                                                prefix: str, answer: Any, check: str,
                                                                fix: str) -> None:
    def respond(host: str, line: str) -> tuple[HostStatus, int, str]:
        if line.startswith(prefix):
            if answer is None:  # the node runs another version
                return ok("gnt-cluster (ganeti 2.16.2) 2.16.2\n") if host == NODE else healthy(host, line)
            return answer
        return healthy(host, line)

    runner, ctx, cluster = _make(addnode, tmp_path, respond=respond, volume_group="ganeti")
    assert runner.run() == 1
    assert cluster.calls == [] and ctx.netbox().updates == []
    assert re.search(f"Pre-check failed: {re.escape(check)}: .*Fix: {re.escape(fix)}", caplog.text)


def test_volume_group_check_is_skipped_when_none_is_configured(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, _ = _make(addnode, tmp_path)
    assert runner.run() == 0
    assert not any(line.startswith("vgs") for _, line, _ in ctx.remote().calls)


def test_bad_input_is_refused_before_any_change(addnode: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown node group 'C'"):
        _make(addnode, tmp_path, group="C")
    with pytest.raises(LibclusterError, match="NetBox has no device named node9.example"):
        _make(addnode, tmp_path, netbox=_netbox(device=False))
    cluster = FakeCluster()
    cluster.nodes_by_name[NODE] = {"name": NODE, "group.uuid": "uuid-A"}
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster}, netbox=_netbox(), remote=FakeRemote(healthy))
    cookbook = addnode.AddNode(ctx)
    with pytest.raises(LibclusterError, match="already a node of cluster lab .group A.: nothing to do"):
        cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", "--group", "B", NODE]))
    cluster.group_list = [{"name": "A", "uuid": "uuid-A"}]
    with pytest.raises(LibclusterError, match="cluster lab has no node group B in Ganeti"):
        cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", "--group", "B", "n8.example"]))
    assert cluster.calls == [] and ctx.remote().calls == []


def test_new_verify_errors_offer_to_remove_the_node_again(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)
    cluster.commands.verify_outputs = [(0, ""), (1, f"  - ERROR:ENODESSH:node:{NODE}:ssh problem")]
    assert runner.run() == 1
    assert cluster.calls[-1] == ("run", f"gnt-node remove {NODE}", False)
    assert NODE not in cluster.nodes_by_name and ctx.netbox().updates == []
    assert "remove node9.example from cluster lab again?" in ctx.confirmations[-1]


def test_the_operator_may_keep_the_node(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)
    cluster.commands.verify_outputs = [(0, ""), (1, f"  - ERROR:ENODESSH:node:{NODE}:ssh problem")]
    ctx.confirm = _abort_on("remove", ctx)
    assert runner.run() == 1
    assert NODE in cluster.nodes_by_name and not any(call[0] == "run" for call in cluster.calls)


def _abort_on(word: str, ctx: FakeCtx) -> Any:
    """A confirm() that records the question and answers "abort" to those containing word."""

    def confirm(message: str) -> None:
        ctx.confirmations.append(message)
        if word in message:
            raise AbortError(f"aborted by the operator at: {message}")

    return confirm


def test_errors_the_cluster_had_before_do_not_count(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)
    old = "  - ERROR:EINSTANCEDOWN:instance:vm3.example:instance not running on its primary node"
    cluster.commands.verify_outputs = [(1, old), (1, old)]
    assert runner.run() == 0
    assert ctx.netbox().updates == [("device", [{"id": 9, "cluster": 12}])]


def test_a_verify_that_did_not_complete_is_tried_again(addnode: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    runner, _, cluster = _make(addnode, tmp_path)
    cluster.commands.verify_outputs = [(0, ""), (1, "1 job(s) failed while verifying the cluster."), (0, "")]
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["verify", "node_add", "verify", "verify"]


def test_dry_run_checks_and_plans_only(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path, dry_run=True)
    assert runner.run() == 0
    assert cluster.calls == [("verify",), ("node_add", NODE, {"group": "B", "ssh_key_check": False})]
    assert NODE not in cluster.nodes_by_name
    assert ctx.netbox().updates == [("device", [{"id": 9, "cluster": 12}])]
    assert ctx.netbox().get("device", id=9)["cluster"] is None
