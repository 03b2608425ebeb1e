"""The names of every lock and the one way to take several resource locks at once, in a fixed global order.

Lock keys (what :class:`libcluster.locks.Locks` holds):

- ``cookbooks/NAME[:suffix]``: the runner's automatic lock of a run (:func:`runner_lock`);
- ``custom/NAME``: a lock cookbook code takes by name with ``ctx.lock(NAME)`` (:func:`custom_lock`);
- ``ganeti/CLUSTER``, ``ganeti/CLUSTER/group/GROUP``, ``ganeti/CLUSTER/node/NODE``,
  ``ganeti/CLUSTER/instance/FQDN``: resource locks of a Ganeti cluster and of what is in it
  (:func:`cluster_lock`, :func:`group_lock`, :func:`node_lock`, :func:`instance_lock`). Every cookbook
  that changes an instance (makevm creating it, changedisk, reboot-vm, a drain moving it) holds its
  instance lock; the sync and the hooks agent leave an instance alone while it is held.

Deadlocks: :func:`acquire` takes resource locks in one global order (cluster, groups, nodes, instances;
by name within a kind), and refuses to take a resource lock that sorts before one the process already
holds, so two runs taking overlapping sets can wait for each other but never in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libcluster.locks import LockError

if TYPE_CHECKING:
    from libcluster.context import Context
    from libcluster.locks import Backend, Locks

RUNNER_PREFIX = "cookbooks/"
"""Keys of the runner's automatic per-run locks."""
CUSTOM_PREFIX = "custom/"
"""Keys of the locks cookbook code takes by name (``ctx.lock``)."""
RESOURCE_PREFIX = "ganeti/"
"""Keys of the resource locks (cluster, group, node, instance)."""
KINDS = ("cluster", "group", "node", "instance")
"""Resource kinds in the order they are taken."""


def runner_lock(cookbook: str, suffix: str = "") -> str:
    """The runner's lock of a run of cookbook (``cookbooks/sre.ganeti.makevm:vm1.example.org``)."""
    return f"{RUNNER_PREFIX}{cookbook}" + (f":{suffix}" if suffix else "")


def custom_lock(name: str) -> str:
    """The key of a lock cookbook code takes by name (``ctx.lock(name)``)."""
    return f"{CUSTOM_PREFIX}{name}"


@dataclass(frozen=True, order=True)
class Resource:
    """One lockable Ganeti object; instances sort in the global lock order (kind, cluster, name)."""

    rank: int
    """Position of the kind in KINDS."""
    cluster: str
    name: str

    @property
    def kind(self) -> str:
        """cluster, group, node or instance."""
        return KINDS[self.rank]

    @property
    def key(self) -> str:
        """The lock key."""
        if self.kind == "cluster":
            return f"{RESOURCE_PREFIX}{self.cluster}"
        return f"{RESOURCE_PREFIX}{self.cluster}/{self.kind}/{self.name}"

    @classmethod
    def of(cls, kind: str, cluster: str, name: str = "") -> Resource:
        """The resource of that kind; ValueError for an empty name or one holding '/' (it would alias a key)."""
        if kind not in KINDS:
            raise ValueError(f"unknown resource kind {kind!r}: expected one of {', '.join(KINDS)}")
        named = {"cluster": cluster} if kind == "cluster" else {"cluster": cluster, kind: name}
        for what, value in named.items():
            if not value or "/" in value or value != value.strip():
                raise ValueError(f"invalid {what} name {value!r} for a {kind} lock")
        return cls(KINDS.index(kind), cluster, name if kind != "cluster" else "")

    @classmethod
    def from_key(cls, key: str) -> Resource | None:
        """The resource a lock key names; None for keys that are not resource locks."""
        if not key.startswith(RESOURCE_PREFIX):
            return None
        parts = key[len(RESOURCE_PREFIX):].split("/")
        if len(parts) == 1:
            return cls.of("cluster", parts[0])
        if len(parts) == 3 and parts[1] in KINDS[1:]:
            return cls.of(parts[1], parts[0], parts[2])
        return None


def cluster_lock(cluster: str) -> str:
    """The lock of a whole cluster (e.g. renewing its crypto, adding a node)."""
    return Resource.of("cluster", cluster).key


def group_lock(cluster: str, group: str) -> str:
    """The lock of a node group of cluster."""
    return Resource.of("group", cluster, group).key


def node_lock(cluster: str, node: str) -> str:
    """The lock of a node of cluster (drain, reboot, remove)."""
    return Resource.of("node", cluster, node).key


def instance_lock(cluster: str, fqdn: str) -> str:
    """The lock of an instance of cluster: held by every cookbook creating or changing it."""
    return Resource.of("instance", cluster, fqdn).key


def resources(
    cluster: str,
    *,
    whole_cluster: bool = False,
    groups: Iterable[str] = (),
    node: str | None = None,
    nodes: Iterable[str] = (),
    instances: Iterable[str] = (),
) -> list[Resource]:
    """The resources named, without duplicates, in the global lock order."""
    wanted = {Resource.of("group", cluster, group) for group in groups}
    wanted |= {Resource.of("node", cluster, name) for name in [*([node] if node else []), *nodes]}
    wanted |= {Resource.of("instance", cluster, fqdn) for fqdn in instances}
    if whole_cluster:
        wanted.add(Resource.of("cluster", cluster))
    return sorted(wanted)


def not_held(locks: Locks, wanted: list[Resource]) -> list[Resource]:
    """Of wanted, those this process does not hold yet; LockError if taking them would break the global order.

    A resource lock already held (by this run or the run that called it) is not taken again: a nested
    cookbook working on its caller's instance does not wait for its caller.
    """
    held = {resource for resource in map(Resource.from_key, locks.held_keys()) if resource is not None}
    new = [resource for resource in wanted if resource not in held]
    if new and held and new[0] < max(held):
        raise LockError(f"taking lock {new[0].key} while holding {max(held).key} breaks the global lock order "
                        "(two runs could deadlock): take them together with one resources.acquire() call")
    return new


@contextmanager
def acquire(
    ctx: Context,
    cluster: str,
    *,
    whole_cluster: bool = False,
    groups: Iterable[str] = (),
    node: str | None = None,
    nodes: Iterable[str] = (),
    instances: Iterable[str] = (),
    concurrency: int = 1,
) -> Iterator[list[str]]:
    """Hold the named resource locks of cluster (taken in the global order, each journaled as a ``lock`` line)
    for the with-block; yields their keys.

    E.g. a drain: ``with resources.acquire(ctx, cluster, node=node, instances=names): ...``. Raises LockError
    when one stays busy (those already taken are released) or the order would be broken; in dry-run the
    locks are only checked, as with every lock.
    """
    wanted = resources(cluster, whole_cluster=whole_cluster, groups=groups, node=node, nodes=nodes,
                       instances=instances)
    with ExitStack() as stack:
        for resource in not_held(ctx.locks, wanted):
            stack.enter_context(ctx.hold_lock(resource.key, concurrency=concurrency))
        yield [resource.key for resource in wanted]


def hold(
    ctx: Context,
    cluster: str,
    *,
    whole_cluster: bool = False,
    groups: Iterable[str] = (),
    node: str | None = None,
    nodes: Iterable[str] = (),
    instances: Iterable[str] = (),
    concurrency: int = 1,
) -> list[str]:
    """Take the resource locks as acquire() does and keep them until the run ends: the runner releases them after
    rollback and undo, so no other run touches the objects while they are half-way. Returns their keys."""
    return ctx.until_end.enter_context(acquire(ctx, cluster, whole_cluster=whole_cluster, groups=groups, node=node,
                                               nodes=nodes, instances=instances, concurrency=concurrency))


def instances_held(backend: Backend | None, cluster: str, names: Iterable[str]) -> set[str]:
    """Of the instance names of cluster, those whose instance lock a run holds (a cookbook is creating or changing
    them, e.g. makevm until it has recorded the VM): the sync and the hooks agent leave them alone for now."""
    if backend is None:
        return set()
    return {name for name in names if backend.holders(instance_lock(cluster, name))}
