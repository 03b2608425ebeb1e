"""Remove a node from a Ganeti cluster: drain it, move its instances away, `gnt-node remove`, and take its NetBox
device out of the cluster.

Steps:
  1. Check (nothing changed yet): NODE is a node of --cluster and not its master (fail the master over first:
     sre.ganeti.master-failover). A live node goes through drain-node's checks: each primary's move checked by its
     own Ganeti dry-run job (a file/plain instance cannot move: convert it with sre.ganeti.changedisk, or remove
     it) and room for its running primaries on the other nodes of its group (N+1). An offline node (after
     sre.ganeti.node-down) must hold no instance any more. The plan is printed.
  2. Confirm; take the node's lock and each instance's lock.
  3. Drain the node; migrate its running primaries, fail its stopped ones over; evacuate its secondaries (DRBD
     only: unit-tested with the fakes, the lab has no DRBD). An offline node skips this step.
  4. NetBox: the node's device leaves its cluster (only a device in a cluster of the cluster's NetBox cluster
     group: any other is reported and left alone).
  5. `gnt-node remove NODE` on the master.
  6. `gnt-cluster verify`: an error about a node of the group fails the run (the node stays removed).
Rollback (a step before the removal fails, Ctrl-C): the node is undrained (unless it was drained before the run),
its NetBox device put back into its cluster, and where each moved instance now is is printed; moved instances are
not moved back. Once `gnt-node remove` went through nothing is undone. A removed node comes back with
`cookbook sre.ganeti.addnode --cluster C --group G NODE` (Ganeti cleaned it up: a plain add, not --readd).
Exit codes: 0 done; 94 unknown node or cluster, the master, an instance that cannot move, no room in the group, an
offline node still holding instances (nothing changed); 1 the cluster verify reports an error about a node of
the group (the node is removed); 99 a step failed (rolled back); 97 interrupted (rolled back). With -d only
Ganeti's checks run (each move; `gnt-node remove --dry-run` when the node holds no instance) and the plan is
printed: nothing changes.

Usage:
  cookbook sre.ganeti.removenode --cluster lab -t T13001 node4.lab.example
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, RapiNotFoundError, maintenance
from libcluster.ganeti.models import Node
from libcluster.ganeti.nodes import NodePlan, NodeStateError
from libcluster.netbox import NetBox
from libcluster.undo import Undo
from libcluster.writes import NotOursError

logger = logging.getLogger(__name__)

COOKBOOK = "sre.ganeti.removenode"
"""This cookbook's name: its undo step names it, so that `cookbook --recover` finds undo() here."""


def netbox_device(netbox: NetBox, settings: ClusterSettings, node: str) -> dict[str, Any] | None:
    """The node's NetBox device when it is in a cluster of the cluster's NetBox cluster group (ours to take out);
    None, with a warning, for a device NetBox lacks or one in no cluster or in another group's."""
    device = netbox.find("device", name=node)
    if device is None:
        logger.warning("NetBox has no device %s: no NetBox change", node)
        return None
    group = netbox.find("cluster-group", name=settings.netbox_cluster_group)
    ours = {cluster["id"] for cluster in netbox.objects("cluster", group_id=group["id"])} if group else set()
    current = device.get("cluster") or {}
    if current.get("id") not in ours:
        logger.warning("NetBox device %s is in cluster %s, not in one of cluster group %s: left as it is", node,
                       current.get("name", "none"), settings.netbox_cluster_group)
        return None
    return device


class RemoveNode(CookbookBase):
    """Drain a node, move its instances away, remove it from Ganeti and its NetBox device from the cluster."""

    argument_task_required = True

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster and NODE (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("node", type=fqdn_argument, metavar="NODE", help="the node, as Ganeti names it")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Refuse an unknown node, the master, a move Ganeti refuses, no room in the group, an offline node that
        still holds instances (exit 94, nothing changed)."""
        settings = cluster_settings(self.ctx.config, args)
        cluster = self.ctx.ganeti(settings.name)
        node = maintenance.known(cluster, args.node)
        if node.name == cluster.master():
            raise NodeStateError(f"{node.name} is the master of cluster {cluster.name}: fail the master over first "
                                 f"(cookbook sre.ganeti.master-failover --cluster {cluster.name})")
        plan = None
        if node.offline:
            held = sorted(node.primary_instances) + sorted(node.secondary_instances)
            if held:
                raise NodeStateError(f"{node.name} is offline and still holds {', '.join(held)}: fail them over "
                                     f"first (cookbook sre.ganeti.node-down --cluster {cluster.name} {node.name}) "
                                     "or remove them")
        else:
            plan = maintenance.check(cluster, node.name, offer_shutdown=False)
        device = netbox_device(self.ctx.netbox(), settings, node.name)
        return RemoveNodeRunner(self.ctx, cluster, node, plan, device)


class RemoveNodeRunner(CookbookRunnerBase):
    """Print the plan, confirm, drain and empty, NetBox, remove, verify; rollback undrains."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, node: Node, plan: NodePlan | None,
                 device: dict[str, Any] | None) -> None:
        """Keep what get_runner() checked (plan None: an offline node, nothing to move)."""
        self.ctx, self.cluster, self.plan, self.device = ctx, cluster, plan, device
        self.node, self.was_drained, self.group_uuid = node.name, node.drained, node.group_uuid
        self.secondaries = sorted(node.secondary_instances)
        self.done: maintenance.NodeRun | None = None
        self.removed = False

    @property
    def runtime_description(self) -> str:
        """Shown in the START/END lines and the server admin log."""
        return f"removal of node {self.node} from cluster {self.cluster.name}"

    def run(self) -> int:
        """The runbook."""
        print("\n  ".join([f"Plan for the removal of {self.node} (each move checked by Ganeti):",
                           *(self.plan.lines() if self.plan else [f"{self.node} is offline and holds no instance"]),
                           *([f"secondaries evacuated: {', '.join(self.secondaries)}"] if self.secondaries else []),
                           f"gnt-node remove {self.node}", self._netbox_line()]), flush=True)
        self.ctx.confirm(f"Remove {self.node} from cluster {self.cluster.name}?")
        self.ctx.undo.enabled = False  # the rollback is an undrain: moved instances stay where Ganeti put them
        if self.plan is not None:
            self.done = maintenance.NodeRun(self.node)  # filled step by step: the rollback lists the moves made
            maintenance.empty(self.ctx, self.cluster, self.node, full=True, plan=self.plan, into=self.done)
        else:
            resources.hold(self.ctx, self.cluster.name, node=self.node)
        self._netbox_out()
        if self.ctx.dry_run:
            return self._check_removal()
        self.cluster.commands.node_remove(self.node)
        self.removed = True
        print("\n".join([f"{self.node} is removed from cluster {self.cluster.name}",
                         *(self.done.lines() if self.done else [])]), flush=True)
        group = [node.name for node in self.cluster.nodes() if node.group_uuid == self.group_uuid]
        errors = maintenance.verify(self.cluster, group)
        for error in errors:
            logger.error("cluster verify: %s", error)
        return 1 if errors else 0

    def rollback(self) -> None:
        """Undrain a node still in the cluster (unless it was drained before) and say where moved instances are;
        the undo stack puts its NetBox device back."""
        if self.ctx.dry_run or self.removed or self.plan is None:
            return
        done = self.done or maintenance.NodeRun(self.node)  # stopped before the drain
        if self.was_drained:
            print("\n".join([f"{self.node} stays drained (it was before the run)", *done.lines()]), flush=True)
            return
        print("\n".join(maintenance.undrain_and_report(self.cluster, done)), flush=True)

    def _netbox_line(self) -> str:
        if self.device is None:
            return "NetBox: nothing to change (see the warning above)"
        return f"NetBox: device {self.node} leaves cluster {self.device['cluster']['name']}"

    def _netbox_out(self) -> None:
        """The node's NetBox device leaves its cluster, its undo (see undo()) registered first."""
        if self.device is None:
            return
        undo = Undo("cookbook", "netbox-cluster", self.node, {
            "cookbook": COOKBOOK, "kind": "device", "cluster": self.cluster.name, "node": self.node,
            "id": self.device["id"], "netbox_cluster": self.device["cluster"]["name"],
            "netbox_cluster_id": self.device["cluster"]["id"]})
        if not self.ctx.dry_run:
            self.ctx.undo.enabled = True  # only this step is undone by the stack
            self.ctx.undo.push(undo)
            self.ctx.undo.enabled = False  # NetBox's own restore is not kept: undo() checks the node is still in Ganeti
        self.ctx.netbox(read_write=True).update("device", [{"id": self.device["id"], "cluster": None}])

    def _check_removal(self) -> int:
        """Dry-run: Ganeti checks the removal (`gnt-node remove --dry-run`) when the node holds no instance now;
        otherwise only once the moves are made, so the removal is only recorded as planned."""
        node = self.cluster.node(self.node)
        if node.primary_instances or node.secondary_instances:
            self.cluster.commands.node_remove(self.node)
            print(f"Dry-run: {self.node} would be removed once empty (Ganeti checks a removal only then); "
                  "nothing changed", flush=True)
        else:
            self.cluster.commands.node_remove(self.node, dry_run=True)
            print(f"Dry-run: Ganeti accepts the removal of {self.node}; nothing changed", flush=True)
        return 0


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo step (run by the rollback, or by `cookbook --recover` of a run that died).

    "netbox-cluster": the NetBox device goes back into its cluster while the node is still in Ganeti (the removal
    did not happen); once the node is gone the device stays out ("absent"). A device in another cluster now is not
    ours: NotOursError, left alone.
    """
    if action != "netbox-cluster":
        raise LibclusterError(f"{COOKBOOK} has no undo action {action!r}")
    node, cluster = str(args["node"]), ctx.ganeti(str(args["cluster"]))
    try:
        cluster.node(node)
    except RapiNotFoundError:
        logger.info("%s is no longer in cluster %s: its NetBox device stays out of cluster %s", node, cluster.name,
                    args["netbox_cluster"])
        return "absent"
    netbox = ctx.netbox(read_write=True)
    device = netbox.find("device", id=int(args["id"]))
    current = (device or {}).get("cluster") or {}
    if device is None or current.get("id") == args["netbox_cluster_id"]:
        return "absent"
    if current:
        raise NotOursError(f"NetBox device {node} is in cluster {current.get('name')} now, not in none as the "
                           "removal left it: left as it is")
    netbox.update("device", [{"id": device["id"], "cluster": args["netbox_cluster_id"]}])
    logger.info("NetBox device %s is back in cluster %s", node, args["netbox_cluster"])
    return "undone"
