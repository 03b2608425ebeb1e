"""Names, addresses, ports and paths of the lab: one place, so every part agrees.

Every lab address is in 198.18.0.0/15 (benchmark range) or on 127.0.0.1, and every
namespace, bridge and veth starts with PREFIX so that teardown removes only lab objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREFIX = "cblab"
"""Prefix of every namespace, bridge, veth and process name the lab creates."""

STATE_DIR = Path("/var/lib/cookbook-lab")
"""Runtime state: generated configs, secrets, per-node roots, data dirs. Removed by down."""

CACHE_DIR = Path("/var/cache/cookbook-lab")
"""Kept across down/up: the NetBox venv and the migrated database dump."""

LOG_DIR = STATE_DIR / "logs"
"""One log file per part, named in failure messages."""

DOMAIN = "lab.example"
"""DNS domain of nodes and VMs."""

CLUSTER = "lab"
"""Name cookbooks use for the lab cluster (`--cluster lab`)."""

CLUSTER_FQDN = f"cluster.{DOMAIN}"
"""Ganeti's own cluster name."""

NODE_NET = "198.18.0.0/24"
"""Network of the node namespaces, bridged together in the root namespace."""

HOST_IP = "198.18.0.1"
"""The root namespace's address on the lab bridge (where hooks on nodes reach services)."""

MASTER_IP = "198.18.0.10"
"""Ganeti master IP; RAPI answers on https://MASTER_IP:5080."""

BRIDGE = f"{PREFIX}-br0"
"""Bridge in the root namespace joining all node veths."""

NODE_BRIDGE = "gnt-br0"
"""Bridge inside each node holding its address; Ganeti master netdev and NIC link."""


@dataclass(frozen=True)
class Node:
    """One lab node: a namespace with its own address, hostname and sshd."""

    short: str
    ip: str
    group: str | None
    """Node group in the cluster, None for the spare node (not in the cluster yet)."""

    @property
    def fqdn(self) -> str:
        """The node's fully qualified name."""
        return f"{self.short}.{DOMAIN}"

    @property
    def netns(self) -> str:
        """Name of the node's network namespace."""
        return f"{PREFIX}-{self.short}"


NODES: tuple[Node, ...] = (
    Node("node1", "198.18.0.11", "A"),
    Node("node2", "198.18.0.12", "A"),
    Node("node3", "198.18.0.13", "B"),
    Node("node4", "198.18.0.14", "B"),
    Node("node5", "198.18.0.15", None),
)
"""node1 is the initial master; node5 is prepared but left out of the cluster for addnode."""

GUEST_PATTERN = f"guest-*.{DOMAIN}"
"""Instances named so are reached over SSH at the spare node: the fake hypervisor runs no guest OS, so the spare
node's sshd stands in for one where a cookbook runs commands on the VM itself (reboot-vm's depool and pool)."""

GROUPS = ("A", "B")
"""Ganeti node groups; each is a NetBox cluster of the cluster group CLUSTER."""

VM_PREFIXES: dict[str, tuple[str, str]] = {
    "A": ("198.18.16.0/24", "2001:2:0:a::/64"),
    "B": ("198.18.17.0/24", "2001:2:0:b::/64"),
}
"""Per group: IPv4 and IPv6 prefixes VMs get addresses from (NetBox and DNS only): the group's default network."""

DEFAULT_NETWORK = "lab"
"""Name of each group's default network (defaults.network of the lab configuration)."""

VM_NETWORKS: dict[str, dict[str, tuple[str, str]]] = {
    "A": {"private": ("198.18.18.0/24", "2001:2:0:1a::/64")},
}
"""Per group: its other networks (makevm --network NAME) and their IPv4 and IPv6 prefixes, on the same bridge."""

DNS_ZONES = (
    DOMAIN,
    "16.18.198.in-addr.arpa",
    "17.18.198.in-addr.arpa",
    "0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa",
    "18.18.198.in-addr.arpa",
)
"""Zones Knot serves: forward, IPv4 reverse per group prefix, IPv6 reverse for 2001:2::/48, IPv4 reverse of group A's
private network (last, so the indexes of the others stay)."""

TSIG_NAME = "cookbooks"
TSIG_ALGORITHM = "hmac-sha256"

SITE = "lab1"
"""NetBox site slug of the lab."""

# Loopback ports of the services (all on 127.0.0.1; NetBox, Knot and etcd also on HOST_IP).
NETBOX_PORT = 18080
POSTGRES_PORT = 15432
REDIS_PORT = 16379
DNS_PORT = 15353
ETCD_PORT = 12379
ETCD_PEER_PORT = 12380
IRC_PORT = 16667

RAPI_PORT = 5080

SAL_CHANNEL = "#sre-sal"
"""IRC channel of the server admin log in the lab."""
CHATOPS_CHANNEL = "#sre-ops"
"""IRC channel the chatops bot listens in."""


def node(short: str) -> Node:
    """Return the node with that short name."""
    for candidate in NODES:
        if candidate.short == short:
            return candidate
    raise KeyError(short)


def cluster_nodes() -> list[Node]:
    """Nodes in the cluster at lab start (every node with a group)."""
    return [candidate for candidate in NODES if candidate.group is not None]


def spare_nodes() -> list[Node]:
    """Prepared nodes not yet in the cluster."""
    return [candidate for candidate in NODES if candidate.group is None]
