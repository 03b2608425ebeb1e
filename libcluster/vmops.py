"""What the one-VM cookbooks (start-vm, stop-vm, migrate-vm, failover-vm, reinstall-vm) share.

The instance read with a clear error, the target-node checks of a move (same group, usable, free
memory), the typed FQDN confirmation (never answered by ``-y``), and the NetBox VM status that follows
Ganeti's (active, offline: sync.vm's mapping) written through the journaled NetBox client.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from libcluster.arguments import cluster_settings
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance, Node, RapiNotFoundError
from libcluster.ganeti.nodes import MoveAction, move_action, refusal
from libcluster.ganeti.templates import INT_MIRROR
from libcluster.interactive import AbortError, InputError, is_terminal
from libcluster.netbox import NetBox
from libcluster.sync.vm import changed_fields

logger = logging.getLogger(__name__)


def read_instance(ctx: Context, args: argparse.Namespace) -> tuple[ClusterSettings, GanetiCluster, Instance]:
    """The settings and client of --cluster and the instance FQDN there; LibclusterError names what is unknown."""
    settings = cluster_settings(ctx.config, args)
    cluster = ctx.ganeti(settings.name)
    try:
        return settings, cluster, cluster.instance(args.fqdn)
    except RapiNotFoundError:
        raise LibclusterError(f"no instance {args.fqdn} in cluster {settings.name}") from None


def check_movable(cluster_name: str, instance: Instance) -> None:
    """Refuse an instance whose disk template cannot migrate or fail over (file, plain), naming changedisk."""
    if move_action(instance) is MoveAction.REFUSED:
        raise LibclusterError(f"{instance.name}: {refusal(cluster_name, instance)}")


def target_nodes(cluster: GanetiCluster, instance: Instance, to: str | None) -> list[Node]:
    """The nodes a migrate or failover may put the instance on: --to (checked), drbd's secondary, or the other
    usable nodes of its primary node's group; LibclusterError names an unknown or unsuitable --to."""
    primary = cluster.node(instance.primary_node)
    if to is not None:
        try:
            node = cluster.node(to)
        except RapiNotFoundError:
            raise LibclusterError(f"no node {to} in cluster {cluster.name}") from None
        if node.name == primary.name:
            raise LibclusterError(f"{instance.name} already runs on {to}")
        if node.group_uuid != primary.group_uuid:
            raise LibclusterError(f"node {to} is not in the node group of {instance.name}'s primary node "
                                  f"{primary.name}: Ganeti moves an instance only within its group")
        if instance.disk_template in INT_MIRROR and to not in instance.secondary_nodes:
            raise LibclusterError(f"{instance.name} ({instance.disk_template}) can only go to its secondary node "
                                  f"{', '.join(instance.secondary_nodes) or '(none)'}, not {to}")
        candidates = [node]
    elif instance.disk_template in INT_MIRROR:
        candidates = [cluster.node(name) for name in instance.secondary_nodes]
    else:
        candidates = [node for node in cluster.nodes()
                      if node.group_uuid == primary.group_uuid and node.name != primary.name]
    usable = [node for node in candidates if not node.offline and not node.drained and node.vm_capable]
    if not usable:
        names = ", ".join(node.name for node in candidates) or "none"
        raise LibclusterError(f"no usable node to move {instance.name} to (candidates: {names}; offline, drained or "
                              "not vm-capable ones are left out)")
    return usable


def with_memory(nodes: Sequence[Node], instance: Instance) -> list[Node]:
    """The nodes with free memory for the instance; LibclusterError names each node's free memory when none has."""
    needed = instance.memory or 0
    fit = [node for node in nodes if node.memory_free is None or node.memory_free >= needed]
    if not fit:
        free = ", ".join(f"{node.name} {node.memory_free} MiB free" for node in nodes)
        raise LibclusterError(f"no target node has the {needed} MiB of memory {instance.name} needs ({free})")
    return fit


def confirm_fqdn(ctx: Context, fqdn: str, given: str | None, consequence: str) -> None:
    """The operator types the FQDN (at a terminal) or repeats it with --confirm-fqdn; ``-y`` never answers this.

    A wrong FQDN, or no terminal and no --confirm-fqdn, raises (AbortError, InputError) before any change.
    """
    if given is not None:
        if given != fqdn:
            raise AbortError(f"--confirm-fqdn {given} is not {fqdn}: nothing done")
        logger.info("==> %s: confirmed by --confirm-fqdn", consequence)
        return
    if not is_terminal():
        raise InputError(f"{consequence}: type the FQDN at a terminal, or repeat it with --confirm-fqdn {fqdn} "
                         "(-y does not answer this)")
    answer = ctx.ask_input(f"{consequence}. Type the FQDN of the VM ({fqdn}) to confirm")
    if answer != fqdn:
        raise AbortError(f"typed {answer!r}, not {fqdn}: nothing done")


def netbox_vms(netbox: NetBox, settings: ClusterSettings, fqdn: str) -> list[dict[str, Any]]:
    """The NetBox VMs named fqdn in the clusters of the cluster's NetBox cluster group (one when all is well)."""
    group = netbox.find("cluster-group", name=settings.netbox_cluster_group)
    clusters = {cluster["id"] for cluster in netbox.objects("cluster", group_id=group["id"])} if group else set()
    return [vm for vm in netbox.objects("vm", name=fqdn) if (vm.get("cluster") or {}).get("id") in clusters]


def follow_size(ctx: Context, settings: ClusterSettings, fqdn: str, sizes: Mapping[str, int]) -> None:
    """Set the NetBox VM's sizes (vcpus, memory, disk in MB = Ganeti's MiB) where they differ (journaled, undone by
    rollback); a VM NetBox lacks is reported, not created."""
    netbox = ctx.netbox(read_write=True)
    vms = netbox_vms(netbox, settings, fqdn)
    if len(vms) != 1:
        logger.warning("NetBox has %d VMs named %s in cluster group %s: sizes %s not recorded (run "
                       "sre.ganeti.sync-netbox)", len(vms), fqdn, settings.netbox_cluster_group, dict(sizes))
        return
    changes = changed_fields(vms[0], sizes)
    if not changes:
        logger.info("NetBox VM %s already has %s", fqdn, dict(sizes))
        return
    netbox.update("vm", [{"id": vms[0]["id"], **changes}])
    logger.info("NetBox VM %s: %s", fqdn, ", ".join(f"{name} {vms[0].get(name)} -> {value}"
                                                      for name, value in changes.items()))


def follow_status(ctx: Context, settings: ClusterSettings, fqdn: str, status: str) -> None:
    """Set the NetBox VM's status (journaled, undone by rollback); a VM NetBox lacks is reported, not created."""
    netbox = ctx.netbox(read_write=True)
    vms = netbox_vms(netbox, settings, fqdn)
    if len(vms) != 1:
        logger.warning("NetBox has %d VMs named %s in cluster group %s: status %s not recorded (run "
                       "sre.ganeti.sync-netbox)", len(vms), fqdn, settings.netbox_cluster_group, status)
        return
    current = vms[0].get("status")
    current = current.get("value") if isinstance(current, dict) else current
    if current == status:
        logger.info("NetBox VM %s is already %s", fqdn, status)
        return
    netbox.update("vm", [{"id": vms[0]["id"], "status": status}])
    logger.info("NetBox VM %s: status %s -> %s", fqdn, current, status)
