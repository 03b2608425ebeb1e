"""The undo of each NetBox write: a create is deleted (by id, or looked up), an update patched back to the old values.

Each created object's undo keeps how to find it when its id was lost with the answer: the fields that
identify it (an address; a VM's name; an interface's VM and name; a MAC), the fields that make it ours
(the dns_name of an address, the cluster of a VM) and the time of the write: an object found by the
lookup is this write's only if those fields match and NetBox created it since. Anything else found is
not ours: it is named in a NotOursError and never deleted. An update's undo holds the old values of the
fields it changed (read before) and patches them back only while the object still holds what was written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from libcluster.undo import Undo
from libcluster.writes import NotOursError, same_value

CLOCK_SLACK = 60.0
"""Seconds by which NetBox's clock may lag the runner's: an object created that long before a write may be its."""

LOOKUPS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "ip-address": ((("address", "address"),), ("dns_name", "assigned_object_id")),
    "vm": ((("name", "name"),), ("cluster",)),
    "vm-interface": ((("virtual_machine", "virtual_machine_id"), ("name", "name")), ()),
    "mac-address": ((("mac_address", "mac_address"),), ("assigned_object_id",)),
    "cluster": ((("name", "name"),), ("group",)),
}
"""Kind -> ((field, filter) that find a created object, fields that must match for it to be ours)."""

DEFAULT_LOOKUP: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] = ((("name", "name"),), ())
"""Other kinds (cluster groups and types) are found by name."""


def plain(value: Any) -> Any:
    """A field as written: a nested object as its id, a choice as its value, lists item by item."""
    if isinstance(value, Mapping):
        if "id" in value:
            return value["id"]
        if "value" in value:
            return value["value"]
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def created_undo(kind: str, label: str, sent: Mapping[str, Any]) -> Undo:
    """The undo of creating sent: delete by id (learnt), else found by its identifying fields."""
    finds, checks = LOOKUPS.get(kind, DEFAULT_LOOKUP)
    find = {name: plain(sent[field]) for field, name in finds if sent.get(field) not in (None, "")}
    check = {field: plain(sent[field]) for field in checks if field in sent}
    return Undo("netbox", f"{kind}-delete", label,
                {"kind": kind, "label": label, "find": find, "check": check, "since": time.time()})


def allocated_undo(label: str, prefix: str | None, sent: Mapping[str, Any]) -> Undo:
    """The undo of allocating an address of prefix for sent: delete by id, else found by dns_name in the prefix."""
    dns_name = sent.get("dns_name") or ""
    find = {"dns_name": dns_name, **({"parent": prefix} if prefix else {})} if dns_name else {}
    check = {field: plain(sent[field]) for field in ("dns_name", "assigned_object_id") if field in sent}
    return Undo("netbox", "ip-address-delete", label,
                {"kind": "ip-address", "label": label, "find": find, "check": check, "since": time.time()})


def updated_undo(kind: str, current: Mapping[str, Any], sent: Mapping[str, Any], label_field: str) -> Undo:
    """The undo of an update: the old values (from current, read before) of the fields sent."""
    fields = [field for field in sent if field != "id"]
    label = str(current.get(label_field) or f"#{current['id']}")
    return Undo("netbox", f"{kind}-restore", label, {
        "kind": kind, "id": current["id"],
        "old": {field: plain(current.get(field)) for field in fields},
        "new": {field: plain(sent[field]) for field in fields},
    })


def mismatches(obj: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields of obj that differ from wanted, as `field=value` (empty: obj holds all of wanted)."""
    return [f"{field}={plain(obj.get(field))!r}" for field, value in wanted.items()
            if not same_value(plain(obj.get(field)), value)]


def created_since(obj: Mapping[str, Any], since: float) -> bool:
    """Whether NetBox created obj at or after since (less the clock slack)."""
    text = obj.get("created")
    if not text:
        return False
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() >= since - CLOCK_SLACK


def split_ours(found: Sequence[dict[str, Any]], args: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects a lookup found that the write made, and a description of each other one (not ours)."""
    ours: list[dict[str, Any]] = []
    others: list[str] = []
    check, since = dict(args.get("check") or {}), float(args.get("since") or 0)
    for obj in found:
        wrong = mismatches(obj, check)
        if not wrong and created_since(obj, since):
            ours.append(obj)
        else:
            why = ", ".join(wrong) if wrong else f"created {obj.get('created')}, before this write"
            others.append(f"#{obj.get('id')} ({why})")
    return ours, others


def refuse(kind: str, target: str, others: Sequence[str]) -> NotOursError:
    """The error naming objects a lookup found that are not this write's."""
    return NotOursError(f"netbox {kind} {target}: found {', '.join(others)}: not made by this write, left alone")
