"""Where the Ganeti part keeps its files on the host, and where each node sees them.

Every node shares the host's file system except for the per-node directories and files
bind-mounted over the paths below inside the node's own mount namespace; all of them live
under one directory of the lab's state dir so that `down` knows exactly what is the lab's.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from cookbook_lab import topology
from cookbook_lab.common import Lab

PART = "ganeti"
"""Name of the cluster part: its log file, its status key and its state subdirectory."""

NODE_DIRS: tuple[tuple[str, str], ...] = (
    ("etc-ganeti", "/etc/ganeti"),
    ("var-lib-ganeti", "/var/lib/ganeti"),
    ("var-log-ganeti", "/var/log/ganeti"),
    ("etc-ssh", "/etc/ssh"),
    ("root", "/root"),
    ("srv", "/srv"),
)
"""Per-node host directory (under the node's dir) and the path it is bind-mounted over in the node."""

FILE_STORAGE_DIR = "/srv/ganeti/file-storage"
SHARED_FILE_STORAGE_DIR = "/srv/ganeti/shared-file-storage"
"""Ganeti's storage dirs inside a node; the shared one is the same host dir on every node (like NFS)."""

NEUTRALISED_COMMANDS = ("reboot", "halt", "poweroff", "shutdown", "systemctl")
"""Commands replaced by a stub inside every node (the nodes share the machine's kernel): `reboot` restarts only
that lab node (cookbook_lab.nodepower), the others do nothing."""

SYSRQ_TRIGGER = "/proc/sysrq-trigger"
"""Where a write of "b" reboots the machine at once; /dev/null is mounted over it in nodes when it exists."""

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of commands run inside nodes (never the runner's, which may point into a venv)."""


@dataclass(frozen=True)
class ClusterPaths:
    """Host paths of the Ganeti part's state (all under `<state dir>/ganeti`)."""

    root: Path

    @classmethod
    def of(cls, lab: Lab) -> ClusterPaths:
        """Paths of the cluster part of this lab."""
        return cls(lab.state_dir / PART)

    @property
    def ns_dir(self) -> Path:
        """Private bind mount holding the nsfs files that keep node mount and UTS namespaces alive."""
        return self.root / "ns"

    def mnt_ns(self, node: topology.Node) -> Path:
        """nsfs file of the node's mount namespace."""
        return self.ns_dir / f"{node.short}.mnt"

    def uts_ns(self, node: topology.Node) -> Path:
        """nsfs file of the node's UTS namespace."""
        return self.ns_dir / f"{node.short}.uts"

    def node_dir(self, node: topology.Node) -> Path:
        """Host directory holding the node's private directories (see NODE_DIRS)."""
        return self.root / "nodes" / node.short

    def node_path(self, node: topology.Node, path: str) -> Path:
        """Host path of a file the node sees at `path` (which must be under one of NODE_DIRS)."""
        for name, target in NODE_DIRS:
            if path == target or path.startswith(target + "/"):
                return self.node_dir(node) / name / path[len(target):].lstrip("/")
        raise ValueError(f"{path} is not in a per-node directory")

    @property
    def hosts(self) -> Path:
        """The nodes' /etc/hosts."""
        return self.root / "hosts"

    @property
    def resolv_conf(self) -> Path:
        """The nodes' /etc/resolv.conf: lookups of unknown names fail at once."""
        return self.root / "resolv.conf"

    @property
    def default_ganeti(self) -> Path:
        """The nodes' /etc/default/ganeti: Debian's, with RAPI listening on every address."""
        return self.root / "default-ganeti"

    @property
    def stub(self) -> Path:
        """Script bind-mounted over NEUTRALISED_COMMANDS inside nodes (nodepower writes it: `reboot` reboots the
        lab node, the others do nothing)."""
        return self.root / "neutralised-command"

    @property
    def shared_storage(self) -> Path:
        """Host dir mounted on every node at SHARED_FILE_STORAGE_DIR."""
        return self.root / "shared-file-storage"

    @property
    def tls_dir(self) -> Path:
        """The lab CA and the RAPI certificate."""
        return self.root / "tls"

    @property
    def ssh_dir(self) -> Path:
        """Runner's SSH key, known_hosts, ssh_config, control sockets; node host keys."""
        return self.root / "ssh"

    @property
    def cumin_config(self) -> Path:
        """cumin configuration reaching the nodes through ssh_config."""
        return self.root / "cumin.yaml"


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write text to path (atomically) unless it already holds it; return whether it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def write_shared_files(paths: ClusterPaths) -> None:
    """Write the files every node sees: hosts, resolv.conf, /etc/default/ganeti, storage dirs (the stub: nodepower)."""
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             f"{topology.MASTER_IP} {topology.CLUSTER_FQDN} {topology.CLUSTER_FQDN.split('.')[0]}"]
    hosts += [f"{node.ip} {node.fqdn} {node.short}" for node in topology.NODES]
    write_if_changed(paths.hosts, "\n".join(hosts) + "\n")
    write_if_changed(paths.resolv_conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    debian_defaults = Path("/etc/default/ganeti").read_text()
    write_if_changed(paths.default_ganeti, re.sub(r"-b\s+127\.0\.0\.1\s*", "", debian_defaults))
    paths.shared_storage.mkdir(parents=True, exist_ok=True)


def seed_node_dirs(paths: ClusterPaths, node: topology.Node) -> None:
    """Create the node's private directories (once), seeding /etc/ganeti from the host's."""
    base = paths.node_dir(node)
    for name, _target in NODE_DIRS:
        (base / name).mkdir(parents=True, exist_ok=True)
    etc_ganeti = base / "etc-ganeti"
    if not (etc_ganeti / "lib").exists():
        shutil.copytree("/etc/ganeti", etc_ganeti, symlinks=True, dirs_exist_ok=True)
    (base / "root").chmod(0o700)
    for storage in (FILE_STORAGE_DIR, SHARED_FILE_STORAGE_DIR):
        paths.node_path(node, storage).mkdir(parents=True, exist_ok=True)
    write_if_changed(paths.node_path(node, "/etc/ganeti/file-storage-paths"),
                     f"{FILE_STORAGE_DIR}\n{SHARED_FILE_STORAGE_DIR}\n")


def node_mounts(paths: ClusterPaths, node: topology.Node) -> list[tuple[Path, str]]:
    """Bind mounts inside the node, in order: (host source, target in the node)."""
    mounts = [(paths.node_dir(node) / name, target) for name, target in NODE_DIRS]
    mounts += [
        (paths.shared_storage, SHARED_FILE_STORAGE_DIR),
        (paths.hosts, "/etc/hosts"),
        (paths.resolv_conf, "/etc/resolv.conf"),
        (paths.default_ganeti, "/etc/default/ganeti"),
    ]
    targets = {
        str(Path(found).resolve()) for name in NEUTRALISED_COMMANDS if (found := shutil.which(name, path=SYSTEM_PATH))
    }
    mounts += [(paths.stub, target) for target in sorted(targets)]
    if Path(SYSRQ_TRIGGER).exists():
        # Ganeti's powercycle writes "b" here before it tries `reboot -n -f`.
        mounts.append((Path("/dev/null"), SYSRQ_TRIGGER))
    return mounts
