"""Seed the lab NetBox with what the cookbooks expect: site, Ganeti clusters per node group, VM prefixes, nodes.

Create-if-missing only: objects the cookbooks change later (say, a node device moved into a
cluster by addnode) are left as they are on the next `up`.
"""

from __future__ import annotations

from typing import Any

import pynetbox

from libcluster.lab import topology

CLUSTER_TYPE = "ganeti"
DEVICE_ROLE = "ganeti-node"
MANUFACTURER = "cookbook-lab"
DEVICE_TYPE = "lab-node"


def prefix_description(group: str) -> str:
    """Description of the VM prefixes of a node group."""
    return f"ganeti lab {group} VMs"


def _ensure(endpoint: Any, lookup: dict[str, Any], create: dict[str, Any]) -> Any:
    """Return the one object matching lookup (strict, existing filters only), creating it from create if missing."""
    found = endpoint.get(**lookup)
    return found if found is not None else endpoint.create(create)


def seed(url: str, token: str) -> None:
    """Create whatever of the lab's NetBox objects is missing, through the REST API."""
    api = pynetbox.api(url, token=token)
    site = _ensure(api.dcim.sites, {"slug": topology.SITE},
                   {"name": topology.SITE, "slug": topology.SITE, "status": "active"})
    cluster_type = _ensure(api.virtualization.cluster_types, {"slug": CLUSTER_TYPE},
                           {"name": CLUSTER_TYPE, "slug": CLUSTER_TYPE})
    cluster_group = _ensure(api.virtualization.cluster_groups, {"slug": topology.CLUSTER},
                            {"name": topology.CLUSTER, "slug": topology.CLUSTER})
    clusters = {
        group: _ensure(
            api.virtualization.clusters, {"name": group, "group_id": cluster_group.id},
            {"name": group, "type": cluster_type.id, "group": cluster_group.id, "status": "active",
             "scope_type": "dcim.site", "scope_id": site.id},
        )
        for group in topology.GROUPS
    }
    for group, prefixes in topology.VM_PREFIXES.items():
        for prefix in prefixes:
            _ensure(api.ipam.prefixes, {"prefix": prefix},
                    {"prefix": prefix, "status": "active", "description": prefix_description(group)})
    manufacturer = _ensure(api.dcim.manufacturers, {"slug": MANUFACTURER},
                           {"name": MANUFACTURER, "slug": MANUFACTURER})
    device_type = _ensure(api.dcim.device_types, {"slug": DEVICE_TYPE},
                          {"manufacturer": manufacturer.id, "model": DEVICE_TYPE, "slug": DEVICE_TYPE})
    role = _ensure(api.dcim.device_roles, {"slug": DEVICE_ROLE}, {"name": DEVICE_ROLE, "slug": DEVICE_ROLE})
    for node in topology.NODES:
        _ensure(api.dcim.devices, {"name": node.fqdn, "site_id": site.id},
                {"name": node.fqdn, "device_type": device_type.id, "role": role.id, "site": site.id,
                 "status": "active", "cluster": clusters[node.group].id if node.group else None})
