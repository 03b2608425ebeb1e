"""What cookbooks read from Ganeti, typed: Instance, Node, Group and JobInfo, built from RAPI answers.

Each is a frozen dataclass made by ``from_rapi(dict)`` from a ``GET /2/<kind>/NAME`` (or bulk list) entry;
the fields cookbooks decide on are attributes with Ganeti's meaning spelled out (``node.primary_instances``
is RAPI's ``pinst_list``), and the whole answer stays in ``.raw`` for the rest (``raw["hvparams"]``).
Each model is also a read-only Mapping of ``.raw`` (``model["field"]``, ``model.get("field")``), so code
written against the RAPI dicts keeps working while it moves to the attributes. A record without a field
the model needs raises GanetiError naming it: a wrong answer must not read as an empty one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from libcluster.ganeti.errors import GanetiError
from libcluster.ganeti.jobs import FINALIZED, LogEntry, log_entries, timestamp

RUNNING = "running"
"""Instance status of a running instance (others: ADMIN_down, ERROR_down, ERROR_nodedown...)."""


def _required(raw: Mapping[str, Any], kind: str, key: str) -> Any:
    if raw.get(key) is None:
        what = f"{kind} {raw['name']}" if key != "name" and raw.get("name") else kind
        raise GanetiError(f"Ganeti answered a {what} record without '{key}'")
    return raw[key]


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value or ())


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class _RapiRecord(Mapping[str, Any]):
    """The RAPI answer a model was built from, also readable as a read-only mapping (``rec["pnode"]``)."""

    raw: dict[str, Any] = field(repr=False, compare=False)
    """The RAPI answer as received."""

    def __getitem__(self, key: str) -> Any:
        """The raw RAPI field key (KeyError when absent)."""
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        """The raw RAPI field names."""
        return iter(self.raw)

    def __len__(self) -> int:
        """How many raw RAPI fields."""
        return len(self.raw)


@dataclass(frozen=True)
class Instance(_RapiRecord):
    """One Ganeti instance (``GET /2/instances/NAME`` or a bulk entry); sizes in MiB."""

    name: str
    status: str
    """Ganeti's combined state: running, ADMIN_down, ERROR_down, ERROR_nodedown, ERROR_wrongnode..."""
    admin_state: str
    """What Ganeti is asked to keep it in: up, down or offline."""
    oper_state: bool | None
    """Whether the hypervisor runs it (None when its node did not answer)."""
    primary_node: str
    secondary_nodes: tuple[str, ...] = ()
    disk_template: str | None = None
    os: str | None = None
    memory: int | None = None
    """beparams memory (maxmem) in MiB."""
    vcpus: int | None = None
    disk_sizes: tuple[int, ...] = ()
    nic_ips: tuple[str | None, ...] = ()
    nic_macs: tuple[str, ...] = ()
    nic_links: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    uuid: str | None = None

    @classmethod
    def from_rapi(cls, raw: dict[str, Any]) -> Self:
        """An Instance from a RAPI instance record; GanetiError when name, status, admin_state or pnode is missing."""
        beparams = raw.get("beparams") or {}
        return cls(
            raw=raw,
            name=str(_required(raw, "instance", "name")),
            status=str(_required(raw, "instance", "status")),
            admin_state=str(_required(raw, "instance", "admin_state")),
            oper_state=raw.get("oper_state"),
            primary_node=str(_required(raw, "instance", "pnode")),
            secondary_nodes=_strings(raw.get("snodes")),
            disk_template=raw.get("disk_template"),
            os=raw.get("os"),
            memory=_optional_int(beparams.get("maxmem", beparams.get("memory"))),
            vcpus=_optional_int(beparams.get("vcpus")),
            disk_sizes=tuple(int(size) for size in raw.get("disk.sizes") or ()),
            nic_ips=tuple(None if ip is None else str(ip) for ip in raw.get("nic.ips") or ()),
            nic_macs=_strings(raw.get("nic.macs")),
            nic_links=_strings(raw.get("nic.links")),
            tags=_strings(raw.get("tags")),
            uuid=raw.get("uuid"),
        )

    @property
    def running(self) -> bool:
        """Whether Ganeti reports it running (status ``running``)."""
        return self.status == RUNNING

    @property
    def nodes(self) -> tuple[str, ...]:
        """The primary node, then the secondaries."""
        return (self.primary_node, *self.secondary_nodes)


@dataclass(frozen=True)
class Node(_RapiRecord):
    """One Ganeti node (``GET /2/nodes/NAME`` or a bulk entry); memory and disk in MiB, None when unknown."""

    name: str
    role: str
    """Ganeti's one-letter role: M (master), C (candidate), R (regular), D (drained), O (offline)."""
    group_uuid: str
    offline: bool = False
    drained: bool = False
    master_candidate: bool = False
    vm_capable: bool = True
    primary_instances: tuple[str, ...] = ()
    """Instances whose primary node this is (RAPI ``pinst_list``)."""
    secondary_instances: tuple[str, ...] = ()
    """Instances whose secondary (DRBD peer) node this is (RAPI ``sinst_list``)."""
    memory_total: int | None = None
    memory_free: int | None = None
    disk_total: int | None = None
    disk_free: int | None = None
    cpus: int | None = None
    primary_ip: str | None = None
    secondary_ip: str | None = None
    tags: tuple[str, ...] = ()
    uuid: str | None = None

    @classmethod
    def from_rapi(cls, raw: dict[str, Any]) -> Self:
        """A Node from a RAPI node record; GanetiError when name, role or group.uuid is missing."""
        return cls(
            raw=raw,
            name=str(_required(raw, "node", "name")),
            role=str(_required(raw, "node", "role")),
            group_uuid=str(_required(raw, "node", "group.uuid")),
            offline=bool(raw.get("offline")),
            drained=bool(raw.get("drained")),
            master_candidate=bool(raw.get("master_candidate")),
            vm_capable=bool(raw.get("vm_capable", True)),
            primary_instances=_strings(raw.get("pinst_list")),
            secondary_instances=_strings(raw.get("sinst_list")),
            memory_total=_optional_int(raw.get("mtotal")),
            memory_free=_optional_int(raw.get("mfree")),
            disk_total=_optional_int(raw.get("dtotal")),
            disk_free=_optional_int(raw.get("dfree")),
            cpus=_optional_int(raw.get("ctotal")),
            primary_ip=raw.get("pip"),
            secondary_ip=raw.get("sip"),
            tags=_strings(raw.get("tags")),
            uuid=raw.get("uuid"),
        )

    @property
    def master(self) -> bool:
        """Whether this is the cluster's master node."""
        return self.role == "M"

    @property
    def instances(self) -> tuple[str, ...]:
        """Every instance on the node: primaries, then secondaries."""
        return (*self.primary_instances, *self.secondary_instances)


@dataclass(frozen=True)
class Group(_RapiRecord):
    """One node group (``GET /2/groups/NAME`` or a bulk entry)."""

    name: str
    uuid: str
    nodes: tuple[str, ...] = ()
    """Names of the group's nodes (RAPI ``node_list``)."""
    alloc_policy: str | None = None
    ipolicy: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The effective instance policy (minmax specs, vcpu-ratio, disk templates...)."""
    tags: tuple[str, ...] = ()

    @classmethod
    def from_rapi(cls, raw: dict[str, Any]) -> Self:
        """A Group from a RAPI group record; GanetiError when name or uuid is missing."""
        return cls(
            raw=raw,
            name=str(_required(raw, "group", "name")),
            uuid=str(_required(raw, "group", "uuid")),
            nodes=_strings(raw.get("node_list")),
            alloc_policy=raw.get("alloc_policy"),
            ipolicy=raw.get("ipolicy") or {},
            tags=_strings(raw.get("tags")),
        )


@dataclass(frozen=True)
class JobInfo(_RapiRecord):
    """A job's fields as ``GET /2/jobs/ID`` answers them; times as POSIX seconds, None until reached."""

    id: int
    status: str | None = None
    """queued, waiting, running, success, error, canceling, canceled; None when Ganeti knows no such job."""
    summary: tuple[str, ...] = ()
    """One line per opcode, e.g. INSTANCE_CREATE(vm1.example.org)."""
    opstatus: tuple[str, ...] = ()
    opresult: tuple[Any, ...] = ()
    received: float | None = None
    started: float | None = None
    ended: float | None = None
    log: tuple[LogEntry, ...] = ()

    @classmethod
    def from_rapi(cls, raw: dict[str, Any]) -> Self:
        """A JobInfo from a RAPI job record; GanetiError when id is missing."""
        job_id = int(_required(raw, "job", "id"))
        return cls(
            raw=raw,
            id=job_id,
            status=raw.get("status"),
            summary=_strings(raw.get("summary")),
            opstatus=_strings(raw.get("opstatus")),
            opresult=tuple(raw.get("opresult") or ()),
            received=timestamp(raw.get("received_ts")),
            started=timestamp(raw.get("start_ts")),
            ended=timestamp(raw.get("end_ts")),
            log=tuple(entry for oplog in raw.get("oplog") or () for entry in log_entries(job_id, oplog)),
        )

    @property
    def exists(self) -> bool:
        """False when Ganeti answered for an unknown (or archived and purged) job id: every field null."""
        return self.status is not None

    @property
    def finished(self) -> bool:
        """Whether the job ended (success, error or canceled): nothing about it changes any more."""
        return self.status in FINALIZED
