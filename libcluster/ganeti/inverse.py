"""The undo of each Ganeti write: declared (with what it needs, read before) and run, from any process.

A write that declares an undo carries a marker in its job's reason trail (RAPI `?reason=`), so the undo
finds the job even when the answer with its id was lost. Undoing first settles the job: a queued one is
canceled, a running one waited for. A job that did not succeed changed nothing, so there is nothing to
undo ("absent"). Otherwise the object is checked against what the write left (an instance created by
that very job, parameters still at the values written) before it is taken back; anything else is not
ours and is left alone, with an error naming it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from libcluster.ganeti.errors import GanetiError, JobFailedError, RapiNotFoundError
from libcluster.ganeti.jobs import FINALIZED, Job, timestamp
from libcluster.ganeti.rapi import path_segment
from libcluster.undo import Undo
from libcluster.writes import NotOursError, same_value

if TYPE_CHECKING:
    from libcluster.ganeti.cluster import GanetiCluster

logger = logging.getLogger(__name__)

MARKER_PREFIX = "cookbooks-write "
"""Start of the reason a write with an undo gives its job; the rest is unique to the write."""

CLOCK_SLACK = 300.0
"""Seconds by which a job's received time may precede the write's (clocks differ): only narrows the search."""

OPCODES = {
    "instance-remove": "INSTANCE_CREATE",
    "instance-startup": "INSTANCE_SHUTDOWN",
    "instance-shutdown": "INSTANCE_STARTUP",
    "instance-modify": "INSTANCE_SET_PARAMS",
    "instance-rename": "INSTANCE_RENAME",
    "instance-migrate": "INSTANCE_MIGRATE",
    "instance-replace-disks": "INSTANCE_REPLACE_DISKS",
    "tags-remove": "TAGS_SET",
    "tags-add": "TAGS_DEL",
    "node-role": "NODE_SET_PARAMS",
    "disk-remove": "INSTANCE_SET_PARAMS",
}
"""Undo action -> the opcode (job summary prefix) of the write it takes back."""

PARAM_GROUPS = ("beparams", "hvparams", "osparams")
"""Instance parameter groups a modify can take back; `default` resets a parameter to the cluster's value."""

DEFAULT = "default"
"""Ganeti's value that removes an instance's own setting of a parameter (back to the inherited one)."""


def declare(cluster: GanetiCluster, action: str, target: str, **args: Any) -> Undo:
    """The undo of a write about to be sent: action (see OPCODES), with the cluster, a marker and the time."""
    return Undo("ganeti", action, target, {
        "cluster": cluster.name, "marker": MARKER_PREFIX + uuid.uuid4().hex, "since": time.time(), **args,
    })


def replace_secondary_body(node: str) -> dict[str, str]:
    """The `POST /2/instances/NAME/replace-disks` body making node an instance's DRBD secondary (Ganeti's mode
    replace_new_secondary, `gnt-instance replace-disks -n NODE`): sent by the write and by its undo."""
    return {"mode": "replace_new_secondary", "remote_node": node}


def modify_values(instance: Mapping[str, Any], changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(old, new) of a modify's be/hv/os parameters and OS, as the instance's own settings (`default` if unset).

    `memory` is Ganeti's alias of maxmem and minmem: both are kept. Raises ValueError when changes hold
    something else (disks, NICs, disk template): those have no undo.
    """
    other = sorted(set(changes) - {*PARAM_GROUPS, "os_name"})
    if other:
        raise ValueError(f"no undo for a modify of {', '.join(other)}")
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for group in PARAM_GROUPS:
        wanted = dict(changes.get(group) or {})
        if "memory" in wanted and group == "beparams":
            memory = wanted.pop("memory")
            wanted.update(maxmem=memory, minmem=memory)
        if wanted:
            own = instance.get(f"custom_{group}") or {}
            old[group] = {key: own.get(key, DEFAULT) for key in wanted}
            new[group] = wanted
    if changes.get("os_name") is not None:
        old["os_name"], new["os_name"] = instance.get("os"), changes["os_name"]
    return old, new


class Inverses:
    """Runs the undo actions of one cluster's writes (GanetiCluster.undo)."""

    def __init__(self, cluster: GanetiCluster) -> None:
        """Undo through cluster (a real, read-write client)."""
        self.cluster = cluster
        self.actions: dict[str, Callable[[Mapping[str, Any]], str]] = {
            "instance-remove": self.remove_created,
            "instance-startup": self.startup,
            "instance-shutdown": self.shutdown,
            "instance-modify": self.modify_back,
            "instance-rename": self.rename_back,
            "instance-migrate": self.migrate_back,
            "instance-replace-disks": self.replace_back,
            "tags-remove": self.remove_tags,
            "tags-add": self.add_tags,
            "node-role": self.role_back,
            "disk-remove": self.remove_added_disk,
        }

    def run(self, action: str, args: Mapping[str, Any]) -> str:
        """Run one undo action; "undone" or "absent", or an error naming the object."""
        if action not in self.actions:
            raise GanetiError(f"cluster {self.cluster.name}: unknown undo action {action!r} "
                              f"(known: {', '.join(sorted(self.actions))})")
        return self.actions[action](args)

    # Jobs

    def settle(self, action: str, args: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The write's job once finished (canceled first if still queued), None when Ganeti never got it."""
        job_id = args.get("job_id") or self.find_job(action, args)
        if job_id is None:
            return None
        info = self.cluster.job(int(job_id))
        status = info.get("status")
        if status is None:
            raise GanetiError(f"cluster {self.cluster.name}: job {job_id} of {action} {args.get('name')} is no "
                              "longer in Ganeti's queue (archived?): cannot tell what it did, left alone")
        if status in ("queued", "waiting"):
            answer = self.cluster.rapi.write("DELETE", f"/2/jobs/{int(job_id)}")
            logger.info("Undo: job %s was %s, cancel asked: %s", job_id, status, answer)
        if status not in FINALIZED:
            with contextlib.suppress(JobFailedError):  # a failed or canceled job: its status says it below
                Job(self.cluster.rapi, int(job_id), description=f"job {job_id}",
                    default_timeout=self.cluster.job_timeout).wait()
            info = self.cluster.job(int(job_id))
        return info

    def find_job(self, action: str, args: Mapping[str, Any]) -> int | None:
        """The id of the job whose reason trail holds the write's marker (its answer was lost), None if none."""
        marker, opcode = args.get("marker"), OPCODES[action]
        if not marker:
            return None
        since = float(args.get("since") or 0) - CLOCK_SLACK
        rows = self.cluster.rapi.query("job", ["id", "summary", "received_ts"])
        for row in sorted(rows, key=lambda row: -int(row["id"])):
            received = timestamp(row.get("received_ts")) or 0.0
            if received < since or not any(str(text).startswith(opcode) for text in row.get("summary") or []):
                continue
            ops = self.cluster.job(int(row["id"])).get("ops") or []
            if any(len(reason) > 1 and reason[1] == marker for op in ops for reason in op.get("reason") or []):
                return int(row["id"])
        return None

    def succeeded(self, action: str, args: Mapping[str, Any]) -> bool:
        """Whether the write's job succeeded (after settling it): otherwise it changed nothing."""
        info = self.settle(action, args)
        return info is not None and info.get("status") == "success"

    def _run(self, what: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Any = None) -> None:
        """Send one undo write (not journaled: the undo line records it) and wait for its job."""
        job_id = self.cluster.rapi.submit(method, path, params=params, body=body)
        Job(self.cluster.rapi, job_id, description=what, default_timeout=self.cluster.job_timeout).wait()
        logger.info("Undo: %s on cluster %s (job %s)", what, self.cluster.name, job_id)

    def _instance(self, name: str) -> Mapping[str, Any] | None:
        try:
            return self.cluster.instance(name)
        except RapiNotFoundError:
            return None

    # Actions

    def remove_created(self, args: Mapping[str, Any]) -> str:
        """Remove the instance the create made: only if that create's job made the instance there now."""
        name = str(args["name"])
        info = self.settle("instance-remove", args)
        instance = self._instance(name)
        if info is None or info.get("status") != "success":
            if instance is not None and info is None:
                raise NotOursError(f"instance {name} on cluster {self.cluster.name} exists but no job of this "
                                   "write made it: left alone")
            return "absent"
        if instance is None:
            return "absent"
        start, end, ctime = timestamp(info.get("start_ts")), timestamp(info.get("end_ts")), instance.get("ctime")
        if start is None or end is None or ctime is None or not start - 0.001 <= float(ctime) <= end + 0.001:
            raise NotOursError(f"instance {name} (uuid {instance.get('uuid')}) on cluster {self.cluster.name} was "
                               f"not created by job {info.get('id')} (created at {ctime}): left alone")
        self._run(f"remove instance {name}", "DELETE", f"/2/instances/{path_segment(name)}",
                  body={"shutdown_timeout": 0})
        return "undone"

    def startup(self, args: Mapping[str, Any]) -> str:
        """Start again an instance the write shut down (absent if the shutdown did not happen or it runs)."""
        return self._power(args, "instance-startup", "up", "startup")

    def shutdown(self, args: Mapping[str, Any]) -> str:
        """Stop again an instance the write started (absent if the startup did not happen or it is stopped)."""
        return self._power(args, "instance-shutdown", "down", "shutdown")

    def _power(self, args: Mapping[str, Any], action: str, wanted: str, verb: str) -> str:
        name = str(args["name"])
        if not self.succeeded(action, args):
            return "absent"
        instance = self._instance(name)
        if instance is None:
            raise NotOursError(f"instance {name} is no longer on cluster {self.cluster.name}: cannot {verb} it")
        if instance.get("admin_state") == wanted:
            return "absent"
        body = {"timeout": 0} if verb == "shutdown" else None
        self._run(f"{verb} instance {name}", "PUT", f"/2/instances/{path_segment(name)}/{verb}", body=body)
        return "undone"

    def modify_back(self, args: Mapping[str, Any]) -> str:
        """Set an instance's parameters back to their old values, if they still hold what the write set."""
        name = str(args["name"])
        old, new = dict(args.get("old") or {}), dict(args.get("new") or {})
        if not self.succeeded("instance-modify", args):
            return "absent"
        instance = self._instance(name)
        if instance is None:
            raise NotOursError(f"instance {name} is no longer on cluster {self.cluster.name}: cannot modify it back")
        current = _current(instance, new)
        if _matches(current, old):
            return "absent"
        if not _matches(current, new):
            raise NotOursError(f"instance {name} on cluster {self.cluster.name}: its parameters changed since this "
                               f"write (now {current}, written {new}): left alone")
        body = {key: value for key, value in old.items() if value not in (None, {})}
        self._run(f"modify back instance {name}", "PUT", f"/2/instances/{path_segment(name)}/modify", body=body)
        return "undone"

    def rename_back(self, args: Mapping[str, Any]) -> str:
        """Rename the instance back, if it still has the new name and the old one is free."""
        name, new_name = str(args["name"]), str(args["new_name"])
        if not self.succeeded("instance-rename", args):
            return "absent"
        renamed, original = self._instance(new_name), self._instance(name)
        if renamed is None and original is not None:
            return "absent"
        if renamed is None or original is not None:
            raise NotOursError(f"cannot rename {new_name} back to {name} on cluster {self.cluster.name}: "
                               f"{new_name} {'exists' if renamed else 'is gone'}, {name} "
                               f"{'exists' if original else 'is free'}")
        self._run(f"rename instance {new_name} back to {name}", "PUT", f"/2/instances/{path_segment(new_name)}/rename",
                  body={"new_name": name, "ip_check": False, "name_check": False})
        return "undone"

    def migrate_back(self, args: Mapping[str, Any]) -> str:
        """Migrate the instance back to the node it was on (args["node"]), if the migrate moved it; a stopped
        instance is failed over instead (Ganeti's allow_failover)."""
        name, node = str(args["name"]), str(args["node"])
        if not self.succeeded("instance-migrate", args):
            return "absent"
        instance = self._instance(name)
        if instance is None:
            raise NotOursError(f"instance {name} is no longer on cluster {self.cluster.name}: cannot migrate it back")
        if instance.get("pnode") == node:
            return "absent"
        body: dict[str, Any] = {"allow_failover": True}
        if node not in (instance.get("snodes") or []):
            body["target_node"] = node
        self._run(f"migrate instance {name} back to {node}", "PUT", f"/2/instances/{path_segment(name)}/migrate",
                  body=body)
        return "undone"

    def replace_back(self, args: Mapping[str, Any]) -> str:
        """Replace the instance's secondary back with the node it was on (args["node"]), if the replace made
        args["new_node"] its secondary and that is still so."""
        name, node, new = str(args["name"]), str(args["node"]), str(args["new_node"])
        if not self.succeeded("instance-replace-disks", args):
            return "absent"
        instance = self._instance(name)
        if instance is None:
            raise NotOursError(f"instance {name} is no longer on cluster {self.cluster.name}: cannot replace its "
                               "secondary back")
        secondaries = list(instance.get("snodes") or [])
        if secondaries == [node]:
            return "absent"
        if secondaries != [new]:
            raise NotOursError(f"instance {name} on cluster {self.cluster.name} has secondary "
                               f"{', '.join(secondaries) or 'none'} now, not {new} as this write left it: left alone")
        self._run(f"replace the secondary of instance {name} back with {node}", "POST",
                  f"/2/instances/{path_segment(name)}/replace-disks",
                  body=replace_secondary_body(node))
        return "undone"

    def remove_tags(self, args: Mapping[str, Any]) -> str:
        """Remove the tags the write added (those that were not there before), if still there."""
        return self._tags(args, "tags-remove", present=True, method="DELETE")

    def add_tags(self, args: Mapping[str, Any]) -> str:
        """Put back the tags the write removed, if still missing."""
        return self._tags(args, "tags-add", present=False, method="PUT")

    def _tags(self, args: Mapping[str, Any], action: str, *, present: bool, method: str) -> str:
        if not self.succeeded(action, args):
            return "absent"
        kind, name = str(args["tag_kind"]), args.get("name")
        current = set(self.cluster.tags(kind, name))
        todo = [tag for tag in args.get("tags") or [] if (tag in current) == present]
        if not todo:
            return "absent"
        self._run(f"{action} {', '.join(todo)} of {kind} {name or self.cluster.name}", method,
                  self.cluster.tags_path(kind, name), params={"tag": todo})
        return "undone"

    def role_back(self, args: Mapping[str, Any]) -> str:
        """Give a node its old role back, if it still has the role the write gave it."""
        node, old, new = str(args["node"]), str(args["old_role"]), str(args["new_role"])
        if not self.succeeded("node-role", args):
            return "absent"
        current = self.cluster.node_role(node)
        if current == old:
            return "absent"
        if current != new:
            raise NotOursError(f"node {node} on cluster {self.cluster.name} is {current} now, not {new} as this "
                               "write left it: left alone")
        self._run(f"set node {node} back to {old}", "PUT", f"/2/nodes/{path_segment(node)}/role",
                  params={"auto-promote": 1}, body=old)
        return "undone"

    def remove_added_disk(self, args: Mapping[str, Any]) -> str:
        """Remove the disk the add made (found by its name), if it is still there with the size added.

        Ganeti removes a disk from a running instance only with hotplug: without it the error says to stop
        the instance and remove the disk by hand.
        """
        name, disk, size = str(args["name"]), str(args["disk"]), int(args["size"])
        if not self.succeeded("disk-remove", args):
            return "absent"
        instance = self._instance(name)
        if instance is None:
            return "absent"
        names = list(instance.get("disk.names") or [])
        if disk not in names:
            return "absent"
        now = int((instance.get("disk.sizes") or [])[names.index(disk)])
        if now != size:
            raise NotOursError(f"disk {disk} of instance {name} on cluster {self.cluster.name} is {now} MiB, not the "
                               f"{size} MiB added: changed since, left alone")
        try:
            self._run(f"remove disk {disk} of instance {name}", "PUT", f"/2/instances/{path_segment(name)}/modify",
                      body={"disks": [["remove", disk, {}]], "hotplug_if_possible": True})
        except JobFailedError as exc:
            raise GanetiError(f"disk {disk} ({size} MiB) added to {name} is still there: {exc.message}. Stop the "
                              f"instance, then: gnt-instance modify --disk {disk}:remove {name}") from exc
        return "undone"


def _current(instance: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The instance's own settings of the parameters in new (`default` for those it does not set)."""
    current: dict[str, Any] = {}
    for group, values in new.items():
        if group == "os_name":
            current[group] = instance.get("os")
            continue
        own = instance.get(f"custom_{group}") or {}
        current[group] = {key: own.get(key, DEFAULT) for key in values}
    return current


def _matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for group, values in wanted.items():
        if isinstance(values, Mapping):
            if not all(same_value(current.get(group, {}).get(key), value) for key, value in values.items()):
                return False
        elif not same_value(current.get(group), values):
            return False
    return True


def added_tags(existing: Sequence[str], tags: Sequence[str]) -> list[str]:
    """The tags of a tags-add that are not there yet (only those are the write's to take back)."""
    return [tag for tag in dict.fromkeys(tags) if tag not in existing]
