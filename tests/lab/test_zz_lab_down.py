"""`cookbook-lab down` leaves nothing: no process, namespace, link, mount or address of the lab.

Runs last among the lab tests (file name) and only with COOKBOOK_LAB=require: it takes the lab down.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from libcluster.lab import netns, topology

LAB_NET = ipaddress.ip_network("198.18.0.0/15")


def lab_namespaces() -> list[str]:
    """Network namespaces named with the lab prefix."""
    return sorted(name for name in os.listdir(netns.NETNS_DIR) if name.startswith(topology.PREFIX)) \
        if netns.NETNS_DIR.is_dir() else []


def lab_links() -> list[str]:
    """Root-namespace links (bridge, veths) named with the lab prefix."""
    return sorted(name for name in os.listdir("/sys/class/net") if name.startswith(topology.PREFIX))


def lab_mounts(state_dir: Path) -> list[str]:
    """Mount points under the lab's state dir."""
    return sorted(point for point in netns.mount_points() if point.startswith(f"{state_dir}/") or
                  point == str(state_dir))


def lab_addresses() -> list[str]:
    """Root-namespace addresses in the lab's 198.18.0.0/15."""
    output = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in output.splitlines():
        fields = line.split()
        if fields[2] in ("inet", "inet6") and ipaddress.ip_interface(fields[3]).ip in LAB_NET:
            found.append(f"{fields[1]} {fields[3]}")
    return found


def lab_pids(state_dir: Path, cache_dir: Path) -> set[int]:
    """Processes of the lab: in a lab namespace, or whose command line names the state or cache dir."""
    pids = {pid for name in lab_namespaces() for pid in netns.netns_pids(name)}
    markers = (str(state_dir).encode(), str(cache_dir).encode())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in cmdline for marker in markers):
            pids.add(int(entry))
    return pids


@pytest.mark.skipif(os.environ.get("COOKBOOK_LAB") != "require", reason="takes the lab down: COOKBOOK_LAB=require")
def test_down_leaves_nothing(lab: dict[str, Any]) -> None:
    """After the whole lab was up, down removes every process, namespace, link, mount and address it made."""
    from libcluster.lab import cli, cluster
    from libcluster.lab.common import Lab, pids_alive

    lab_ = Lab()
    before = lab_pids(lab_.state_dir, lab_.cache_dir)
    assert before, "the lab should have processes before down"
    assert lab_namespaces() and lab_links()
    cli.down(lab_)
    assert lab_namespaces() == []
    assert lab_links() == []
    assert lab_mounts(lab_.state_dir) == []
    assert lab_addresses() == []
    assert pids_alive(sorted(before)) == []
    assert lab_pids(lab_.state_dir, lab_.cache_dir) == set()
    assert not lab_.state_dir.exists()
    state = cluster.status(lab_)
    assert state["ganeti"]["up"] is False and state["ssh"]["up"] is False
