"""A Ganeti cluster in memory: instances, nodes, groups and jobs; writes change them unless dry-run.

:class:`FakeCluster` stands for :class:`libcluster.ganeti.GanetiCluster` and :class:`FakeCommands` for its
``commands`` (:class:`libcluster.ganeti.commands.GntCommands`), with the same method signatures (checked
by :func:`libcluster.testing.conformance.problems`). Every call is recorded in ``cluster.calls`` as
``(action, *positional arguments, {keyword arguments})``; a write whose action is in ``cluster.errors``
fails when waited on, like a Ganeti job that failed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, GanetiError, Job, JobHandle, JobResult, RapiNotFoundError, SkippedJob, fit
from libcluster.ganeti import nodes as node_ops
from libcluster.ganeti.commands import CommandResult, GntCommands, VerifyDisksResult, VerifyResult, parse_verify
from libcluster.ganeti.jobs import Progress
from libcluster.ganeti.models import Group, Instance, JobInfo, Node
from libcluster.ganeti.templates import INT_MIRROR
from libcluster.remote_results import HostResult, HostStatus, command_line
from libcluster.undo import Undo

Method = TypeVar("Method", bound=Callable[..., Any])

ROLE_FLAGS = {"master-candidate": "master_candidate", "drained": "drained", "offline": "offline"}
"""Node role -> the RAPI field that is true for it (regular: none)."""


def not_found(path: str) -> RapiNotFoundError:
    """The error the RAPI client raises for an unknown object."""
    return RapiNotFoundError("GET", path, 404, "not found")


def recorded(action: str, *, options: bool = True) -> Callable[[Method], Method]:
    """Record each call as ``(action, *args, kwargs)`` in the object's ``calls`` (kwargs left out when empty and
    options is False); the wrapped method keeps its signature."""
    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((action, *args, *((kwargs,) if options or kwargs else ())))
            return method(self, *args, **kwargs)
        return cast(Method, wrapper)
    return decorate


class FakeJob(Job):
    """A job of the fake cluster: already ended; wait() returns its result or raises its error."""

    REAL = Job
    HELPERS = ("cluster", "error", "value")

    def __init__(self, cluster: FakeCluster, job_id: int, description: str, error: Exception | None = None,
                 value: Any = None) -> None:
        """Job job_id of cluster; error: what wait() raises (a failed job); value: its result's value."""
        self.id = job_id
        self.description = description
        self.cluster = cluster
        self.error = error
        self.value = value

    def status(self) -> dict[str, Any]:
        """The job's fields in the cluster's queue."""
        return dict(self.cluster.job(self.id).raw)

    def wait(self, progress: Progress | None = None, timeout: float | None = None) -> JobResult:
        """The result, or the error."""
        if self.error is not None:
            raise self.error
        return JobResult(job_id=self.id, status="success", summary=(self.description,), value=self.value)


class FakeCommands:
    """``cluster.commands``: verify, node add/remove, renew-crypto and raw commands, recorded on the cluster."""

    REAL = GntCommands
    HELPERS = ("cluster", "calls", "verify_outputs", "renew_output", "outputs")

    def __init__(self, cluster: FakeCluster) -> None:
        """Belong to cluster (its dry-run flag, nodes and call log)."""
        self.cluster = cluster
        self.calls = cluster.calls
        self.verify_ignore: tuple[str, ...] = ("ENODESETUP",)
        self.verify_outputs: list[tuple[int, str]] = []
        """(rc, output) of each cluster_verify() call in turn; the last one repeats; clean when empty."""
        self.renew_output = "All requested certificates and keys have been replaced."
        self.outputs: dict[str, str] = {}
        """Output of run() per start of the command line (e.g. "gnt-cluster getmaster"); "" otherwise."""

    def _done(self) -> CommandResult:
        skipped = self.cluster.dry_run
        return CommandResult(rc=None if skipped else 0, output="skipped (dry-run)" if skipped else "", skipped=skipped)

    def on(self, master: str) -> GntCommands:
        """The same commands, the master pinned (recorded as ("commands_on", master))."""
        self.calls.append(("commands_on", master))
        return cast(GntCommands, self)

    def run(
        self, argv: Sequence[str], *, is_safe: bool, timeout: float | None = None, ok_codes: Sequence[int] = (0,)
    ) -> HostResult:
        """Record ("run", command line, is_safe); the output is the first of outputs the line starts with."""
        line = command_line(list(argv))
        self.calls.append(("run", line, is_safe))
        status = HostStatus.SKIPPED if self.cluster.dry_run and not is_safe else HostStatus.OK
        output = next((text for start, text in self.outputs.items() if line.startswith(start)), "")
        return HostResult(host="master", status=status, return_codes=(0,), outputs=(output,))

    @recorded("verify_disks", options=False)
    def verify_disks(self, *, group: str | None = None, timeout: float | None = None) -> VerifyDisksResult:
        """Clean (rc 0); skipped in dry-run, as the real command is unsafe."""
        if self.cluster.dry_run:
            return VerifyDisksResult(rc=None, output="skipped (dry-run)", skipped=True)
        return VerifyDisksResult(rc=0)

    @recorded("verify", options=False)
    def cluster_verify(
        self, *, ignore: Sequence[str] | None = None, group: str | None = None, timeout: float | None = None
    ) -> VerifyResult:
        """The next outcome of verify_outputs (clean by default)."""
        outputs = self.verify_outputs
        rc, output = outputs.pop(0) if len(outputs) > 1 else (outputs[0] if outputs else (0, ""))
        return VerifyResult(rc=rc, issues=tuple(parse_verify(output)), output=output)

    @recorded("node_add")
    def node_add(
        self,
        node: str,
        *,
        group: str | None = None,
        secondary_ip: str | None = None,
        readd: bool = False,
        ssh_key_check: bool = True,
        master_capable: bool | None = None,
        vm_capable: bool | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """In a real run the node joins group (default: the cluster's first group); readd, as Ganeti's, keeps its group
        and clears its offline and drained flags."""
        if readd and not self.cluster.dry_run:
            self.cluster.nodes_by_name[node].update(offline=False, drained=False)
        elif not self.cluster.dry_run:
            self.cluster.add_node(node, group or self.cluster.group_list[0]["name"])
        return self._done()

    @recorded("node_remove", options=False)
    def node_remove(self, node: str, *, dry_run: bool = False, timeout: float | None = None) -> CommandResult:
        """In a real run the node leaves the cluster; a check (dry_run) changes nothing and is never skipped."""
        if dry_run:
            return CommandResult(rc=0, output="")
        if not self.cluster.dry_run:
            self.cluster.nodes_by_name.pop(node, None)
        return self._done()

    @recorded("renew_crypto", options=True)
    def renew_crypto(
        self,
        *,
        cluster_certificate: bool = False,
        node_certificates: bool = False,
        rapi_certificate: str | None = None,
        new_rapi_certificate: bool = False,
        spice_certificate: bool = False,
        confd_hmac_key: bool = False,
        ssh_keys: bool = False,
        ssh_key_check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """In a real run: cluster.on_renew() (a test hook), then renew_output."""
        if self.cluster.dry_run:
            return self._done()
        self.cluster.on_renew()
        return CommandResult(rc=0, output=self.renew_output)


class FakeCluster:
    """A Ganeti cluster in memory: instances, nodes (node1/node2.example in group A), groups A and B, jobs."""

    REAL = GanetiCluster
    HELPERS = ("add_instance", "add_node", "calls", "errors", "on_renew", "instances_by_name", "nodes_by_name",
               "down_nodes", "master_name",
               "group_list", "job_list", "templates")

    def __init__(self, name: str = "lab", *, dry_run: bool = False, changes: ChangeLog | None = None,
                 templates: Sequence[str] = ("file", "sharedfile", "plain", "drbd", "diskless")) -> None:
        """An empty cluster whose master is node1.example."""
        self.name = name
        self.dry_run = dry_run
        self.changes = changes or ChangeLog(dry_run=dry_run)
        self.rapi = SimpleNamespace(url="https://198.51.100.10:5080")
        self.templates = list(templates)
        self.calls: list[tuple[Any, ...]] = []
        self.errors: dict[str, Exception] = {}
        """Action (shutdown, startup, modify, reboot, remove, create, node_role, ...) -> error its job fails with."""
        self.on_renew: Callable[[], None] = lambda: None
        self.instances_by_name: dict[str, dict[str, Any]] = {}
        self.nodes_by_name: dict[str, dict[str, Any]] = {}
        self.group_list = [{"name": "A", "uuid": "uuid-A"}, {"name": "B", "uuid": "uuid-B"}]
        self.job_list: list[dict[str, Any]] = []
        self.master_name = "node1.example"
        self.down_nodes: set[str] = set()
        """Nodes whose noded and sshd do not answer (boot_ids() None, answers_ssh() False)."""
        for node in ("node1.example", "node2.example"):
            self.add_node(node, "A")
        self._commands = FakeCommands(self)

    # Test helpers

    def add_node(self, name: str, group: str = "A", **fields: Any) -> None:
        """A node of group, online, vm-capable, with the given RAPI fields on top."""
        self.nodes_by_name[name] = {"name": name, "group.uuid": f"uuid-{group}", "offline": False, "drained": False,
                                    "master_candidate": name == self.master(), "vm_capable": True, **fields}

    def add_instance(self, name: str, template: str = "file", up: bool = True, pnode: str = "node1.example",
                     snodes: Sequence[str] = ()) -> None:
        """An instance in the given state on pnode (and snodes for drbd)."""
        self.instances_by_name[name] = {"name": name, "disk_template": template, "pnode": pnode,
                                        "snodes": list(snodes), "admin_state": "up" if up else "down",
                                        "status": "running" if up else "ADMIN_down", "oper_state": up}

    # Reads

    @property
    def commands(self) -> GntCommands:
        """The fake gnt-* commands."""
        return cast(GntCommands, self._commands)

    def info(self) -> dict[str, Any]:
        """Name, master, enabled templates and the MAC prefix (Ganeti's default, aa:00:00)."""
        return {"name": self.name, "master": self.master(), "enabled_disk_templates": self.templates,
                "mac_prefix": "aa:00:00"}

    def master(self) -> str:
        """The master node (``master_name``)."""
        return self.master_name

    def os_list(self) -> list[str]:
        """The OS definitions every node offers: noop, as on the lab."""
        return ["noop"]

    def nodes(self) -> list[Node]:
        """All nodes, with their instance lists."""
        return [self.node(name) for name in self.nodes_by_name]

    def node_config(self, name: str) -> Node:
        """node(): the fake has no live data to leave out."""
        return self.node(name)

    def node(self, name: str) -> Node:
        """A node with its role and pinst_list/sinst_list computed from the instances, or the RAPI's 404."""
        if name not in self.nodes_by_name:
            raise not_found(f"/2/nodes/{name}")
        fields = self.nodes_by_name[name]
        primaries = sorted(i["name"] for i in self.instances_by_name.values() if i["pnode"] == name)
        secondaries = sorted(i["name"] for i in self.instances_by_name.values() if name in i.get("snodes", ()))
        role = ("M" if name == self.master() else "O" if fields.get("offline") else "D" if fields.get("drained")
                else "C" if fields.get("master_candidate") else "R")
        return Node.from_rapi({"role": role, **fields, "pinst_list": primaries, "sinst_list": secondaries,
                               "pinst_cnt": len(primaries), "sinst_cnt": len(secondaries)})

    def node_role(self, name: str) -> str:
        """master, offline, drained, master-candidate or regular, from the node's flags."""
        node = self.node(name)
        if name == self.master():
            return "master"
        return next((role for role, flag in ROLE_FLAGS.items() if flag != "master_candidate" and node.get(flag)),
                    "master-candidate" if node.get("master_candidate") else "regular")

    def groups(self) -> list[Group]:
        """All node groups."""
        return [self.group(group["name"]) for group in self.group_list]

    def group(self, name: str) -> Group:
        """One node group with its node names, or the RAPI's 404."""
        found = next((dict(group) for group in self.group_list if group["name"] == name), None)
        if found is None:
            raise not_found(f"/2/groups/{name}")
        return Group.from_rapi({**found, "node_list": sorted(n for n, node in self.nodes_by_name.items()
                                                             if node["group.uuid"] == found["uuid"])})

    def instances(self) -> list[Instance]:
        """All instances."""
        return [self.instance(name) for name in self.instances_by_name]

    def instance_names(self) -> list[str]:
        """The names of all instances."""
        return list(self.instances_by_name)

    def instance(self, name: str) -> Instance:
        """The instance (a copy of its fields), or the RAPI's 404."""
        if name not in self.instances_by_name:
            raise not_found(f"/2/instances/{name}")
        return Instance.from_rapi(dict(self.instances_by_name[name]))

    def jobs(self, *, bulk: bool = False) -> list[dict[str, Any]]:
        """The job queue: one job per write made so far."""
        return [dict(job) for job in self.job_list]

    def job(self, job_id: int) -> JobInfo:
        """One job; an unknown id answers a job without status, as Ganeti does."""
        found = next((dict(job) for job in self.job_list if job["id"] == job_id), {"id": job_id})
        return JobInfo.from_rapi(found)

    # Writes

    def _write(self, action: str, target: str, change: Callable[[], None], undo: str | None = None,
               **undo_args: Any) -> JobHandle:
        """A skipped job in dry-run; else the change (unless errors has the action) and a job in the queue.

        undo: the undo action the real client registers for this write, with undo_args (pushed on the run's
        undo stack when ``changes.undo`` is set, as FakeCtx does for the clusters it serves; run by :meth:`undo`).
        """
        if self.dry_run:
            self.changes.record("ganeti", action, target, cluster=self.name, checked=False)
            return SkippedJob(f"{action} {target}")
        kept = Undo("ganeti", undo, target, {"cluster": self.name, "name": target, **undo_args}) if undo else None
        with self.changes.writing("ganeti", action, target, undo=kept, cluster=self.name) as pending:
            error = self.errors.get(action)
            if error is None:
                change()
            job_id = len(self.job_list) + 1
            status = "error" if error else "success"
            self.job_list.append({"id": job_id, "status": status, "summary": [f"{action} {target}"]})
            pending.learn(job_id=job_id)
        return FakeJob(self, job_id, f"{action} {target}", error)

    def _admin_undo(self, name: str, state: str, undo: str) -> str | None:
        """The undo of a startup or shutdown, as the real client keeps it: only when the state changes."""
        instance = self.instances_by_name.get(name)
        return undo if instance is not None and instance.get("admin_state") == state else None

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Take back a write this fake registered an undo for (startup, shutdown, create, migrate, secondary
        replacement, node role, size change): "undone", or "absent" when nothing to do.

        Recorded in ``calls`` as the write it makes (``("startup", name)``...); another action raises.
        """
        name = str(args["name"])
        instance = self.instances_by_name.get(name)
        if action == "node-role":
            return self._role_back(name, str(args["old_role"]))
        if action in ("instance-modify", "disk-remove"):
            return self._size_back(action, name, args)
        if action not in ("instance-startup", "instance-shutdown", "instance-remove", "instance-migrate",
                          "instance-replace-disks"):
            raise GanetiError(f"the fake cluster has no undo action {action!r}")
        if instance is None:
            return "absent"
        if action == "instance-migrate":
            return self._migrate_back(name, str(args["node"]))
        if action == "instance-replace-disks":
            return self._replace_back(name, str(args["node"]))
        if action == "instance-remove":
            self.calls.append(("remove", name))
            self._write("remove", name, lambda: self._forget(name)).wait()
            return "undone"
        up = action == "instance-startup"
        if instance.get("admin_state") == ("up" if up else "down"):
            return "absent"
        write = "startup" if up else "shutdown"
        self.calls.append((write, name))
        fields = {"admin_state": "up", "status": "running", "oper_state": True} if up else \
            {"admin_state": "down", "status": "ADMIN_down", "oper_state": False}
        self._write(write, name, self._state(name, **fields)).wait()
        return "undone"

    def _migrate_back(self, name: str, node: str) -> str:
        """The undo of migrate_instance: the instance back on node, unless it is there."""
        if self.instances_by_name[name]["pnode"] == node:
            return "absent"
        self.calls.append(("migrate", name, {"target_node": node}))
        self._write("migrate", name, lambda: self._move(name, node)).wait()
        return "undone"

    def _replace_back(self, name: str, node: str) -> str:
        """The undo of replace_secondary: node the instance's secondary again, unless it is."""
        if self.instances_by_name[name]["snodes"] == [node]:
            return "absent"
        self.calls.append(("replace_secondary", name, node))
        self._write("replace_secondary", name, self._state(name, snodes=[node])).wait()
        return "undone"

    def _role_back(self, node: str, old: str) -> str:
        """The undo of set_node_role: the node's old role back, unless it has it already."""
        if node not in self.nodes_by_name or self.node_role(node) == old:
            return "absent"
        self.calls.append(("node_role", node, old))
        self._write("node_role", node, self._flags(node, old)).wait()
        return "undone"

    def _flags(self, node: str, role: str) -> Callable[[], None]:
        """The change of a node's flags to role (regular clears them)."""
        return lambda: self.nodes_by_name[node].update({flag: role == name for name, flag in ROLE_FLAGS.items()})

    def _state(self, name: str, **fields: Any) -> Callable[[], None]:
        def change() -> None:
            if name not in self.instances_by_name:
                raise not_found(f"/2/instances/{name}")
            self.instances_by_name[name].update(fields)
        return change

    @recorded("create")
    def create_instance(self, name: str, **spec: Any) -> JobHandle:
        """Create an instance on spec's pnode (default: the master), running unless spec says start=False."""
        return self._write("create", name, lambda: self.add_instance(
            name, spec.get("disk_template", "file"), spec.get("start", True), spec.get("pnode", self.master()),
            [spec["snode"]] if spec.get("snode") else []), undo="instance-remove")

    @recorded("remove")
    def remove_instance(self, name: str, *, shutdown_timeout: int | None = None) -> JobHandle:
        """Remove the instance."""
        return self._write("remove", name, lambda: self._forget(name))

    @recorded("startup")
    def startup_instance(self, name: str, *, force: bool = False, no_remember: bool = False) -> JobHandle:
        """Start the instance."""
        return self._write("startup", name, self._state(name, admin_state="up", status="running", oper_state=True),
                           undo=self._admin_undo(name, "down", "instance-shutdown"))

    @recorded("shutdown")
    def shutdown_instance(self, name: str, *, timeout: int | None = None, no_remember: bool = False) -> JobHandle:
        """Stop the instance."""
        return self._write("shutdown", name, self._state(name, admin_state="down", status="ADMIN_down",
                                                         oper_state=False),
                           undo=self._admin_undo(name, "up", "instance-startup"))

    @recorded("reboot")
    def reboot_instance(
        self, name: str, *, reboot_type: str = "hard", shutdown_timeout: int | None = None, reason: str | None = None
    ) -> JobHandle:
        """Reboot: the instance stays running."""
        return self._write("reboot", name, self._state(name))

    @recorded("modify")
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
        """Change the disk template (and secondary node); other changes are only recorded."""
        fields: dict[str, Any] = {}
        if disk_template:
            fields.update(disk_template=disk_template, snodes=[remote_node] if remote_node else [])
        return self._write("modify", name, self._state(name, **fields))

    @recorded("migrate")
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
        """Move the instance to target_node, or swap primary and secondary (drbd); the job's value is the new node.

        Its undo migrates it back, as the real client's does. depends is only recorded (the fake's jobs have ended).
        """
        return self._placed(self._write("migrate", name, lambda: self._move(name, target_node), "instance-migrate",
                                        node=self.instances_by_name.get(name, {}).get("pnode")), name)

    @recorded("failover")
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
        """Move the instance as migrate_instance does (its state is kept); no undo, as the real client keeps none.
        depends is only recorded."""
        return self._placed(self._write("failover", name, lambda: self._move(name, target_node)), name)

    @recorded("replace_secondary")
    def replace_secondary(self, name: str, node: str) -> JobHandle:
        """Make node the instance's secondary (``snodes``); its undo replaces it back with the old one, as the real
        client's does (kept only for an instance with one secondary)."""
        old = list(self.instances_by_name.get(name, {}).get("snodes") or [])
        if len(old) == 1:
            return self._write("replace_secondary", name, self._state(name, snodes=[node]), "instance-replace-disks",
                               node=old[0], new_node=node)
        return self._write("replace_secondary", name, self._state(name, snodes=[node]))

    @recorded("reinstall")
    def reinstall_instance(self, name: str, *, os_name: str | None = None, start: bool = True) -> JobHandle:
        """Set the instance's OS (if given) and leave it running when start, else stopped; no undo."""
        fields: dict[str, Any] = {"os": os_name} if os_name else {}
        fields.update({"admin_state": "up", "status": "running", "oper_state": True} if start else
                      {"admin_state": "down", "status": "ADMIN_down", "oper_state": False})
        return self._write("reinstall", name, self._state(name, **fields))

    def _placed(self, job: JobHandle, name: str) -> JobHandle:
        """The job with the instance's primary node as its result's value (the real PlacedJob's)."""
        if isinstance(job, FakeJob) and name in self.instances_by_name:
            job.value = self.instances_by_name[name]["pnode"]
        return job

    @recorded("node_role")
    def set_node_role(self, node: str, role: str, *, force: bool = False, auto_promote: bool = False) -> JobHandle:
        """Set the node's flags for role (regular clears them); its undo gives the node its old role back."""
        old = self.node_role(node)
        return self._write("node_role", node, self._flags(node, role), undo="node-role", node=node, old_role=old,
                           new_role=role)

    @recorded("migrate_node")
    def migrate_node(
        self, node: str, *, mode: str | None = None, iallocator: str | None = None, target_node: str | None = None
    ) -> JobHandle:
        """Move every primary instance off node (to target_node, its secondary, or another node of the group)."""
        return self._write("migrate_node", node, lambda: self._evacuate(node, target_node, primaries=True))

    @recorded("evacuate_node")
    def evacuate_node(
        self,
        node: str,
        *,
        mode: str = "all",
        iallocator: str | None = None,
        remote_node: str | None = None,
        early_release: bool | None = None,
    ) -> JobHandle:
        """Move primary and/or secondary instances off node (mode all, primary-only, secondary-only)."""
        return self._write("evacuate_node", node, lambda: self._evacuate(
            node, remote_node, primaries=mode != "secondary-only", secondaries=mode != "primary-only"))


    # Size writes (as the real client's block for resize-vm and disk)

    @recorded("modify_backend")
    def modify_backend(self, name: str, *, vcpus: int | None = None, memory: int | None = None) -> JobHandle:
        """Set beparams vcpus and maxmem/minmem; its undo puts the old values back, as the real client's does."""
        new = {key: value for key, value in (("vcpus", vcpus), ("maxmem", memory), ("minmem", memory))
               if value is not None}
        if not new:
            raise ValueError("modify_backend: give vcpus or memory")
        old = dict(self.instances_by_name.get(name, {}).get("beparams") or {})
        return self._write("modify", name, self._beparams(name, new), "instance-modify",
                           old={key: old.get(key) for key in new})

    @recorded("grow_disk_to")
    def grow_disk_to(self, name: str, index: int, size: int) -> JobHandle:
        """Grow disk index to size MiB; ValueError as the real client for an unknown index or no growth; no undo."""
        problems = fit.disk_problems(self.instance(name), index, size)
        if problems:
            raise ValueError(problems[0])
        return self._write("grow_disk", name, self._disks(name, lambda sizes, names: sizes.__setitem__(index, size)))

    @recorded("add_disk")
    def add_disk(self, name: str, size: int) -> JobHandle:
        """Add a disk named cookbooks-N; its undo (disk-remove) removes that disk, as the real client's does."""
        disk = f"cookbooks-{len(self.job_list) + 1}"

        def add(sizes: list[int], names: list[str | None]) -> None:
            sizes.append(size)
            names.append(disk)
        return self._write("add_disk", name, self._disks(name, add), "disk-remove", disk=disk, size=size)

    @recorded("remove_disk")
    def remove_disk(self, name: str, index: int) -> JobHandle:
        """Remove disk index of a stopped instance; ValueError as the real client otherwise; no undo."""
        instance = self.instance(name)
        problems = fit.disk_problems(instance, index)
        if problems:
            raise ValueError(problems[0])
        if instance.admin_state != "down":
            raise ValueError(f"{name} is {instance.admin_state} in Ganeti: a disk is removed only from a stopped "
                             "instance")
        return self._write("remove_disk", name, self._disks(name, lambda sizes, names: _pop(sizes, names, index)))

    def _beparams(self, name: str, values: Mapping[str, Any]) -> Callable[[], None]:
        def change() -> None:
            if name not in self.instances_by_name:
                raise not_found(f"/2/instances/{name}")
            instance = self.instances_by_name[name]
            instance["beparams"] = {**(instance.get("beparams") or {}), **values}
        return change

    def _disks(self, name: str, edit: Callable[[list[int], list[str | None]], None]) -> Callable[[], None]:
        def change() -> None:
            if name not in self.instances_by_name:
                raise not_found(f"/2/instances/{name}")
            instance = self.instances_by_name[name]
            sizes = list(instance.get("disk.sizes") or [])
            names = list(instance.get("disk.names") or [None] * len(sizes))
            edit(sizes, names)
            instance.update({"disk.sizes": sizes, "disk.names": names})
        return change

    def _size_back(self, action: str, name: str, args: Mapping[str, Any]) -> str:
        """The undo of modify_backend (old beparams back) or add_disk (that disk removed), "absent" if nothing to do."""
        instance = self.instances_by_name.get(name)
        if instance is None:
            return "absent"
        if action == "instance-modify":
            old = {key: value for key, value in dict(args["old"]).items() if value is not None}
            self.calls.append(("modify_backend", name, old))
            self._write("modify", name, self._beparams(name, old)).wait()
            return "undone"
        disk = str(args["disk"])
        names = list(instance.get("disk.names") or [])
        if disk not in names:
            return "absent"
        self.calls.append(("remove_disk", name, disk))
        self._write("remove_disk", name, self._disks(name, lambda sizes, found: _pop(sizes, found, found.index(disk))))\
            .wait()
        return "undone"

    # Internals

    # Node maintenance (as the real client's block for issue 13: the logic of libcluster.ganeti.nodes runs on the fake)

    @recorded("tags_add")
    def add_tags(self, kind: str, name: str | None, tags: Sequence[str]) -> JobHandle:
        """Add tags to a node (other kinds are only recorded); unlike the real client, no undo is kept."""
        fields = self.nodes_by_name.get(name or "", {}) if kind == "node" else {}
        added = [tag for tag in tags if tag not in fields.get("tags", [])]
        return self._write("tags_add", f"{kind} {name}", lambda: fields.setdefault("tags", []).extend(added))

    @recorded("tags_remove")
    def remove_tags(self, kind: str, name: str | None, tags: Sequence[str]) -> JobHandle:
        """Remove tags from a node (other kinds are only recorded)."""
        fields = self.nodes_by_name.get(name or "", {}) if kind == "node" else {}
        return self._write("tags_remove", f"{kind} {name}", lambda: fields.update(
            tags=[tag for tag in fields.get("tags", []) if tag not in tags]))

    def drain(self, node: str) -> node_ops.RoleChange:
        """libcluster.ganeti.nodes.take_out on the fake."""
        return node_ops.take_out(self._real, node, node_ops.Role.DRAINED)

    def undrain(self, node: str) -> node_ops.RoleChange:
        """libcluster.ganeti.nodes.bring_back on the fake."""
        return node_ops.bring_back(self._real, node, node_ops.Role.DRAINED)

    def set_offline(self, node: str) -> node_ops.RoleChange:
        """libcluster.ganeti.nodes.take_out (offline) on the fake."""
        return node_ops.take_out(self._real, node, node_ops.Role.OFFLINE)

    def set_online(self, node: str) -> node_ops.RoleChange:
        """libcluster.ganeti.nodes.bring_back (offline) on the fake."""
        return node_ops.bring_back(self._real, node, node_ops.Role.OFFLINE)

    @recorded("move_check")
    def submit_move_check(self, name: str, action: str, *, target_node: str | None = None) -> Job:
        """A finished check job: its value the node the instance would go to, or the error in ``errors["move_check"]``
        (as Ganeti's dry-run check would fail); nothing changes and nothing is journaled."""
        instance = self.instances_by_name[name]
        error = self.errors.get("move_check")
        target = None
        if error is None:
            target = target_node or (instance["snodes"][0] if instance["disk_template"] in INT_MIRROR
                                     and instance.get("snodes") else self._other_node(instance["pnode"]))
        job_id = len(self.job_list) + 1
        self.job_list.append({"id": job_id, "status": "error" if error else "success",
                              "summary": [f"check of instance-{action} {name}"]})
        return FakeJob(self, job_id, f"check of instance-{action} {name}", error, target)

    def plan_node_moves(self, node: str) -> node_ops.NodePlan:
        """libcluster.ganeti.nodes.plan_moves on the fake."""
        return node_ops.plan_moves(self._real, node)

    def move_primary(self, name: str, *, target_node: str | None = None, depends: Sequence[int] = ()) -> JobHandle:
        """libcluster.ganeti.nodes.move_primary on the fake (its migrate_instance or failover_instance)."""
        job: JobHandle = node_ops.move_primary(self._real, name, target_node=target_node, depends=depends)
        return job

    def n_plus_one(self, node: str) -> list[str]:
        """libcluster.ganeti.nodes.n_plus_one on the fake (node fields mfree, instance beparams memory)."""
        return node_ops.n_plus_one(self._real, node)

    def boot_ids(self, nodes: Sequence[str] | None = None) -> dict[str, str | None]:
        """Each node's (or each named node's) ``bootid`` field (None for a node whose noded is down: ``down_nodes``)."""
        return {name: None if name in self.down_nodes else str(fields.get("bootid", f"boot-{name}"))
                for name, fields in self.nodes_by_name.items() if nodes is None or name in nodes}

    def answers_ssh(self, node: str) -> bool:
        """Whether the node is not in ``down_nodes``."""
        return node not in self.down_nodes

    def wait_node_back(self, node: str, old_boot_id: str | None, *, timeout: float, interval: float = 0.5,
                       ssh: bool = True) -> str:
        """libcluster.ganeti.nodes.wait_node_back on the fake (no sleeping: one look, then the timeout error)."""
        return node_ops.wait_node_back(self._real, node, old_boot_id, timeout=0, interval=interval, ssh=ssh,
                                       sleep=lambda seconds: None)

    def wait_ssh(self, node: str, *, timeout: float, interval: float = 0.5) -> None:
        """libcluster.ganeti.nodes.wait_ssh on the fake (one look, then the timeout error)."""
        node_ops.wait_ssh(self._real, node, timeout=0, interval=interval, sleep=lambda seconds: None)

    def verify_disks_until_clean(self, *, timeout: float, interval: float = 5.0,
                                 group: str | None = None) -> VerifyDisksResult:
        """libcluster.ganeti.nodes.verify_disks_until_clean on the fake commands (no sleeping)."""
        return node_ops.verify_disks_until_clean(self._real, timeout=0, interval=interval, group=group,
                                                 sleep=lambda seconds: None)

    @recorded("master_failover")
    def master_failover(self, to: str, *, no_voting: bool = False, timeout: float = 300.0) -> str:
        """Make candidate `to` the master (``master_name``); NodeStateError as the real one for another role."""
        role = node_ops.Role.of(self.node(to))
        if role is not node_ops.Role.CANDIDATE:
            raise node_ops.NodeStateError(f"{to} is {role.value}: only a master candidate can become the master")
        if self.dry_run:
            self.changes.record("remote", "command", to, commands=["gnt-cluster master-failover"])
            return self.master()
        old = self.master()
        self.master_name = to
        self.nodes_by_name[old]["master_candidate"] = True
        return to

    @property
    def _real(self) -> GanetiCluster:
        return cast(GanetiCluster, self)

    def _forget(self, name: str) -> None:
        if self.instances_by_name.pop(name, None) is None:
            raise not_found(f"/2/instances/{name}")

    def _other_node(self, node: str, avoid: Sequence[str] = ()) -> str:
        group = self.nodes_by_name[node]["group.uuid"]
        for name, fields in self.nodes_by_name.items():
            if (name != node and name not in avoid and fields["group.uuid"] == group
                    and not fields.get("offline") and not fields.get("drained")):
                return name
        raise not_found(f"/2/nodes: no other usable node in the group of {node}")

    def _move(self, name: str, target: str | None) -> None:
        instance = self.instances_by_name[name]
        old = instance["pnode"]
        secondaries = instance.get("snodes") or []
        if instance["disk_template"] in INT_MIRROR and secondaries and target in (None, secondaries[0]):
            instance["pnode"], instance["snodes"] = secondaries[0], [old]
            return
        instance["pnode"] = target or self._other_node(old, instance.get("snodes", ()))

    def _evacuate(self, node: str, target: str | None, *, primaries: bool, secondaries: bool = False) -> None:
        for instance in list(self.instances_by_name.values()):
            if primaries and instance["pnode"] == node:
                self._move(instance["name"], target)
            if secondaries and node in instance.get("snodes", ()):
                instance["snodes"] = [target or self._other_node(node, [instance["pnode"]])]


def _pop(sizes: list[int], names: list[str | None], index: int) -> None:
    """Remove disk index from an instance's disk sizes and names."""
    sizes.pop(index)
    names.pop(index)


class InterruptedWait(Job):
    """A job whose first wait is interrupted (Ctrl-C, chat cancel) while Ganeti goes on; later waits see its end."""

    def __init__(self, job: JobHandle, description: str) -> None:
        """Wrap the job Ganeti runs; description: how the rollback's log names it."""
        self.id = 42
        self.job = job
        self.description = description
        self.waits = 0

    def wait(self, progress: Progress | None = None, timeout: float | None = None) -> JobResult:
        """Raise KeyboardInterrupt the first time, then the job's own result."""
        self.waits += 1
        if self.waits == 1:
            raise KeyboardInterrupt
        return self.job.wait()


def interrupt_the_wait_for(cluster: FakeCluster, write: str, description: str = "a job") -> None:
    """Ctrl-C lands while the cookbook waits for the job of this write (shutdown, modify, startup, reboot)."""
    method = getattr(cluster, f"{write}_instance")
    setattr(cluster, f"{write}_instance",
            lambda name, **details: InterruptedWait(method(name, **details), description))
