"""Lab nodes that reboot and die: a boot id per node, `reboot` inside a node, node-down and node-up.

The nodes share the machine's kernel, so each node's /proc/sys/kernel/random/boot_id (what Ganeti's noded
reports as the node's boot id) is a bind mount of its own file, given a new id at each lab boot. `reboot`
inside a node (the command Ganeti's powercycle, cumin or `ssh node reboot` run) starts :func:`reboot`
detached inside that node: it stops every process of the node (daemons, sshd, sessions), waits DOWNTIME
seconds, then boots: new boot id, an empty /run, sshd and the Ganeti daemons the node runs. The host never
reboots. :func:`node_down` kills a node's processes and sets its link down (a dead node); :func:`node_up`
brings it back with a new boot id. A node marked with :func:`stay_down_at_reboot` does not come back from
its next reboot (a failure to inject) until node_up.

Run inside a node: ``python -m cookbook_lab.nodepower reboot|boot STATE_ROOT FQDN``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cookbook_lab import netns, topology
from cookbook_lab.clusterfs import PART, SYSTEM_PATH, ClusterPaths
from cookbook_lab.common import Lab

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
"""Where Ganeti's noded reads the boot id (backend._BOOT_ID_PATH)."""

DOWNTIME = 3.0
"""Seconds a rebooting node stays down (no sshd, no daemons) before it boots."""

STOP_GRACE = 5.0
"""Seconds a rebooting node's processes get after SIGTERM before SIGKILL."""

MASTER_DAEMONS = ("ganeti-wconfd", "ganeti-rapi", "ganeti-luxid")
"""Daemons only the master runs."""
DAEMONS_IN_START_ORDER = ("ganeti-noded", "ganeti-confd", *MASTER_DAEMONS, "ganeti-mond")
"""Daemons of a member node in daemon-util's start order (kvmd is for KVM, unused here)."""

NODE_PYTHON = ("env", f"PYTHONPATH={Path(__file__).resolve().parent.parent}", "/usr/bin/python3")
"""How a node runs this module: Debian's python (Ganeti's; the runner's venv python may live under /root, which
is per node) with this source tree on its path (the module needs only the standard library)."""

NODE_PROCESS_ENV = {"PATH": SYSTEM_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
"""Environment of what a booting node starts (never the runner's)."""


def boot_id_file(paths: ClusterPaths, node: topology.Node) -> Path:
    """The host file bind-mounted over the node's BOOT_ID_PATH."""
    return paths.node_dir(node) / "boot_id"


def stay_down_file(paths: ClusterPaths, node: topology.Node) -> Path:
    """Marker: while it exists, the node does not come back from a reboot."""
    return paths.node_dir(node) / "stay-down"


def new_boot_id(paths: ClusterPaths, node: topology.Node) -> str:
    """Give the node a new boot id (written in place: the bind mount follows the file's inode)."""
    boot_id = str(uuid.uuid4())
    with boot_id_file(paths, node).open("w") as file:
        file.write(boot_id + "\n")
    return boot_id


def ensure_boot_id(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Bind-mount the node's own boot id file over BOOT_ID_PATH inside it (once; a first id when it has none)."""
    if not boot_id_file(paths, node).exists():
        new_boot_id(paths, node)
    mounted = lab.run(PART, netns.node_cmd(paths, node, ["findmnt", "-n", BOOT_ID_PATH]), check=False)
    if mounted.returncode != 0:
        lab.run(PART, netns.node_cmd(paths, node, ["mount", "--bind", str(boot_id_file(paths, node)), BOOT_ID_PATH]))


def reboot_stub(root: Path, log: Path) -> str:
    """The script over reboot/halt/poweroff/shutdown/systemctl in nodes: `reboot` reboots the lab node (detached,
    so that the caller's session ends with the node's processes), the others print that they are neutralised."""
    return (
        "#!/bin/sh\n"
        "# Written by cookbook-lab: the nodes share the machine's kernel; only a lab node reboot is real here.\n"
        'if [ "$(basename "$0")" = reboot ]; then\n'
        '    echo "cookbook-lab: rebooting $(hostname): daemons and sshd stop, then start with a new boot id" >&2\n'
        f'    setsid -f {" ".join(NODE_PYTHON)} -m cookbook_lab.nodepower reboot {root} "$(hostname)" '
        f'</dev/null >>{log} 2>&1\n'
        "    exit 0\n"
        "fi\n"
        'echo "cookbook-lab: $(basename "$0") is neutralised inside lab nodes" >&2\n'
        "exit 0\n"
    )


def write_stub(lab: Lab, paths: ClusterPaths) -> None:
    """Write the stub (clusterfs binds it in every node) with this lab's python, state root and log, in place:
    the nodes' bind mounts follow the file's inode."""
    text = reboot_stub(paths.root, lab.log_file(PART))
    if paths.stub.exists() and paths.stub.read_text() == text:
        return
    with paths.stub.open("w") as stub:
        stub.write(text)
    paths.stub.chmod(0o755)


def repair(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Called by `cookbook-lab up` for each node: its own boot id mounted, and a node left down (link down, or
    kept down by the stay-down marker) brought back up."""
    ensure_boot_id(lab, paths, node)
    if not link_up(node) or stay_down_file(paths, node).exists():
        node_up(lab, paths, node)


# Inside the node ---------------------------------------------------------------------------------------------


def _own_pids() -> list[int]:
    """Pids of the processes in this process's network namespace (this node), this one excepted."""
    mine = os.stat("/proc/self/ns/net")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                found = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino):
                pids.append(int(entry))
    return pids


def _clear_run() -> None:
    """Empty the node's /run (a tmpfs of its own, as after a real boot), keeping /run/lock and /run/sshd."""
    for entry in Path("/run").iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    Path("/run/lock").mkdir(mode=0o1777)
    os.chmod("/run/lock", 0o1777)
    Path("/run/sshd").mkdir(mode=0o755)


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=NODE_PROCESS_ENV, text=True, capture_output=True, check=check, timeout=120)


def _drop_master_ip() -> None:
    """Inside the node: take the cluster's master IP off its bridge, as a machine that goes down loses it (Ganeti
    adds it on the master only). A node killed or rebooted as the master kept it: once back, two nodes answered for
    the cluster IP and a later master failover could not take it off this one (seen in CI: the master IP on node4
    while Ganeti named node1)."""
    _run("ip", "address", "del", f"{topology.MASTER_IP}/32", "dev", topology.NODE_BRIDGE, check=False)


def boot(paths: ClusterPaths, node: topology.Node) -> str:
    """Inside the node: new boot id, empty /run, no master IP, sshd, then the Ganeti daemons it runs (a cluster
    member's: the master's and the master IP too when ssconf names it master). Returns the new boot id."""
    boot_id = new_boot_id(paths, node)
    _clear_run()
    _drop_master_ip()
    _run("/usr/sbin/sshd")
    ssconf = Path("/var/lib/ganeti/ssconf_master_node")
    if ssconf.exists():
        is_master = ssconf.read_text().strip() == node.fqdn
        for daemon in DAEMONS_IN_START_ORDER:
            if daemon in MASTER_DAEMONS and not is_master:
                continue
            _run("/usr/lib/ganeti/daemon-util", "start", daemon, check=False)
        if is_master:
            _run("gnt-cluster", "activate-master-ip", check=False)
    print(f"cookbook-lab: {node.fqdn} booted, boot id {boot_id}", flush=True)
    return boot_id


def reboot(paths: ClusterPaths, node: topology.Node, downtime: float = DOWNTIME) -> None:
    """Inside the node (detached from the caller): stop every process of the node and drop the master IP, stay down
    `downtime` seconds (or until node_up while the stay-down marker exists), then boot."""
    print(f"cookbook-lab: {node.fqdn} reboots: stopping its processes", flush=True)
    netns.kill_pids(_own_pids(), STOP_GRACE)
    _drop_master_ip()
    if stay_down_file(paths, node).exists():
        print(f"cookbook-lab: {node.fqdn} stays down ({stay_down_file(paths, node)} exists)", flush=True)
        return
    time.sleep(downtime)
    boot(paths, node)


# From the host ----------------------------------------------------------------------------------------------


def stay_down_at_reboot(paths: ClusterPaths, node: topology.Node) -> None:
    """Make the node's next reboot leave it down (a node that does not come back), until node_up."""
    stay_down_file(paths, node).touch()


def link_up(node: topology.Node) -> bool:
    """Whether the node's veth on the lab bridge is up."""
    try:
        return int(Path(f"/sys/class/net/{node.netns}/flags").read_text(), 16) & 1 == 1  # IFF_UP
    except (OSError, ValueError):
        return False


def node_down(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Kill the node: SIGKILL every process of it (daemons, sshd, sessions) and set its link down."""
    for pid in netns.netns_pids(node.netns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    lab.run(PART, ["ip", "link", "set", node.netns, "down"])


def node_up(lab: Lab, paths: ClusterPaths, node: topology.Node) -> None:
    """Bring a dead (or stay-down) node back: link up, then it boots (new boot id, sshd, daemons)."""
    stay_down_file(paths, node).unlink(missing_ok=True)
    lab.run(PART, ["ip", "link", "set", node.netns, "up"])
    netns.kill_pids(netns.netns_pids(node.netns), STOP_GRACE)
    lab.run(PART, netns.node_cmd(paths, node, [*NODE_PYTHON, "-m", "cookbook_lab.nodepower", "boot",
                                               str(paths.root), node.fqdn]))


def main(argv: list[str]) -> int:
    """`python -m cookbook_lab.nodepower reboot|boot STATE_ROOT FQDN`, run inside the node."""
    action, root, fqdn = argv
    node = topology.node(fqdn.split(".", 1)[0])
    paths = ClusterPaths(Path(root))
    if action == "reboot":
        reboot(paths, node)
    elif action == "boot":
        boot(paths, node)
    else:
        raise SystemExit(f"unknown action {action!r}: reboot or boot")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
