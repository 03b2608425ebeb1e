"""etcd lab part: a one-member etcd 3.4 (Debian) on loopback, for the cookbook locks."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import requests

from libcluster.lab import topology
from libcluster.lab.common import Lab, read_pidfile, start_background, step, stop_pidfile, wait_for

NAME = "etcd"
PACKAGES = ("etcd-server", "etcd-client")
URL = f"http://127.0.0.1:{topology.ETCD_PORT}"
PEER_URL = f"http://127.0.0.1:{topology.ETCD_PEER_PORT}"
NODES_URL = f"http://{topology.HOST_IP}:{topology.ETCD_PORT}"
"""Where Ganeti hooks on the nodes reach etcd: the root namespace's lab bridge address, once the cluster part made it."""


def _dir(lab: Lab) -> Path:
    return lab.state_dir / "etcd"


def _pidfile(lab: Lab) -> Path:
    return _dir(lab) / "etcd.pid"


def _host_ip_exists() -> bool:
    """Whether HOST_IP is an address of this machine (the cluster part puts it on the lab bridge)."""
    with socket.socket() as sock:
        try:
            sock.bind((topology.HOST_IP, 0))
        except OSError:
            return False
    return True


def command(lab: Lab) -> list[str]:
    """The etcd command line: data dir under the state dir, peer URL on loopback, clients on loopback and HOST_IP."""
    client_urls = f"{URL},{NODES_URL}" if _host_ip_exists() else URL
    return [
        "etcd", "--name", "default", "--data-dir", str(_dir(lab) / "data"),
        "--listen-client-urls", client_urls, "--advertise-client-urls", URL,
        "--listen-peer-urls", PEER_URL, "--initial-advertise-peer-urls", PEER_URL,
        "--initial-cluster", f"default={PEER_URL}", "--initial-cluster-state", "new",
    ]


def healthy(timeout: float = 2) -> bool:
    """Whether etcd answers /health with a healthy member."""
    response = requests.get(f"{URL}/health", timeout=timeout)
    return response.status_code == 200 and response.json().get("health") == "true"


def up(lab: Lab) -> None:
    """Install etcd and start it in the background unless it runs and is healthy."""
    with step(f"{NAME}: install {' '.join(PACKAGES)}"):
        lab.apt_install(NAME, PACKAGES)
    if status(lab)[NAME]["up"]:
        return
    with step(f"{NAME}: start etcd on {URL}"):
        stop_pidfile(_pidfile(lab))
        _dir(lab).mkdir(parents=True, exist_ok=True)
        start_background(lab, NAME, command(lab), _pidfile(lab))
        wait_for(f"{NAME}: etcd healthy on {URL} (log {lab.log_file(NAME)})", healthy, timeout=30, interval=0.2)


def down(lab: Lab) -> None:
    """Stop etcd by the pid recorded at start."""
    stop_pidfile(_pidfile(lab))


def status(lab: Lab) -> dict[str, Any]:
    """Client URL; up when the recorded etcd runs and reports healthy."""
    try:
        is_up = read_pidfile(_pidfile(lab)) is not None and healthy()
    except (requests.RequestException, ValueError):
        is_up = False
    return {NAME: {"url": URL, "up": is_up}}
