"""Stand-ins for the unit tests of libcluster.sync: RAPI-shaped instances, NetBox-shaped objects, and a NetBox
double that records each client call (so tests check that writes are bulk calls and only what differs)."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from libcluster.clusters import ClusterSettings, GroupSettings, VMDefaults

VMI = "virtualization.vminterface"


def instance(name: str, *, pnode: str = "node1.lab.example", memory: int = 1024, vcpus: int = 1,
             disks: Sequence[int] = (1024,), macs: Sequence[str] = ("aa:00:00:00:00:01",), admin_state: str = "up",
             status: str = "running", ips: Sequence[str | None] | None = None) -> dict[str, Any]:
    """A `GET /2/instances?bulk=1` entry with the fields the sync reads."""
    return {"name": name, "pnode": pnode, "admin_state": admin_state, "status": status,
            "beparams": {"maxmem": memory, "memory": memory, "vcpus": vcpus},
            "disk.sizes": list(disks), "nic.macs": list(macs), "nic.names": [None] * len(macs),
            "nic.ips": list(ips) if ips is not None else [None] * len(macs)}


def settings(prefixes: Mapping[str, Sequence[str]] | None = None) -> ClusterSettings:
    """Cluster `lab`: groups A and B mapped to NetBox clusters of the same name, with their prefixes."""
    prefixes = prefixes or {"A": ("198.51.100.0/26", "2001:db8:a::/64"), "B": ("198.51.100.64/26",)}
    groups = {
        name: GroupSettings(name=name, netbox_cluster=name, nic_link=None,
                            prefixes_v4=tuple(p for p in found if ":" not in p),
                            prefixes_v6=tuple(p for p in found if ":" in p))
        for name, found in prefixes.items()
    }
    return ClusterSettings(name="lab", domain="lab.example", netbox_cluster_group="lab", groups=groups,
                           defaults=VMDefaults())


def cluster(cluster_id: int, name: str) -> dict[str, Any]:
    """A NetBox cluster as read."""
    return {"id": cluster_id, "name": name, "scope_type": "dcim.site", "scope_id": 1}


def vm(vm_id: int, name: str, cluster_obj: Mapping[str, Any], *, memory: int = 1024, vcpus: float = 1.0,
       disk: int = 1024, status: str = "active", primary4: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A NetBox VM as read with the sync's fields (vcpus decimal, status and cluster nested)."""
    return {"id": vm_id, "name": name, "cluster": {"id": cluster_obj["id"], "name": cluster_obj["name"]},
            "status": {"value": status, "label": status.title()}, "vcpus": f"{vcpus:.2f}", "memory": memory,
            "disk": disk, "primary_ip4": dict(primary4) if primary4 else None, "primary_ip6": None}


def iface(iface_id: int, vm_obj: Mapping[str, Any], name: str = "eth0", mac: str | None = "aa:00:00:00:00:01"
          ) -> dict[str, Any]:
    """A NetBox 4.7 VM interface as read."""
    return {"id": iface_id, "name": name, "virtual_machine": {"id": vm_obj["id"], "name": vm_obj["name"]},
            "mac_address": mac, "primary_mac_address": None}


def ip(ip_id: int, address: str, *, dns_name: str = "", iface_obj: Mapping[str, Any] | None = None,
       status: str = "active") -> dict[str, Any]:
    """A NetBox IP address as read, assigned to a VM interface when iface_obj is given."""
    assigned = {"id": iface_obj["id"], "name": iface_obj["name"],
                "virtual_machine": dict(iface_obj["virtual_machine"])} if iface_obj else None
    return {"id": ip_id, "address": address, "dns_name": dns_name, "status": {"value": status},
            "assigned_object_type": VMI if iface_obj else None,
            "assigned_object_id": iface_obj["id"] if iface_obj else None, "assigned_object": assigned}


class RecordingNetBox:
    """The NetBox client methods the sync writes with: every call recorded, answers shaped like NetBox's.

    In dry-run, created objects get no id (as the real client's planned objects). free says how many
    addresses each prefix has left; version is the NetBox API version the client would report.
    """

    def __init__(self, *, dry_run: bool = False, free: Mapping[str, int] | None = None,
                 version: tuple[int, int] = (4, 7)) -> None:
        """Start with no call; ids of created objects count from 5000."""
        self.dry_run = dry_run
        self.version = version
        self.free = dict(free or {})
        self.calls: list[tuple[str, str, Any]] = []
        self._ids = itertools.count(5000)
        self._used: dict[str, int] = {}

    def _id(self) -> int | None:
        return None if self.dry_run else next(self._ids)

    def writes(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        """The calls that write (optionally of one method)."""
        return [call for call in self.calls if call[0] != "get" and (method is None or call[0] == method)]

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        """One object (a cluster type, say)."""
        self.calls.append(("get", kind, filters))
        return {"id": 77, **filters}

    def create(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Bulk create: the objects with ids."""
        self.calls.append(("create", kind, [dict(obj) for obj in objects]))
        return [{**obj, "id": self._id()} for obj in objects]

    def update(self, kind: str, objects: Sequence[Mapping[str, Any]], *,
               current: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Bulk update: the objects as sent (current only saves the real client a read)."""
        self.calls.append(("update", kind, [dict(obj) for obj in objects]))
        return [dict(obj) for obj in objects]

    def delete(self, kind: str, objects: Sequence[Any]) -> None:
        """Bulk delete."""
        self.calls.append(("delete", kind, list(objects)))

    def release_ips(self, ips: Sequence[Any]) -> None:
        """Delete addresses."""
        self.calls.append(("release", "ip-address", list(ips)))

    def set_macs(self, macs: Mapping[int, str]) -> None:
        """MACs of interfaces by id (nothing recorded when empty, like the client, which sends nothing)."""
        if macs:
            self.calls.append(("set_macs", "vm-interface", dict(macs)))

    def _next(self, prefix: str, count: int) -> list[str]:
        network = ipaddress.ip_network(prefix)
        start = self._used.get(prefix, 0) + 1
        return [f"{network[start + index]}/{network.prefixlen}" for index in range(count)]

    def available_ips(self, prefix: Any, count: int = 1) -> list[str]:
        """Up to count free addresses of the prefix."""
        return self._next(str(prefix), min(count, self.free.get(str(prefix), 0)))

    def allocate_ips(self, prefix: Any, wanted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Allocate one address per mapping, lowest free first."""
        self.calls.append(("allocate", str(prefix), [dict(data) for data in wanted]))
        addresses = self._next(str(prefix), len(wanted))
        self.free[str(prefix)] = self.free.get(str(prefix), 0) - len(wanted)
        self._used[str(prefix)] = self._used.get(str(prefix), 0) + len(wanted)
        return [{**data, "id": self._id(), "address": address} for address, data in zip(addresses, wanted)]


class StoredNetBox(RecordingNetBox):
    """A RecordingNetBox that keeps what is written and answers the reads one-VM syncs make (a few filters)."""

    def __init__(self, **kwargs: Any) -> None:
        """Start with cluster group `lab` and clusters A and B."""
        super().__init__(**kwargs)
        self.store: dict[str, dict[int, dict[str, Any]]] = {
            "cluster-group": {1: {"id": 1, "name": "lab"}}, "cluster": {1: cluster(1, "A"), 2: cluster(2, "B")},
            "vm": {}, "vm-interface": {}, "ip-address": {}}

    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Put an object in the store as it was read."""
        self.store[kind][int(obj["id"])] = obj
        return obj

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        """The one stored object matching (a cluster type when nothing of that kind is stored)."""
        if kind not in self.store:
            return super().get(kind, **filters)
        [found] = self.objects(kind, **filters)
        return found

    def find(self, kind: str, **filters: Any) -> dict[str, Any] | None:
        """The stored object matching, None if none."""
        found = self.objects(kind, **filters)
        return found[0] if found else None

    def objects(self, kind: str, *, fields: Any = None, **filters: Any) -> list[dict[str, Any]]:
        """Stored objects matching every filter (name, cluster_id, group_id, ids, dns_name, address)."""
        def value(obj: dict[str, Any], name: str) -> Any:
            if name == "cluster_id":
                return obj["cluster"]["id"]
            if name == "virtual_machine_id":
                if kind == "ip-address":
                    iface = self.store["vm-interface"].get(int(obj.get("assigned_object_id") or 0))
                    return iface["virtual_machine"]["id"] if iface else None
                return obj["virtual_machine"]["id"]
            if name == "address":
                return str(obj["address"]).split("/")[0]
            return {"group_id": 1}.get(name) if name == "group_id" else obj.get(name)

        def wanted(name: str, given: Any) -> list[Any]:
            given = given if isinstance(given, (list, tuple, set)) else [given]
            return [str(item).split("/")[0] if name == "address" else item for item in given]

        return [dict(obj) for obj in self.store[kind].values()
                if all(value(obj, name) in wanted(name, given) for name, given in filters.items())]

    def create(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record, then store with the nested shapes NetBox answers with."""
        made = super().create(kind, objects)
        if not self.dry_run:
            for obj in made:
                self.add(kind, self._nested(kind, obj))
        return [self.store[kind].get(obj["id"], obj) if obj["id"] else obj for obj in made]

    def update(self, kind: str, objects: Sequence[Mapping[str, Any]], *,
               current: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Record, then merge the fields into the stored objects."""
        super().update(kind, objects, current=current)
        for obj in objects:
            stored = self.store[kind][int(obj["id"])]
            stored.update(self._nested(kind, {**stored, **obj}))
        return [dict(self.store[kind][int(obj["id"])]) for obj in objects]

    def delete(self, kind: str, objects: Sequence[Any]) -> None:
        """Record, then forget."""
        super().delete(kind, objects)
        for obj in objects:
            self.store[kind].pop(int(obj if isinstance(obj, int) else obj["id"]), None)

    def release_ips(self, ips: Sequence[Any]) -> None:
        """Record, then forget the addresses."""
        super().release_ips(ips)
        for ip_obj in ips:
            self.store["ip-address"].pop(int(ip_obj["id"]), None)

    def set_macs(self, macs: Mapping[int, str]) -> None:
        """Record, then set the interfaces' MACs."""
        super().set_macs(macs)
        for iface_id, mac in macs.items():
            self.store["vm-interface"][iface_id]["mac_address"] = mac

    def allocate_ips(self, prefix: Any, wanted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record, then store the new addresses."""
        made = super().allocate_ips(prefix, wanted)
        if not self.dry_run:
            for obj in made:
                self.add("ip-address", {"status": {"value": "active"}, **obj})
        return made

    def _nested(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """References by id as NetBox answers them: cluster, virtual machine, primary addresses."""
        shaped = dict(obj)
        if kind == "vm":
            if isinstance(shaped.get("cluster"), int):
                shaped["cluster"] = {"id": shaped["cluster"], "name": self.store["cluster"][shaped["cluster"]]["name"]}
            if isinstance(shaped.get("status"), str):
                shaped["status"] = {"value": shaped["status"]}
            for key in ("primary_ip4", "primary_ip6"):
                if isinstance(shaped.get(key), int):
                    shaped[key] = {"id": shaped[key], "address": self.store["ip-address"][shaped[key]]["address"]}
        if kind == "vm-interface" and isinstance(shaped.get("virtual_machine"), int):
            shaped["virtual_machine"] = {"id": shaped["virtual_machine"]}
        return shaped
