"""Whether an instance still fits after a change of its size: the group's instance policy, memory, storage.

Pure checks on what Ganeti answers (RAPI records, sizes in MiB), each returning the problems found as
sentences (empty: it fits), so a cookbook reports all of them before changing anything:

- :func:`policy_problems`: the group's (or cluster's) ``ipolicy``: min/max memory, vCPUs, disk size and
  count, NICs, allowed disk templates;
- :func:`memory_problems`: more memory on the primary node (and on a drbd secondary, which must be able
  to run it), with N+1 kept: the group still survives the loss of any node (libcluster.capacity);
- :func:`storage_problems`: free storage on the nodes that hold the disks. Free storage is the RAPI node
  field ``dfree`` (read-only user, no job), the space Ganeti reports for the cluster's default storage
  (for file and sharedfile: the storage directory's filesystem); ``gnt-node list-storage`` and the RAPI
  storage resource need the write user and queue a job, so they are not used for a check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from libcluster import capacity
from libcluster.ganeti.models import Instance, Node
from libcluster.ganeti.templates import INT_MIRROR

POLICY_SPECS = (("memory-size", "memory", "MiB"), ("disk-size", "disk", "MiB"), ("cpu-count", "vCPUs", ""),
                ("disk-count", "disks", ""), ("nic-count", "NICs", ""))
"""Instance policy specs checked: ipolicy key, what it limits, unit."""


def _mib(size: float) -> str:
    return capacity.format_mib(size)  # looked up at call time: libcluster.capacity imports libcluster.ganeti


def policy_problems(ipolicy: Mapping[str, Any], values: Mapping[str, int],
                    disk_template: str | None = None) -> list[str]:
    """Why values (ipolicy key -> size, only those given are checked) fall outside the policy's min/max pairs
    (empty when they fit one pair), or disk_template outside its allowed templates."""
    problems: list[str] = []
    templates = ipolicy.get("disk-templates")
    if disk_template is not None and templates is not None and disk_template not in templates:
        problems.append(f"disk template {disk_template} is not allowed by the group's policy "
                        f"(allowed: {', '.join(templates)})")
    ranges = list(ipolicy.get("minmax") or [])
    outside: list[list[str]] = []
    for bounds in ranges:
        low, high = bounds.get("min", {}), bounds.get("max", {})
        outside.append([
            f"{what} {values[key]}{unit and ' ' + unit} is outside [{low[key]}, {high[key]}]{unit and ' ' + unit}"
            for key, what, unit in POLICY_SPECS
            if key in values and key in low and key in high and not low[key] <= values[key] <= high[key]
        ])
    if ranges and all(outside):
        closest: list[str] = min(outside, key=len)
        problems.extend(closest)
    return problems


def memory_problems(instance: Instance, memory: int, nodes: Sequence[Node], instances: Sequence[Instance]) -> list[str]:
    """Why the instance cannot have `memory` MiB: its primary (and drbd secondaries) lack the extra memory, or
    its group would no longer survive the loss of a node (N+1) that it survives now. Less memory always fits."""
    extra = memory - (instance.memory or 0)
    if extra <= 0:
        return []
    by_name = {node.name: node for node in nodes}
    holders = [instance.primary_node, *(instance.secondary_nodes if instance.disk_template in INT_MIRROR else ())]
    problems = []
    for name in holders:
        node = by_name.get(name)
        if node is None or node.memory_free is None:
            problems.append(f"node {name} reports no free memory: cannot check that it has {_mib(extra)} more")
        elif node.memory_free < extra:
            role = "primary" if name == instance.primary_node else "secondary"
            problems.append(f"{role} node {name} has {_mib(node.memory_free)} free memory, "
                            f"{_mib(extra)} more is needed")
    if problems:
        return problems
    group = by_name[instance.primary_node].group_uuid
    members = [node.raw for node in nodes if node.group_uuid == group]
    hosted = [inst.raw for inst in instances
              if inst.primary_node in by_name and by_name[inst.primary_node].group_uuid == group]
    before = set(capacity.node_loss_failures(members, hosted))
    after_members = [{**node, "mfree": int(node.get("mfree") or 0) - extra} if node["name"] == instance.primary_node
                     else node for node in members]
    after_hosted = [{**inst, "beparams": {**(inst.get("beparams") or {}), "maxmem": memory}}
                    if inst["name"] == instance.name else inst for inst in hosted]
    lost = sorted(set(capacity.node_loss_failures(after_members, after_hosted)) - before)
    if lost:
        problems.append(f"N+1: with {_mib(memory)} for {instance.name}, the group could no longer restart "
                        f"the running instances of {', '.join(lost)} on its other nodes if that node failed")
    return problems


def storage_problems(instance: Instance, extra: int, nodes: Sequence[Node]) -> list[str]:
    """Why the nodes holding the instance's disks (primary and secondaries) lack `extra` MiB of free storage."""
    if extra <= 0:
        return []
    by_name = {node.name: node for node in nodes}
    problems = []
    for name in instance.nodes:
        node = by_name.get(name)
        if node is None or node.disk_free is None:
            problems.append(f"node {name} reports no free storage (RAPI dfree): cannot check that it has "
                            f"{_mib(extra)} more")
        elif node.disk_free < extra:
            problems.append(f"node {name} has {_mib(node.disk_free)} free storage, {_mib(extra)} is "
                            "needed")
    return problems



def disk_problems(instance: Instance, index: int, size: int | None = None) -> list[str]:
    """Why disk `index` of the instance cannot be used (unknown index) or grown to `size` MiB (not larger than now:
    a disk never shrinks, and growing to its own size changes nothing)."""
    sizes = instance.disk_sizes
    if not 0 <= index < len(sizes):
        known = ", ".join(f"{number} ({_mib(disk)})" for number, disk in enumerate(sizes)) or "none"
        return [f"{instance.name} has no disk {index} (its disks: {known})"]
    if size is not None and size <= sizes[index]:
        what = "its size now" if size == sizes[index] else "smaller"
        return [f"disk {index} of {instance.name} is {_mib(sizes[index])}: {_mib(size)} is {what}; "
                "a disk only grows, to a larger size (it never shrinks)"]
    return []
