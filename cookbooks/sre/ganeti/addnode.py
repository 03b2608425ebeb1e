"""Add a new node to a node group of a Ganeti cluster, and to the group's cluster in NetBox.

Steps:
  1. Check (before anything changes): the group is configured and exists in Ganeti, the node is
     not in the cluster yet, NetBox has a device named FQDN and the group's NetBox cluster exists.
  2. Confirm, then run the pre-checks over SSH (read-only, also with -d). Every failure is listed
     with what to fix, and nothing is changed:
       - the master reaches the node by SSH as root (BatchMode: key only)
       - the node runs the same Ganeti version as the master
       - the node's FQDN resolves, on the master, to one of the node's addresses
       - the bridges of the cluster config (`bridges`) exist on the node
       - the volume group (`volume_group`) exists on the node (skipped when not configured)
       - virtualization is available (`vm_capable_check`, e.g. `test -e /dev/kvm`)
  3. `gnt-node add -g GROUP --no-ssh-key-check FQDN` on the master.
  4. `gnt-cluster verify` (ignoring the cluster's `verify_ignore` codes), before the add and after
     it. If the add brought new errors (or verify cannot complete), you are asked whether to remove
     the node again (-y answers yes). A verify job that fails because instances changed meanwhile
     is tried again.
  5. NetBox: the node's device joins the group's cluster.

Usage:
  cookbook sre.ganeti.addnode --cluster prod1 --group A ganeti1010.example.org
  cookbook -d sre.ganeti.addnode --cluster lab --group B node5.lab.example
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

from cookbooks.sre.ganeti import add_location_args, cluster_settings
from cookbooks.sre.ganeti._common import fqdn_argument, verify_cluster
from libcluster.clusters import ClusterSettings
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.errors import LibclusterError
from libcluster.ganeti import RapiNotFoundError
from libcluster.ganeti.commands import VerifyIssue, VerifyResult
from libcluster.interactive import InteractiveError
from libcluster.remote import CommandSpec, HostResult, HostStatus

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 60
"""Seconds each pre-check command may take."""
SSH_PROBE = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")
"""How the master tries the node: key only, no prompt; host keys are Ganeti's business (node add)."""


@dataclass(frozen=True)
class Check:
    """Outcome of one pre-check: what was checked, whether it passed, what was seen and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class NetBoxTarget:
    """The node's NetBox device and the cluster it must join."""

    device: dict[str, Any]
    cluster: dict[str, Any]

    @property
    def done(self) -> bool:
        """Whether the device is already in the cluster."""
        return (self.device.get("cluster") or {}).get("id") == self.cluster["id"]


def new_errors(before: VerifyResult, after: VerifyResult) -> list[VerifyIssue]:
    """Errors of `after` that `before` did not have (same code on the same item), i.e. those the change caused."""
    known = {(issue.code, issue.item) for issue in before.errors}
    return [issue for issue in after.errors if (issue.code, issue.item) not in known]


def netbox_target(netbox: Any, settings: ClusterSettings, group: str, fqdn: str) -> NetBoxTarget:
    """The device named fqdn and the NetBox cluster of the group; LibclusterError says which one is missing."""
    device = netbox.find("device", name=fqdn)
    if device is None:
        raise LibclusterError(f"NetBox has no device named {fqdn}: add the server to NetBox first")
    cluster_group = (netbox.find("cluster-group", name=settings.netbox_cluster_group)
                     or netbox.find("cluster-group", slug=settings.netbox_cluster_group))
    if cluster_group is None:
        raise LibclusterError(f"NetBox has no cluster group {settings.netbox_cluster_group} "
                              f"(netbox_cluster_group of cluster {settings.name})")
    name = settings.group(group).netbox_cluster
    cluster = netbox.find("cluster", name=name, group_id=cluster_group["id"])
    if cluster is None:
        raise LibclusterError(f"NetBox has no cluster {name} in cluster group {cluster_group['name']} "
                              f"(netbox_cluster of group {group})")
    return NetBoxTarget(device=device, cluster=cluster)


class AddNode(CookbookBase):
    """Add a node to a Ganeti cluster group: pre-checks, node add, verify, NetBox."""

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --group and the node's FQDN."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group_required=True)
        parser.add_argument("fqdn", type=fqdn_argument, help="the new node's FQDN")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check group, membership and NetBox objects; nothing is changed here."""
        settings = cluster_settings(self.ctx.config, args)
        cluster = self.ctx.ganeti(args.cluster)
        groups = {group["uuid"]: group["name"] for group in cluster.groups()}
        if args.group not in groups.values():
            raise LibclusterError(f"cluster {args.cluster} has no node group {args.group} in Ganeti "
                                  f"(it has: {', '.join(sorted(groups.values()))})")
        try:
            node = cluster.node(args.fqdn)
        except RapiNotFoundError:
            node = None
        if node is not None:
            raise LibclusterError(f"{args.fqdn} is already a node of cluster {args.cluster} "
                                  f"(group {groups.get(node.get('group.uuid'), '?')}): nothing to do")
        target = netbox_target(self.ctx.netbox(), settings, args.group, args.fqdn)
        return AddNodeRunner(self.ctx, cluster, settings, args.group, args.fqdn, target)


class AddNodeRunner(CookbookRunnerBase):
    """Pre-checks, `gnt-node add`, verify (offering removal), NetBox."""

    def __init__(self, ctx: Any, cluster: Any, settings: ClusterSettings, group: str, fqdn: str,
                 target: NetBoxTarget) -> None:
        """Keep what get_runner found."""
        self.ctx = ctx
        self.cluster = cluster
        self.settings = settings
        self.group = group
        self.fqdn = fqdn
        self.target = target

    @property
    def runtime_description(self) -> str:
        """Node, cluster and group."""
        return f"for new node {self.fqdn} in cluster {self.cluster.name} group {self.group}"

    @property
    def lock_args(self) -> LockArgs:
        """One node change at a time per cluster."""
        return LockArgs(suffix=self.cluster.name, concurrency=1, ttl=None)

    def run(self) -> int:
        """Confirm, pre-check, add, verify, record in NetBox."""
        print(f"Adding node {self.fqdn} to cluster {self.cluster.name}, group {self.group}; NetBox device "
              f"{self.target.device['name']} joins cluster {self.target.cluster['name']}.", flush=True)
        self.ctx.confirm(f"Add {self.fqdn} to {self.cluster.name}/{self.group}?")
        master = self.cluster.master()
        failed = [check for check in self.prechecks(master) if not check.ok]
        if failed:
            for check in failed:
                logger.error("Pre-check failed: %s: %s. Fix: %s", check.name, check.detail, check.fix)
            logger.error("%d pre-check(s) failed for %s: nothing was changed; fix and re-run the cookbook",
                         len(failed), self.fqdn)
            return 1
        before = verify_cluster(self.cluster.commands, "before the add")
        logger.info("Adding %s to group %s (gnt-node add on %s)", self.fqdn, self.group, master)
        self.cluster.commands.node_add(self.fqdn, group=self.group, ssh_key_check=False)
        if not self.ctx.dry_run:
            after = verify_cluster(self.cluster.commands, "after the add")
            new = new_errors(before, after)
            if new or not (after.ok or after.errors):
                return self._verify_failed(after, new)
        self._update_netbox()
        return 0

    # Pre-checks --------------------------------------------------------------------------

    def _on(self, host: str, command: CommandSpec) -> HostResult:
        return self.ctx.remote().hosts([host]).run_sync(command, is_safe=True, timeout=CHECK_TIMEOUT)[host]

    def prechecks(self, master: str) -> list[Check]:
        """Run every pre-check (read-only) and log each outcome; stop after SSH if the master cannot reach the node."""
        checks = [self._ssh_from_master(master)]
        if checks[0].ok:
            checks += [self._version(master), self._resolves(master), *self._bridges(), self._volume_group(),
                       self._virtualization()]
        for check in checks:
            logger.info("Pre-check %s: %s (%s)", check.name, "OK" if check.ok else "FAILED", check.detail)
        return checks

    def _ssh_from_master(self, master: str) -> Check:
        result = self._on(master, [*SSH_PROBE, f"root@{self.fqdn}", "true"])
        if result.status is HostStatus.OK:
            return Check("SSH from the master", True, f"{master} -> {self.fqdn} as root")
        return Check("SSH from the master", False, f"{master} cannot log in to {self.fqdn} as root: "
                     f"{result.describe()}: {result.output.strip()[-300:]}",
                     f"add {master}'s /root/.ssh/id_rsa.pub to /root/.ssh/authorized_keys on {self.fqdn} and check "
                     "sshd runs and the firewall lets the master in")

    def _version(self, master: str) -> Check:
        versions = {host: self._on(host, ["gnt-cluster", "--version"]) for host in (master, self.fqdn)}
        seen = {host: result.output.strip() if result.status is HostStatus.OK else f"none ({result.describe()})"
                for host, result in versions.items()}
        ok = versions[master].status is HostStatus.OK and seen[master] == seen[self.fqdn]
        return Check("same Ganeti version", ok, f"master: {seen[master]}; node: {seen[self.fqdn]}",
                     f"install the master's Ganeti version on {self.fqdn}")

    def _resolves(self, master: str) -> Check:
        resolved = self._on(master, ["getent", "hosts", self.fqdn])
        address = resolved.output.split()[0] if resolved.status is HostStatus.OK and resolved.output.split() else None
        own = self._on(self.fqdn, ["hostname", "-I"])
        addresses = own.output.split() if own.status is HostStatus.OK else []
        ok = address is not None and address in addresses
        return Check("name resolution", ok, f"{self.fqdn} resolves on the master to {address or 'nothing'}; "
                     f"the node has {', '.join(addresses) or 'no address'}",
                     f"make {self.fqdn} resolve (DNS or /etc/hosts on the master) to the node's primary address")

    def _bridges(self) -> list[Check]:
        checks = []
        for bridge in self.settings.bridges:
            result = self._on(self.fqdn, ["ip", "-br", "link", "show", "type", "bridge", "dev", bridge])
            ok = result.status is HostStatus.OK and bool(result.output.strip())
            checks.append(Check(f"bridge {bridge}", ok, result.output.strip() or result.describe(),
                                f"create bridge {bridge} on {self.fqdn} (network configuration)"))
        return checks

    def _volume_group(self) -> Check:
        vg = self.settings.volume_group
        if not vg:
            return Check("volume group", True, "skipped: no volume_group configured for the cluster")
        result = self._on(self.fqdn, ["vgs", "--noheadings", "-o", "vg_name", vg])
        ok = result.status is HostStatus.OK and result.output.strip() == vg
        return Check(f"volume group {vg}", ok, result.output.strip() or result.describe(),
                     f"create the LVM volume group {vg} on {self.fqdn}")

    def _virtualization(self) -> Check:
        command = self.settings.vm_capable_check
        result = self._on(self.fqdn, command)
        return Check("virtualization", result.status is HostStatus.OK, f"`{command}`: {result.describe()}",
                     f"enable virtualization (VT-x/AMD-V in the firmware, kvm module) on {self.fqdn}")

    # After the add -----------------------------------------------------------------------

    def _verify_failed(self, verify: VerifyResult, new: list[VerifyIssue]) -> int:
        for issue in new:
            logger.error("verify: %s %s %s: %s", issue.level, issue.code, issue.item, issue.message)
        what = f"{len(new)} new error(s)" if new else f"did not complete (exit code {verify.rc})"
        logger.error("gnt-cluster verify after adding %s: %s", self.fqdn, what)
        try:
            self.ctx.confirm(f"gnt-cluster verify failed: remove {self.fqdn} from cluster {self.cluster.name} again?")
        except InteractiveError as exc:
            logger.error("%s: %s is left in the cluster, NetBox unchanged", exc, self.fqdn)
            return 1
        self.cluster.commands.run(["gnt-node", "remove", self.fqdn], is_safe=False)
        logger.info("Removed %s from cluster %s again; NetBox unchanged", self.fqdn, self.cluster.name)
        return 1

    def _update_netbox(self) -> None:
        device, cluster = self.target.device, self.target.cluster
        if self.target.done:
            logger.info("NetBox: device %s is already in cluster %s", device["name"], cluster["name"])
            return
        self.ctx.netbox(read_write=True).update("device", [{"id": device["id"], "cluster": cluster["id"]}])
        if not self.ctx.dry_run:
            logger.info("NetBox: device %s joined cluster %s", device["name"], cluster["name"])
