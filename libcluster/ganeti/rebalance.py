"""Rebalancing a node group: hbal's plan (`hbal -L`, read-only), executed by us one move at a time.

`hbal -X` would submit every job itself, outside the run's journal, locks and undo. Here each step of hbal's
solution is one GanetiCluster.migrate_instance (a stopped instance is failed over through Ganeti's allow_failover,
no downtime), journaled with its undo (migrate back) and followed to its end before the next one is sent.
hbal's secondary replacements (`r:NODE`, DRBD) have no write with an undo here: a plan holding one is refused
(hbal's --no-disk-moves plans without them).
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
class Move:
    """One step of the plan with Ganeti's names: an instance from its primary node to another."""

    number: int
    instance: str
    source: str
    target: str
    score: float
    """The cluster score hbal computes after this step."""
    stopped: bool
    """A stopped instance: failed over (it only changes node), else live-migrated."""
    to_secondary: bool
    """hbal's `f`: to its DRBD secondary (no target node is passed to Ganeti); else `fa:NODE` (shared storage)."""

    def describe(self) -> str:
        """One line: `vm1.example: node1.example -> node2.example (live migration; score after 4.5040)`."""
        how = "failover of a stopped instance" if self.stopped else "live migration"
        return f"{self.instance}: {self.source} -> {self.target} ({how}; score after {self.score:.4f})"


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
    """Where a run of the plan is: the moves done, the one in progress (its job), those not started."""

    plan: Plan
    done: list[Move] = field(default_factory=list)
    current: Move | None = None
    job_id: int | None = None

    def lines(self) -> list[str]:
        """What was done and what was not (printed when a run is interrupted or fails)."""
        started = len(self.done) + (self.current is not None)
        out = [f"done: {move.describe()}" for move in self.done]
        if self.current is not None:
            out.append(f"in progress (job {self.job_id}): {self.current.describe()}")
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
    (read-only, dry-run too) and map it to Ganeti's names; a plan with a secondary replacement is refused."""
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
    not parsed (fewer steps than `Solution length`) or replaces a secondary."""
    if hbal.length is not None and hbal.length != len(hbal.solution):
        raise RebalanceError(f"cluster {cluster}: hbal printed {hbal.length} moves, {len(hbal.solution)} could be "
                             f"read: not run. hbal's output:\n{hbal.output}")
    moves = tuple(_move(step, nodes, hosted) for step in hbal.solution)
    return Plan(group, tuple(nodes), hbal.initial_score, hbal.final_score if moves else hbal.initial_score, moves)


def _move(step: HbalMove, nodes: Sequence[str], hosted: Mapping[str, Instance]) -> Move:
    instance = full_name(step.instance, list(hosted), "instance")
    if len(step.actions) != 1 or not (step.actions[0] == "f" or step.actions[0].startswith("fa:")):
        raise RebalanceError(f"step {step.number} of hbal's plan ({instance}: a={' '.join(step.actions)}) replaces a "
                             "DRBD secondary: this cookbook runs only migrations and failovers, rerun with "
                             "--no-disk-moves")
    return Move(step.number, instance, full_name(step.old_primary, nodes, "node"),
                full_name(step.new_primary, nodes, "node"), step.score, hosted[instance].admin_state != "up",
                step.actions[0] == "f")


def execute(cluster: GanetiCluster, progress: Progress) -> None:
    """Run the plan's moves one at a time, each job followed to its end (migrate_instance: journaled with its undo,
    in dry-run Ganeti's check of it). Before each move the instance must be where the plan says (RebalanceError
    otherwise: someone moved it since); after a real move, where the plan wanted. In dry-run an instance's later moves
    are not checked by Ganeti (its check would see the instance where it still is)."""
    placed: dict[str, str] = {}
    for move in progress.plan.moves:
        progress.current, progress.job_id = move, None
        simulated = cluster.dry_run and move.instance in placed
        where = placed[move.instance] if simulated else cluster.instance(move.instance).primary_node
        if where != move.source:
            raise RebalanceError(f"{move.instance} is on {where}, not on {move.source} as the plan says: stopped")
        if not simulated:
            job = cluster.migrate_instance(move.instance, target_node=None if move.to_secondary else move.target,
                                           allow_failover=True if move.stopped else None)
            progress.job_id = job.id
            node = job.wait().value
            if not cluster.dry_run and node != move.target:
                raise RebalanceError(f"{move.instance} went to {node}, not to {move.target} as planned: stopped")
        placed[move.instance] = move.target
        progress.done.append(move)
    progress.current = None


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
