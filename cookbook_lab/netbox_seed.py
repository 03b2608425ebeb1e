"""Seed the lab NetBox with what the cookbooks expect: site, Ganeti clusters per node group, VM prefixes, nodes.

Create-if-missing only: objects the cookbooks change later (say, a node device moved into a
cluster by addnode) are left as they are on the next `up`.
"""

from __future__ import annotations

from typing import Any

import pynetbox

from cookbook_lab import topology

CLUSTER_TYPE = "ganeti"
DEVICE_ROLE = "ganeti-node"
MANUFACTURER = "cookbook-lab"
DEVICE_TYPE = "lab-node"


def prefix_description(group: str, network: str = topology.DEFAULT_NETWORK) -> str:
    """Description of the VM prefixes of a node group's network."""
    return f"ganeti lab {group} VMs" if network == topology.DEFAULT_NETWORK else f"ganeti lab {group} {network} VMs"


def _ensure(endpoint: Any, key: str, wanted: dict[str, dict[str, Any]], **filters: Any) -> dict[str, Any]:
    """Objects by their key field (slug, name, prefix) among those matching filters; missing ones made in one POST."""
    found = {str(getattr(obj, key)): obj for obj in endpoint.filter(brief=1, **filters)}
    missing = [payload for value, payload in wanted.items() if value not in found]
    if missing:
        found.update({str(getattr(obj, key)): obj for obj in endpoint.create(missing)})
    return found


def _ensure_slug(endpoint: Any, slug: str, payload: dict[str, Any]) -> Any:
    """The one object with that slug, created from payload (plus the slug) if missing."""
    return _ensure(endpoint, "slug", {slug: {"slug": slug, **payload}}, slug=slug)[slug]


def seed(url: str, token: str) -> None:
    """Create whatever of the lab's NetBox objects is missing, through the REST API (about ten requests)."""
    api = pynetbox.api(url, token=token)
    site = _ensure_slug(api.dcim.sites, topology.SITE, {"name": topology.SITE, "status": "active"})
    cluster_type = _ensure_slug(api.virtualization.cluster_types, CLUSTER_TYPE, {"name": CLUSTER_TYPE})
    cluster_group = _ensure_slug(api.virtualization.cluster_groups, topology.CLUSTER, {"name": topology.CLUSTER})
    clusters = _ensure(
        api.virtualization.clusters, "name",
        {group: {"name": group, "type": cluster_type.id, "group": cluster_group.id, "status": "active",
                 "scope_type": "dcim.site", "scope_id": site.id} for group in topology.GROUPS},
        group_id=cluster_group.id, name=list(topology.GROUPS),
    )
    prefixes = {prefix: {"prefix": prefix, "status": "active", "description": prefix_description(group)}
                for group, pair in topology.VM_PREFIXES.items() for prefix in pair}
    prefixes.update({prefix: {"prefix": prefix, "status": "active", "description": prefix_description(group, network)}
                     for group, networks in topology.VM_NETWORKS.items() for network, pair in networks.items()
                     for prefix in pair})
    _ensure(api.ipam.prefixes, "prefix", prefixes, prefix=list(prefixes))
    manufacturer = _ensure_slug(api.dcim.manufacturers, MANUFACTURER, {"name": MANUFACTURER})
    device_type = _ensure_slug(api.dcim.device_types, DEVICE_TYPE,
                               {"manufacturer": manufacturer.id, "model": DEVICE_TYPE})
    role = _ensure_slug(api.dcim.device_roles, DEVICE_ROLE, {"name": DEVICE_ROLE})
    devices = {node.fqdn: {"name": node.fqdn, "device_type": device_type.id, "role": role.id, "site": site.id,
                           "status": "active", "cluster": clusters[node.group].id if node.group else None}
               for node in topology.NODES}
    _ensure(api.dcim.devices, "name", devices, site_id=site.id, name=list(devices))
