"""Lab topology and the cluster part's generated files, checked without root and without a running lab."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from cookbook_lab import cluster, sshd, tls, topology
from cookbook_lab.clusterfs import NODE_DIRS, ClusterPaths
from cookbook_lab.common import Lab

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
IFNAMSIZ = 15
"""Longest Linux interface name."""


def test_every_address_is_in_the_benchmark_range() -> None:
    """No lab address can leave the machine: all are in 198.18.0.0/15."""
    net = ipaddress.ip_network(topology.NODE_NET)
    assert net.subnet_of(LAB_NET)
    addresses = [topology.HOST_IP, topology.MASTER_IP, *(node.ip for node in topology.NODES)]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert ipaddress.ip_address(address) in net
    for v4, _v6 in topology.VM_PREFIXES.values():
        assert ipaddress.ip_network(v4).subnet_of(LAB_NET)


def test_link_and_namespace_names_are_prefixed_and_fit() -> None:
    """Teardown finds lab objects by prefix; veths are named like the node namespaces and must fit IFNAMSIZ."""
    for name in (topology.BRIDGE, *(node.netns for node in topology.NODES)):
        assert name.startswith(f"{topology.PREFIX}-")
        assert len(name) <= IFNAMSIZ
    assert len(topology.NODE_BRIDGE) <= IFNAMSIZ


def test_groups_and_spare_nodes() -> None:
    """Every group has nodes, cluster nodes are in known groups, at least one spare exists for addnode."""
    for group in topology.GROUPS:
        assert [node for node in topology.cluster_nodes() if node.group == group]
    assert {node.group for node in topology.cluster_nodes()} == set(topology.GROUPS)
    assert topology.spare_nodes()
    assert len(topology.cluster_nodes()) >= 3


def test_node_path_maps_into_the_node_directory(tmp_path: Path) -> None:
    """A path a node sees under a per-node dir lives in that node's host directory; others are refused."""
    paths = ClusterPaths(tmp_path)
    node = topology.NODES[1]
    users = paths.node_path(node, "/var/lib/ganeti/rapi/users")
    assert users == tmp_path / "nodes" / node.short / "var-lib-ganeti" / "rapi" / "users"
    for name, target in NODE_DIRS:
        assert paths.node_path(node, target) == paths.node_dir(node) / name
    with pytest.raises(ValueError):
        paths.node_path(node, "/etc/passwd")
    with pytest.raises(ValueError):
        paths.node_path(node, "/srvx/file")


def test_status_of_a_lab_that_never_ran(tmp_path: Path) -> None:
    """status() answers at once for a lab with no state: everything down, planned layout, no secrets made."""
    lab = Lab(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    state = cluster.status(lab)
    assert set(state) == {"ganeti", "ssh"}
    assert state["ganeti"]["up"] is False and state["ssh"]["up"] is False
    assert state["ganeti"]["master"] is None
    assert state["ganeti"]["rapi_password"] is None
    assert state["ganeti"]["nodes"] == sorted(node.fqdn for node in topology.cluster_nodes())
    assert state["ganeti"]["spare_nodes"] == [node.fqdn for node in topology.spare_nodes()]
    assert not lab.state_dir.exists()


def test_client_config_reaches_each_node_by_its_address(tmp_path: Path) -> None:
    """ssh_config maps fqdns to IPs with strict host keys; known_hosts pins the shared keys; cumin uses -F."""
    paths = ClusterPaths(tmp_path)
    host_keys = paths.ssh_dir / "host-keys"
    host_keys.mkdir(parents=True)
    for kind in sshd.HOST_KEY_TYPES:
        (host_keys / f"ssh_host_{kind}_key.pub").write_text(f"ssh-{kind} KEY{kind.upper()} root@lab\n")
    sshd.write_client_config(paths)
    config = sshd.ssh_config_file(paths).read_text()
    blocks = {block.split()[0]: block for block in config.split("Host ")[1:]}
    for node in topology.NODES:
        assert f"HostName {node.ip}\n" in blocks[node.fqdn]
        assert "StrictHostKeyChecking yes" in blocks[node.fqdn]
        assert f"UserKnownHostsFile {sshd.known_hosts_file(paths)}" in blocks[node.fqdn]
    known = sshd.known_hosts_file(paths).read_text().splitlines()
    assert len(known) == len(topology.NODES) * len(sshd.HOST_KEY_TYPES)
    assert f"{topology.NODES[0].fqdn},{topology.NODES[0].ip} ssh-rsa KEYRSA" in known
    cumin = yaml.safe_load(paths.cumin_config.read_text())
    assert cumin["clustershell"]["ssh_options"] == [f"-F {sshd.ssh_config_file(paths)}"]
    assert cumin["default_backend"] == "direct"


def test_certificate_of_extracts_the_certificate(tmp_path: Path) -> None:
    """Only the certificate block of a key+certificate PEM is compared; missing files give None."""
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    pem = tmp_path / "rapi.pem"
    pem.write_text(f"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n{cert}\n")
    assert tls.certificate_of(pem) == cert
    assert tls.certificate_of(tmp_path / "missing.pem") is None


def test_remove_state_forgets_cached_secrets(tmp_path: Path) -> None:
    """down then up in one process: secrets are written again, not served from memory only."""
    lab = Lab(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    first = lab.secret("rapi_password")
    lab.remove_state()
    assert not lab.state_dir.exists()
    second = lab.secret("rapi_password")
    assert second != first
    assert json.loads(lab.secrets_file.read_text()) == {"rapi_password": second}


def test_status_groups_list_every_planned_group_and_its_members_in_order() -> None:
    """A group whose nodes all left stays listed (empty); a group Ganeti has but the plan does not is added."""
    members = {"node4.lab.example": "B", "node1.lab.example": "A", "node2.lab.example": "A", "node9.lab.example": "Z"}
    assert cluster.groups_of(members) == {"A": ["node1.lab.example", "node2.lab.example"],
                                          "B": ["node4.lab.example"], "Z": ["node9.lab.example"]}
    assert cluster.groups_of({}) == {"A": [], "B": []}
