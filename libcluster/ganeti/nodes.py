"""Node maintenance on one cluster: roles in one vocabulary, drain/undrain that keep a master candidate's role,
a truthful dry-run of a node's moves (one Ganeti dry-run job per instance), N+1 of a group without a node,
and waiting for a rebooted node (SSH, noded, new boot id).

Ganeti's dry-run of a node-level migrate or evacuate checks nothing per instance (it answers success for a
node holding `file` instances, which then fail for real): :func:`plan_moves` checks each primary's own move.
The functions take the cluster client; GanetiCluster exposes them as methods (``cluster.drain(node)``...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from libcluster import capacity
from libcluster.errors import LibclusterError
from libcluster.ganeti import models
from libcluster.ganeti.commands import VerifyDisksResult
from libcluster.ganeti.errors import GanetiError, RapiNotFoundError
from libcluster.ganeti.jobs import Job, JobHandle
from libcluster.ganeti.models import Instance, Node
from libcluster.ganeti.templates import INT_MIRROR, MIRRORED
from libcluster.remote_results import HostStatus

if TYPE_CHECKING:
    from libcluster.ganeti.cluster import GanetiCluster

logger = logging.getLogger(__name__)

CANDIDATE_TAG = "cookbooks:was-master-candidate"
"""Node tag drain()/set_offline() put on a master candidate they take out, so that undrain()/set_online() (in
this run or a later one) make it a candidate again; removed when they do."""
DOWN_DEVICE_STATUS = "failed"
"""The NetBox status sre.ganeti.node-down gives a dead node's device; sre.ganeti.addnode --readd makes it active."""


class NodeStateError(LibclusterError):
    """A node is in a state the operation refuses (the master for a drain, an offline node...): nothing sent."""


class Role(Enum):
    """A node's role, the one vocabulary: the value is RAPI's word (``/2/nodes/N/role``), ``letter`` the letter of
    ``/2/nodes/N`` and `gnt-node list` (M, C, R, D, O)."""

    MASTER = "master"
    CANDIDATE = "master-candidate"
    REGULAR = "regular"
    DRAINED = "drained"
    OFFLINE = "offline"

    @property
    def letter(self) -> str:
        """Ganeti's one-letter role."""
        return _LETTERS[self]

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role of a RAPI word or letter (``master-candidate`` or ``C``); ValueError names the valid ones."""
        for role in cls:
            if value in (role.value, role.letter):
                return role
        valid = ", ".join(f"{role.value} ({role.letter})" for role in cls)
        raise ValueError(f"not a Ganeti node role: {value!r} (one of {valid})")

    @classmethod
    def of(cls, node: Node) -> Role:
        """A node model's role."""
        return cls.parse(node.role)


_LETTERS = {Role.MASTER: "M", Role.CANDIDATE: "C", Role.REGULAR: "R", Role.DRAINED: "D", Role.OFFLINE: "O"}


@dataclass(frozen=True)
class RoleChange:
    """What drain/undrain/set_offline/set_online did (or, in dry-run, would do) to a node's role."""

    node: str
    old: Role
    new: Role
    job_id: int | None
    """The role job's id; None when nothing was sent (no change needed, or dry-run)."""

    @property
    def changed(self) -> bool:
        """Whether the role differs (planned in dry-run)."""
        return self.old is not self.new


class MoveAction(Enum):
    """How a primary instance leaves its node: migrated (running), failed over (stopped), or not at all."""

    MIGRATE = "migrate"
    FAILOVER = "failover"
    REFUSED = "refused"


@dataclass(frozen=True)
class Move:
    """One primary instance's move off a node: the action, the node Ganeti chose (or put it on), or why not."""

    instance: str
    action: MoveAction
    target: str | None = None
    """The node Ganeti chose in its dry-run check, or where the instance is after a real move."""
    error: str | None = None
    """Why the instance cannot move (template, or the error of Ganeti's own check); None when it can."""
    job_id: int | None = None
    """The dry-run check's (or the real move's) job id."""

    @property
    def ok(self) -> bool:
        """Whether the instance can move (or moved)."""
        return self.error is None

    def describe(self) -> str:
        """One line: `vm1: migrate -> node2`, or `vm1: cannot move: why`."""
        if not self.ok:
            verb = "move" if self.action is MoveAction.REFUSED else self.action.value
            return f"{self.instance}: cannot {verb}: {self.error}"
        return f"{self.instance}: {self.action.value} -> {self.target or '(Ganeti chooses)'}"


@dataclass(frozen=True)
class NodePlan:
    """The moves of every primary instance of a node, each checked by its own Ganeti dry-run job."""

    node: str
    moves: tuple[Move, ...]
    group_uuid: str | None = None
    """The node's group, whose disks a reboot's verify-disks checks (None when not read)."""

    @property
    def ok(self) -> bool:
        """Whether every primary can move."""
        return all(move.ok for move in self.moves)

    @property
    def blocked(self) -> tuple[Move, ...]:
        """The moves that cannot be made, with their reason."""
        return tuple(move for move in self.moves if not move.ok)

    def lines(self) -> list[str]:
        """One line per instance (the plan a dry-run prints)."""
        return [move.describe() for move in self.moves] or [f"{self.node} has no primary instance"]


@dataclass(frozen=True)
class PendingPlan:
    """A node's move checks submitted to Ganeti and not yet waited for (submit_move_checks)."""

    node: str
    group_uuid: str
    checks: tuple[tuple[str, MoveAction, Job | str], ...]
    """(instance, action, its check job or why it cannot move), instances in name order."""

    def result(self) -> NodePlan:
        """Wait for each check: the node's plan."""
        moves = [Move(name, action, error=check) if isinstance(check, str) else _checked(name, action, check)
                 for name, action, check in self.checks]
        return NodePlan(self.node, tuple(moves), self.group_uuid)


def move_action(instance: Instance) -> MoveAction:
    """How the instance leaves its primary node: migrate when running, failover when stopped (a stopped instance
    cannot be migrated; its failover costs no downtime), refused for a template Ganeti cannot move (file, plain)."""
    if instance.disk_template not in MIRRORED:
        return MoveAction.REFUSED
    return MoveAction.MIGRATE if instance.admin_state == "up" else MoveAction.FAILOVER


def refusal(cluster_name: str, instance: Instance) -> str:
    """Why an instance of a non-mirrored template cannot leave its node, with the command that converts it."""
    return (f"disk template {instance.disk_template} cannot be migrated or failed over (only "
            f"{', '.join(sorted(MIRRORED))}): convert it first with `cookbook sre.ganeti.changedisk --cluster "
            f"{cluster_name} --disk-template sharedfile {instance.name}`")


def check_move(cluster: GanetiCluster, instance: Instance, *, target_node: str | None = None) -> Move:
    """Ask Ganeti to check the instance's move off its node (a dry-run migrate or failover job, in a real run too:
    it changes nothing, so it is journaled nowhere); the Move names the node Ganeti chose or Ganeti's error."""
    action = move_action(instance)
    if action is MoveAction.REFUSED:
        return Move(instance.name, action, error=refusal(cluster.name, instance))
    return _checked(instance.name, action, cluster.submit_move_check(instance.name, action.value,
                                                                     target_node=target_node))


def _checked(name: str, action: MoveAction, job: Job) -> Move:
    try:
        result = job.wait()
    except GanetiError as exc:
        return Move(name, action, error=str(exc), job_id=job.id)
    return Move(name, action, target=result.value, job_id=job.id)


def submit_move_checks(cluster: GanetiCluster, node: str, group_uuid: str,
                       instances: Sequence[Instance]) -> PendingPlan:
    """Submit the dry-run check of each primary instance of node (of group group_uuid; among instances, e.g. one
    bulk read) without waiting: the caller reads what it needs while Ganeti checks, then waits with result()."""
    checks: list[tuple[str, MoveAction, Job | str]] = []
    for instance in sorted((i for i in instances if i.primary_node == node), key=lambda i: i.name):
        action = move_action(instance)
        checks.append((instance.name, action, refusal(cluster.name, instance) if action is MoveAction.REFUSED
                       else cluster.submit_move_check(instance.name, action.value)))
    return PendingPlan(node, group_uuid, tuple(checks))


def plan_moves(cluster: GanetiCluster, node: str) -> NodePlan:
    """Each primary instance of node with its move checked by its own Ganeti dry-run job (all submitted, then
    waited for): the truthful dry-run of draining the node. Instances in name order; NodeStateError for an
    unknown node."""
    return submit_move_checks(cluster, node, known(cluster, node).group_uuid, cluster.instances()).result()


def move_primary(cluster: GanetiCluster, name: str, *, target_node: str | None = None,
                 depends: Sequence[int] = ()) -> Any:
    """Move one primary instance off its node the way it can go: migrate a running one, fail a stopped one over
    (the issue-14 single-instance writes, journaled with their undo). The job's value is the node it is on
    afterwards (in dry-run: the node Ganeti's check chose). target_node is for an externally mirrored instance
    (a DRBD one goes to its secondary, which Ganeti allows no target for); depends: jobs that must succeed first
    (e.g. the node's drain). NodeStateError for a template that cannot move."""
    instance = cluster.instance(name)
    action = move_action(instance)
    if action is MoveAction.REFUSED:
        raise NodeStateError(f"{name}: {refusal(cluster.name, instance)}")
    if instance.disk_template in INT_MIRROR:
        target_node = None
    if action is MoveAction.MIGRATE:
        return cluster.migrate_instance(name, target_node=target_node, depends=depends)
    return cluster.failover_instance(name, target_node=target_node, depends=depends)


# Roles ------------------------------------------------------------------------------------------------------


def known(cluster: GanetiCluster, node: str) -> models.Node:  # models.: Sphinx knows two Node classes
    """The node as configured (role, tags, group: node_config, no node asked), or NodeStateError naming the cluster
    it is not in (a typo, or a node of another cluster)."""
    try:
        return cluster.node_config(node)
    except RapiNotFoundError:
        raise NodeStateError(f"no node {node} in cluster {cluster.name}") from None


@dataclass(frozen=True)
class PendingRoleChange:
    """A take-out's jobs, submitted and not yet waited for (submit_take_out)."""

    change: RoleChange
    """The change as it will be once the jobs succeed (job_id: the role job's, None when nothing was sent)."""
    jobs: tuple[JobHandle, ...] = ()

    def wait(self) -> RoleChange:
        """Wait for every job, then raise the first failure (JobFailedError...): the role change done."""
        failures = self.settle()
        if failures:
            raise failures[0]
        return self.change

    def settle(self) -> list[GanetiError]:
        """Wait for every job, even after one failed (a job left running would change the node unobserved); their
        failures."""
        failures = []
        for job in self.jobs:
            try:
                job.wait()
            except GanetiError as exc:
                failures.append(exc)
        return failures


def take_out(cluster: GanetiCluster, node: str, role: Role) -> RoleChange:
    """Make node drained or offline (auto-promoting another candidate when the pool needs it), remembering a master
    candidate by CANDIDATE_TAG; waits for its jobs. The master is refused (fail it over first)."""
    return submit_take_out(cluster, node, role).wait()


def submit_take_out(cluster: GanetiCluster, node: str, role: Role) -> PendingRoleChange:
    """take_out() without waiting: the caller may queue jobs that depend on its jobs before waiting. NodeStateError
    (nothing sent) for the master or an offline node to drain."""
    if role not in (Role.DRAINED, Role.OFFLINE):
        raise ValueError(f"take_out: {role.value} is not drained or offline")
    current = known(cluster, node)
    old = Role.of(current)
    if old is Role.MASTER:
        raise NodeStateError(f"{node} is the master of cluster {cluster.name}: fail the master over to a candidate "
                             "first (sre.ganeti.master-failover)")
    if old is role or old is Role.OFFLINE:
        if old is not role:
            raise NodeStateError(f"{node} is offline in cluster {cluster.name}: bring it online first")
        return PendingRoleChange(RoleChange(node, old, old, None))
    # both jobs are submitted before either is waited for: one round trip less per node of a rolling reboot
    tagged = (cluster.add_tags("node", node, [CANDIDATE_TAG])
              if old is Role.CANDIDATE and CANDIDATE_TAG not in current.tags else None)
    changed = cluster.set_node_role(node, role.value, auto_promote=True)
    return PendingRoleChange(RoleChange(node, old, role, changed.id), (*([tagged] if tagged else []), changed))


def bring_back(cluster: GanetiCluster, node: str, role: Role) -> RoleChange:
    """Return a drained (or offline) node to service: master candidate again when drain/set_offline took it out as
    one (CANDIDATE_TAG, then removed), else regular (Ganeti promotes it itself when the candidate pool is short).
    A node that is not `role` is left as it is: a candidate that was never drained is never demoted."""
    if role not in (Role.DRAINED, Role.OFFLINE):
        raise ValueError(f"bring_back: {role.value} is not drained or offline")
    current = known(cluster, node)
    old = Role.of(current)
    if old is not role:
        logger.info("%s is %s, not %s: its role is left as it is", node, old.value, role.value)
        return RoleChange(node, old, old, None)
    was_candidate = CANDIDATE_TAG in current.tags
    new = Role.CANDIDATE if was_candidate else Role.REGULAR
    changed = cluster.set_node_role(node, new.value)
    if not was_candidate:
        return RoleChange(node, old, new, changed.wait().job_id)
    return RoleChange(node, old, new, _untagged_with(cluster, node, changed))


def readded(cluster: GanetiCluster, node: str) -> RoleChange:
    """The role of a node after `gnt-node add --readd` (which clears its offline and drained flags and lets Ganeti
    choose whether it is a candidate): master candidate again, the tag dropped, when drain/set_offline took it out
    as one (CANDIDATE_TAG); a node still offline (the readd skipped in dry-run) goes through bring_back()."""
    current = known(cluster, node)
    old = Role.of(current)
    if old is Role.OFFLINE:
        return bring_back(cluster, node, old)
    if CANDIDATE_TAG not in current.tags:
        return RoleChange(node, old, old, None)
    if old is not Role.REGULAR:
        cluster.remove_tags("node", node, [CANDIDATE_TAG]).wait()
        return RoleChange(node, old, Role.CANDIDATE, None)
    return RoleChange(node, old, Role.CANDIDATE,
                      _untagged_with(cluster, node, cluster.set_node_role(node, Role.CANDIDATE.value)))


def _untagged_with(cluster: GanetiCluster, node: str, changed: JobHandle) -> int | None:
    """Remove CANDIDATE_TAG alongside the role job `changed` (sent before it is waited for: one round trip less) and
    wait for both; the role job's id. When the role job failed, the tag is put back (the node is still to become a
    candidate again) and the failure raised."""
    untagged = cluster.remove_tags("node", node, [CANDIDATE_TAG])
    try:
        result = changed.wait()
    except GanetiError:
        try:
            untagged.wait()
        finally:
            cluster.add_tags("node", node, [CANDIDATE_TAG]).wait()
        raise
    untagged.wait()
    return result.job_id


# N+1, boot ids, verify-disks ----------------------------------------------------------------------------------


def n_plus_one(cluster: GanetiCluster, node: str) -> list[str]:
    """Why the other usable nodes of node's group cannot restart its running primaries (room_problems on one read
    of the nodes and the instances); empty when they can. NodeStateError for an unknown node."""
    return room_problems(cluster.name, node, cluster.nodes(), cluster.instances())


def room_problems(cluster_name: str, node: str, nodes: Sequence[Node], instances: Sequence[Instance]) -> list[str]:
    """Why the other usable nodes of node's group cannot restart its running primaries (first fit by memory, as
    libcluster.capacity computes N+1); empty when they can. Instances that cannot move are not counted here."""
    target = next((member for member in nodes if member.name == node), None)
    if target is None:
        raise NodeStateError(f"no node {node} in cluster {cluster_name}")
    members = [member for member in nodes if member.group_uuid == target.group_uuid]
    hosted = [instance for instance in instances if instance.primary_node in {m.name for m in members}]
    if node not in capacity.node_loss_failures(members, hosted):
        return []
    running = [i for i in hosted if i.primary_node == node and i.admin_state == "up" and i.disk_template in MIRRORED]
    need = sum(capacity.instance_memory(instance) for instance in running)
    free = {m.name: m.memory_free or 0 for m in members if m.name != node and not m.offline and not m.drained
            and m.vm_capable}
    others = ", ".join(f"{name} {capacity.format_mib(mib)}" for name, mib in sorted(free.items())) or "none"
    return [f"the other nodes of {node}'s group cannot hold its running primaries: they need "
            f"{capacity.format_mib(need)} ({len(running)} instances), free memory: {others}"]


def wait_node_back(cluster: GanetiCluster, node: str, old_boot_id: str | None, *, timeout: float,
                   interval: float = 0.5, ssh: bool = True, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until node's noded answers Ganeti (RAPI) with a boot id other than old_boot_id, then (unless not ssh:
    the caller waits for it with wait_ssh, e.g. while Ganeti already works with the node) until it answers SSH;
    return the new boot id. GanetiError on timeout, saying which of the two was still missing."""
    deadline = clock() + timeout
    while True:
        boot_id = cluster.boot_ids([node]).get(node)
        if boot_id is not None and boot_id != old_boot_id:
            break
        if clock() >= deadline:
            raise GanetiError(f"node {node} of cluster {cluster.name} is not back after {timeout:.0f}s: its noded "
                              f"reports no new boot id (boot id now {boot_id or 'unknown: noded does not answer'}, "
                              f"before {old_boot_id})")
        sleep(interval)
    if ssh:
        wait_ssh(cluster, node, timeout=max(deadline - clock(), 0.0), interval=interval, clock=clock, sleep=sleep)
    return str(boot_id)


def wait_ssh(cluster: GanetiCluster, node: str, *, timeout: float, interval: float = 0.5,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until node runs a command over SSH; GanetiError after timeout seconds."""
    deadline = clock() + timeout
    while not cluster.answers_ssh(node):
        if clock() >= deadline:
            raise GanetiError(f"node {node} of cluster {cluster.name} is not back: SSH does not answer (waited "
                              f"{timeout:.0f}s for it)")
        sleep(interval)


def verify_disks_until_clean(cluster: GanetiCluster, *, timeout: float, interval: float = 5.0,
                             group: str | None = None, clock: Callable[[], float] = time.monotonic,
                             sleep: Callable[[float], None] = time.sleep) -> VerifyDisksResult:
    """Run `gnt-cluster verify-disks` until it reports nothing to fix (it activates disks and resyncs mirrors, so
    a later run may be clean); skipped in dry-run. GanetiError with the last output on timeout."""
    deadline = clock() + timeout
    while True:
        result = cluster.commands.verify_disks(group=group)
        if result.skipped or result.ok:
            return result
        if clock() >= deadline:
            raise GanetiError(f"cluster {cluster.name}: verify-disks not clean after {timeout:.0f}s:\n{result.output}")
        sleep(interval)


def boot_ids(rows: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """node -> boot id from `/2/query/node` rows (None where noded did not answer)."""
    return {str(row["name"]): (str(row["bootid"]) if row.get("bootid") else None) for row in rows}


def master_failover(cluster: GanetiCluster, to: str, *, no_voting: bool = False, timeout: float = 300.0,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
    """Make master candidate `to` the master: drain the job queue on the master and wait for its jobs to end (a job
    the old master takes during the failover writes its config over the new one: seen on the lab, the master IP
    then came up on the old master), run `gnt-cluster master-failover` on `to` over SSH (which undrains the queue;
    on failure it is undrained here), then wait until the RAPI at the configured URL (the cluster IP, which Ganeti
    moves to the new master) names `to`. The commands are journaled as remote commands; only recorded in dry-run.
    no_voting (`--no-voting --yes-do-it`) is for a two-node cluster whose master is dead. Returns the master
    afterwards (the current one in dry-run). NodeStateError for a node that cannot be master."""
    old = cluster.master()
    role = Role.of(known(cluster, to))
    if role is Role.MASTER:
        raise NodeStateError(f"{to} is already the master of cluster {cluster.name}")
    if role is not Role.CANDIDATE:
        raise NodeStateError(f"{to} is {role.value} in cluster {cluster.name}: only a master candidate can become "
                             "the master")
    deadline = clock() + timeout
    if not no_voting:
        drained = cluster.commands.on(old).run(["gnt-cluster", "queue", "drain"], is_safe=False)
        if drained.status is not HostStatus.SKIPPED:
            try:
                _wait_queue_idle(cluster, old, deadline, clock, sleep)
            except GanetiError:  # e.g. `gnt-job list` failed (seen on the lab): the queue must not stay drained
                cluster.commands.on(old).run(["gnt-cluster", "queue", "undrain"], is_safe=False)
                raise
    argv = ["gnt-cluster", "master-failover", *(["--no-voting", "--yes-do-it"] if no_voting else [])]
    try:
        result = cluster.commands.on(to).run(argv, is_safe=False, timeout=timeout)
    except GanetiError:
        if not no_voting:
            cluster.commands.on(old).run(["gnt-cluster", "queue", "undrain"], is_safe=False)
        raise
    if result.status is HostStatus.SKIPPED:
        return old
    while True:
        try:
            if cluster.master() == to:
                return to
        except GanetiError as exc:
            logger.debug("RAPI not answering yet after the master failover to %s: %s", to, exc)
        if clock() >= deadline:
            raise GanetiError(f"cluster {cluster.name}: the RAPI does not name {to} as master {timeout:.0f}s after "
                              "the master failover")
        sleep(1.0)


UNFINISHED_JOB_STATUSES = ("queued", "waiting", "running", "canceling")
"""Job statuses of jobs the master still has to finish."""


def _wait_queue_idle(cluster: GanetiCluster, master: str, deadline: float, clock: Callable[[], float],
                     sleep: Callable[[float], None]) -> None:
    """Wait until master's (drained) job queue has no unfinished job; on timeout undrain it and raise GanetiError."""
    while True:
        listing = cluster.commands.on(master).run(["gnt-job", "list", "--no-headers", "-o", "id,status"],
                                                  is_safe=True)
        busy = [line.split()[0] for line in listing.output.splitlines()
                if len(line.split()) == 2 and line.split()[1] in UNFINISHED_JOB_STATUSES]
        if not busy:
            return
        if clock() >= deadline:
            cluster.commands.on(master).run(["gnt-cluster", "queue", "undrain"], is_safe=False)
            raise GanetiError(f"cluster {cluster.name}: jobs {', '.join(busy)} still unfinished on {master}: no master "
                              "failover (the queue is undrained again)")
        sleep(1.0)
