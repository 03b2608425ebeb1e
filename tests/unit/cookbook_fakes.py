"""In-memory stand-ins for what the Ganeti cookbooks reach through the context, for their unit tests.

FakeCluster keeps instance states and applies writes to them (unless dry-run), FakeRemote answers
commands through a responder function, FakeNetBox filters in-memory objects; each records what it
was asked so tests can check the calls and their order; interrupt_the_wait_for() makes Ctrl-C land while
a cookbook waits for one of its jobs. load_cookbook() imports a cookbook file of
this checkout the way the runner does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import yaml

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import JobResult, RapiNotFoundError, SkippedJob
from libcluster.ganeti.commands import CommandResult, VerifyResult, parse_verify
from libcluster.interactive import AbortError
from libcluster.remote import HostResult, HostStatus, RunResult, command_line
from libcluster.runner import discovery

REPO_ROOT = Path(__file__).resolve().parents[2]

BASE_CONFIG: dict[str, Any] = {
    "remote": {"cumin_config": "/nonexistent/cumin.yaml"},
    "netbox": {"url": "https://netbox.invalid", "token": "nbt_x", "ro_token": "nbt_y"},
    "ganeti": {"clusters": {
        "lab": {
            "rapi_url": "https://198.51.100.10:5080", "rapi_user": "u", "rapi_password": "p",
            "rapi_ro_user": "ro", "rapi_ro_password": "p", "ca_file": "/nonexistent/ca.pem",
            "domain": "lab.example", "netbox_cluster_group": "lab", "verify_ignore": ["ENODESETUP"],
            "vm_capable_check": "test -e /dev/kvm", "bridges": ["br0"], "cert_warning_days": 30,
            "groups": {"A": {"prefixes": ["198.51.100.0/26"]}, "B": {"prefixes": ["198.51.100.64/26"]}},
        },
        "prod": {
            "rapi_url": "https://198.51.100.20:5080", "rapi_user": "u", "rapi_password": "p",
            "rapi_ro_user": "ro", "rapi_ro_password": "p", "domain": "example.org",
            "netbox_cluster_group": "prod-group", "groups": {"A": {"prefixes": ["203.0.113.0/24"]}},
        },
    }},
}


def load_config(tmp_path: Path, **cluster_overrides: Any) -> Section:
    """BASE_CONFIG with keys of cluster `lab` replaced, loaded like the runner loads a file."""
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["ganeti"]["clusters"]["lab"].update(cluster_overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return config_module.load(path)


def load_cookbook(name: str) -> ModuleType:
    """Import cookbooks.<name> of this checkout (dashes allowed), as the runner does."""
    for module in [module for module in sys.modules if module == "cookbooks" or module.startswith("cookbooks.")]:
        del sys.modules[module]  # the runner tests import another `cookbooks` tree
    return discovery.import_cookbook_module([REPO_ROOT], name)


def not_found(path: str) -> RapiNotFoundError:
    """The error the RAPI client raises for an unknown object."""
    return RapiNotFoundError("GET", path, 404, "not found")


class FakeJob:
    """A job that already ended: wait() returns success or raises the given error."""

    def __init__(self, error: Exception | None = None) -> None:
        """Fail with error when waited on, if given."""
        self.error = error

    def wait(self, progress: Any = None, timeout: float | None = None) -> JobResult:
        """The result, or the error."""
        if self.error is not None:
            raise self.error
        return JobResult(job_id=1, status="success")


class FakeCommands:
    """cluster.commands: node add/remove, verify and renew-crypto, recorded; results set by the test."""

    def __init__(self, cluster: FakeCluster) -> None:
        """Belong to cluster (for dry-run and the call log)."""
        self.cluster = cluster
        self.verify_ignore = ("ENODESETUP",)
        self.verify_outputs: list[tuple[int, str]] = []
        """(rc, output) of each cluster_verify() call in turn; the last one repeats."""
        self.renew_output = "All requested certificates and keys have been replaced."
        self.outputs: dict[str, str] = {}
        """Output of run() per start of the command line (e.g. "gnt-cluster getmaster"); "" otherwise."""

    def on(self, master: str) -> FakeCommands:
        """The same commands, the master pinned (recorded)."""
        self.cluster.calls.append(("commands_on", master))
        return self

    def cluster_verify(self) -> VerifyResult:
        """The next recorded verify outcome (clean by default)."""
        rc, output = self.verify_outputs.pop(0) if len(self.verify_outputs) > 1 else (
            self.verify_outputs[0] if self.verify_outputs else (0, ""))
        self.cluster.calls.append(("verify",))
        return VerifyResult(rc=rc, issues=tuple(parse_verify(output)), output=output)

    def node_add(self, node: str, **options: Any) -> CommandResult:
        """Record the add; in a real run the node becomes a member."""
        self.cluster.calls.append(("node_add", node, options))
        if not self.cluster.dry_run:
            self.cluster.nodes_by_name[node] = {"name": node, "group.uuid": "uuid-" + options.get("group", "A")}
        return CommandResult(rc=None if self.cluster.dry_run else 0, output="", skipped=self.cluster.dry_run)

    def node_remove(self, node: str, **options: Any) -> CommandResult:
        """Record the removal; in a real run the node leaves the cluster."""
        self.cluster.calls.append(("node_remove", node))
        if not self.cluster.dry_run:
            self.cluster.nodes_by_name.pop(node, None)
        return CommandResult(rc=None if self.cluster.dry_run else 0, output="", skipped=self.cluster.dry_run)

    def run(self, argv: list[str], *, is_safe: bool, **options: Any) -> HostResult:
        """Record a raw command (gnt-* reads answered from outputs)."""
        self.cluster.calls.append(("run", command_line(argv), is_safe))
        status = HostStatus.SKIPPED if self.cluster.dry_run and not is_safe else HostStatus.OK
        line = command_line(argv)
        output = next((text for start, text in self.outputs.items() if line.startswith(start)), "")
        return HostResult(host="master", status=status, return_codes=(0,), outputs=(output,))

    def renew_crypto(self, **options: Any) -> CommandResult:
        """Record the options; call cluster.on_renew (a test hook) in a real run."""
        self.cluster.calls.append(("renew_crypto", options))
        if self.cluster.dry_run:
            return CommandResult(rc=None, output="skipped (dry-run)", skipped=True)
        self.cluster.on_renew()
        return CommandResult(rc=0, output=self.renew_output)


class FakeCluster:
    """A Ganeti cluster in memory: instances, nodes, groups, jobs; writes change instance states."""

    def __init__(self, name: str = "lab", *, dry_run: bool = False, templates: tuple[str, ...] = ("file", "sharedfile",
                 "plain", "drbd", "diskless")) -> None:
        """An empty cluster whose master is node1.<name>.example."""
        self.name = name
        self.dry_run = dry_run
        self.rapi = SimpleNamespace(url="https://198.51.100.10:5080")
        self.templates = list(templates)
        self.instances_by_name: dict[str, dict[str, Any]] = {}
        self.nodes_by_name: dict[str, dict[str, Any]] = {
            f"node{n}.example": {"name": f"node{n}.example", "group.uuid": "uuid-A", "offline": False}
            for n in (1, 2)
        }
        self.group_list = [{"name": "A", "uuid": "uuid-A"}, {"name": "B", "uuid": "uuid-B"}]
        self.job_list: list[dict[str, Any]] = []
        self.calls: list[tuple[Any, ...]] = []
        self.errors: dict[str, Exception] = {}
        """Write name -> error its job fails with."""
        self.on_renew: Callable[[], None] = lambda: None
        self.commands = FakeCommands(self)

    def add_instance(self, name: str, template: str = "file", up: bool = True, pnode: str = "node1.example") -> None:
        """Create an instance in the given state."""
        self.instances_by_name[name] = {"name": name, "disk_template": template, "pnode": pnode,
                                        "admin_state": "up" if up else "down",
                                        "status": "running" if up else "ADMIN_down", "oper_state": up}

    def master(self) -> str:
        """The master node."""
        return "node1.example"

    def info(self) -> dict[str, Any]:
        """Master and enabled templates."""
        return {"master": self.master(), "enabled_disk_templates": self.templates}

    def instance(self, name: str) -> dict[str, Any]:
        """A copy of the instance, or the RAPI's 404."""
        if name not in self.instances_by_name:
            raise not_found(f"/2/instances/{name}")
        return dict(self.instances_by_name[name])

    def node(self, name: str) -> dict[str, Any]:
        """A node, or the RAPI's 404."""
        if name not in self.nodes_by_name:
            raise not_found(f"/2/nodes/{name}")
        return dict(self.nodes_by_name[name])

    def nodes(self) -> list[dict[str, Any]]:
        """All nodes."""
        return [dict(node) for node in self.nodes_by_name.values()]

    def groups(self) -> list[dict[str, Any]]:
        """All node groups."""
        return [dict(group) for group in self.group_list]

    def jobs(self, bulk: bool = False) -> list[dict[str, Any]]:
        """The job queue."""
        return [dict(job) for job in self.job_list]

    def _write(self, action: str, name: str, change: Callable[[dict[str, Any]], None], **details: Any) -> Any:
        self.calls.append((action, name, details))
        if self.dry_run:
            return SkippedJob(action)
        error = self.errors.get(action)
        if error is None:
            change(self.instances_by_name[name])
        return FakeJob(error)

    def shutdown_instance(self, name: str, **details: Any) -> Any:
        """Stop the instance."""
        return self._write("shutdown", name, lambda i: i.update(admin_state="down", status="ADMIN_down",
                                                                 oper_state=False), **details)

    def startup_instance(self, name: str, **details: Any) -> Any:
        """Start the instance."""
        return self._write("startup", name, lambda i: i.update(admin_state="up", status="running", oper_state=True),
                           **details)

    def modify_instance(self, name: str, **details: Any) -> Any:
        """Change the disk template."""
        return self._write("modify", name, lambda i: i.update(disk_template=details["disk_template"]), **details)

    def reboot_instance(self, name: str, **details: Any) -> Any:
        """Reboot: the instance stays running."""
        return self._write("reboot", name, lambda i: None, **details)


class InterruptedWait:
    """A job whose first wait is interrupted (Ctrl-C, chat cancel) while Ganeti goes on; later waits see its end."""

    id = 42

    def __init__(self, job: Any, description: str) -> None:
        """Wrap the job Ganeti runs; description: how the rollback's log names it."""
        self.job = job
        self.description = description
        self.waits = 0

    def wait(self, progress: Any = None, timeout: float | None = None) -> Any:
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


class FakeHosts:
    """ctx.remote().hosts([...]): runs commands through the remote's responder."""

    def __init__(self, remote: FakeRemote, names: list[str]) -> None:
        """Target these hosts."""
        self.remote = remote
        self.names = names

    def run_sync(self, *commands: Any, is_safe: bool = False, **options: Any) -> RunResult:
        """Ask the responder for each host's (status, rc, output); unsafe commands are skipped in dry-run."""
        line = "; ".join(command_line(command) for command in commands)
        results = {}
        for host in self.names:
            self.remote.calls.append((host, line, is_safe))
            if self.remote.dry_run and not is_safe:
                results[host] = HostResult(host=host, status=HostStatus.SKIPPED)
                continue
            status, rc, output = self.remote.respond(host, line)
            results[host] = HostResult(host=host, status=status, return_codes=(rc,), outputs=(output,))
        return RunResult(commands=(line,), hosts=results)


class FakeRemote:
    """ctx.remote(): every command answered by respond(host, command line) -> (status, rc, output)."""

    def __init__(self, respond: Callable[[str, str], tuple[HostStatus, int, str]], *, dry_run: bool = False) -> None:
        """Answer with respond; record (host, command line, is_safe) of every call."""
        self.respond = respond
        self.dry_run = dry_run
        self.calls: list[tuple[str, str, bool]] = []

    def hosts(self, names: list[str]) -> FakeHosts:
        """These hosts."""
        return FakeHosts(self, list(names))


def ok(output: str = "") -> tuple[HostStatus, int, str]:
    """A command that exited 0."""
    return HostStatus.OK, 0, output


def failed(rc: int = 1, output: str = "") -> tuple[HostStatus, int, str]:
    """A command that exited rc."""
    return HostStatus.FAILED, rc, output


class FakeNetBox:
    """NetBox objects per kind in memory; filters compare top-level values or nested ids; writes recorded."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], *, dry_run: bool = False,
                 error: Exception | None = None) -> None:
        """Serve objects; every read raises error if given."""
        self.store = objects
        self.dry_run = dry_run
        self.error = error
        self.updates: list[tuple[str, list[dict[str, Any]]]] = []

    def objects(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
        """Objects of kind matching every filter (`x_id` matches x.id)."""
        if self.error is not None:
            raise self.error

        def value(obj: dict[str, Any], key: str) -> Any:
            if key.endswith("_id") and key[:-3] in obj:
                return (obj[key[:-3]] or {}).get("id")
            return obj.get(key)

        return [obj for obj in self.store.get(kind, []) if all(value(obj, k) == v for k, v in filters.items())]

    def find(self, kind: str, **filters: Any) -> dict[str, Any] | None:
        """The one match or None."""
        found = self.objects(kind, **filters)
        assert len(found) <= 1, f"ambiguous {kind} {filters}"
        return found[0] if found else None

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        """The one match."""
        found = self.find(kind, **filters)
        assert found is not None, f"no {kind} {filters}"
        return found

    def update(self, kind: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record the update; apply it unless dry-run."""
        self.updates.append((kind, objects))
        if not self.dry_run:
            for change in objects:
                target = self.get(kind, id=change["id"])
                target.update({key: {"id": value} if key == "cluster" else value for key, value in change.items()})
        return objects


class FakeCtx:
    """The parts of a Context the Ganeti cookbooks use."""

    def __init__(self, config: Section, *, dry_run: bool = False, clusters: dict[str, FakeCluster] | None = None,
                 netbox: FakeNetBox | None = None, remote: FakeRemote | None = None, abort: bool = False) -> None:
        """Serve these fakes; abort makes every confirmation answer "abort"."""
        self.config = config
        self.dry_run = dry_run
        self.changes = ChangeLog(dry_run=dry_run)
        self.clusters = clusters or {}
        self._netbox = netbox
        self._remote = remote
        self.abort = abort
        self.confirmations: list[str] = []
        self.locks: list[str] = []

    def ganeti(self, name: str) -> FakeCluster:
        """The fake cluster of that name."""
        return self.clusters[name]

    def netbox(self, read_write: bool = False) -> FakeNetBox:
        """The fake NetBox."""
        assert self._netbox is not None, "this test gave no NetBox"
        return self._netbox

    def remote(self) -> FakeRemote:
        """The fake remote."""
        assert self._remote is not None, "this test gave no remote"
        return self._remote

    def confirm(self, message: str) -> None:
        """Record the question; answer go, or abort."""
        self.confirmations.append(message)
        if self.abort:
            raise AbortError(f"aborted by the operator at: {message}")

    @contextmanager
    def lock(self, name: str, concurrency: int = 1, ttl: int | None = None) -> Iterator[None]:
        """Record the lock name."""
        self.locks.append(name)
        yield
