"""The steps of a node's maintenance, shared by sre.ganeti.drain-node and sre.ganeti.reboot-nodes: check, lock,
drain, move the primaries (and with full the secondaries) away, reboot and wait for the node, verify-disks,
undrain. Built on libcluster.ganeti.nodes (through GanetiCluster); each step's time is kept for the bench.

The cookbooks turn the run's undo stack off: a drain's rollback is an undrain (:func:`undrain_and_report`), moved
instances stay where Ganeti put them (migrating them back to a drained node would fail), and a rolling reboot
leaves the node that failed drained.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

from libcluster import parallel, resources
from libcluster.context import Context
from libcluster.errors import LibclusterError
from libcluster.ganeti import nodes as node_ops
from libcluster.ganeti.cluster import GanetiCluster
from libcluster.ganeti.errors import GanetiError
from libcluster.ganeti.jobs import JobHandle
from libcluster.ganeti.nodes import Move, MoveAction, NodePlan, NodeStateError, Role

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class NodeRun:
    """What one node's maintenance did (or, in dry-run, would do), and how long each step took."""

    node: str
    plan: NodePlan | None = None
    moved: dict[str, str] = field(default_factory=dict)
    """instance -> the node it is on now (in dry-run: the node Ganeti's check chose)."""
    stopped: list[str] = field(default_factory=list)
    secondaries: list[str] = field(default_factory=list)
    boot_id: tuple[str | None, str | None] = (None, None)
    """(before, after) the reboot."""
    timings: dict[str, float] = field(default_factory=dict)
    """step -> seconds: check, drain, moves, secondaries, reboot (from the reboot command until the node is back),
    verify_disks, undrain."""
    drained: bool = False

    def lines(self) -> list[str]:
        """What happened, one line each (for the terminal and the report)."""
        out = [f"{name}: now on {node}" for name, node in sorted(self.moved.items())]
        out += [f"{name}: stopped (--shutdown-plain)" for name in self.stopped]
        if self.secondaries:
            out.append(f"secondaries evacuated: {', '.join(self.secondaries)}")
        if self.boot_id[1] is not None and self.boot_id[1] != self.boot_id[0]:
            out.append(f"rebooted: boot id {self.boot_id[0]} -> {self.boot_id[1]}")
        return out


class KeyGate:
    """Keeps Ganeti's SSH key distribution away from rebooting nodes when several nodes are worked on at once
    (reboot-nodes --groups-in-parallel): a role change (drain, undrain: Ganeti 3.0 adds or removes a master
    candidate's SSH key on every node, and auto-promotes) never runs while one of them is down, and none goes down
    while a role change runs. Ganeti skips a node it cannot reach when it distributes a key, so that node lacks a
    candidate's key afterwards (gnt-cluster verify: ENODESSH): seen on the lab with two groups in parallel.
    Role changes may overlap each other, and reboots each other. Once a node did not come back (left_down), every
    role change is refused instead."""

    def __init__(self) -> None:
        """No role change and no reboot in progress."""
        self._changed = threading.Condition()
        self._active = {"role": 0, "down": 0}
        self._left_down: list[str] = []

    def role_change(self) -> AbstractContextManager[None]:
        """Held around a node's role jobs: waits until no node is down; GanetiError (nothing sent) once one did not
        come back."""
        return self._hold("role", "down")

    def node_down(self) -> AbstractContextManager[None]:
        """Held from a node's reboot until it is back: waits until no role change runs."""
        return self._hold("down", "role")

    def left_down(self, node: str) -> None:
        """node did not come back from its reboot: from now on a role change is refused, not run without it."""
        with self._changed:
            self._left_down.append(node)
            self._changed.notify_all()

    @contextmanager
    def _hold(self, mine: str, other: str) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._active[other] == 0 or (mine == "role" and bool(self._left_down)))
            if mine == "role" and self._left_down:
                raise GanetiError(f"no role change while {', '.join(self._left_down)} is down (Ganeti would leave it "
                                  "out when it adds or removes a master candidate's SSH key)")
            self._active[mine] += 1
        try:
            yield
        finally:
            with self._changed:
                self._active[mine] -= 1
                self._changed.notify_all()


known = node_ops.known
"""The node as configured, or NodeStateError naming the cluster it is not in (libcluster.ganeti.nodes.known)."""


def check(cluster: GanetiCluster, node: str, *, shutdown_plain: bool = False, master: bool = False,
          offer_shutdown: bool = True) -> NodePlan:
    """Refuse what cannot be drained before anything changes (NodeStateError): an unknown node, the master (use
    sre.ganeti.master-failover; master=True checks it as it will be after a failover), an offline node, a primary
    Ganeti's dry-run check refuses (a file/plain one without shutdown_plain: the list with the changedisk
    command, and --shutdown-plain named when offer_shutdown), a group without room for its running primaries
    (N+1). Returns the checked plan."""
    target = known(cluster, node)
    role = Role.of(target)
    if role is Role.MASTER and not master:
        raise NodeStateError(f"{node} is the master of cluster {cluster.name}: fail the master over to a candidate "
                             f"first (cookbook sre.ganeti.master-failover --cluster {cluster.name})")
    if role is Role.OFFLINE:
        raise NodeStateError(f"{node} is offline in cluster {cluster.name}: nothing can be moved from it")
    instances = cluster.instances()
    pending = node_ops.submit_move_checks(cluster, node, target.group_uuid, instances)
    room = node_ops.room_problems(cluster.name, node, cluster.nodes(), instances)  # read while Ganeti checks
    plan = pending.result()
    blocked = [move for move in plan.blocked if not (shutdown_plain and move.action is MoveAction.REFUSED)]
    if blocked:
        raise NodeStateError(f"{node}: {len(blocked)} primary instance(s) cannot move:\n  "
                             + "\n  ".join(move.describe() for move in blocked)
                             + ("\n(or stop the file/plain ones explicitly with --shutdown-plain)"
                                if offer_shutdown and any(move.action is MoveAction.REFUSED for move in blocked)
                                else ""))
    if room:
        raise NodeStateError("; ".join(room))
    return plan


def empty(ctx: Context, cluster: GanetiCluster, node: str, *, full: bool = False, shutdown_plain: bool = False,
          master: bool = False, plan: NodePlan | None = None, into: NodeRun | None = None,
          gate: KeyGate | None = None) -> NodeRun:
    """check() (unless its plan is given; master as for check()), take the node's and its instances' locks (until
    the run ends), drain it, move each primary (migrate a running one, fail a stopped one over; all queued behind
    the drain, then waited for), stop the file/plain ones with shutdown_plain, and with full evacuate its
    secondaries (DRBD). In dry-run only Ganeti's checks run. Each step is noted in into as it is done, so a
    caller's rollback knows the node is drained when a later step fails. gate: the KeyGate of nodes worked on at
    once (the drain's role change is held in it)."""
    run = into or NodeRun(node)
    started = time.monotonic()
    run.plan = plan or check(cluster, node, shutdown_plain=shutdown_plain, master=master)
    secondaries = sorted(cluster.node(node).secondary_instances) if full else []
    resources.hold(ctx, cluster.name, node=node, instances=[m.instance for m in run.plan.moves] + secondaries)
    run.timings["check"] = time.monotonic() - started
    run.drained = True  # from the drain's first job on: a rollback undrains (undrain leaves a node not drained alone)
    started = time.monotonic()
    with gate.role_change() if gate else nullcontext():
        if master and ctx.dry_run:  # a real run fails the master over first: its drain can only be described
            drain = node_ops.PendingRoleChange(node_ops.RoleChange(node, Role.CANDIDATE, Role.DRAINED, None), (
                cluster.set_node_role(node, Role.DRAINED.value, auto_promote=True),))
        else:
            drain = node_ops.submit_take_out(cluster, node, Role.DRAINED)
        # the moves are queued now, after the drain's jobs in Ganeti's queue (job dependencies: a failed drain job
        # fails them, Ganeti runs none), none waited for before the last is sent: no round trip between the drain
        # and the moves
        after = [job.id for job in drain.jobs if job.id is not None]  # the role job and the candidate tag's
        jobs: list[tuple[Move, JobHandle]] = []
        try:
            for move in run.plan.moves:
                if ctx.dry_run and move.action is not MoveAction.REFUSED:
                    run.moved[move.instance] = str(move.target)
                elif move.action is not MoveAction.REFUSED:
                    # to the node Ganeti's check chose: a choice made now would ask every node of the cluster, and
                    # fail while a node of another group reboots (reboot-nodes --groups-in-parallel)
                    jobs.append((move, cluster.move_primary(move.instance, target_node=move.target, depends=after)))
            run.drained = drain.wait().new is Role.DRAINED
        except BaseException:  # nothing sent is left unobserved: the drain's jobs and the queued moves end first
            drain.settle()
            _wait_moves(run, jobs)
            raise
    run.timings["drain"] = time.monotonic() - started
    started = time.monotonic()
    jobs += [(move, cluster.shutdown_instance(move.instance)) for move in run.plan.moves
             if move.action is MoveAction.REFUSED]  # stopped only once the node is drained
    failed = _wait_moves(run, jobs)
    run.timings["moves"] = time.monotonic() - started
    if failed:
        raise GanetiError(f"{node}: {len(failed)} of {len(jobs)} move(s) failed: " + "; ".join(map(str, failed)))
    if secondaries:
        _timed(run, "secondaries", lambda: cluster.evacuate_node(node, mode="secondary-only").wait())
        run.secondaries = secondaries
    return run


def _wait_moves(run: NodeRun, jobs: list[tuple[Move, JobHandle]]) -> list[GanetiError]:
    """Wait for every move (or stop) job, noting in run where each instance is; the failures (the other jobs run on:
    they are waited for too, so that the report says where all are)."""
    failed = []
    for move, job in jobs:
        try:
            result = job.wait()
        except GanetiError as exc:
            failed.append(exc)
            continue
        if move.action is MoveAction.REFUSED:
            run.stopped.append(move.instance)
        else:
            run.moved[move.instance] = str(result.value)
    return failed


def reboot(ctx: Context, cluster: GanetiCluster, run: NodeRun, *, timeout: float,
           verify_timeout: float = 300.0, gate: KeyGate | None = None) -> None:
    """Reboot the node (`reboot` over SSH), wait until its noded answers with a new boot id, then wait for its SSH
    while verify-disks runs until clean (on the master: the node's noded is all it needs); all of it held in gate
    (KeyGate) when given. In dry-run the reboot is only recorded."""
    with gate.node_down() if gate else nullcontext():
        _reboot(ctx, cluster, run, timeout=timeout, verify_timeout=verify_timeout, gate=gate)


def _reboot(ctx: Context, cluster: GanetiCluster, run: NodeRun, *, timeout: float, verify_timeout: float,
            gate: KeyGate | None) -> None:
    before = cluster.boot_ids([run.node]).get(run.node)
    started = time.monotonic()
    ctx.remote().hosts([run.node]).run_sync("reboot", is_safe=False, timeout=30, ok_codes=[0, 255])
    if ctx.dry_run:
        run.boot_id = (before, before)
        return
    with _down_if_not_back(gate, run.node):
        run.boot_id = (before, cluster.wait_node_back(run.node, before, timeout=timeout, interval=0.1, ssh=False))
    group = run.plan.group_uuid if run.plan else None  # the disks of the node's instances are in its group

    def ssh() -> None:
        with _down_if_not_back(gate, run.node):
            cluster.wait_ssh(run.node, timeout=max(started + timeout - time.monotonic(), 0.0), interval=0.1)
        run.timings["reboot"] = time.monotonic() - started  # from the reboot command on, as the node's own restart

    def disks() -> None:
        _timed(run, "verify_disks", lambda: cluster.verify_disks_until_clean(timeout=verify_timeout, interval=2.0,
                                                                             group=group))

    try:
        parallel.gather(lambda **_: None, ssh=ssh, verify_disks=disks)
    except ExceptionGroup as group_failed:
        ours, other = group_failed.split((LibclusterError, OSError))
        if other is not None or ours is None:
            raise
        raise GanetiError(f"{run.node}: " + "; ".join(map(str, ours.exceptions))) from group_failed


@contextmanager
def _down_if_not_back(gate: KeyGate | None, node: str) -> Iterator[None]:
    """A wait for a rebooted node: when it fails (the node is not back), gate learns the node stays down."""
    try:
        yield
    except GanetiError:
        if gate:
            gate.left_down(node)
        raise


def undrain(cluster: GanetiCluster, run: NodeRun, *, gate: KeyGate | None = None) -> None:
    """Return the node to service: master candidate again if it was one (a rolling reboot's last step); the role
    change held in gate (KeyGate) when given."""
    with gate.role_change() if gate else nullcontext():
        _timed(run, "undrain", lambda: cluster.undrain(run.node))
    run.drained = False


def undrain_and_report(cluster: GanetiCluster, run: NodeRun) -> list[str]:
    """undrain(), and say where each moved instance is now: the rollback of a drain (drain-node, removenode)."""
    undrain(cluster, run)
    lines = [f"{run.node} undrained"]
    for name in sorted(run.moved):
        try:
            lines.append(f"{name}: on {cluster.instance(name).primary_node}")
        except GanetiError as exc:  # a report line must not hide the others
            lines.append(f"{name}: placement unknown ({exc})")
    return lines


def verify(cluster: GanetiCluster, nodes: list[str]) -> list[str]:
    """`gnt-cluster verify` (the cluster's ignored codes ignored): the errors about nodes, which fail the run; errors
    about other objects are logged as warnings (another run's business). Skipped in dry-run."""
    if cluster.dry_run:
        return []
    result = cluster.commands.cluster_verify()
    mine = [f"{issue.code} {issue.item}: {issue.message}" for issue in result.errors if issue.item in nodes]
    for issue in result.errors:
        if issue.item not in nodes:
            logger.warning("cluster verify: %s %s %s: %s", issue.code, issue.item_type, issue.item, issue.message)
    return mine


def _timed(run: NodeRun, step: str, call: Callable[[], T]) -> T:
    started = time.monotonic()
    try:
        return call()
    finally:
        run.timings[step] = time.monotonic() - started
