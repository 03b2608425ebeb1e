"""SSH in the lab: one sshd per node, the runner's key, ssh_config, known_hosts and the cumin config.

Every node gets the same host keys: Ganeti copies the master's host keys to each node it adds
(and pins them under the cluster name), so sharing them from the start keeps the runner's
known_hosts valid across node adds.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import yaml

from cookbook_lab import topology
from cookbook_lab.clusterfs import PART, ClusterPaths, write_if_changed
from cookbook_lab.common import Lab, wait_for
from cookbook_lab.netns import node_cmd

HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
"""Host key types; Ganeti distributes rsa and ecdsa, sshd also offers ed25519."""

SSH_PORT = 22

SSHD_CONFIG = """\
# Written by cookbook-lab: sshd of a lab node (root by key only).
Port 22
HostKey /etc/ssh/ssh_host_rsa_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 64
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""
"""sshd_config of every node: no PAM (no login noise, no loginuid in a container), keys only."""


def runner_key(paths: ClusterPaths) -> Path:
    """Private key the runner (cumin, tests, cookbooks) logs in with."""
    return paths.ssh_dir / "id_ed25519"


def ssh_config_file(paths: ClusterPaths) -> Path:
    """ssh_config reaching every node by its fqdn."""
    return paths.ssh_dir / "ssh_config"


def known_hosts_file(paths: ClusterPaths) -> Path:
    """known_hosts of the runner, built from the nodes' host keys."""
    return paths.ssh_dir / "known_hosts"


def control_dir(paths: ClusterPaths) -> Path:
    """ControlMaster sockets of the runner's connections."""
    return paths.ssh_dir / "cm"


def ensure_keys(lab: Lab, paths: ClusterPaths) -> None:
    """Generate the shared node host keys and the runner's key once."""
    host_keys = paths.ssh_dir / "host-keys"
    host_keys.mkdir(parents=True, exist_ok=True)
    for kind in HOST_KEY_TYPES:
        key = host_keys / f"ssh_host_{kind}_key"
        if not key.exists():
            lab.run(PART, ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{topology.DOMAIN}", "-f", str(key)])
    if not runner_key(paths).exists():
        lab.run(PART, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cookbook-lab-runner",
                       "-f", str(runner_key(paths))])
    control_dir(paths).mkdir(mode=0o700, exist_ok=True)


def seed_node(paths: ClusterPaths, node: topology.Node) -> None:
    """Give the node its /etc/ssh (host's client files, lab sshd_config, shared host keys) and /root/.ssh."""
    etc_ssh = paths.node_path(node, "/etc/ssh")
    if not (etc_ssh / "moduli").exists():
        shutil.copytree("/etc/ssh", etc_ssh, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("ssh_host_*"))
    write_if_changed(etc_ssh / "sshd_config", SSHD_CONFIG)
    for kind in HOST_KEY_TYPES:
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            name = f"ssh_host_{kind}_key{suffix}"
            if not (etc_ssh / name).exists():
                shutil.copyfile(paths.ssh_dir / "host-keys" / name, etc_ssh / name)
                (etc_ssh / name).chmod(mode)
    paths.node_path(node, "/root/.ssh").mkdir(mode=0o700, exist_ok=True)


def authorize(paths: ClusterPaths, node: topology.Node, public_keys: list[str]) -> None:
    """Append the public keys missing from the node's /root/.ssh/authorized_keys."""
    authorized = paths.node_path(node, "/root/.ssh/authorized_keys")
    present = authorized.read_text().splitlines() if authorized.exists() else []
    missing = [key for key in public_keys if key and key not in present]
    if missing:
        with authorized.open("a") as keys:
            keys.write("".join(f"{key}\n" for key in missing))
    authorized.chmod(0o600)


def runner_public_key(paths: ClusterPaths) -> str:
    """The runner's public key line."""
    return runner_key(paths).with_suffix(".pub").read_text().strip()


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to address:port succeeds (only call with the lab bridge up)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_sshd(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Start the node's sshd unless it answers (it writes /run/sshd.pid in the node, like Debian's)."""
    if port_open(node.ip, SSH_PORT):
        return
    lab.run(PART, node_cmd(paths, node, ["mkdir", "-p", "-m", "755", "/run/sshd"]))
    lab.run(PART, node_cmd(paths, node, ["/usr/sbin/sshd"]))
    wait_for(f"sshd on {node.fqdn}", lambda: port_open(node.ip, SSH_PORT), timeout=10, interval=0.1)


def write_client_config(paths: ClusterPaths) -> None:
    """Write known_hosts, ssh_config and the cumin config for every node of the topology (and the guests' stand-in)."""
    host_keys = paths.ssh_dir / "host-keys"
    known = []
    for node in topology.NODES:
        for kind in HOST_KEY_TYPES:
            algorithm, blob = (host_keys / f"ssh_host_{kind}_key.pub").read_text().split()[:2]
            known.append(f"{node.fqdn},{node.ip} {algorithm} {blob}")
    write_if_changed(known_hosts_file(paths), "\n".join(known) + "\n")
    common = [
        "User root",
        f"IdentityFile {runner_key(paths)}",
        "IdentitiesOnly yes",
        f"UserKnownHostsFile {known_hosts_file(paths)}",
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "BatchMode yes",
        "ConnectTimeout 5",
        "ControlMaster auto",
        f"ControlPath {control_dir(paths)}/%C",
        "ControlPersist 60",
        "LogLevel ERROR",
    ]
    lines = ["# Written by cookbook-lab: the lab nodes, reached as root with the lab key."]
    for node in topology.NODES:
        lines += [f"Host {node.fqdn} {node.short}", f"    HostName {node.ip}", *(f"    {opt}" for opt in common), ""]
    stand_in = topology.spare_nodes()[0]
    lines += ["# Guests of the fake hypervisor: the spare node's sshd stands in for their OS.",
              f"Host {topology.GUEST_PATTERN}", f"    HostName {stand_in.ip}", f"    HostKeyAlias {stand_in.fqdn}",
              *(f"    {opt}" for opt in common), ""]
    write_if_changed(ssh_config_file(paths), "\n".join(lines))
    cumin = {
        "transport": "clustershell",
        "default_backend": "direct",
        "log_file": str(paths.root / "cumin.log"),
        "clustershell": {"ssh_options": [f"-F {ssh_config_file(paths)}"], "fanout": 16, "connect_timeout": 10},
    }
    write_if_changed(paths.cumin_config, "# Written by cookbook-lab.\n" + yaml.safe_dump(cumin, sort_keys=False))


def close_connections(lab: Lab, paths: ClusterPaths) -> None:
    """Tell every ControlMaster of the runner's lab connections to exit."""
    for socket_path in control_dir(paths).glob("*") if control_dir(paths).is_dir() else []:
        lab.run(PART, ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "lab-node"], check=False, timeout=10)
