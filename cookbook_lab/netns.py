"""Lab nodes as namespaces: the root bridge, one network + mount + UTS namespace per node, and teardown.

A node's network namespace is an `ip netns`; its mount and UTS namespaces are kept alive by
nsfs bind mounts under the part's state dir (no helper process). Nothing here ever adds a
default route: lab packets cannot leave the machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cookbook_lab import topology
from cookbook_lab.clusterfs import PART, SYSTEM_PATH, ClusterPaths, node_mounts
from cookbook_lab.common import Lab, pids_alive

NETNS_DIR = Path("/run/netns")
"""Where `ip netns` keeps its namespace files."""

NODE_ENV = ("env", "-i", f"PATH={SYSTEM_PATH}", "HOME=/root", "LANG=C.UTF-8")
"""Commands in nodes run with a clean environment (no venv, no proxy or CA variables of the runner)."""


def mount_points() -> dict[str, str]:
    """Mount points of this process's mount namespace, mapped to their file system type."""
    points = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        points[fields[4].encode().decode("unicode_escape")] = fields[separator + 1]
    return points


def netns_pids(name: str) -> list[int]:
    """Pids of the processes in the named network namespace (like `ip netns pids`, without a process)."""
    try:
        target = os.stat(NETNS_DIR / name)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry))
    return pids


def process_names(pids: list[int]) -> dict[int, str]:
    """comm of each still running pid."""
    names = {}
    for pid in pids:
        try:
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
    return names


def bridge_exists() -> bool:
    """Whether the lab bridge is in the root namespace (probing node addresses is only safe then)."""
    return Path(f"/sys/class/net/{topology.BRIDGE}").exists()


def node_cmd(paths: ClusterPaths, node: topology.Node, cmd: list[str]) -> list[str]:
    """Command line running cmd inside the node's namespaces with a clean environment."""
    return [
        "nsenter", f"--net={NETNS_DIR / node.netns}", f"--mount={paths.mnt_ns(node)}",
        f"--uts={paths.uts_ns(node)}", "--wd=/", "--", *NODE_ENV, *cmd,
    ]


def node_intact(paths: ClusterPaths, node: topology.Node, mounts: dict[str, str] | None = None) -> bool:
    """Whether the node's network, mount and UTS namespaces all exist and its veth is on the bridge."""
    mounts = mount_points() if mounts is None else mounts
    return (
        mounts.get(str(NETNS_DIR / node.netns)) == "nsfs"
        and mounts.get(str(paths.mnt_ns(node))) == "nsfs"
        and mounts.get(str(paths.uts_ns(node))) == "nsfs"
        and Path(f"/sys/class/net/{node.netns}/master").resolve().name == topology.BRIDGE
    )


def ensure_bridge(lab: Lab) -> None:
    """Create the root-namespace bridge with the host's lab address (no-op when it is there)."""
    if not bridge_exists():
        lab.run(PART, ["ip", "link", "add", topology.BRIDGE, "type", "bridge"])
    addresses = lab.run(PART, ["ip", "-o", "-4", "addr", "show", "dev", topology.BRIDGE]).stdout
    prefix = topology.NODE_NET.split("/")[1]
    if f" {topology.HOST_IP}/{prefix} " not in addresses:
        lab.run(PART, ["ip", "addr", "add", f"{topology.HOST_IP}/{prefix}", "dev", topology.BRIDGE])
    lab.run(PART, ["ip", "link", "set", topology.BRIDGE, "up"])


def ensure_ns_dir(lab: Lab, paths: ClusterPaths) -> None:
    """Make the nsfs directory a private bind mount (needed to bind a mount namespace into it)."""
    paths.ns_dir.mkdir(parents=True, exist_ok=True)
    if str(paths.ns_dir) not in mount_points():
        lab.run(PART, ["mount", "--bind", str(paths.ns_dir), str(paths.ns_dir)])
        lab.run(PART, ["mount", "--make-private", str(paths.ns_dir)])


def create_node(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Build the node from nothing: netns, veth on the bridge, inner bridge, mount + UTS namespace, mounts."""
    prefix = topology.NODE_NET.split("/")[1]
    lab.run(PART, ["ip", "netns", "add", node.netns])
    lab.run(PART, ["ip", "link", "add", node.netns, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
    lab.run(PART, ["ip", "link", "set", node.netns, "master", topology.BRIDGE, "up"])
    inside = ["ip", "-n", node.netns]
    lab.run(PART, [*inside, "link", "set", "lo", "up"])
    lab.run(PART, [*inside, "link", "add", topology.NODE_BRIDGE, "type", "bridge"])
    lab.run(PART, [*inside, "link", "set", "eth0", "master", topology.NODE_BRIDGE, "up"])
    lab.run(PART, [*inside, "addr", "add", f"{node.ip}/{prefix}", "dev", topology.NODE_BRIDGE])
    lab.run(PART, [*inside, "link", "set", topology.NODE_BRIDGE, "up"])
    for nsfile in (paths.mnt_ns(node), paths.uts_ns(node)):
        nsfile.touch()
    lab.run(PART, [
        "nsenter", f"--net={NETNS_DIR / node.netns}", "unshare", f"--mount={paths.mnt_ns(node)}",
        f"--uts={paths.uts_ns(node)}", "--propagation", "private", "true",
    ])
    _mount_inside(lab, paths, node)


def _mount_inside(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Inside the node: drop copied nsfs mounts, set the hostname, own sysfs and /run, per-node binds."""

    def run(*cmd: str) -> str:
        return lab.run(PART, node_cmd(paths, node, list(cmd))).stdout

    # Copies of other namespaces' nsfs mounts would keep those namespaces alive as long as this node lives.
    for target in reversed(run("findmnt", "-rn", "-t", "nsfs", "-o", "TARGET").split()):
        run("umount", target)
    run("hostname", node.fqdn)
    run("mount", "-t", "sysfs", "-o", "nosuid,nodev,noexec", "sysfs", "/sys")
    run("mount", "-t", "tmpfs", "-o", "mode=755,nosuid,nodev,size=64m", "tmpfs", "/run")
    run("mkdir", "-m", "1777", "/run/lock")
    for source, target in node_mounts(paths, node):
        run("mount", "--bind", str(source), target)


def kill_pids(pids: list[int], grace: float) -> None:
    """SIGTERM the pids, SIGKILL those still running after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids_alive(pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait
        while pids_alive(pids) and time.monotonic() < deadline:
            time.sleep(0.1)


def remove_node(lab: Lab, paths: ClusterPaths, node: topology.Node, grace: float = 3.0) -> None:
    """End every process of the node by pid, then remove its veth, nsfs files and network namespace."""
    kill_pids(netns_pids(node.netns), grace)
    mounts = mount_points()
    for nsfile in (paths.mnt_ns(node), paths.uts_ns(node)):
        if str(nsfile) in mounts:
            lab.run(PART, ["umount", str(nsfile)])
        nsfile.unlink(missing_ok=True)
    if Path(f"/sys/class/net/{node.netns}").exists():
        lab.run(PART, ["ip", "link", "del", node.netns])
    if (NETNS_DIR / node.netns).exists():
        lab.run(PART, ["ip", "netns", "del", node.netns])


def remove_host_objects(lab: Lab, paths: ClusterPaths) -> None:
    """Remove the bridge and every mount left under the part's state dir (after the nodes are gone)."""
    if bridge_exists():
        lab.run(PART, ["ip", "link", "del", topology.BRIDGE])
    leftovers = [point for point in mount_points() if point == str(paths.root) or point.startswith(f"{paths.root}/")]
    for point in sorted(leftovers, key=len, reverse=True):
        lab.run(PART, ["umount", point])
