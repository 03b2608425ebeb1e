"""addnode on the lab with the spare node5: dry-run and bad input change nothing; a real add lands in Ganeti's
group B and NetBox's cluster B with node5's SSH host key pinned on the master and the hooks installed on node5;
a pre-check failure (master's key missing after `gnt-node remove`) names the fix; a wrong fingerprint, a run
without any (-y) and a spoofed node (other host keys) are refused before anything changes.

node5's true host key is read from its lab directory (what an operator reads on the node's console).
The spare is always put back as the lab prepares it: out of the cluster, no Ganeti daemon, the members'
root keys authorized again (cookbook_lab.cluster.authorize_spares), its NetBox device in no cluster, no
host key pinned for it and no hooks on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.cookbook_lab import (  # noqa: F401 - cluster is a fixture
    cluster,
    jobs_since,
    last_job_id,
    netbox,
    netbox_changes,
    planned_only,
    remote,
    run_cookbook,
)
from libcluster.hostkeys import GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS, HostKey, parse_public_keys
from tests.lab.cookbook_interrupt import run_interrupted
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.hooks import install
from cookbook_lab import netns, sshd, topology
from cookbook_lab import cluster as lab_cluster
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.remote import HostStatus

ADDNODE = "sre.ganeti.addnode"
SPARE = topology.spare_nodes()[0]
PATHS = ClusterPaths.of(Lab())
HOOK_FILES = [f"/etc/ganeti/hooks/{install.SCRIPT_NAME}", f"/etc/ganeti/hooks/{install.SCRIPT_NAME}.conf",
              *(f"/etc/ganeti/hooks/{hook}-post.d/{install.LINK_NAME}" for hook in install.HOOKS)]
"""What install-hooks puts on a node (besides etcd's CA, when one is configured)."""
HOOK_CA = f"/etc/ganeti/hooks/{install.CA_NAME}"


def _spare_key() -> str:
    """node5's ed25519 host key line (`type blob`), read from its /etc/ssh as on its console."""
    [key] = parse_public_keys(PATHS.node_path(SPARE, "/etc/ssh/ssh_host_ed25519_key.pub").read_text())
    return f"{key.kind} {key.blob}"


def _fingerprint() -> str:
    return parse_public_keys(_spare_key())[0].fingerprint


def _known_hosts(cluster: GanetiCluster) -> dict[str, str]:
    """The master's Ganeti and root known_hosts files ("" when absent)."""
    master = topology.node(cluster.master().split(".")[0])
    files = {path: PATHS.node_path(master, path) for path in (GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS)}
    return {path: file.read_text() if file.exists() else "" for path, file in files.items()}


def _hooks_on_spare() -> list[str]:
    return [path for path in (*HOOK_FILES, HOOK_CA) if PATHS.node_path(SPARE, path).is_symlink()
            or PATHS.node_path(SPARE, path).exists()]


def _forget_spare() -> None:
    """No host key pinned for the spare on any node (all copies of Ganeti's file alike), no hooks on the spare."""
    for node in topology.NODES:
        for path in (GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS):
            file = PATHS.node_path(node, path)
            if file.exists():
                lines = file.read_text().splitlines()
                kept = [line for line in lines if not line.startswith(f"{SPARE.fqdn} ")]
                if kept != lines:
                    file.write_text("".join(f"{line}\n" for line in kept))
    for path in _hooks_on_spare():
        PATHS.node_path(SPARE, path).unlink()


def _is_member(cluster: GanetiCluster) -> bool:
    try:
        cluster.node(SPARE.fqdn)
    except RapiNotFoundError:
        return False
    return True


def _ganeti_daemons() -> list[str]:
    return sorted(name for name in netns.process_names(netns.netns_pids(SPARE.netns)).values()
                  if name.startswith("ganeti-"))


def _device(lab_config: Path) -> dict:
    return netbox(lab_config).get("device", name=SPARE.fqdn)


def _restore_spare(cluster: GanetiCluster, lab_config: Path) -> None:
    """Put the spare back as `cookbook-lab up` leaves it."""
    if _is_member(cluster):
        cluster.commands.run(["gnt-node", "remove", SPARE.fqdn], is_safe=False)
    if _ganeti_daemons():
        remote(lab_config).hosts([SPARE.fqdn]).run_sync(["/usr/lib/ganeti/daemon-util", "stop-all"])
    paths = PATHS
    _forget_spare()
    lab_cluster.authorize_spares(paths, [node["name"] for node in cluster.nodes()])
    # Each add gives the node a new root key that it also authorizes for itself; `gnt-node remove` leaves it.
    authorized = paths.node_path(SPARE, "/root/.ssh/authorized_keys")
    lines = authorized.read_text().splitlines()
    kept = [line for line in lines if not line.endswith(f" root@{SPARE.fqdn}")]
    if kept != lines:
        authorized.write_text("".join(f"{line}\n" for line in kept))
    device = _device(lab_config)
    if device["cluster"] is not None:
        netbox(lab_config).update("device", [{"id": device["id"], "cluster": None}])


@pytest.fixture
def spare(cluster: GanetiCluster, lab_config: Path) -> Iterator[str]:
    """The spare node's FQDN (skips if it is not spare now); restored as the lab prepares it afterwards."""
    if _is_member(cluster):
        pytest.skip(f"{SPARE.fqdn} is in the cluster: not a spare now")
    _forget_spare()
    try:
        yield SPARE.fqdn
    finally:
        _restore_spare(cluster, lab_config)
        assert not _is_member(cluster) and _ganeti_daemons() == [] and _device(lab_config)["cluster"] is None
        probe = cluster.commands.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                                      "UserKnownHostsFile=/dev/null", SPARE.fqdn, "true"], is_safe=True)
        assert probe.rc == 0, "the master must reach the spare again"


def test_dry_run_and_bad_input_change_nothing(cluster: GanetiCluster, spare: str, lab_config: Path) -> None:
    device_id = _device(lab_config)["id"]
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "dcim.device", device_id)
    known = _known_hosts(cluster)
    fingerprint = ["--ssh-host-key-fingerprint", _fingerprint()]
    dry = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", *fingerprint, spare, dry_run=True)
    assert dry.returncode == 0
    assert f"Would remote command {cluster.master()} (commands=['gnt-node add -g B {spare}'])" in dry.stderr
    assert f"Pre-check SSH host key: OK ({_fingerprint()} (ssh-ed25519) of {spare}, trusted from " \
        "--ssh-host-key-fingerprint)" in dry.stderr
    pin = next(line for line in dry.stderr.splitlines() if "Would remote command" in line and "umask 077" in line)
    assert f"'{spare} {_spare_key()}' " in pin and f">> {GANETI_KNOWN_HOSTS}" in pin and f">> {ROOT_KNOWN_HOSTS}" in pin
    assert "Would netbox device-update" in dry.stderr and "Pre-check virtualization: OK" in dry.stderr
    for argv, message in [
        (["--cluster", "lab", "--group", "C", *fingerprint, spare], "unknown node group 'C' (configured: A, B)"),
        (["--cluster", "nope", "--group", "B", *fingerprint, spare], "unknown Ganeti cluster 'nope'"),
        (["--cluster", "lab", "--group", "A", *fingerprint, "node3.lab.example"],
         "node3.lab.example is already a node of cluster lab (group B): nothing to do"),
        # -y without a fingerprint and without a terminal: refused, with the fix.
        (["--cluster", "lab", "--group", "B", spare],
         f"no verified SSH host key for {spare}, and no terminal to confirm one (-y never accepts an unverified "
         "key): give --ssh-host-key-fingerprint SHA256:... as read on the node's console"),
    ]:
        done = run_cookbook(lab_config, ADDNODE, *argv)
        assert done.returncode == 94 and message in done.stderr, argv
    malformed = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                             "MD5:12:34", spare)
    assert malformed.returncode != 0 and "'MD5:12:34' is not an SSH SHA256 fingerprint" in malformed.stderr
    assert not _is_member(cluster) and _device(lab_config)["cluster"] is None
    assert jobs_since(cluster, marker, spare) == []
    assert netbox_changes(lab_config, "dcim.device", device_id) == changes
    assert _known_hosts(cluster) == known and _hooks_on_spare() == []
    assert planned_only(dry) and [c["action"] for c in dry.audit["changes"]] == ["command", "command",
                                                                                 "device-update"]


def _refused_unchanged(cluster: GanetiCluster, lab_config: Path, fingerprint: str, seen: list[str]) -> None:
    """addnode with fingerprint stops at the host key pre-check naming it and the seen ones; nothing changed."""
    device_id = _device(lab_config)["id"]
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "dcim.device", device_id)
    known = _known_hosts(cluster)
    done = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                        fingerprint, SPARE.fqdn)
    assert done.returncode == 1
    prefix = (f"ERROR: Pre-check failed: SSH host key: mismatch: expected {fingerprint} (from "
              "--ssh-host-key-fingerprint), the master sees ")
    [error] = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    shown = error[len(prefix):].split(". Fix: ")[0]
    assert sorted(shown.split(", ")) == sorted(seen)
    assert "nothing was changed" in done.stderr
    assert not _is_member(cluster) and jobs_since(cluster, marker, SPARE.fqdn) == []
    assert {node["name"] for node in cluster.nodes()} == {node.fqdn for node in topology.cluster_nodes()}
    assert netbox_changes(lab_config, "dcim.device", device_id) == changes
    assert _known_hosts(cluster) == known and _hooks_on_spare() == []
    assert done.audit is not None and done.audit["changes"] == []


def test_a_wrong_fingerprint_is_refused_and_changes_nothing(cluster: GanetiCluster, spare: str,
                                                            lab_config: Path) -> None:
    wrong = "SHA256:" + "A" * 43
    true_keys = parse_public_keys("".join(path.read_text() for path in
                                          PATHS.node_path(SPARE, "/etc/ssh").glob("ssh_host_*_key.pub")))
    _refused_unchanged(cluster, lab_config, wrong, [key.describe() for key in true_keys])


def _runner_trusting(lab_config: Path, tmp_path: Path, keys: list[HostKey]) -> Path:
    """A config whose runner also accepts keys for the spare, on SSH connections of its own: a runner that never
    met the new server, so that only addnode's own check on the master stands between it and the cluster."""
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_file(PATHS).read_text()
                     + "".join(f"{SPARE.fqdn},{SPARE.ip} {key.kind} {key.blob}\n" for key in keys))
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(sshd.ssh_config_file(PATHS).read_text()
                          .replace(str(sshd.known_hosts_file(PATHS)), str(known))
                          .replace(f"ControlPath {sshd.control_dir(PATHS)}/%C", "ControlPath none"))
    cumin = yaml.safe_load(PATHS.cumin_config.read_text())
    cumin.update(log_file=str(tmp_path / "cumin.log"))
    cumin["clustershell"]["ssh_options"] = [f"-F {ssh_config}"]
    (tmp_path / "cumin.yaml").write_text(yaml.safe_dump(cumin))
    config = yaml.safe_load(lab_config.read_text())
    config["remote"]["cumin_config"] = str(tmp_path / "cumin.yaml")
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_spoofed_node_is_refused_and_changes_nothing(cluster: GanetiCluster, spare: str, lab_config: Path,
                                                       tmp_path: Path) -> None:
    """Another machine answering as node5 to the master (here: node5's sshd with other host keys) never gets the
    add, even when the runner itself would accept it."""
    real = _fingerprint()
    etc_ssh = PATHS.node_path(SPARE, "/etc/ssh")
    saved = {path: path.read_bytes() for path in etc_ssh.glob("ssh_host_*_key*")}
    spoofed = []
    for kind in sshd.HOST_KEY_TYPES:
        key = tmp_path / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "spoof", "-f", str(key)], check=True)
        spoofed += parse_public_keys(key.with_suffix(".pub").read_text())
    trusting = _runner_trusting(lab_config, tmp_path, spoofed)
    try:
        for kind in sshd.HOST_KEY_TYPES:
            for suffix in ("", ".pub"):
                shutil.copyfile(tmp_path / f"ssh_host_{kind}_key{suffix}", etc_ssh / f"ssh_host_{kind}_key{suffix}")
        reached = remote(trusting).hosts([spare]).run_sync(["true"], is_safe=True)[spare]
        assert reached.status is HostStatus.OK, "the runner of this test must accept the spoofed node"
        _refused_unchanged(cluster, trusting, real, [key.describe() for key in spoofed])
    finally:
        for path, content in saved.items():
            path.write_bytes(content)


def test_a_missing_volume_group_stops_the_add_with_the_fix(cluster: GanetiCluster, spare: str, lab_config: Path,
                                                          tmp_path: Path) -> None:
    config = yaml.safe_load(lab_config.read_text())
    config["ganeti"]["clusters"]["lab"]["volume_group"] = "xenvg"  # the lab's nodes have no LVM
    with_vg = tmp_path / "config.yaml"
    with_vg.write_text(yaml.safe_dump(config))
    marker, changes = last_job_id(cluster), netbox_changes(lab_config, "dcim.device", _device(lab_config)["id"])
    done = run_cookbook(with_vg, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                        _fingerprint(), spare)
    assert done.returncode == 1
    assert "Pre-check failed: volume group xenvg:" in done.stderr and 'Volume group "xenvg" not found' in done.stderr
    assert f"create the LVM volume group xenvg on {spare}" in done.stderr
    assert not _is_member(cluster) and jobs_since(cluster, marker, spare) == []
    assert netbox_changes(lab_config, "dcim.device", _device(lab_config)["id"]) == changes


def test_add_to_group_b_then_a_failed_precheck_names_the_fix(cluster: GanetiCluster, spare: str,
                                                            lab_config: Path) -> None:
    marker = last_job_id(cluster)
    done = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                        _fingerprint(), spare)
    assert done.returncode == 0
    assert cluster.node(spare)["group.uuid"] == cluster.group("B")["uuid"]
    # The key was pinned on the master, and Ganeti checked it: no --no-ssh-key-check anywhere.
    for path, text in _known_hosts(cluster).items():
        assert f"{spare} {_spare_key()}" in text.splitlines(), path
    assert "--no-ssh-key-check" not in json.dumps(done.audit)
    assert f"gnt-node add -g B {spare}" in json.dumps(done.audit)
    # The hooks are on the new node, with its settings.
    assert set(HOOK_FILES) <= set(_hooks_on_spare())
    conf = PATHS.node_path(SPARE, f"/etc/ganeti/hooks/{install.SCRIPT_NAME}.conf").read_text()
    assert "CLUSTER=lab" in conf.splitlines()
    netbox_b = netbox(lab_config).get("cluster", name="B")
    assert _device(lab_config)["cluster"]["id"] == netbox_b["id"]
    assert [(job["summary"], job["status"]) for job in jobs_since(cluster, marker, spare)] == [
        ([f"NODE_ADD({spare})"], "success")]

    # `gnt-node remove` deletes the master's key on the removed node: adding it again must stop at the
    # first pre-check with the fix, before any change.
    cluster.commands.run(["gnt-node", "remove", spare], is_safe=False)
    netbox(lab_config).update("device", [{"id": _device(lab_config)["id"], "cluster": None}])
    again = run_cookbook(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                         _fingerprint(), spare)
    assert again.returncode == 1
    assert f"Pre-check failed: SSH from the master: {cluster.master()} cannot log in to {spare}" in again.stderr
    assert f"/root/.ssh/id_rsa.pub to /root/.ssh/authorized_keys on {spare}" in again.stderr
    assert not _is_member(cluster) and _device(lab_config)["cluster"] is None


def test_an_interrupt_after_the_add_names_what_is_left(cluster: GanetiCluster, spare: str, lab_config: Path) -> None:
    """SIGINT once the node is in the cluster (the end of `gnt-node add` or the verify after it): the node stays
    (removing it unasked could do worse) and the run ends 93 naming it, the NetBox device and hooks not done yet,
    and how to finish or undo."""
    done = run_interrupted(lab_config, ADDNODE, "--cluster", "lab", "--group", "B", "--ssh-host-key-fingerprint",
                           _fingerprint(), spare, reached=lambda err: "Adding" in err and _is_member(cluster))
    assert done.returncode == 93
    assert f"left: {spare} is a node of cluster lab (group B)" in done.stderr
    assert f"sre.ganeti.install-hooks --cluster lab --node {spare}" in done.stderr
    assert f"to undo the add instead: gnt-node remove {spare}" in done.stderr
    assert _is_member(cluster) and _device(lab_config)["cluster"] is None
