"""What of the lab exists on this machine right now: processes, namespaces, links, mounts, addresses, memory.

Used by the down test (nothing may be left) and the lab benchmark (memory the lab uses).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

from cookbook_lab import netns, topology

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
"""Every lab address is in this range."""


def lab_namespaces() -> list[str]:
    """Network namespaces named with the lab prefix."""
    if not netns.NETNS_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(netns.NETNS_DIR) if name.startswith(topology.PREFIX))


def lab_links() -> list[str]:
    """Root-namespace links (bridge, veths) named with the lab prefix."""
    return sorted(name for name in os.listdir("/sys/class/net") if name.startswith(topology.PREFIX))


def lab_mounts(state_dir: Path) -> list[str]:
    """Mount points at or under the lab's state dir."""
    points = netns.mount_points()
    return sorted(point for point in points if point == str(state_dir) or point.startswith(f"{state_dir}/"))


def lab_addresses() -> list[str]:
    """Root-namespace addresses in the lab's 198.18.0.0/15, as 'link address/len'."""
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


def memory(pids: set[int]) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over pids: RSS counts shared pages per process, PSS shares them out."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss
