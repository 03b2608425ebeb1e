"""addnode: checks before any change, every pre-check's failure and fix, the node's SSH host key verified (given,
from NetBox or confirmed) and pinned before a checked `gnt-node add`, add/verify/NetBox/hooks, removal on new errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster import config as config_module
from libcluster import interactive
from libcluster.cookbook import EXIT_EXCEPTION, EXIT_INTERRUPTED, EXIT_ROLLBACK_FAILED
from libcluster.errors import ConfigError, LibclusterError
from libcluster.ganeti.errors import GntCommandError
from libcluster.interactive import AbortError
from libcluster.remote import HostStatus
from libcluster.testing import (
    FakeCluster,
    FakeCtx,
    FakeNetBox,
    FakeRemote,
    failed,
    load_config,
    load_cookbook,
    ok,
    run_runner,
)

TREE = Path(__file__).resolve().parents[2]
"""This checkout: the folder holding cookbooks/."""

NODE = "node9.example"
MASTER = "node1.example"
VERSION = "gnt-cluster (ganeti 3.0.2-3) 3.0.2"
ENODESETUP = "  - WARNING:ENODESETUP:node:node1.example:node setup error: no /proc/sysrq-trigger"
NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcOnpCghuLm9Gll/v8g+4AyHDbDzBvLpoIMWiiSbR1w"
NODE_FP = "SHA256:7buM858RxMBOOJgQFBHi4SgR4xvr/2KcHxPOwZ0P+as"
"""A real key and the fingerprint `ssh-keygen -lf` printed for it."""
SPOOF_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILCgNf+KuC72QQmphwCbYC6MDwlAu5T/CdkyZjopESei"
SPOOF_FP = "SHA256:MI0HoxT+2s+yQ13fJXRUS9faujJuPQUQBQy5XKBJDT4"
CLUSTER_RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"
GANETI_KNOWN = "/var/lib/ganeti/known_hosts"
ROOT_KNOWN = "/root/.ssh/known_hosts"


@pytest.fixture
def addnode() -> Any:
    """The cookbook module."""
    return load_cookbook(TREE, "sre.ganeti.addnode")


def healthy(host: str, line: str) -> tuple[HostStatus, int, str]:
    """A node that passes every pre-check."""
    answers = {
        f"ssh-keyscan -T 10 {NODE}": ok(f"# {NODE}:22 SSH-2.0-OpenSSH_9.2p1\n{NODE} {NODE_KEY}\n"),
        "sh -c 'for f in \"$@\"; do [ -f \"$f\" ] && cat \"$f\"; done; true' - /etc/ssh/ssh_host_dsa_key.pub "
        "/etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_rsa_key.pub": ok(f"{CLUSTER_RSA} root@node1\n"),
        f"sh -c 'cat \"$1\" 2>/dev/null; true' - {GANETI_KNOWN}": ok(f"cluster.example {CLUSTER_RSA}\n"),
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


class Ctx(FakeCtx):
    """FakeCtx that also records run_cookbook calls (exit code from `cookbook_exit`) and answers ask_input."""

    def __init__(self, *args: Any, answers: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cookbooks: list[tuple[str, list[str]]] = []
        self.cookbook_exit = 0
        self.answers = answers
        self.questions: list[str] = []

    def run_cookbook(self, name: str, args: Any = (), raises: bool = True) -> int:
        self.cookbooks.append((name, list(args)))
        return self.cookbook_exit

    def ask_input(self, message: str, choices: Any = None, validator: Any = None) -> str:
        self.questions.append(message)
        if self.answers is None:
            raise interactive.InputError(f"no terminal to ask for an answer: {message}")
        return self.answers.pop(0)


def _config(tmp_path: Path, *, hooks: bool = True, hooks_prefix: str | None = None,
            **overrides: Any) -> config_module.Section:
    load_config(tmp_path, **overrides)
    path = tmp_path / "config.yaml"
    data = yaml.safe_load(path.read_text())
    if hooks:
        data["hooks"] = {"etcd_url": "http://198.51.100.2:2379"}
        if hooks_prefix:
            data["hooks"]["etcd_prefix"] = hooks_prefix
    path.write_text(yaml.safe_dump(data))
    return config_module.load(path)


def _make(addnode: Any, tmp_path: Path, *, respond: Any = healthy, dry_run: bool = False, group: str = "B",
          netbox: FakeNetBox | None = None, fingerprint: str | None = NODE_FP, hooks: bool = True,
          answers: list[str] | None = None, hooks_prefix: str | None = None,
          **config: Any) -> tuple[Any, Ctx, FakeCluster]:
    cluster = FakeCluster(dry_run=dry_run)
    ctx = Ctx(_config(tmp_path, hooks=hooks, hooks_prefix=hooks_prefix, **config), clusters={"lab": cluster}, dry_run=dry_run,
              netbox=netbox or _netbox(), remote=FakeRemote(respond, dry_run=dry_run), answers=answers,
              base_dirs=[TREE])  # the undo steps are the cookbook's own undo()
    if netbox is None:
        ctx.netbox().dry_run = dry_run
    cookbook = addnode.AddNode(ctx)
    given = ["--ssh-host-key-fingerprint", fingerprint] if fingerprint else []
    args = cookbook.argument_parser().parse_args(["--cluster", "lab", "--group", group, *given, NODE])
    return cookbook.get_runner(args), ctx, cluster


def _pins(ctx: FakeCtx) -> list[tuple[str, str, bool]]:
    return [call for call in ctx.remote().calls if call[1].startswith(("umask 077", "t=$(mktemp)"))]


def test_node_is_added_verified_and_joins_the_netbox_cluster(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path, volume_group="ganeti")
    cluster.commands.verify_outputs = [(0, ENODESETUP)]
    assert runner.run() == 0
    assert cluster.calls == [("verify",), ("node_add", NODE, {"group": "B", "ssh_key_check": True}), ("verify",)]
    assert ctx.netbox().get("device", id=9)["cluster"] == {"id": 12}
    commands = [(host, line) for host, line, _ in ctx.remote().calls]
    assert commands[0] == (MASTER, f"ssh-keyscan -T 10 {NODE}")
    assert commands[1] == (MASTER, "ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=yes "
                           "-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null "
                           f"-o 'KnownHostsCommand=/bin/echo {NODE} {NODE_KEY}' -o HostKeyAlgorithms=ssh-ed25519 "
                           f"-o LogLevel=ERROR root@{NODE} true")
    assert (NODE, "vgs --noheadings -o vg_name ganeti") in commands and (NODE, "test -e /dev/kvm") in commands
    # The verified key and the cluster's host keys (Ganeti installs them on the node during the add) are pinned
    # where missing: Ganeti's known_hosts had neither, root's did not exist.
    [(host, pin, is_safe)] = _pins(ctx)
    new = f"\'{NODE} {NODE_KEY}\' \'{NODE} {CLUSTER_RSA}\'"
    assert (host, pin, is_safe) == (MASTER, f"umask 077 && mkdir -p $(dirname {GANETI_KNOWN}) && printf \'%s\\n\' "
                                    f"{new} >> {GANETI_KNOWN} && mkdir -p $(dirname {ROOT_KNOWN}) && printf "
                                    f"\'%s\\n\' {new} >> {ROOT_KNOWN}", False)
    assert commands.index((MASTER, pin)) == len(commands) - 1  # after every pre-check
    assert all(is_safe for _, line, is_safe in ctx.remote().calls if line != pin)
    assert ctx.cookbooks == [("sre.ganeti.install-hooks", ["--cluster", "lab", "--node", NODE])]
    assert runner.lock_args.suffix == "lab" and runner.lock_args.concurrency == 1


BROKEN = [
    (f"ssh-keyscan -T 10 {NODE}", ok(f"{NODE} {SPOOF_KEY}\n"), "SSH host key",
     f"check the fingerprint on {NODE}'s console; if it is right, the master is not talking to the real {NODE}"),
    (f"ssh-keyscan -T 10 {NODE}", failed(1, f"{NODE}: Connection refused"), "SSH host key",
     f"check that sshd runs on {NODE}"),
    ("ssh -o", failed(255, "Permission denied (publickey)."), "SSH from the master",
     f"add {MASTER}'s /root/.ssh/id_rsa.pub to /root/.ssh/authorized_keys on {NODE}"),
    ("gnt-cluster --version", None, "same Ganeti version", f"install the master's Ganeti version on {NODE}"),
    ("getent hosts", ok("198.51.100.99 node9.example\n"), "name resolution", f"make {NODE} resolve"),
    ("ip -br link", failed(1, 'Device "br0" does not exist.'), "bridge br0", f"create bridge br0 on {NODE}"),
    ("vgs ", failed(5, 'Volume group "ganeti" not found'), "volume group ganeti",
     f"create the LVM volume group ganeti on {NODE}"),
    ("test -e /dev/kvm", failed(1), "virtualization", "enable virtualization"),
]


@pytest.mark.parametrize(("prefix", "answer", "check", "fix"), BROKEN,
                         ids=[f"{case[2]}-{case[1] and case[1][1]}" for case in BROKEN])
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
    assert cluster.calls == [] and ctx.netbox().updates == [] and _pins(ctx) == [] and ctx.cookbooks == []
    assert all(is_safe for _, _, is_safe in ctx.remote().calls)
    assert re.search(f"Pre-check failed: {re.escape(check)}: .*Fix: {re.escape(fix)}", caplog.text)


def test_a_host_key_mismatch_names_both_fingerprints(addnode: Any, tmp_path: Path, caplog: Any) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path, fingerprint=SPOOF_FP)
    assert runner.run() == 1
    assert (f"Pre-check failed: SSH host key: mismatch: expected {SPOOF_FP} (from --ssh-host-key-fingerprint), "
            f"the master sees {NODE_FP} (ssh-ed25519)") in caplog.text
    assert cluster.calls == [] and _pins(ctx) == [] and len(ctx.remote().calls) == 1


def test_the_fingerprint_may_come_from_netbox_and_must_agree_with_the_given_one(addnode: Any, tmp_path: Path) -> None:
    netbox = _netbox()
    netbox.get("device", id=9)["custom_fields"] = {"ssh_host_key_fingerprint": NODE_FP}
    runner, ctx, cluster = _make(addnode, tmp_path, netbox=netbox, fingerprint=None)
    assert runner.trusted.source == "NetBox custom field ssh_host_key_fingerprint"
    assert runner.run() == 0 and ("node_add", NODE, {"group": "B", "ssh_key_check": True}) in cluster.calls
    differs = f"--ssh-host-key-fingerprint {SPOOF_FP} differs from NetBox device"
    with pytest.raises(LibclusterError, match=re.escape(differs)):
        _make(addnode, tmp_path, netbox=netbox, fingerprint=SPOOF_FP)
    netbox.get("device", id=9)["custom_fields"] = {"ssh_host_key_fingerprint": "MD5:aa:bb"}
    with pytest.raises(LibclusterError, match="custom field ssh_host_key_fingerprint: 'MD5:aa:bb' is not an SSH"):
        _make(addnode, tmp_path, netbox=netbox, fingerprint=None)


def test_without_a_fingerprint_or_terminal_the_add_is_refused_with_the_fix(addnode: Any, tmp_path: Path,
                                                                           monkeypatch: Any) -> None:
    monkeypatch.setattr(interactive, "is_terminal", lambda: False)
    with pytest.raises(LibclusterError, match="no verified SSH host key for node9.example, and no terminal to confirm "
                       r"one \(-y never accepts an unverified key\): give --ssh-host-key-fingerprint SHA256:"):
        _make(addnode, tmp_path, fingerprint=None)
    with pytest.raises(SystemExit):
        _make(addnode, tmp_path, fingerprint="SHA256:short")


def test_at_a_terminal_the_operator_confirms_the_keys_shown(addnode: Any, tmp_path: Path, monkeypatch: Any,
                                                           capsys: Any) -> None:
    monkeypatch.setattr(interactive, "is_terminal", lambda: True)
    runner, ctx, cluster = _make(addnode, tmp_path, fingerprint=None, answers=["accept"])
    assert runner.run() == 0
    assert f"  {NODE_FP} (ssh-ed25519)" in capsys.readouterr().out
    assert ctx.questions == [f"Trust the SSH host keys of {NODE}?"] and len(_pins(ctx)) == 1
    runner, ctx, cluster = _make(addnode, tmp_path, fingerprint=None, answers=["abort"])
    with pytest.raises(AbortError, match="SSH host keys of node9.example not trusted"):
        runner.run()
    assert cluster.calls == [] and _pins(ctx) == []


def test_a_failed_add_removes_the_pinned_keys_again(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)
    def node_add(node: str, **options: Any) -> None:
        raise GntCommandError("gnt-node add", MASTER, 1, "Host key verification failed.")

    cluster.commands.node_add = node_add
    outcome = run_runner(runner, ctx)  # run(), then the undo steps, as the runner does
    assert (outcome.exit_code, outcome.raised) == (EXIT_EXCEPTION, True)
    pin, unpin = _pins(ctx)
    assert unpin[1].startswith(f"t=$(mktemp) && {{ grep -vxF -e \'{NODE} {NODE_KEY}\' -e \'{NODE} {CLUSTER_RSA}\' "
                               f"{GANETI_KNOWN} > \"$t\"; cat \"$t\" > {GANETI_KNOWN}; }}")
    assert ctx.cookbooks == [] and ctx.netbox().updates == []


def test_an_interrupt_after_the_add_names_what_is_left(addnode: Any, tmp_path: Path, caplog: Any) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)

    original_add = cluster.commands.node_add

    def added_then_interrupted(node: str, **options: Any) -> None:
        original_add(node, **options)
        raise KeyboardInterrupt

    cluster.commands.node_add = added_then_interrupted
    assert run_runner(runner, ctx).exit_code == EXIT_ROLLBACK_FAILED
    [message] = [record.getMessage() for record in caplog.records if "left behind:" in record.getMessage()]
    assert message.startswith(f"left behind: node {NODE} (id unknown): LibclusterError: left: ")
    assert f"{NODE} is a node of cluster lab (group B)" in message
    assert "NetBox device" in message and "is not in cluster" in message
    assert f"cookbook sre.ganeti.install-hooks --cluster lab --node {NODE}" in message
    assert f"gnt-node remove {NODE}" in message
    assert len(_pins(ctx)) == 1  # pinned, never unpinned: the node is in the cluster


def test_an_interrupt_during_the_add_of_a_node_that_did_not_join_unpins(addnode: Any, tmp_path: Path) -> None:
    runner, ctx, cluster = _make(addnode, tmp_path)

    def interrupted(node: str, **options: Any) -> None:
        raise KeyboardInterrupt

    cluster.commands.node_add = interrupted
    assert run_runner(runner, ctx).exit_code == EXIT_INTERRUPTED
    assert len(_pins(ctx)) == 2 and ctx.netbox().updates == []


def test_a_broken_hooks_section_stops_before_any_change(addnode: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hooks.etcd_prefix"):
        _make(addnode, tmp_path, hooks_prefix="/ganeti-cookbooks/locks/")


def test_hooks_failing_or_not_configured(addnode: Any, tmp_path: Path, caplog: Any) -> None:
    runner, ctx, _ = _make(addnode, tmp_path)
    ctx.cookbook_exit = 1
    assert runner.run() == 1
    assert f"run cookbook sre.ganeti.install-hooks --cluster lab --node {NODE}" in caplog.text
    runner, ctx, _ = _make(addnode, tmp_path, hooks=False)
    assert runner.run() == 0 and ctx.cookbooks == []
    assert f"hooks not installed on {NODE}" in caplog.text


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
    assert cluster.calls[-1] == ("node_remove", NODE)
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
    assert cluster.calls == [("verify",), ("node_add", NODE, {"group": "B", "ssh_key_check": True})]
    assert [safe for _, _, safe in _pins(ctx)] == [False] and ctx.remote().dry_run  # recorded, not run
    assert ctx.cookbooks == [("sre.ganeti.install-hooks", ["--cluster", "lab", "--node", NODE])]
    assert NODE not in cluster.nodes_by_name
    assert ctx.netbox().updates == [("device", [{"id": 9, "cluster": 12}])]
    assert ctx.netbox().get("device", id=9)["cluster"] is None
