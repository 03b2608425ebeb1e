"""The NetBox object types the client handles, and the filters it allows on each.

NetBox silently ignores filters it does not know (a misspelt `cluster_idd=3` returns every
VM). The client therefore sends only filters listed here, and checks every returned object
against each filter that can be checked on the object itself (see :mod:`libcluster.netbox.strict`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _truthy(text: str) -> bool:
    return text.lower() in ("true", "1", "yes")


def _equal(actual: Any, wanted: str) -> bool:
    return actual is not None and str(actual).lower() == wanted.lower()


def _same_host(actual: Any, wanted: str) -> bool:
    return actual is not None and ipaddress.ip_interface(actual).ip == ipaddress.ip_interface(wanted).ip


def _inside(actual: Any, wanted: str) -> bool:
    return actual is not None and ipaddress.ip_interface(actual).ip in ipaddress.ip_network(wanted, strict=False)


def _holds(actual: Any, wanted: str) -> bool:
    return actual is not None and ipaddress.ip_interface(wanted).ip in ipaddress.ip_network(actual, strict=False)


def _empty(actual: Any, wanted: str) -> bool:
    return (actual in (None, "")) == _truthy(wanted)


def _not_null(actual: Any, wanted: str) -> bool:
    return (actual is not None) == _truthy(wanted)


@dataclass(frozen=True)
class Check:
    """How to tell that a returned object matches one filter value: a dotted path and a comparison."""

    path: str
    """Dotted path of the compared value; empty for the whole object."""
    compare: Callable[[Any, str], bool] = _equal
    reads: tuple[str, ...] = ()
    """Top-level fields the comparison reads when path is empty."""

    @property
    def fields(self) -> tuple[str, ...]:
        """Top-level fields the check needs (requested when a caller limits `fields`)."""
        return self.reads or (self.path.split(".", 1)[0],)

    def value(self, obj: Mapping[str, Any]) -> Any:
        """The value at the path in obj, None when any step is missing or null."""
        current: Any = obj
        for step in filter(None, self.path.split(".")):
            if not isinstance(current, Mapping):
                return None
            current = current.get(step)
        return current

    def matches(self, obj: Mapping[str, Any], wanted: list[str]) -> bool:
        """Whether obj matches any of the wanted values (NetBox ORs repeated values of one filter)."""
        actual = self.value(obj)
        return any(self.compare(actual, value) for value in wanted)


UNCHECKED = None
"""A filter NetBox knows but whose effect cannot be seen on the returned object (e.g. `cluster_group_id`)."""

VM_INTERFACE_TYPE = "virtualization.vminterface"
"""Content type of a VM interface, used in IP and MAC assignments."""


def _assigned_to(content_type: str) -> Check:
    def compare(obj: Any, wanted: str) -> bool:
        return obj.get("assigned_object_type") == content_type and _equal(obj.get("assigned_object_id"), wanted)

    return Check("", compare, reads=("assigned_object_type", "assigned_object_id"))


COMMON: dict[str, Check | None] = {"id": Check("id")}


@dataclass(frozen=True)
class Kind:
    """One object type: its pynetbox app and endpoint, the field that names an object, its filters."""

    name: str
    """Name callers use, e.g. 'vm'."""
    app: str
    endpoint: str
    """pynetbox endpoint attribute, e.g. 'virtual_machines'."""
    label: str
    """Field that names an object in messages and the change log."""
    filters: Mapping[str, Check | None] = field(default_factory=dict)
    writable: bool = True

    @property
    def path(self) -> str:
        """API path of the endpoint, as in messages: 'virtualization/virtual-machines'."""
        return f"{self.app}/{self.endpoint.replace('_', '-')}"

    def allowed(self) -> dict[str, Check | None]:
        """Every filter of the kind, the common ones included."""
        return {**COMMON, **self.filters}


_KINDS = (
    Kind("site", "dcim", "sites", "name", {"name": Check("name"), "slug": Check("slug")}, writable=False),
    Kind("cluster-type", "virtualization", "cluster_types", "name", {"name": Check("name"), "slug": Check("slug")}),
    Kind("cluster-group", "virtualization", "cluster_groups", "name", {"name": Check("name"), "slug": Check("slug")}),
    Kind("cluster", "virtualization", "clusters", "name", {
        "name": Check("name"),
        "group_id": Check("group.id"),
        "type_id": Check("type.id"),
        "status": Check("status.value"),
    }),
    Kind("device", "dcim", "devices", "name", {
        "name": Check("name"),
        "cluster_id": Check("cluster.id"),
        "site_id": Check("site.id"),
        "status": Check("status.value"),
    }),
    Kind("vm", "virtualization", "virtual_machines", "name", {
        "name": Check("name"),
        "cluster_id": Check("cluster.id"),
        "cluster_group_id": UNCHECKED,
        "site_id": Check("site.id"),
        "status": Check("status.value"),
    }),
    Kind("vm-interface", "virtualization", "interfaces", "name", {
        "name": Check("name"),
        "virtual_machine_id": Check("virtual_machine.id"),
        "cluster_id": UNCHECKED,
        "mac_address": Check("mac_address"),
    }),
    Kind("mac-address", "dcim", "mac_addresses", "mac_address", {
        "mac_address": Check("mac_address"),
        "vminterface_id": _assigned_to(VM_INTERFACE_TYPE),
        "virtual_machine_id": Check("assigned_object.virtual_machine.id"),
    }),
    Kind("prefix", "ipam", "prefixes", "prefix", {
        "prefix": Check("prefix"),
        "contains": Check("prefix", _holds),
        "vrf_id": Check("vrf.id"),
        "status": Check("status.value"),
    }),
    Kind("ip-address", "ipam", "ip_addresses", "address", {
        "address": Check("address", _same_host),
        "parent": Check("address", _inside),
        "dns_name": Check("dns_name"),
        "dns_name__empty": Check("dns_name", _empty),
        "vminterface_id": _assigned_to(VM_INTERFACE_TYPE),
        "virtual_machine_id": Check("assigned_object.virtual_machine.id"),
        "device_id": Check("assigned_object.device.id"),
        "assigned_to_interface": Check("assigned_object_id", _not_null),
        "status": Check("status.value"),
        "family": Check("family.value"),
    }),
    Kind("object-change", "core", "object_changes", "object_repr", {
        "action": Check("action.value"),
        "changed_object_type": Check("changed_object_type"),
        "changed_object_id": Check("changed_object_id"),
        "request_id": Check("request_id"),
    }, writable=False),
)

KINDS: dict[str, Kind] = {kind.name: kind for kind in _KINDS}
"""Every kind by its name."""
