"""Capacity of Ganeti node groups from RAPI bulk data: what is free, allocated, and what still fits.

Pure functions over the dicts `GET /2/nodes?bulk=1`, `/2/groups?bulk=1` and
`/2/instances?bulk=1` return (sizes in MiB), so reports and pre-checks share one truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from libcluster.ganeti.templates import EXT_MIRROR, INT_MIRROR

UNITS = ("MiB", "GiB", "TiB", "PiB")


def format_mib(mib: float) -> str:
    """Render a size given in MiB with the largest readable unit, e.g. 23.0 GiB."""
    value = float(mib)
    for unit in UNITS[:-1]:
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {UNITS[-1]}"


def instance_memory(instance: Mapping[str, Any]) -> int:
    """Memory an instance reserves, in MiB (maxmem, as Ganeti's allocator counts it)."""
    beparams = instance.get("beparams") or {}
    return int(beparams.get("maxmem") or beparams.get("memory") or 0)


def instance_vcpus(instance: Mapping[str, Any]) -> int:
    """vCPUs of an instance."""
    return int((instance.get("beparams") or {}).get("vcpus") or 0)


def instance_disk(instance: Mapping[str, Any]) -> int:
    """Total disk of an instance, in MiB."""
    return int(sum(instance.get("disk.sizes") or []))


@dataclass
class GroupCapacity:
    """Capacity of one node group (or, for a totals row, of a whole cluster)."""

    cluster: str
    group: str
    nodes: int = 0
    instances: int = 0
    memory_total: int = 0
    memory_free: int = 0
    memory_allocated: int = 0
    disk_total: int = 0
    disk_free: int = 0
    cores: int = 0
    vcpus_allocated: int = 0
    vcpu_ratio_limit: float | None = None
    survives_node_loss: bool = True
    node_loss_failures: list[str] = field(default_factory=list)
    largest_vm_memory: int = 0
    largest_vm_disk: int = 0

    @property
    def memory_free_avg(self) -> float:
        """Average free memory per node, in MiB."""
        return self.memory_free / self.nodes if self.nodes else 0.0

    @property
    def disk_free_avg(self) -> float:
        """Average free disk per node, in MiB."""
        return self.disk_free / self.nodes if self.nodes else 0.0

    @property
    def vcpu_ratio(self) -> float:
        """Allocated vCPUs per physical core."""
        return self.vcpus_allocated / self.cores if self.cores else 0.0

    @property
    def memory_ratio(self) -> float:
        """Allocated instance memory over total node memory."""
        return self.memory_allocated / self.memory_total if self.memory_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (sizes in MiB) for JSON and CSV output."""
        return {
            "cluster": self.cluster,
            "group": self.group,
            "nodes": self.nodes,
            "instances": self.instances,
            "memory_total_mib": self.memory_total,
            "memory_free_mib": self.memory_free,
            "memory_free_avg_mib": round(self.memory_free_avg, 1),
            "memory_allocated_mib": self.memory_allocated,
            "memory_ratio": round(self.memory_ratio, 3),
            "disk_total_mib": self.disk_total,
            "disk_free_mib": self.disk_free,
            "disk_free_avg_mib": round(self.disk_free_avg, 1),
            "cores": self.cores,
            "vcpus_allocated": self.vcpus_allocated,
            "vcpu_ratio": round(self.vcpu_ratio, 3),
            "vcpu_ratio_limit": self.vcpu_ratio_limit,
            "survives_node_loss": self.survives_node_loss,
            "node_loss_failures": list(self.node_loss_failures),
            "largest_vm_memory_mib": self.largest_vm_memory,
            "largest_vm_disk_mib": self.largest_vm_disk,
        }


def _usable(node: Mapping[str, Any]) -> bool:
    return not node.get("offline") and not node.get("drained") and node.get("vm_capable", True)


def _fits_after_loss(lost: str, nodes: Sequence[Mapping[str, Any]], instances: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the instances of node `lost` can restart elsewhere in its group (first fit decreasing)."""
    free = {node["name"]: int(node.get("mfree") or 0) for node in nodes if node["name"] != lost and _usable(node)}
    displaced = sorted(
        (inst for inst in instances if inst.get("pnode") == lost and inst.get("admin_state") == "up"),
        key=instance_memory,
        reverse=True,
    )
    for inst in displaced:
        candidates = failover_candidates(inst, free)
        if candidates is None:
            continue  # local storage (file, plain): cannot move, a node loss takes it down whatever the capacity
        need = instance_memory(inst)
        target = next((name for name in candidates if free[name] >= need), None)
        if target is None:
            return False
        free[target] -= need
    return True


def failover_candidates(instance: Mapping[str, Any], free: Mapping[str, int]) -> list[str] | None:
    """The nodes (of those in free: name -> free memory) an instance can restart on, in the order to try: its
    DRBD secondaries, or any node by free memory for a template movable anywhere; None when it cannot move."""
    template = instance.get("disk_template")
    if template in INT_MIRROR:
        return [name for name in instance.get("snodes") or [] if name in free]
    if template in EXT_MIRROR:
        return sorted(free, key=free.__getitem__, reverse=True)
    return None


def _policy_max(group: Mapping[str, Any], key: str) -> int | None:
    minmax = (group.get("ipolicy") or {}).get("minmax") or []
    values = [int(entry["max"][key]) for entry in minmax if key in entry.get("max", {})]
    return max(values) if values else None


def group_capacity(
    cluster: str, nodes: Iterable[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]],
    instances: Iterable[Mapping[str, Any]],
) -> list[GroupCapacity]:
    """Per-group capacity of one cluster, groups in name order."""
    nodes, instances = list(nodes), list(instances)
    group_of_node = {node["name"]: node.get("group.uuid") for node in nodes}
    return [one_group(cluster, group, [node for node in nodes if node.get("group.uuid") == group["uuid"]],
                      [inst for inst in instances if group_of_node.get(inst.get("pnode")) == group["uuid"]])
            for group in sorted(groups, key=lambda g: g["name"])]


def one_group(cluster: str, group: Mapping[str, Any], members: Sequence[Mapping[str, Any]],
              hosted: Sequence[Mapping[str, Any]]) -> GroupCapacity:
    """Capacity of one node group from its member nodes and the instances whose primary is one of them."""
    usable = [node for node in members if _usable(node)]
    failures = node_loss_failures(members, hosted)
    largest_memory, largest_disk = largest_vm(usable, group)
    return GroupCapacity(
        cluster=cluster, group=group["name"], nodes=len(members), instances=len(hosted),
        memory_total=node_total(members, "mtotal"), memory_free=node_total(usable, "mfree"),
        memory_allocated=sum(instance_memory(inst) for inst in hosted),
        disk_total=node_total(members, "dtotal"), disk_free=node_total(usable, "dfree"),
        cores=node_total(members, "ctotal"), vcpus_allocated=sum(instance_vcpus(inst) for inst in hosted),
        vcpu_ratio_limit=vcpu_ratio_limit(group),
        survives_node_loss=not failures and len(usable) > 1, node_loss_failures=failures,
        largest_vm_memory=largest_memory, largest_vm_disk=largest_disk,
    )


def node_total(nodes: Iterable[Mapping[str, Any]], key: str) -> int:
    """The sum of one RAPI node field (mtotal, mfree, dtotal, dfree, ctotal) over nodes, a missing one as 0."""
    return sum(int(node.get(key) or 0) for node in nodes)


def vcpu_ratio_limit(group: Mapping[str, Any]) -> float | None:
    """The group's instance policy limit of vCPUs per physical core, None when it has none."""
    ratio = (group.get("ipolicy") or {}).get("vcpu-ratio")
    return float(ratio) if ratio is not None else None


def node_loss_failures(members: Sequence[Mapping[str, Any]], hosted: Sequence[Mapping[str, Any]]) -> list[str]:
    """The member nodes whose loss the group cannot absorb: their running instances do not all fit elsewhere."""
    return [node["name"] for node in members if not _fits_after_loss(node["name"], members, hosted)]


def largest_vm(usable: Sequence[Mapping[str, Any]], group: Mapping[str, Any]) -> tuple[int, int]:
    """Memory and disk (MiB) of the largest VM one node still takes: the usable node with the most free memory
    (then disk), capped by the group's instance policy; (0, 0) without a usable node."""
    if not usable:
        return 0, 0
    best = max(usable, key=lambda node: (int(node.get("mfree") or 0), int(node.get("dfree") or 0)))
    return (_capped(int(best.get("mfree") or 0), _policy_max(group, "memory-size")),
            _capped(int(best.get("dfree") or 0), _policy_max(group, "disk-size")))


def _capped(value: int, limit: int | None) -> int:
    return value if limit is None else min(value, limit)


def cluster_totals(cluster: str, groups: Sequence[GroupCapacity]) -> GroupCapacity:
    """One totals row for a cluster: sums, and the best single-group values for what fits."""
    total = GroupCapacity(cluster=cluster, group="TOTAL")
    for cap in groups:
        for name in ("nodes", "instances", "memory_total", "memory_free", "memory_allocated", "disk_total",
                     "disk_free", "cores", "vcpus_allocated"):
            setattr(total, name, getattr(total, name) + getattr(cap, name))
        total.node_loss_failures.extend(cap.node_loss_failures)
    total.survives_node_loss = bool(groups) and all(cap.survives_node_loss for cap in groups)
    if groups:
        best = max(groups, key=lambda cap: (cap.largest_vm_memory, cap.largest_vm_disk))
        total.largest_vm_memory, total.largest_vm_disk = best.largest_vm_memory, best.largest_vm_disk
    return total
