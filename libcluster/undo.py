"""The undo stack of a run: each change registers how to take it back; rollback runs them in reverse.

An :class:`Undo` is data only (system, action, target, JSON-safe args), so the same step can be run by
the run's own rollback or, from the journal, by ``cookbook --recover`` in another process or host.
Executing one calls ``undo(action, args)`` on the matching client of a context (:func:`run`); a
cookbook's own undo (system ``cookbook``, ``args["cookbook"]`` naming it) calls the module-level
``undo(ctx, action, args)`` of that cookbook, found in the configured trees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from libcluster.errors import LibclusterError

if TYPE_CHECKING:
    from libcluster.config import Section

logger = logging.getLogger(__name__)

SYSTEMS = ("ganeti", "netbox", "dns", "remote", "cookbook")
"""Systems an undo step can target: a client with ``undo(action, args)``, or a cookbook's own ``undo()``."""
OUTCOMES = ("undone", "absent")
"""What a successful undo answers: it removed/restored the object, or there was nothing to do."""
ID_KEYS = ("id", "job_id", "netbox_id")
"""Keys of args that identify the object, in the order they are named in messages."""
REQUEST_TIMEOUT_DEFAULT = 30.0
"""Seconds a server may still act on a request, when the config section of its client sets no ``timeout``."""


class UndoError(LibclusterError):
    """An undo step cannot be run: unknown system, bad arguments, or a client answer that is not an outcome."""


@dataclass(frozen=True)
class Undo:
    """How to take back one change: ``client.undo(action, args)`` on the client of system."""

    system: str
    """``ganeti``, ``netbox``, ``dns``, ``remote`` or ``cookbook`` (args["cookbook"] names it)."""
    action: str
    """What the client does, e.g. ``instance-remove``, ``ip-address-delete``, ``rrset-restore``."""
    target: str
    """What a human calls the object: instance name, address, fqdn."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """JSON-safe: cluster, ids, lookups (dns_name, name, job_id), old values."""

    def __post_init__(self) -> None:
        """Refuse an unknown system now rather than at rollback time."""
        if self.system not in SYSTEMS:
            raise UndoError(f"undo of {self.target}: unknown system {self.system!r} (expected one of "
                            f"{', '.join(SYSTEMS)})")

    @property
    def kind(self) -> str:
        """The kind of object, for messages: args' ``kind``, else the action without its verb (``ip-address``)."""
        return str(self.args.get("kind") or self.action.rpartition("-")[0] or self.action)

    @property
    def object_id(self) -> str | None:
        """The object's id when known (NetBox id, job id), else None (it is looked up by name)."""
        for key in ID_KEYS:
            if self.args.get(key) not in (None, ""):
                return str(self.args[key])
        return None

    def describe(self) -> str:
        """One line: ``netbox ip-address-delete 10.0.0.5/24 (id=12)``."""
        ident = self.object_id
        return f"{self.system} {self.action} {self.target}" + (f" (id={ident})" if ident else "")

    def with_args(self, **learnt: Any) -> Undo:
        """A copy whose args also hold ids learnt while the change was made."""
        return Undo(self.system, self.action, self.target, {**self.args, **learnt})

    def as_dict(self) -> dict[str, Any]:
        """The step as written in the journal's ``intent`` line."""
        return {"system": self.system, "action": self.action, "target": self.target, "args": dict(self.args)}

    @classmethod
    def from_dict(cls, data: object) -> Undo:
        """Read a step back from a journal line (untrusted: checked); UndoError names what is wrong."""
        if not isinstance(data, dict):
            raise UndoError(f"undo step is not an object: {data!r:.80}")
        values = [data.get(key) for key in ("system", "action", "target")]
        if not all(isinstance(value, str) and value for value in values) or not isinstance(data.get("args", {}), dict):
            raise UndoError(f"undo step needs system, action and target strings and an args object: {data!r:.120}")
        return cls(str(values[0]), str(values[1]), str(values[2]), dict(data.get("args") or {}))


@dataclass(frozen=True)
class UndoFailure:
    """An object rollback could not remove: what exit 93 names, one per line."""

    kind: str
    name: str
    id: str | None
    error: str

    def describe(self) -> str:
        """``left behind: ip-address 10.0.0.5/24 (id 12): <error>``."""
        return f"left behind: {self.kind} {self.name} (id {self.id or 'unknown'}): {self.error}"


class Clients(Protocol):
    """Where undo steps find their clients: a :class:`libcluster.context.Context`."""

    def ganeti(self, cluster: str) -> Any:
        """The client of one Ganeti cluster."""

    def netbox(self, read_write: bool = False) -> Any:
        """The NetBox client."""

    def dns(self) -> Any:
        """The DNS client."""

    def remote(self) -> Any:
        """Commands on hosts."""

    def cookbook_module(self, name: str) -> Any:
        """The module of cookbook name, for its own ``undo(ctx, action, args)``."""


def client_for(undo: Undo, clients: Clients) -> Any:
    """The client that runs undo: the Ganeti cluster of args["cluster"], read-write NetBox, DNS or remote."""
    if undo.system == "ganeti":
        cluster = undo.args.get("cluster")
        if not isinstance(cluster, str) or not cluster:
            raise UndoError(f"undo {undo.describe()}: args have no 'cluster'")
        return clients.ganeti(cluster)
    if undo.system == "netbox":
        return clients.netbox(read_write=True)
    if undo.system == "dns":
        return clients.dns()
    return clients.remote()


def run(undo: Undo, clients: Clients) -> str:
    """Execute one undo step through its client; returns ``undone`` or ``absent``, raises on failure."""
    if undo.system == "cookbook":
        name = undo.args.get("cookbook")
        function = getattr(clients.cookbook_module(str(name)), "undo", None) if isinstance(name, str) else None
        if function is None:
            raise UndoError(f"undo {undo.describe()}: args name no cookbook with an undo(ctx, action, args) function")
        outcome = function(clients, undo.action, undo.args)
    else:
        outcome = client_for(undo, clients).undo(undo.action, undo.args)
    if outcome not in OUTCOMES:
        raise UndoError(f"undo {undo.describe()}: the client answered {outcome!r}, not one of {', '.join(OUTCOMES)}")
    return str(outcome)


def request_timeout(config: Section, system: str, args: Mapping[str, Any]) -> float:
    """The request timeout (``timeout``) of the client of system (a Ganeti one: of args' cluster): how long its
    server may take to act on a request, e.g. a RAPI create whose connection died with the run; 0 for systems
    no server acts for (remote, cookbook)."""
    if system == "ganeti" and config.has("ganeti"):
        clusters = config.section("ganeti").section("clusters", {})
        cluster = str(args.get("cluster", ""))
        if cluster in set(clusters):
            return clusters.section(cluster).float("timeout", REQUEST_TIMEOUT_DEFAULT)
    if system in ("netbox", "dns") and config.has(system):
        return config.section(system).float("timeout", REQUEST_TIMEOUT_DEFAULT)
    return REQUEST_TIMEOUT_DEFAULT if system in ("ganeti", "netbox", "dns") else 0.0


Recorder = Callable[[int, str, str], None]
"""Journals one executed step: (seq, status ``undone``/``absent``/``failed``, error text)."""
Registrar = Callable[[Undo], int]
"""Journals an undo pushed without a change of its own and returns its seq."""


class UndoStack:
    """``ctx.undo``: the undo steps of a run's changes, run in reverse order by rollback."""

    def __init__(self, clients: Clients, *, recorder: Recorder | None = None, registrar: Registrar | None = None,
                 recheck: Callable[[Undo], float] | None = None, enabled: bool = True) -> None:
        """clients run the steps; recorder journals each executed step; registrar journals custom pushes; recheck
        gives the seconds after which an unsure step found absent is looked up again (its request timeout)."""
        self._clients = clients
        self._recorder = recorder
        self._registrar = registrar
        self._recheck = recheck
        self.enabled = enabled
        """False for converging cookbooks (sync): changes are journaled, nothing is undone."""
        self._steps: list[tuple[int | None, Undo, bool]] = []
        self._lock = threading.Lock()

    def push(self, undo: Undo, *, seq: int | None = None, unsure: bool = False) -> None:
        """Register the undo of a change just made; a push without seq (custom undo) is journaled first. unsure:
        the change's answer was lost (``maybe``), so its server may still act on the request after a lookup."""
        if not self.enabled:
            return
        if seq is None and self._registrar is not None:
            seq = self._registrar(undo)
        with self._lock:
            self._steps.append((seq, undo, unsure))

    @property
    def steps(self) -> list[tuple[int | None, Undo]]:
        """The registered steps (seq, undo) in the order they were pushed."""
        with self._lock:
            return [(seq, undo) for seq, undo, _ in self._steps]

    def rollback(self) -> list[UndoFailure]:
        """Run every step in reverse order, each independently; journal each; return what was left behind.

        An unsure step its lookup found absent is looked up once more after its request timeout (recheck): a
        server that was hung acts on the requests queued for it when it is back, possibly after answering the
        lookup, so a first "absent" does not prove the write was never made."""
        with self._lock:
            steps, self._steps = self._steps, []
        failures: list[UndoFailure] = []
        again: list[tuple[int | None, Undo]] = []
        for seq, undo, unsure in reversed(steps):
            looked_twice = unsure and self._recheck is not None
            if not self._undo(seq, undo, failures, final=not looked_twice):
                again.append((seq, undo))
        if again and self._recheck is not None:
            wait = max(self._recheck(undo) for _, undo in again)
            logger.info("%d change(s) whose answer was lost not found: looking again in %.0f s, in case their "
                        "server acts on a request still queued", len(again), wait)
            time.sleep(wait)
            for seq, undo in again:
                self._undo(seq, undo, failures, final=True)
        return failures

    def _undo(self, seq: int | None, undo: Undo, failures: list[UndoFailure], *, final: bool) -> bool:
        """Run one step, journal it, add a failure; False (nothing journaled) if not final and it was absent."""
        logger.info("Undoing %s", undo.describe())
        try:
            status, error = run(undo, self._clients), ""
        except Exception as exc:  # each step independent: one failing does not stop the others
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            logger.debug("Traceback of the undo of %s", undo.describe(), exc_info=True)
            failures.append(UndoFailure(undo.kind, undo.target, undo.object_id, error))
        if status == "absent" and not final:
            return False
        if self._recorder is not None and seq is not None:
            try:
                self._recorder(seq, status, error)
            except LibclusterError as exc:
                logger.error("Undo of %s (%s) not journaled: %s", undo.describe(), status, exc)
        return True
