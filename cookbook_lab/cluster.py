"""The lab's Ganeti 3.0 cluster: nodes in namespaces, fake hypervisor, RAPI with a verifiable certificate.

`up` builds what is missing and repairs what is down (namespaces, sshd, Ganeti daemons, RAPI
certificate and users); `down` stops and removes every process, namespace, mount and address it made.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from cookbook_lab import netns, nodepower, sshd, tls, topology
from cookbook_lab.clusterfs import (
    FILE_STORAGE_DIR,
    PART,
    SHARED_FILE_STORAGE_DIR,
    ClusterPaths,
    seed_node_dirs,
    write_shared_files,
)
from cookbook_lab.common import Lab, LabError, step, wait_for
from cookbook_lab.nodepower import DAEMONS_IN_START_ORDER, MASTER_DAEMONS

NAME = PART

PACKAGES = ("ganeti", "ganeti-os-noop", "openssh-server", "openssl")

RAPI_URL = f"https://{topology.MASTER_IP}:{topology.RAPI_PORT}"
RAPI_USER = "cookbooks"
RAPI_RO_USER = "cookbooks-ro"

NODED_PORT = 1811
"""ganeti-noded's port: a member node whose noded answers is up."""


STOP_TIMEOUT = 25
"""Seconds `down` gives the daemons of a node to stop gracefully before they are killed."""


def _rapi_password(lab: Lab) -> str:
    return lab.secret("ganeti_rapi_password")


def _rapi_ro_password(lab: Lab) -> str:
    return lab.secret("ganeti_rapi_ro_password")


def _in_node(lab: Lab, paths: ClusterPaths, node: topology.Node, cmd: list[str], timeout: float = 300) -> str:
    """Run cmd inside the node (logged to the part's log) and return its output."""
    return lab.run(PART, netns.node_cmd(paths, node, cmd), timeout=timeout).stdout


def _read_config(paths: ClusterPaths) -> dict[str, Any] | None:
    """The newest Ganeti config.data among the nodes' copies (master candidates hold one), None if none."""
    newest: dict[str, Any] | None = None
    for node in topology.NODES:
        try:
            config = json.loads(paths.node_path(node, "/var/lib/ganeti/config.data").read_text())
        except (OSError, ValueError):
            continue
        if newest is None or config.get("serial_no", 0) > newest.get("serial_no", 0):
            newest = config
    return newest


def _layout(config: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Master fqdn and {member fqdn: group name} from a Ganeti config."""
    groups = {uuid: group["name"] for uuid, group in config["nodegroups"].items()}
    nodes = config["nodes"]
    master = nodes[config["cluster"]["master_node"]]["name"]
    return master, {node["name"]: groups.get(node["group"], "") for node in nodes.values()}


def _by_fqdn(fqdn: str) -> topology.Node:
    return topology.node(fqdn.split(".", 1)[0])


def _ssh_open(intact: bool, node: topology.Node) -> bool:
    """Whether the node's sshd answers (not asked when its namespace is not intact)."""
    return intact and sshd.port_open(node.ip, sshd.SSH_PORT)


def _noded_open(intact: bool, fqdn: str) -> bool:
    """Whether the member's noded answers (not asked when its namespace is not intact)."""
    return intact and sshd.port_open(_by_fqdn(fqdn).ip, NODED_PORT)


def _prepare_nodes(lab: Lab, paths: ClusterPaths) -> None:
    """Bridge, per-node namespaces and mounts, boot ids, sshd with the runner's key: create or repair each node
    (a node left down by node-down or a reboot that did not come back is booted)."""
    write_shared_files(paths)
    nodepower.write_stub(lab, paths)
    sshd.ensure_keys(lab, paths)
    netns.ensure_bridge(lab)
    netns.ensure_ns_dir(lab, paths)
    mounts = netns.mount_points()
    for node in topology.NODES:
        seed_node_dirs(paths, node)
        sshd.seed_node(paths, node)
        sshd.authorize(paths, node, [sshd.runner_public_key(paths)])
        if not netns.node_intact(paths, node, mounts):
            netns.remove_node(lab, paths, node)
            netns.create_node(lab, paths, node)
        nodepower.repair(lab, paths, node)
        sshd.ensure_sshd(lab, paths, node)


def _root_keys(paths: ClusterPaths, members: list[str]) -> list[str]:
    """Public root keys of the member nodes (Ganeti's keys for SSH between nodes)."""
    keys = []
    for fqdn in members:
        pub = paths.node_path(_by_fqdn(fqdn), "/root/.ssh/id_rsa.pub")
        if pub.exists():
            keys.append(pub.read_text().strip())
    return keys


def authorize_spares(paths: ClusterPaths, members: list[str]) -> None:
    """Authorize the members' root keys on every spare node (`gnt-node remove` deletes them: a spare stays addable)."""
    keys = _root_keys(paths, members)
    for node in topology.NODES:
        if node.fqdn not in members:
            sshd.authorize(paths, node, keys)


def _init_cluster(lab: Lab, paths: ClusterPaths) -> None:
    """`gnt-cluster init` on the first node: fake hypervisor, file templates, no /etc/hosts editing.

    Then the lab's RAPI certificate replaces the generated one before any node is added (node add
    copies it to the new nodes): a restart of RAPI instead of a `renew-crypto` restarting every daemon.
    """
    first = topology.NODES[0]
    _in_node(lab, paths, first, [
        "gnt-cluster", "init", "--enabled-hypervisors=fake",
        "--enabled-disk-templates=diskless,file,sharedfile",
        f"--file-storage-dir={FILE_STORAGE_DIR}", f"--shared-file-storage-dir={SHARED_FILE_STORAGE_DIR}",
        f"--master-netdev={topology.NODE_BRIDGE}", f"--nic-parameters=mode=bridged,link={topology.NODE_BRIDGE}",
        "--no-etc-hosts", topology.CLUSTER_FQDN,
    ])
    tls.ensure_certificates(lab, paths)
    installed = paths.node_path(first, "/var/lib/ganeti/rapi.pem")
    owner = installed.stat()
    tmp = installed.with_name("rapi.pem.cookbook-lab.tmp")
    shutil.copyfile(tls.rapi_pem(paths), tmp)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.chmod(owner.st_mode & 0o777)
    tmp.replace(installed)
    for action in ("stop", "start"):
        _in_node(lab, paths, first, ["/usr/lib/ganeti/daemon-util", action, "ganeti-rapi"])


def _ensure_daemons(lab: Lab, paths: ClusterPaths, node: topology.Node, is_master: bool) -> None:
    """Start each Ganeti daemon the node must run and does not, in Ganeti's start order.

    One by one rather than `daemon-util start-all`: start-stop-daemon refuses to start anything while
    a stale pidfile owned by a daemon user is in the way, so a dead daemon's pidfile is removed first.
    """
    running = set(netns.process_names(netns.netns_pids(node.netns)).values())
    for daemon in DAEMONS_IN_START_ORDER:
        if daemon in running or (daemon in MASTER_DAEMONS and not is_master):
            continue
        _in_node(lab, paths, node, ["rm", "-f", f"/run/ganeti/{daemon}.pid"])
        _in_node(lab, paths, node, ["/usr/lib/ganeti/daemon-util", "start", daemon])


def _ensure_master_ip(lab: Lab, paths: ClusterPaths, master: topology.Node) -> None:
    """Put the master IP on the master's bridge when it is missing (e.g. its namespace was rebuilt), after taking it
    off any other node still holding it (a master failover cut short leaves it there, and Ganeti then refuses)."""
    for other in topology.NODES:
        if other != master and _has_master_ip(lab, other):
            lab.run(PART, ["ip", "-n", other.netns, "addr", "del", f"{topology.MASTER_IP}/32", "dev",
                           topology.NODE_BRIDGE])
    if not _has_master_ip(lab, master):
        _in_node(lab, paths, master, ["gnt-cluster", "activate-master-ip"])


def _has_master_ip(lab: Lab, node: topology.Node) -> bool:
    """Whether the node's bridge holds the master IP."""
    addresses = lab.run(PART, ["ip", "-n", node.netns, "-o", "-4", "addr", "show", "dev", topology.NODE_BRIDGE],
                        check=False)
    return f" {topology.MASTER_IP}/" in addresses.stdout


def _ensure_groups(lab: Lab, paths: ClusterPaths, master: topology.Node) -> None:
    """Rename the default group to the first lab group and add the others."""
    existing = _in_node(lab, paths, master, ["gnt-group", "list", "--no-headers", "-o", "name"]).split()
    missing = [group for group in topology.GROUPS if group not in existing]
    if missing and "default" in existing:
        _in_node(lab, paths, master, ["gnt-group", "rename", "default", missing.pop(0)])
    for group in missing:
        _in_node(lab, paths, master, ["gnt-group", "add", group])


def _add_node(lab: Lab, paths: ClusterPaths, master: topology.Node, node: topology.Node, keys: list[str]) -> None:
    """Authorize the members' root keys on the node, `gnt-node add` it to its group, start its daemons."""
    sshd.authorize(paths, node, keys)
    _in_node(lab, paths, master, ["gnt-node", "add", "--no-ssh-key-check", "-g", str(node.group), node.fqdn])
    _ensure_daemons(lab, paths, node, is_master=False)


def _build_cluster(lab: Lab, paths: ClusterPaths) -> tuple[topology.Node, list[str]]:
    """Init the cluster unless it exists, restart dead daemons, make groups, add missing nodes.

    Returns the master and the member fqdns.
    """
    config = _read_config(paths)
    if config is None:
        _init_cluster(lab, paths)
        config = _read_config(paths)
        if config is None:
            raise LabError(f"{PART}: cluster init left no config.data; log: {lab.log_file(PART)}")
    master_fqdn, members = _layout(config)
    master = _by_fqdn(master_fqdn)
    # Other members first: the master's wconfd only starts once a majority of nodes (their noded) vote for it.
    for fqdn in members:
        if fqdn != master_fqdn:
            _ensure_daemons(lab, paths, _by_fqdn(fqdn), is_master=False)
    _ensure_daemons(lab, paths, master, is_master=True)
    _ensure_master_ip(lab, paths, master)
    _ensure_groups(lab, paths, master)
    # One at a time: run together (2 cores) the adds took longer, Ganeti serialises their jobs anyway.
    for node in topology.cluster_nodes():
        if node.fqdn not in members:
            _add_node(lab, paths, master, node, _root_keys(paths, list(members)))
            members[node.fqdn] = str(node.group)
    return master, list(members)


def _write_rapi_users(lab: Lab, paths: ClusterPaths, members: list[str]) -> None:
    """Write RAPI's users file (one read-write, one read-only user) on every member, owned like Ganeti wants."""
    text = f"{RAPI_USER} {_rapi_password(lab)} write\n{RAPI_RO_USER} {_rapi_ro_password(lab)}\n"
    for fqdn in members:
        users = paths.node_path(_by_fqdn(fqdn), "/var/lib/ganeti/rapi/users")
        if not users.parent.is_dir() or (users.exists() and users.read_text() == text):
            continue
        owner = users.parent.stat()
        tmp = users.with_name("users.cookbook-lab.tmp")
        tmp.write_text(text)
        tmp.chmod(0o640)
        os.chown(tmp, owner.st_uid, owner.st_gid)
        tmp.replace(users)


def _rapi_answers(lab: Lab, paths: ClusterPaths) -> bool:
    """Whether RAPI answers /2/info with the lab certificate verified and the read-only user accepted."""
    response = requests.get(f"{RAPI_URL}/2/info", auth=(RAPI_RO_USER, _rapi_ro_password(lab)),
                            verify=str(tls.ca_file(paths)), timeout=3)
    return response.status_code == 200


def _ensure_rapi(lab: Lab, paths: ClusterPaths, master: topology.Node, members: list[str]) -> None:
    """Install the lab-signed RAPI certificate on the cluster if it lacks it, write users, wait for RAPI."""
    tls.ensure_certificates(lab, paths)
    _write_rapi_users(lab, paths, members)
    installed = tls.certificate_of(paths.node_path(master, "/var/lib/ganeti/rapi.pem"))
    if installed != tls.certificate_of(tls.rapi_pem(paths)):
        # Without --new-confd-hmac-key, 3.0.2 reports success and installs nothing.
        _in_node(lab, paths, master, ["gnt-cluster", "renew-crypto", f"--rapi-certificate={tls.rapi_pem(paths)}",
                                      "--new-confd-hmac-key", "-f"])
    wait_for(f"RAPI at {RAPI_URL} (TLS verified by {tls.ca_file(paths)})",
             lambda: _rapi_answers(lab, paths), timeout=90)


def up(lab: Lab) -> None:
    """Build or repair the cluster: packages, namespaces, sshd, Ganeti, RAPI TLS and users, SSH/cumin config."""
    paths = ClusterPaths.of(lab)
    with step("ganeti: packages"):
        lab.apt_install(PART, PACKAGES)
    with step("ganeti: node namespaces and sshd"):
        _prepare_nodes(lab, paths)
    with step("ganeti: cluster, groups, nodes and daemons"):
        master, members = _build_cluster(lab, paths)
    with step("ganeti: RAPI certificate and users"):
        _ensure_rapi(lab, paths, master, members)
    with step("ganeti: SSH and cumin configuration"):
        authorize_spares(paths, members)
        sshd.write_client_config(paths)


def _stop_node(lab: Lab, paths: ClusterPaths, node: topology.Node, mounts: dict[str, str]) -> None:
    """Stop the node's Ganeti daemons gracefully (time-bounded), then remove the node."""
    if netns.node_intact(paths, node, mounts) and netns.netns_pids(node.netns):
        with contextlib.suppress(LabError):  # whatever did not stop is killed by pid below
            _in_node(lab, paths, node, ["/usr/lib/ganeti/daemon-util", "stop-all"], timeout=STOP_TIMEOUT)
    netns.remove_node(lab, paths, node)


def down(lab: Lab) -> None:
    """Stop every daemon and sshd, then remove node namespaces, veths, the bridge and the part's mounts."""
    paths = ClusterPaths.of(lab)
    sshd.close_connections(lab, paths)
    mounts = netns.mount_points()
    with ThreadPoolExecutor(max_workers=len(topology.NODES)) as pool:
        for future in [pool.submit(_stop_node, lab, paths, node, mounts) for node in topology.NODES]:
            future.result()
    netns.remove_host_objects(lab, paths)


def _probe_all(probes: dict[str, Callable[[], bool]]) -> dict[str, bool]:
    """Run boolean probes in parallel; a probe that raises counts as False."""

    def safe(probe: Callable[[], bool]) -> bool:
        try:
            return probe()
        except Exception:  # noqa: BLE001 - any failure of a probe means "not up"
            return False

    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        futures = {name: pool.submit(safe, probe) for name, probe in probes.items()}
        return {name: future.result() for name, future in futures.items()}


def status(lab: Lab) -> dict[str, Any]:
    """RAPI endpoint, credentials, current layout and SSH config of the cluster, and whether each is up.

    Reads Ganeti's config.data from the node directories and probes ports: fast, and never raises
    when the lab is down (then the layout is the planned one and `master` is None).
    """
    paths = ClusterPaths.of(lab)
    have_secrets = lab.secrets_file.exists()
    config = _read_config(paths)
    master, members = _layout(config) if config is not None else (
        None, {node.fqdn: str(node.group) for node in topology.cluster_nodes()})
    results = _probe_all(_status_probes(lab, paths, master, members, have_secrets=have_secrets))
    ganeti_up = config is not None and results.get("rapi", False) and all(
        results[f"noded {fqdn}"] for fqdn in members)
    ssh_files = (sshd.ssh_config_file(paths), paths.cumin_config, sshd.known_hosts_file(paths))
    ssh_up = all(Path(file).exists() for file in ssh_files) and all(
        results[f"ssh {node.fqdn}"] for node in topology.NODES)
    return {
        "ganeti": {
            "cluster": topology.CLUSTER,
            "rapi_url": RAPI_URL,
            "rapi_user": RAPI_USER,
            "rapi_password": _rapi_password(lab) if have_secrets else None,
            "rapi_ro_user": RAPI_RO_USER,
            "rapi_ro_password": _rapi_ro_password(lab) if have_secrets else None,
            "ca_file": str(tls.ca_file(paths)),
            "master": master,
            "nodes": sorted(members),
            "spare_nodes": [node.fqdn for node in topology.NODES if node.fqdn not in members],
            "groups": groups_of(members),
            "up": bool(ganeti_up),
        },
        "ssh": {
            "config": str(sshd.ssh_config_file(paths)),
            "cumin_config": str(paths.cumin_config),
            "up": bool(ssh_up),
        },
    }


def groups_of(members: dict[str, str]) -> dict[str, list[str]]:
    """Node group -> its member nodes (fqdn -> group) in name order; every planned group, also an empty one."""
    groups: dict[str, list[str]] = {group: [] for group in topology.GROUPS}
    for fqdn, group in sorted(members.items()):
        groups.setdefault(group, []).append(fqdn)
    return groups


def _status_probes(lab: Lab, paths: ClusterPaths, master: str | None, members: dict[str, str], *,
                   have_secrets: bool) -> dict[str, Callable[[], bool]]:
    """The probes status runs: each node's sshd, each member's noded, and RAPI when its master can answer."""
    mounts = netns.mount_points()
    bridge = netns.bridge_exists()
    intact = {node.fqdn: bridge and netns.node_intact(paths, node, mounts) for node in topology.NODES}
    probes: dict[str, Callable[[], bool]] = {
        f"ssh {node.fqdn}": functools.partial(_ssh_open, intact[node.fqdn], node) for node in topology.NODES
    }
    probes.update({f"noded {fqdn}": functools.partial(_noded_open, intact.get(fqdn, False), fqdn) for fqdn in members})
    if bridge and have_secrets and master is not None and intact.get(master, False):
        probes["rapi"] = lambda: _rapi_answers(lab, paths)
    return probes
