"""One Ganeti cluster for cookbooks: reads, writes that return job handles, and gnt-* commands.

Reads use the read-only RAPI user and always run. Every write returns a job handle and is
journaled in the run's change log (intent before, result with the job id after), with its undo
when it has one (libcluster.ganeti.inverse). In dry-run, a write whose RAPI resource takes Ganeti's
dry-run flag is still sent, flagged, so that Ganeti checks it (and, for a create, says which
nodes it would use); the job that check makes changes nothing. The other writes are not
sent: they are recorded as planned and return a SkippedJob.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from libcluster.changes import ChangeLog
from libcluster.ganeti import fit, inverse
from libcluster.ganeti import nodes as node_ops
from libcluster.ganeti.commands import GntCommands, VerifyDisksResult
from libcluster.ganeti.errors import GanetiError
from libcluster.ganeti.jobs import Job, JobHandle, JobResult, LogEntry, Progress, SkippedJob
from libcluster.ganeti.models import Group, Instance, JobInfo, Node
from libcluster.ganeti.rapi import RapiClient, path_segment
from libcluster.remote_results import HostStatus
from libcluster.undo import Undo
from libcluster.writes import undoing

if TYPE_CHECKING:
    from libcluster.remote import Remote

logger = logging.getLogger(__name__)

REBOOT_TYPES = ("soft", "hard", "full")
MIGRATION_MODES = ("live", "non-live")
NODE_ROLES = ("regular", "master-candidate", "drained", "offline")
EVACUATE_MODES = ("all", "primary-only", "secondary-only")
TAG_KINDS = ("instance", "node", "group", "cluster")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SELECTED = re.compile(r"Selected nodes for instance (\S+) via iallocator \S+: (\S+?)(?:,|$)")
"""The job log line naming the node the iallocator chose for a migrate or failover."""


class DryRunVia(Enum):
    """How a RAPI resource takes Ganeti's dry-run flag (resources differ, see Ganeti's rlib2)."""

    QUERY = "query"
    """`?dry-run=1` (create, remove, startup, shutdown, reboot, tags, evacuate, group assign)."""
    BODY = "body"
    """`"dry_run": true` in the JSON body: these resources ignore the query flag (modify, migrate, replace-disks...)."""
    NONE = "none"
    """No way to ask for a check only (node role): not sent in dry-run."""


def selected_node(log: Sequence[LogEntry], name: str) -> str | None:
    """The node an iallocator chose for instance name, from a job's log ("Selected nodes for instance X via
    iallocator hail: N"); None when the log has no such line (a node was named, or drbd's secondary is used)."""
    for entry in log:
        match = _SELECTED.search(entry.text)
        if match and match.group(1) == name:
            return match.group(2)
    return None


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


NODE_CONFIG_FIELDS = ("name", "role", "group.uuid", "offline", "drained", "master_candidate", "vm_capable",
                      "pinst_list", "sinst_list", "pip", "sip", "tags", "uuid")
"""The /2/query/node fields of GanetiCluster.node_config: the configuration's, no live data."""


def job_dependencies(job_ids: Sequence[int]) -> list[list[Any]] | None:
    """An opcode's `depends` for jobs that must succeed first (None for none): Ganeti keeps the job waiting in its
    queue until they end, and fails it without running it if one did not succeed. Unlike the client waiting for
    them, no round trip separates them (the next job is queued, and starts when they end)."""
    return [[int(job_id), ["success"]] for job_id in job_ids] or None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def instance_create_body(
    name: str,
    *,
    disk_template: str,
    disks: Sequence[int | Mapping[str, Any]],
    os_type: str,
    memory: int,
    vcpus: int,
    nics: Sequence[Mapping[str, Any]] = ({},),
    pnode: str | None = None,
    snode: str | None = None,
    iallocator: str | None = None,
    group_name: str | None = None,
    hvparams: Mapping[str, Any] | None = None,
    beparams: Mapping[str, Any] | None = None,
    osparams: Mapping[str, Any] | None = None,
    start: bool | None = None,
    ip_check: bool = False,
    name_check: bool | None = None,
    no_install: bool | None = None,
    wait_for_sync: bool | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """The `POST /2/instances` body (request version 1): disk sizes and memory in MiB.

    Either pnode (and snode for mirrored templates) or iallocator chooses the nodes; group_name keeps
    the iallocator inside one node group. Options left at None are not sent, so Ganeti's defaults apply
    (start and name_check: true).
    """
    if not (pnode or iallocator):
        raise ValueError("instance create needs pnode or iallocator")
    return _without_none(
        {
            "__version__": 1,
            "mode": "create",
            "name": name,
            "disk_template": disk_template,
            "disks": [{"size": int(disk)} if isinstance(disk, int) else dict(disk) for disk in disks],
            "nics": [dict(nic) for nic in nics],
            "os_type": os_type,
            "beparams": {**(beparams or {}), "memory": int(memory), "vcpus": int(vcpus)},
            "hvparams": dict(hvparams) if hvparams else None,
            "osparams": dict(osparams) if osparams else None,
            "pnode": pnode,
            "snode": snode,
            "iallocator": iallocator,
            "group_name": group_name,
            "start": start,
            "ip_check": ip_check,
            "name_check": name_check,
            "no_install": no_install,
            "wait_for_sync": wait_for_sync,
            "tags": list(tags) or None,
        }
    )


class GanetiCluster:
    """A Ganeti cluster reached through its RAPI (and its master over SSH for gnt-* commands)."""

    def __init__(
        self,
        name: str,
        rapi: RapiClient,
        *,
        dry_run: bool,
        changes: ChangeLog,
        job_timeout: float,
        remote: Remote | Callable[[], Remote] | None,
        verify_ignore: Sequence[str] = (),
    ) -> None:
        """Use rapi for cluster `name` (the config name); `remote` enables the gnt-* commands.

        `remote` may be a function returning the Remote: it is called on the first gnt-* command,
        so cookbooks that only use the RAPI never load cumin.
        """
        self.name = name
        self.dry_run = dry_run
        self.changes = changes
        self.job_timeout = job_timeout
        self.rapi = rapi
        self._remote = remote
        self._verify_ignore = tuple(verify_ignore)
        self._commands: GntCommands | None = None

    def __repr__(self) -> str:
        """Name and RAPI URL."""
        return f"GanetiCluster({self.name!r}, {self.rapi.url!r})"

    @property
    def commands(self) -> GntCommands:
        """gnt-* commands on the master over SSH; needs the Remote given to connect()."""
        if self._commands is None:
            self._commands = GntCommands(self._remote_client(), self.master, verify_ignore=self._verify_ignore,
                                         timeout=self.job_timeout)
        return self._commands

    # Reads (read-only user) -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Cluster information (`GET /2/info`): name, master, versions, enabled templates, parameters."""
        info: dict[str, Any] = self.rapi.get("/2/info")
        return info

    def master(self) -> str:
        """The current master node's name."""
        return str(self.info()["master"])

    def features(self) -> list[str]:
        """RAPI features, e.g. instance-create-reqv1, node-evac-res1."""
        return list(self.rapi.get("/2/features"))

    def os_list(self) -> list[str]:
        """Operating system definitions valid on all nodes, e.g. ["noop"]."""
        return list(self.rapi.get("/2/os"))

    def nodes(self) -> list[Node]:
        """All nodes with their fields (one bulk request)."""
        return [Node.from_rapi(raw) for raw in self.rapi.get("/2/nodes", {"bulk": True})]

    def node(self, name: str) -> Node:
        """One node; RapiNotFoundError if unknown."""
        return Node.from_rapi(self.rapi.get(f"/2/nodes/{path_segment(name)}"))

    def node_config(self, name: str) -> Node:
        """One node as Ganeti's configuration has it (role, flags, group, tags, instances), without the memory and
        disk its noded reports: a filtered /2/query, about 15 ms on the lab against 100 ms for node(), which asks
        the node. RapiNotFoundError if unknown."""
        [row] = self.rapi.query("node", NODE_CONFIG_FIELDS, names=[name])
        return Node.from_rapi(row)

    def node_role(self, name: str) -> str:
        """A node's role: regular, master, master-candidate, drained or offline."""
        return str(self.rapi.get(f"/2/nodes/{path_segment(name)}/role"))

    def groups(self) -> list[Group]:
        """All node groups with their fields (one bulk request)."""
        return [Group.from_rapi(raw) for raw in self.rapi.get("/2/groups", {"bulk": True})]

    def group(self, name: str) -> Group:
        """One node group (node list, ipolicy, alloc policy); RapiNotFoundError if unknown."""
        return Group.from_rapi(self.rapi.get(f"/2/groups/{path_segment(name)}"))

    def instances(self) -> list[Instance]:
        """All instances with their fields (one bulk request)."""
        return [Instance.from_rapi(raw) for raw in self.rapi.get("/2/instances", {"bulk": True})]

    def instance_names(self) -> list[str]:
        """The names of all instances (no fields: cheaper than instances())."""
        return [str(entry["id"]) for entry in self.rapi.get("/2/instances", {"bulk": False})]

    def instance(self, name: str) -> Instance:
        """One instance; RapiNotFoundError if unknown."""
        return Instance.from_rapi(self.rapi.get(f"/2/instances/{path_segment(name)}"))

    def tags(self, kind: str, name: str | None = None) -> list[str]:
        """Tags of an instance, node or group (name given) or of the cluster."""
        return list(self.rapi.get(self.tags_path(kind, name)))

    def jobs(self, *, bulk: bool = False) -> list[dict[str, Any]]:
        """The job queue: ids and uris, or every job's fields when bulk."""
        return list(self.rapi.get("/2/jobs", {"bulk": bulk}))

    def job(self, job_id: int) -> JobInfo:
        """One job's fields (status, opstatus, opresult, times, log; ops in .raw); status None for an unknown id."""
        return JobInfo.from_rapi(self.rapi.get(f"/2/jobs/{int(job_id)}"))

    def node_names(self, values: Sequence[str]) -> list[str]:
        """Node names for values that are node names or node UUIDs (dry-run creates answer with UUIDs)."""
        if not any(_UUID.match(str(value)) for value in values):
            return [str(value) for value in values]
        by_uuid = {node["uuid"]: node["name"] for node in self.rapi.query("node", ["name", "uuid"])}
        return [by_uuid.get(str(value), str(value)) for value in values]

    # Writes (read-write user) -----------------------------------------------------------

    def create_instance(self, name: str, **spec: Any) -> JobHandle:
        """Create an instance; spec as instance_create_body(). Checked by Ganeti in dry-run.

        The job's result value is the list of node names the instance is on (or, in dry-run,
        would be on: the nodes pnode/snode or the iallocator chose).
        """
        body = instance_create_body(name, **spec)
        detail: dict[str, Any] = {key: body[key] for key in ("disk_template", "pnode", "iallocator") if key in body}
        return self._write(
            "instance-create", name, "POST", "/2/instances", body=body, via=DryRunVia.QUERY, detail=detail,
            parse=self._placed_nodes, undo=self._undo("instance-remove", name, name=name),
        )

    def check_create(self, name: str, **spec: Any) -> Job:
        """Ask Ganeti to check a create (spec as create_instance()) without making it, in a real run too.

        The create sent in dry-run mode: nothing changes, so it is recorded in no change log or journal.
        The job's result value is the nodes the instance would be on (pnode/snode, or the iallocator's choice).
        """
        job_id = self.rapi.submit("POST", "/2/instances", params={"dry-run": True},
                                  body=instance_create_body(name, **spec))
        return Job(self.rapi, job_id, description=f"check of instance-create {name}",
                   default_timeout=self.job_timeout, parse=self._placed_nodes)

    def _placed_nodes(self, opresult: list[Any]) -> list[str]:
        """The node names a create job's opresult lists (the nodes the instance is, or would be, on)."""
        return self.node_names(list(opresult[0] or [])) if opresult else []

    def remove_instance(self, name: str, *, shutdown_timeout: int | None = None) -> JobHandle:
        """Remove an instance (shut down first, then its disks are deleted)."""
        body = _without_none({"shutdown_timeout": shutdown_timeout}) or None
        return self._write("instance-remove", name, "DELETE", f"/2/instances/{path_segment(name)}", body=body,
                           via=DryRunVia.QUERY)

    def startup_instance(self, name: str, *, force: bool = False, no_remember: bool = False) -> JobHandle:
        """Start an instance."""
        undo = self._undo("instance-shutdown", name, name=name) if self._admin_state(name) == "down" else None
        return self._write("instance-startup", name, "PUT", f"/2/instances/{path_segment(name)}/startup",
                           params={"force": force or None, "no_remember": no_remember or None}, via=DryRunVia.QUERY,
                           undo=undo)

    def shutdown_instance(self, name: str, *, timeout: int | None = None, no_remember: bool = False) -> JobHandle:
        """Shut an instance down, forcing it off after `timeout` seconds."""
        body = _without_none({"timeout": timeout})
        undo = self._undo("instance-startup", name, name=name) if self._admin_state(name) == "up" else None
        return self._write("instance-shutdown", name, "PUT", f"/2/instances/{path_segment(name)}/shutdown",
                           params={"no_remember": no_remember or None}, body=body, via=DryRunVia.QUERY,
                           detail=body, undo=undo)

    def reboot_instance(
        self, name: str, *, reboot_type: str = "hard", shutdown_timeout: int | None = None, reason: str | None = None
    ) -> JobHandle:
        """Reboot an instance: soft (in the guest), hard (restart the hypervisor process) or full (stop, start).

        `reason` goes into the job's reason trail (RAPI `?reason=`), where `gnt-job info` shows it.
        """
        _choice(reboot_type, REBOOT_TYPES, "reboot_type")
        body = _without_none({"shutdown_timeout": shutdown_timeout}) or None
        return self._write("instance-reboot", name, "POST", f"/2/instances/{path_segment(name)}/reboot",
                           params={"type": reboot_type, "reason": reason or None}, body=body, via=DryRunVia.QUERY,
                           detail={"type": reboot_type})

    def modify_instance(
        self,
        name: str,
        *,
        beparams: Mapping[str, Any] | None = None,
        hvparams: Mapping[str, Any] | None = None,
        nics: Sequence[Sequence[Any]] | None = None,
        disks: Sequence[Sequence[Any]] | None = None,
        disk_template: str | None = None,
        remote_node: str | None = None,
        osparams: Mapping[str, Any] | None = None,
        os_name: str | None = None,
    ) -> JobHandle:
        """Change an instance: be/hv parameters, NICs, disks, disk template or OS.

        NICs and disks are `[op, index, params]` lists, e.g. `["add", -1, {"size": 1024}]`;
        converting to drbd needs remote_node.
        """
        body = _without_none({
            "beparams": dict(beparams) if beparams else None,
            "hvparams": dict(hvparams) if hvparams else None,
            "nics": [list(nic) for nic in nics] if nics else None,
            "disks": [list(disk) for disk in disks] if disks else None,
            "disk_template": disk_template,
            "remote_node": remote_node,
            "osparams": dict(osparams) if osparams else None,
            "os_name": os_name,
        })
        if not body:
            raise ValueError("modify_instance: nothing to change")
        return self._write("instance-modify", name, "PUT", f"/2/instances/{path_segment(name)}/modify", body=body,
                           via=DryRunVia.BODY, detail={"changes": sorted(body)}, undo=self._modify_undo(name, body))

    def grow_disk(
        self, name: str, disk: int, amount: int, *, absolute: bool = False, wait_for_sync: bool | None = None
    ) -> JobHandle:
        """Grow disk number `disk` by `amount` MiB (to `amount` MiB if absolute)."""
        body = _without_none({"amount": int(amount), "absolute": absolute or None, "wait_for_sync": wait_for_sync})
        path = f"/2/instances/{path_segment(name)}/disk/{int(disk)}/grow"
        return self._write("instance-grow-disk", name, "POST", path, body=body, via=DryRunVia.BODY,
                           detail={"disk": disk, "amount": amount})

    def rename_instance(
        self, name: str, new_name: str, *, ip_check: bool = False, name_check: bool | None = None
    ) -> JobHandle:
        """Rename an instance (it must be stopped); name_check None leaves Ganeti's default (check)."""
        body = _without_none({"new_name": new_name, "ip_check": ip_check, "name_check": name_check})
        return self._write("instance-rename", name, "PUT", f"/2/instances/{path_segment(name)}/rename", body=body,
                           via=DryRunVia.BODY, detail={"new_name": new_name},
                           undo=self._undo("instance-rename", name, name=name, new_name=new_name))

    def migrate_instance(
        self,
        name: str,
        *,
        mode: str | None = None,
        target_node: str | None = None,
        iallocator: str | None = None,
        cleanup: bool | None = None,
        allow_failover: bool | None = None,
        depends: Sequence[int] = (),
    ) -> JobHandle:
        """Live (or non-live) migrate a running instance, to target_node or where the iallocator says.

        The job's result value is the instance's primary node afterwards (in a dry-run check: the node
        Ganeti chose, see placed_node). Its undo migrates the instance back to the node it was on.
        depends: jobs that must succeed first (job_dependencies).
        """
        if mode is not None:
            _choice(mode, MIGRATION_MODES, "mode")
        body = _without_none({"mode": mode, "target_node": target_node, "iallocator": iallocator,
                              "cleanup": cleanup, "allow_failover": allow_failover,
                              "depends": job_dependencies(depends)})
        undo = None
        if undoing(self.changes) and not cleanup:
            undo = self._undo("instance-migrate", name, name=name, node=self.instance(name).primary_node)
        job = self._write("instance-migrate", name, "PUT", f"/2/instances/{path_segment(name)}/migrate", body=body,
                          via=DryRunVia.BODY, detail=_without_none({"target_node": target_node, "mode": mode}),
                          undo=undo)
        return PlacedJob(self, job, name, target_node)

    def failover_instance(
        self,
        name: str,
        *,
        target_node: str | None = None,
        iallocator: str | None = None,
        shutdown_timeout: int | None = None,
        ignore_consistency: bool | None = None,
        depends: Sequence[int] = (),
    ) -> JobHandle:
        """Fail an instance over (stop, start on the other node; a stopped one only changes node).

        The job's result value is the primary node afterwards, as for migrate_instance. No undo: failing
        it back is another stop and start, towards the node it may have been failed away from for a reason.
        depends: jobs that must succeed first (job_dependencies).
        """
        body = _without_none({"target_node": target_node, "iallocator": iallocator,
                              "shutdown_timeout": shutdown_timeout, "ignore_consistency": ignore_consistency,
                              "depends": job_dependencies(depends)})
        job = self._write("instance-failover", name, "PUT", f"/2/instances/{path_segment(name)}/failover", body=body,
                          via=DryRunVia.BODY, detail=_without_none({"target_node": target_node,
                                                                    "ignore_consistency": ignore_consistency}))
        return PlacedJob(self, job, name, target_node)

    def replace_secondary(self, name: str, node: str) -> JobHandle:
        """Replace a DRBD instance's secondary with node (`gnt-instance replace-disks -n NODE`, hbal's `r:NODE`):
        Ganeti's replace-disks in mode replace_new_secondary, checked by Ganeti in dry-run. Its undo replaces the
        secondary back with the one it had (read now), while node is still its secondary."""
        undo = None
        if undoing(self.changes):
            old = self.instance(name).secondary_nodes
            if len(old) == 1:
                undo = self._undo("instance-replace-disks", name, name=name, node=old[0], new_node=node)
        body = inverse.replace_secondary_body(node)
        return self._write("instance-replace-disks", name, "POST", f"/2/instances/{path_segment(name)}/replace-disks",
                           body=body, via=DryRunVia.BODY, detail={"remote_node": node}, undo=undo)

    def reinstall_instance(self, name: str, *, os_name: str | None = None, start: bool = True) -> JobHandle:
        """Reinstall an instance's OS (os_name, or its current one): one job that shuts it down, reinstalls, starts.

        The data on its disks is lost, so there is no undo. Ganeti's RAPI has no dry-run for a reinstall
        (the resource builds its opcodes itself): in dry-run it is only described.
        """
        body = _without_none({"os": os_name, "start": start})
        return self._write("instance-reinstall", name, "POST", f"/2/instances/{path_segment(name)}/reinstall",
                           body=body, via=DryRunVia.NONE, detail=body)

    def placed_node(
        self, name: str, result: JobResult, target_node: str | None, *, checked: bool = False
    ) -> str | None:
        """Where a migrate or failover job put instance name: its primary node now, or for a dry-run check (dry-run,
        or checked: a check sent in a real run) the node the iallocator chose (job log), else target_node, else its
        secondary node (drbd)."""
        if not (self.dry_run or checked):
            [row] = self.rapi.query("instance", ["name", "pnode"], names=[name])  # config only: no node asked
            return str(row["pnode"])
        chosen = selected_node(result.log, name) or target_node
        if chosen is None:
            secondaries = self.instance(name).secondary_nodes
            chosen = secondaries[0] if secondaries else None
        return chosen

    def move_instance(
        self, name: str, node: str, *, shutdown_timeout: int | None = None, ignore_consistency: bool = False
    ) -> JobHandle:
        """Move an instance (file/plain templates) to another node, copying its disks.

        The RAPI has no move resource: `gnt-instance move --submit` runs on the master and the
        job it prints is followed like any other. In dry-run it runs with `--dry-run`.
        """
        options: dict[str, Any] = {"shutdown_timeout": shutdown_timeout, "ignore_consistency": ignore_consistency}
        if self.dry_run:
            job_id = self.commands.submit_instance_move(name, node, dry_run=True, **options)
            self.changes.record("ganeti", "instance-move", name, cluster=self.name, job_id=job_id, node=node,
                                checked=True)
        else:
            with self.changes.writing("ganeti", "instance-move", name, cluster=self.name, node=node) as pending:
                job_id = self.commands.submit_instance_move(name, node, dry_run=False, **options)
                pending.learn(job_id=job_id)
        return Job(self.rapi, job_id, description=f"instance-move {name}", default_timeout=self.job_timeout)

    def add_tags(self, kind: str, name: str | None, tags: Sequence[str]) -> JobHandle:
        """Add tags to an instance, node or group (name given) or to the cluster (name None).

        Its undo removes the tags that were not there before.
        """
        target, path = self._tag_target(kind, name), self.tags_path(kind, name)
        undo = None
        if undoing(self.changes):
            added = inverse.added_tags(self.tags(kind, name), tags)
            undo = self._undo("tags-remove", target, tag_kind=kind, name=name, tags=added) if added else None
        return self._write("tags-add", target, "PUT", path, params={"tag": list(tags)}, via=DryRunVia.QUERY,
                           detail={"tags": list(tags)}, undo=undo)

    def remove_tags(self, kind: str, name: str | None, tags: Sequence[str]) -> JobHandle:
        """Remove tags from an instance, node, group or the cluster; its undo puts back those that were there."""
        target, path = self._tag_target(kind, name), self.tags_path(kind, name)
        undo = None
        if undoing(self.changes):
            existing = set(self.tags(kind, name))
            removed = [tag for tag in dict.fromkeys(tags) if tag in existing]
            undo = self._undo("tags-add", target, tag_kind=kind, name=name, tags=removed) if removed else None
        return self._write("tags-remove", target, "DELETE", path, params={"tag": list(tags)}, via=DryRunVia.QUERY,
                           detail={"tags": list(tags)}, undo=undo)

    def set_node_role(self, node: str, role: str, *, force: bool = False, auto_promote: bool = False) -> JobHandle:
        """Set a node's role (regular, master-candidate, drained, offline); only described in dry-run."""
        _choice(role, NODE_ROLES, "role")
        undo = None
        if undoing(self.changes):
            old = self.node_role(node)
            undo = self._undo("node-role", node, node=node, old_role=old, new_role=role) if old in NODE_ROLES else None
        return self._write("node-role", node, "PUT", f"/2/nodes/{path_segment(node)}/role",
                           params={"force": force or None, "auto-promote": auto_promote or None}, body=role,
                           via=DryRunVia.NONE, detail={"role": role}, undo=undo)

    def migrate_node(
        self, node: str, *, mode: str | None = None, iallocator: str | None = None, target_node: str | None = None
    ) -> JobHandle:
        """Migrate all primary instances off a node; wait() follows the per-instance sub-jobs."""
        if mode is not None:
            _choice(mode, MIGRATION_MODES, "mode")
        body = _without_none({"mode": mode, "iallocator": iallocator, "target_node": target_node})
        return self._write("node-migrate", node, "POST", f"/2/nodes/{path_segment(node)}/migrate", body=body,
                           via=DryRunVia.BODY, detail=body)

    def evacuate_node(
        self,
        node: str,
        *,
        mode: str = "all",
        iallocator: str | None = None,
        remote_node: str | None = None,
        early_release: bool | None = None,
    ) -> JobHandle:
        """Move instances off a node (primary, secondary or all); wait() follows the sub-jobs."""
        _choice(mode, EVACUATE_MODES, "mode")
        body = _without_none({"mode": mode, "iallocator": iallocator, "remote_node": remote_node,
                              "early_release": early_release})
        return self._write("node-evacuate", node, "POST", f"/2/nodes/{path_segment(node)}/evacuate", body=body,
                           via=DryRunVia.QUERY, detail=_without_none({"mode": mode, "remote_node": remote_node}))

    def assign_nodes(self, group: str, nodes: Sequence[str], *, force: bool = False) -> JobHandle:
        """Move nodes into a node group."""
        return self._write("group-assign-nodes", group, "PUT", f"/2/groups/{path_segment(group)}/assign-nodes",
                           params={"force": force or None}, body={"nodes": list(nodes)}, via=DryRunVia.QUERY,
                           detail={"nodes": list(nodes)})

    # Undo ------------------------------------------------------------------------------

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Take back one write of this cluster (see libcluster.ganeti.inverse): "undone" or "absent".

        Idempotent; the job is found by its marker when its id was lost, canceled if still queued and
        waited for if running. An object the write did not make (or changed since) raises NotOursError.
        """
        return inverse.Inverses(self).run(action, args)

    # Internals ------------------------------------------------------------------------

    @staticmethod
    def tags_path(kind: str, name: str | None) -> str:
        """The RAPI path of the tags of an instance, node or group (name given) or of the cluster."""
        _choice(kind, TAG_KINDS, "tag kind")
        if kind == "cluster":
            return "/2/tags"
        if not name:
            raise ValueError(f"{kind} tags need a name")
        return f"/2/{kind}s/{path_segment(name)}/tags"

    def _undo(self, action: str, target: str, **args: Any) -> Undo | None:
        """The undo of a write about to be sent, None when no undo is kept (dry-run, no undo stack)."""
        return inverse.declare(self, action, target, **args) if undoing(self.changes) else None

    def _admin_state(self, name: str) -> str | None:
        """An instance's admin state (up, down), read only when an undo is kept."""
        return str(self.instance(name).get("admin_state")) if undoing(self.changes) else None

    def _modify_undo(self, name: str, changes: Mapping[str, Any]) -> Undo | None:
        """The undo of a modify: the old values of its parameters (read now); None for disks, NICs, templates."""
        if not undoing(self.changes):
            return None
        try:
            old, new = inverse.modify_values(self.instance(name), changes)
        except ValueError as exc:
            logger.info("instance-modify %s: %s", name, exc)
            return None
        return self._undo("instance-modify", name, name=name, old=old, new=new)

    def _tag_target(self, kind: str, name: str | None) -> str:
        return f"{kind} {name}" if kind != "cluster" else f"cluster {self.name}"

    def _write(
        self,
        action: str,
        target: str,
        method: str,
        path: str,
        *,
        via: DryRunVia,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        detail: Mapping[str, Any] | None = None,
        parse: Any = None,
        undo: Undo | None = None,
    ) -> JobHandle:
        """Send (or in dry-run check or only describe) one write and record it in the change log.

        A real write is journaled (intent, then result with the job id); its undo, if any, marks the job
        (`?reason=`) so that the undo finds it even when the answer with the job id was lost.
        """
        description = f"{action} {target}"
        extra = dict(detail or {})
        if self.dry_run:
            if via is DryRunVia.NONE:
                self.changes.record("ganeti", action, target, cluster=self.name, checked=False, **extra)
                return SkippedJob(description)
            if via is DryRunVia.QUERY:
                params = {**(params or {}), "dry-run": True}
            else:
                body = {**(body or {}), "dry_run": True}
        if self.dry_run:
            job_id = self.rapi.submit(method, path, params=params, body=body)
            self.changes.record("ganeti", action, target, cluster=self.name, job_id=job_id, checked=True, **extra)
        else:
            if undo is not None:
                params = {**(params or {}), "reason": undo.args["marker"]}
            with self.changes.writing("ganeti", action, target, undo=undo, cluster=self.name, **extra) as pending:
                job_id = self.rapi.submit(method, path, params=params, body=body)
                pending.learn(job_id=job_id)
        return Job(self.rapi, job_id, description=description, default_timeout=self.job_timeout, parse=parse)

    # Size writes (sre.ganeti.resize-vm, sre.ganeti.disk) -------------------------------

    def modify_backend(self, name: str, *, vcpus: int | None = None, memory: int | None = None) -> JobHandle:
        """Set an instance's vCPUs and memory (MiB, as maxmem and minmem); they take effect when Ganeti next starts
        it (a reboot through Ganeti). Checked by Ganeti in dry-run. Its undo (modify_instance's) puts back the
        old values read before the write: the instance's own settings, or `default` for inherited ones."""
        beparams = _without_none({"vcpus": vcpus, "memory": memory})
        if not beparams:
            raise ValueError("modify_backend: give vcpus or memory")
        return self.modify_instance(name, beparams=beparams)

    def grow_disk_to(self, name: str, index: int, size: int) -> JobHandle:
        """Grow disk `index` of an instance to `size` MiB, the job waiting for mirrored disks to sync. No undo:
        Ganeti cannot shrink a disk. ValueError (nothing sent) for an unknown index or a size not above the disk's."""
        problems = fit.disk_problems(self.instance(name), index, size)
        if problems:
            raise ValueError(problems[0])
        return self.grow_disk(name, index, size, absolute=True, wait_for_sync=True)

    def add_disk(self, name: str, size: int) -> JobHandle:
        """Add a disk of `size` MiB to an instance, named `cookbooks-<random>` so that its undo removes that disk
        and no other (by name, only while it still has the size added). A running instance gets it at its next
        start unless the hypervisor hotplugs; the undo of an add to a running instance needs hotplug or a stop."""
        disk = f"cookbooks-{uuid.uuid4().hex[:12]}"
        body = {"disks": [["add", -1, {"size": int(size), "name": disk}]]}
        return self._write("instance-add-disk", name, "PUT", f"/2/instances/{path_segment(name)}/modify", body=body,
                           via=DryRunVia.BODY, detail={"size": int(size), "disk_name": disk},
                           undo=self._undo("disk-remove", name, name=name, disk=disk, size=int(size)))

    def remove_disk(self, name: str, index: int) -> JobHandle:
        """Remove disk `index` of a stopped instance. Its data is lost, so there is no undo. ValueError (nothing
        sent) for an unknown index or an instance that is not stopped (Ganeti needs hotplug for a running one)."""
        instance = self.instance(name)
        problems = fit.disk_problems(instance, index)
        if problems:
            raise ValueError(problems[0])
        if instance.admin_state != "down":
            raise ValueError(f"{name} is {instance.admin_state} in Ganeti: a disk is removed only from a stopped "
                             "instance (stop it first, e.g. sre.ganeti.stop-vm)")
        return self._write("instance-remove-disk", name, "PUT", f"/2/instances/{path_segment(name)}/modify",
                           body={"disks": [["remove", int(index), {}]]}, via=DryRunVia.BODY,
                           detail={"disk": int(index), "size": instance.disk_sizes[index]})

    # Node maintenance (issue 13: drain-node, reboot-nodes, master-failover, node-down; logic in ganeti.nodes) -----

    def drain(self, node: str) -> node_ops.RoleChange:
        """Drain node (auto-promoting another candidate if the pool needs one); a master candidate is tagged so that
        undrain() makes it one again. Waits for the job; journaled with undo. The master is refused."""
        return node_ops.take_out(self, node, node_ops.Role.DRAINED)

    def undrain(self, node: str) -> node_ops.RoleChange:
        """Return a drained node to service: master candidate if drain() took it out as one, else regular; a node
        that is not drained is left as it is (a candidate is never demoted)."""
        return node_ops.bring_back(self, node, node_ops.Role.DRAINED)

    def set_offline(self, node: str) -> node_ops.RoleChange:
        """Mark a (dead) node offline, remembering a master candidate as drain() does; the master is refused."""
        return node_ops.take_out(self, node, node_ops.Role.OFFLINE)

    def set_online(self, node: str) -> node_ops.RoleChange:
        """Bring an offline node back online (master candidate again if it was one), as undrain() for drained."""
        return node_ops.bring_back(self, node, node_ops.Role.OFFLINE)

    def submit_move_check(self, name: str, action: str, *, target_node: str | None = None) -> Job:
        """Submit a dry-run migrate or failover of one instance (action "migrate" or "failover"), in a real run too:
        it changes nothing, so it is journaled nowhere. The job's value is the node Ganeti chose (placed_node)."""
        _choice(action, ("migrate", "failover"), "action")
        body = {**_without_none({"target_node": target_node}), "dry_run": True}
        job_id = self.rapi.submit("PUT", f"/2/instances/{path_segment(name)}/{action}", body=body)
        check = Job(self.rapi, job_id, description=f"check of instance-{action} {name}",
                    default_timeout=self.job_timeout)
        return PlacedJob(self, check, name, target_node, checked=True)

    def plan_node_moves(self, node: str) -> node_ops.NodePlan:
        """The truthful dry-run of emptying node: each primary's migrate (running) or failover (stopped) checked by
        its own Ganeti dry-run job, the node Ganeti chose as a value; file/plain instances refused with the reason."""
        return node_ops.plan_moves(self, node)

    def move_primary(self, name: str, *, target_node: str | None = None, depends: Sequence[int] = ()) -> JobHandle:
        """Migrate a running instance, fail a stopped one over (migrate_instance/failover_instance), after the jobs
        depends; the job's value is the node it is on afterwards. NodeStateError for a template that cannot move
        (file, plain)."""
        job: JobHandle = node_ops.move_primary(self, name, target_node=target_node, depends=depends)
        return job

    def n_plus_one(self, node: str) -> list[str]:
        """Why the other nodes of node's group cannot restart its running primaries (empty when they can)."""
        return node_ops.n_plus_one(self, node)

    def boot_ids(self, nodes: Sequence[str] | None = None) -> dict[str, str | None]:
        """node -> the boot id its noded reports (RAPI /2/query/node bootid, read-write user), of every node or of
        those named (only they are asked); None when noded does not answer."""
        return node_ops.boot_ids(self.rapi.query("node", ["name", "bootid"], names=nodes))

    def answers_ssh(self, node: str) -> bool:
        """Whether node runs a command over SSH (`true`, a safe command, run in dry-run too)."""
        result = self._remote_client().hosts([node]).run_sync("true", is_safe=True, timeout=10)
        return result.hosts[node].status is HostStatus.OK

    def wait_node_back(self, node: str, old_boot_id: str | None, *, timeout: float, interval: float = 0.5,
                       ssh: bool = True) -> str:
        """Wait for a rebooted node: noded reports a boot id other than old_boot_id (returned), then SSH answers
        (unless not ssh: wait_ssh)."""
        return node_ops.wait_node_back(self, node, old_boot_id, timeout=timeout, interval=interval, ssh=ssh)

    def wait_ssh(self, node: str, *, timeout: float, interval: float = 0.5) -> None:
        """Wait until node runs a command over SSH (GanetiError after timeout seconds)."""
        node_ops.wait_ssh(self, node, timeout=timeout, interval=interval)

    def verify_disks_until_clean(self, *, timeout: float, interval: float = 5.0,
                                 group: str | None = None) -> VerifyDisksResult:
        """`gnt-cluster verify-disks` until clean (GanetiError with its output after timeout); skipped in dry-run."""
        return node_ops.verify_disks_until_clean(self, timeout=timeout, interval=interval, group=group)

    def master_failover(self, to: str, *, no_voting: bool = False, timeout: float = 300.0) -> str:
        """Fail the master over to candidate `to` (gnt-cluster master-failover run there) and wait for the RAPI at the
        configured URL (the cluster IP, which Ganeti moves to the new master) to name it; returns the master."""
        return node_ops.master_failover(self, to, no_voting=no_voting, timeout=timeout)

    def _remote_client(self) -> Remote:
        """The Remote given to connect() (called once if it was a function); GanetiError without one."""
        if self._remote is None:
            raise GanetiError(f"cluster {self.name}: no Remote given, gnt-* commands over SSH are not available")
        if callable(self._remote):
            self._remote = self._remote()
        return self._remote


class PlacedJob(Job):
    """A migrate or failover job whose result value is the instance's node afterwards (GanetiCluster.placed_node)."""

    def __init__(self, cluster: GanetiCluster, job: Job | SkippedJob, name: str, target_node: str | None, *,
                 checked: bool = False) -> None:
        """Follow job (a real write or a dry-run check; checked: a check sent in a real run) of instance name."""
        if not isinstance(job, Job):
            raise TypeError(f"{job!r}: a migrate or failover is always sent (checked by Ganeti in dry-run)")
        super().__init__(cluster.rapi, job.id, description=job.description, default_timeout=cluster.job_timeout)
        self.cluster = cluster
        self.name = name
        self.target_node = target_node
        self.checked = checked

    def wait(self, progress: Progress | None = None, timeout: float | None = None) -> JobResult:
        """Wait as Job.wait; the result's value is the node the instance is on (or would be)."""
        result = super().wait(progress, timeout)
        return dataclasses.replace(result, value=self.cluster.placed_node(self.name, result, self.target_node,
                                                                        checked=self.checked))
