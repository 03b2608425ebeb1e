"""Rebalancing a node group: hbal's plan (`hbal -L`, read-only), executed by us one action at a time.

`hbal -X` would submit every job itself, outside the run's journal, locks and undo. Here each action of each step
of hbal's solution, in hbal's order, is one write, journaled with its undo and followed to its end before the next
one is sent: `f` (to the DRBD secondary) and `fa:NODE` (to NODE, shared storage) are a
GanetiCluster.migrate_instance (a stopped instance is failed over through Ganeti's allow_failover, no downtime;
undo: migrate back), `r:NODE` a GanetiCluster.replace_secondary (DRBD; undo: replace back with the old secondary).
A plan with an action word not one of these is refused (hbal's --no-disk-moves plans without `r:`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from libcluster.errors import LibclusterError
from libcluster.ganeti.commands import HbalMove, HbalPlan
from libcluster.ganeti.errors import GanetiError
from libcluster.ganeti.models import Instance

if TYPE_CHECKING:
    from libcluster.ganeti.cluster import GanetiCluster

logger = logging.getLogger(__name__)


class RebalanceError(LibclusterError):
    """A rebalance refused (unknown group, an excluded instance not in it, a plan that cannot be run) or stopped (an
    instance not where the plan says, a move that ended elsewhere)."""


@dataclass(frozen=True)
class Action:
    """One of hbal's action words of a step, with Ganeti's node name."""

    word: str
    """`f` (to the DRBD secondary), `fa` (to node, shared storage) or `r` (node becomes the DRBD secondary)."""
    node: str
    """Where the action puts the instance: its primary node after `f` and `fa`, its secondary after `r`."""

    def describe(self, stopped: bool) -> str:
        """What is done: `live migration to the secondary node2.example`, `replace secondary with node3.example`..."""
        if self.word == "r":
            return f"replace secondary with {self.node}"
        how = "failover" if stopped else "live migration"
        return f"{how} to the secondary {self.node}" if self.word == "f" else f"{how} to {self.node}"


@dataclass(frozen=True)
class Move:
    """One step of the plan with Ganeti's names: an instance from its nodes to others, by hbal's actions in order."""

    number: int
    instance: str
    source: str
    """The primary node before the step."""
    old_secondary: str | None
    """The DRBD secondary before the step (None without one)."""
    target: str
    """The primary node after the step."""
    new_secondary: str | None
    score: float
    """The cluster score hbal computes after this step."""
    stopped: bool
    """A stopped instance: failed over (it only changes node), else live-migrated."""
    actions: tuple[Action, ...]

    def describe(self) -> str:
        """One line: `vm1.example: node1.example:node2.example -> node3.example:node2.example (live migration to the
        secondary node2.example, replace secondary with node3.example, ...; score after 3.1000)`."""
        what = ", ".join(action.describe(self.stopped) for action in self.actions)
        return (f"{self.instance}: {nodes_text(self.source, self.old_secondary)} -> "
                f"{nodes_text(self.target, self.new_secondary)} ({'stopped instance: ' if self.stopped else ''}"
                f"{what}; score after {self.score:.4f})")


def nodes_text(primary: str, secondary: str | None) -> str:
    """An instance's nodes as hbal prints them: `primary:secondary`, or the primary alone."""
    return f"{primary}:{secondary}" if secondary else primary


@dataclass(frozen=True)
class Plan:
    """hbal's solution for a group, checked and with full names; what the dry-run prints."""

    group: str
    nodes: tuple[str, ...]
    initial_score: float | None
    final_score: float | None
    moves: tuple[Move, ...]

    @property
    def instances(self) -> list[str]:
        """The instances that move (each once, in name order): the instance locks to take."""
        return sorted({move.instance for move in self.moves})

    def lines(self) -> list[str]:
        """The plan as printed before the confirmation."""
        if not self.moves:
            return [f"hbal finds no move that improves group {self.group} (score {score_text(self.initial_score)})"]
        return [f"score now {score_text(self.initial_score)}, after the plan {score_text(self.final_score)}",
                *(f"{move.number}. {move.describe()}" for move in self.moves)]


@dataclass
class Progress:
    """Where a run of the plan is: the moves done, the one in progress (its action and job), those not started."""

    plan: Plan
    done: list[Move] = field(default_factory=list)
    current: Move | None = None
    action: int = 0
    """The number (from 1) of the current move's action in progress, 0 before its first."""
    job_id: int | None = None

    def lines(self) -> list[str]:
        """What was done and what was not (printed when a run is interrupted or fails)."""
        started = len(self.done) + (self.current is not None)
        out = [f"done: {move.describe()}" for move in self.done]
        if self.current is not None:
            step = f", action {self.action} of {len(self.current.actions)}" if len(self.current.actions) > 1 else ""
            out.append(f"in progress (job {self.job_id}{step}): {self.current.describe()}")
        out += [f"not started: {move.describe()}" for move in self.plan.moves[started:]]
        return out


def full_name(short: str, names: Sequence[str], what: str) -> str:
    """Ganeti's name of what hbal prints as short (hbal strips the cluster's common domain suffix); RebalanceError
    when no name or several match (the plan cannot be mapped: nothing is run)."""
    found = [name for name in names if name == short or name.startswith(short + ".")]
    if len(found) != 1:
        raise RebalanceError(f"hbal's plan names {what} {short!r}, which matches {len(found)} of the group's "
                             f"{what}s ({', '.join(found) or 'none'}): not run")
    return found[0]


def plan(cluster: GanetiCluster, group: str, *, no_disk_moves: bool = False, exclude: Sequence[str] = ()) -> Plan:
    """Check the group and the excluded instances (RebalanceError naming the problem), ask hbal for its plan
    (read-only, dry-run too) and map it to Ganeti's names; a plan with an action word not known here is refused."""
    groups = {known.name: known for known in cluster.groups()}
    if group not in groups:
        raise RebalanceError(f"no node group {group} in cluster {cluster.name} (groups: {', '.join(sorted(groups))})")
    nodes = tuple(sorted(groups[group].nodes))
    hosted = {instance.name: instance for instance in cluster.instances() if instance.primary_node in nodes}
    outside = [name for name in exclude if name not in hosted]
    if outside:
        raise RebalanceError(f"--exclude-instances: {', '.join(outside)} not in group {group} of cluster "
                             f"{cluster.name}")
    hbal = cluster.commands.hbal(group=group, no_disk_moves=no_disk_moves, exclude_instances=exclude)
    return from_hbal(cluster.name, group, nodes, hosted, hbal)


def from_hbal(cluster: str, group: str, nodes: Sequence[str], hosted: Mapping[str, Instance], hbal: HbalPlan) -> Plan:
    """The Plan of hbal's answer for group (nodes, the instances it hosts by name); RebalanceError when a step was
    not parsed (fewer steps than `Solution length`), has an action word other than f, fa:NODE and r:NODE, or its
    actions do not lead to the nodes its line says."""
    if hbal.length is not None and hbal.length != len(hbal.solution):
        raise RebalanceError(f"cluster {cluster}: hbal printed {hbal.length} moves, {len(hbal.solution)} could be "
                             f"read: not run. hbal's output:\n{hbal.output}")
    moves = tuple(_move(step, nodes, hosted) for step in hbal.solution)
    return Plan(group, tuple(nodes), hbal.initial_score, hbal.final_score if moves else hbal.initial_score, moves)


def _move(step: HbalMove, nodes: Sequence[str], hosted: Mapping[str, Instance]) -> Move:
    """The Move of one hbal step: its actions followed from the step's old nodes must end on its new ones."""
    instance = full_name(step.instance, list(hosted), "instance")
    where = f"step {step.number} of hbal's plan ({instance}: a={' '.join(step.actions)})"
    source, target = full_name(step.old_primary, nodes, "node"), full_name(step.new_primary, nodes, "node")
    old_secondary, new_secondary = (full_name(node, nodes, "node") if node else None
                                    for node in (step.old_secondary, step.new_secondary))
    primary, secondary = source, old_secondary
    actions = []
    for word in step.actions:
        kind, _, short = word.partition(":")
        if word == "f" and secondary is not None:
            primary, secondary = secondary, primary
            actions.append(Action("f", primary))
        elif kind in ("fa", "r") and short:
            node = full_name(short, nodes, "node")
            primary, secondary = (node, secondary) if kind == "fa" else (primary, node)
            actions.append(Action(kind, node))
        else:
            raise RebalanceError(f"{where}: action {word!r} is not one this cookbook runs (f with a secondary, "
                                 "fa:NODE, r:NODE): not run")
    if (primary, secondary) != (target, new_secondary):
        raise RebalanceError(f"{where}: its actions lead to {nodes_text(primary, secondary)}, not to "
                             f"{nodes_text(target, new_secondary)} as its line says: not run")
    return Move(step.number, instance, source, old_secondary, target, new_secondary, step.score,
                hosted[instance].admin_state != "up", tuple(actions))


def execute(cluster: GanetiCluster, progress: Progress) -> None:
    """Run the plan's moves one at a time, each action's job followed to its end (migrate_instance,
    replace_secondary: journaled with their undo, in dry-run Ganeti's check of them). Before each move the instance
    must be on the nodes the plan says (RebalanceError otherwise: someone moved it since); after each real action,
    where the plan wanted. In dry-run only an instance's first action is checked by Ganeti (its check of a later
    one would see the instance where it still is)."""
    placed: dict[str, tuple[str, str | None]] = {}
    for move in progress.plan.moves:
        progress.current, progress.action, progress.job_id = move, 0, None
        simulated = cluster.dry_run and move.instance in placed
        where = placed[move.instance] if simulated else _nodes(cluster.instance(move.instance))
        if where != (move.source, move.old_secondary):
            raise RebalanceError(f"{move.instance} is on {nodes_text(*where)}, not on "
                                 f"{nodes_text(move.source, move.old_secondary)} as the plan says: stopped")
        for number, action in enumerate(move.actions, 1):
            progress.action, progress.job_id = number, None
            if not simulated:
                _run(cluster, move, action, progress)
            simulated = cluster.dry_run
        placed[move.instance] = (move.target, move.new_secondary)
        progress.done.append(move)
    progress.current, progress.action = None, 0


def _nodes(instance: Instance) -> tuple[str, str | None]:
    """An instance's primary node and DRBD secondary (None without one)."""
    return instance.primary_node, instance.secondary_nodes[0] if instance.secondary_nodes else None


def _run(cluster: GanetiCluster, move: Move, action: Action, progress: Progress) -> None:
    """Send one action of move, its job id in progress, and follow it; after a real one the instance must be where
    the action puts it (RebalanceError otherwise)."""
    if action.word == "r":
        job = cluster.replace_secondary(move.instance, action.node)
        progress.job_id = job.id
        job.wait()
        secondaries = cluster.instance(move.instance).secondary_nodes if not cluster.dry_run else None
        if secondaries is not None and secondaries != (action.node,):
            raise RebalanceError(f"{move.instance}'s secondary is {', '.join(secondaries) or 'none'}, not "
                                 f"{action.node} as planned: stopped")
        return
    job = cluster.migrate_instance(move.instance, target_node=action.node if action.word == "fa" else None,
                                   allow_failover=True if move.stopped else None)
    progress.job_id = job.id
    node = job.wait().value
    if not cluster.dry_run and node != action.node:
        raise RebalanceError(f"{move.instance} went to {node}, not to {action.node} as planned: stopped")


def score(cluster: GanetiCluster, group: str) -> float | None:
    """The group's cluster score now (`hbal -L`, read-only); None when hbal fails (logged: the moves are done, a
    failed read must not roll them back)."""
    try:
        return cluster.commands.hbal(group=group).initial_score
    except GanetiError as exc:
        logger.warning("final score of group %s unknown: %s", group, exc)
        return None


def score_text(value: float | None) -> str:
    """A score as printed (4 decimals), `unknown` for None."""
    return "unknown" if value is None else f"{value:.4f}"
