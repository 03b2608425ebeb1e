"""etcd lab part: a one-member etcd 3.4 (Debian) for the cookbook locks and hook events, over TLS with users.

Clients speak https (a certificate from the lab CA for 127.0.0.1 and HOST_IP) and log in as etcd
users (the JSON gateway ignores client certificates' names, see libcluster.etcd): ``cookbook-runner``
may read and write the locks and the hook events, ``cookbook-node`` (the Ganeti nodes' hooks) may only
write hook events, ``root`` administers. The lab has one cluster, so ``cookbook-node`` may write the whole
hooks prefix (the lab tests use sub-prefixes of their own); with several clusters, a user per cluster whose
role may write only ``PREFIX/CLUSTER/`` is what keeps a node from speaking for another cluster. Anything else,
unauthenticated requests included, is refused.
`up` converts an etcd started plain by an older lab: users and roles are created while it still runs,
then it restarts with TLS (its data kept) and authentication is turned on; the config written at the
end of `up` carries the new URL and users.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from cookbook_lab import tls, topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab, LabError, read_pidfile, start_background, step, stop_pidfile, wait_for
from libcluster.hooks.events import DEFAULT_PREFIX as HOOKS_PREFIX
from libcluster.locks import DEFAULT_ETCD_PREFIX as LOCKS_PREFIX

NAME = "etcd"
PACKAGES = ("etcd-server", "etcd-client")
URL = f"https://127.0.0.1:{topology.ETCD_PORT}"
PLAIN_URL = f"http://127.0.0.1:{topology.ETCD_PORT}"
"""Where an etcd started by an older lab (no TLS, no users) answers; `up` converts it."""
PEER_URL = f"http://127.0.0.1:{topology.ETCD_PEER_PORT}"
NODES_URL = f"https://{topology.HOST_IP}:{topology.ETCD_PORT}"
"""Where Ganeti hooks on the nodes reach etcd: the root namespace's lab bridge address (made by the cluster part)."""
TIMEOUT = 5

ROOT_USER = "root"
RUNNER_USER = "cookbook-runner"
NODE_USER = "cookbook-node"
ROLES: dict[str, tuple[tuple[str, str], ...]] = {
    RUNNER_USER: (("READWRITE", LOCKS_PREFIX), ("READWRITE", HOOKS_PREFIX)),
    NODE_USER: (("WRITE", HOOKS_PREFIX),),
}
"""Per user (each has a role of its name): the permission type and key prefix it is granted."""


def _dir(lab: Lab) -> Path:
    return lab.state_dir / "etcd"


def _pidfile(lab: Lab) -> Path:
    return _dir(lab) / "etcd.pid"


def ca_file(lab: Lab) -> Path:
    """The lab CA, which etcd's certificate is checked against."""
    return tls.ca_file(ClusterPaths.of(lab))


def _server_stem(lab: Lab) -> Path:
    return ClusterPaths.of(lab).tls_dir / "etcd"


def passwords(lab: Lab) -> dict[str, str]:
    """The etcd users' passwords (lab secrets)."""
    return {user: lab.secret(f"etcd_{user.replace('-', '_')}_password") for user in (ROOT_USER, *ROLES)}


def _host_ip_exists() -> bool:
    """Whether HOST_IP is an address of this machine (the cluster part puts it on the lab bridge)."""
    with socket.socket() as sock:
        try:
            sock.bind((topology.HOST_IP, 0))
        except OSError:
            return False
    return True


def command(data_dir: Path, client_urls: list[str], peer_url: str, cert_stem: Path, name: str = "default") -> list[str]:
    """An etcd command line serving clients over TLS with the key and certificate STEM.key / STEM.crt."""
    return [
        "etcd", "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", ",".join(client_urls), "--advertise-client-urls", client_urls[0],
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-state", "new",
        "--cert-file", f"{cert_stem}.crt", "--key-file", f"{cert_stem}.key",
    ]


def _session(ca: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the lab CA
    session.verify = str(ca)
    return session


def healthy(url: str, ca: Path | None = None, timeout: float = 2) -> bool:
    """Whether etcd at url answers /health with a healthy member (https checked against ca)."""
    session = _session(ca) if ca else requests.Session()
    try:
        response = session.get(f"{url}/health", timeout=timeout)
        return response.status_code == 200 and response.json().get("health") == "true"
    except (requests.RequestException, ValueError):
        return False


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _range_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def secure(url: str, ca: Path | None, users: Mapping[str, str],
           roles: Mapping[str, tuple[tuple[str, str], ...]] = ROLES, *, enable: bool = True) -> None:
    """Make etcd at url require users: root and the users of roles (passwords in users), each with a role of its
    name granted its (type, prefix) permissions, then (enable) turn authentication on. Idempotent; no password
    is logged or shown in errors."""
    session = _session(ca) if ca else requests.Session()

    def post(path: str, payload: dict[str, Any], *, exists_ok: bool = False) -> dict[str, Any]:
        response = session.post(f"{url}/v3/{path}", json=payload, timeout=TIMEOUT)
        answer: dict[str, Any] = response.json()
        if response.status_code != 200 and not (exists_ok and "already exists" in str(answer.get("error"))):
            raise LabError(f"{NAME}: {path} for {payload.get('name') or payload.get('user')} failed: "
                           f"{answer.get('error')}")
        return answer

    login = session.post(f"{url}/v3/auth/authenticate", json={"name": ROOT_USER, "password": users[ROOT_USER]},
                         timeout=TIMEOUT)
    enabled = login.status_code == 200
    if enabled:
        session.headers["Authorization"] = login.json()["token"]
    elif "authentication is not enabled" not in login.text:
        raise LabError(f"{NAME}: logging in as {ROOT_USER} failed: {login.json().get('error')}")
    for user in (ROOT_USER, *roles):
        post("auth/user/add", {"name": user, "password": users[user]}, exists_ok=True)
        post("auth/role/add", {"name": user}, exists_ok=True)
        post("auth/user/grant", {"user": user, "role": user})
    for user, permissions in roles.items():
        for perm_type, prefix in permissions:
            post("auth/role/grant", {"name": user, "perm": {"permType": perm_type, "key": _b64(prefix),
                                                              "range_end": _b64(_range_end(prefix))}})
        if enabled and session.post(f"{url}/v3/auth/authenticate", json={"name": user, "password": users[user]},
                                    timeout=TIMEOUT).status_code != 200:
            post("auth/user/changepw", {"name": user, "password": users[user]})
    if enable and not enabled:
        post("auth/enable", {})


def up(lab: Lab) -> None:
    """Install etcd; start it over TLS with users (converting a plain one, data kept) unless it runs so already."""
    with step(f"{NAME}: install {' '.join(PACKAGES)}"):
        lab.apt_install(NAME, PACKAGES)
    paths, ca = ClusterPaths.of(lab), ca_file(lab)
    stem = _server_stem(lab)
    if not Path(f"{stem}.key").exists() or lab.run(NAME, ["openssl", "verify", "-CAfile", str(ca), f"{stem}.crt"],
                                                   check=False).returncode != 0:
        with step(f"{NAME}: certificate from the lab CA for 127.0.0.1 and {topology.HOST_IP}"):
            tls.issue_certificate(lab, paths, stem, "etcd.lab", ["IP:127.0.0.1", f"IP:{topology.HOST_IP}"],
                                  "serverAuth")
    users = passwords(lab)
    running = read_pidfile(_pidfile(lab)) is not None
    if running and healthy(URL, ca):
        with step(f"{NAME}: users and roles"):
            secure(URL, ca, users)
        return
    if running and healthy(PLAIN_URL):
        with step(f"{NAME}: users and roles on the plain etcd, before it restarts with TLS"):
            secure(PLAIN_URL, None, users, enable=False)
    with step(f"{NAME}: start etcd on {URL}"):
        stop_pidfile(_pidfile(lab))
        _dir(lab).mkdir(parents=True, exist_ok=True)
        client_urls = [URL, NODES_URL] if _host_ip_exists() else [URL]
        start_background(lab, NAME, command(_dir(lab) / "data", client_urls, PEER_URL, stem), _pidfile(lab))
        wait_for(f"{NAME}: etcd healthy on {URL} (log {lab.log_file(NAME)})", lambda: healthy(URL, ca),
                 timeout=30, interval=0.2)
    with step(f"{NAME}: users and roles, authentication on"):
        secure(URL, ca, users)


def down(lab: Lab) -> None:
    """Stop etcd by the pid recorded at start."""
    stop_pidfile(_pidfile(lab))


def status(lab: Lab) -> dict[str, Any]:
    """Client URLs, CA and users; up when the recorded etcd runs and reports healthy over TLS."""
    users = passwords(lab) if lab.secrets_file.exists() else {}
    is_up = read_pidfile(_pidfile(lab)) is not None and healthy(URL, ca_file(lab))
    return {NAME: {
        "url": URL, "nodes_url": NODES_URL, "ca_file": str(ca_file(lab)), "up": is_up,
        "runner_user": RUNNER_USER, "runner_password": users.get(RUNNER_USER),
        "node_user": NODE_USER, "node_password": users.get(NODE_USER),
    }}
