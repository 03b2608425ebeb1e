"""Add a new node to a node group of a Ganeti cluster, and to the group's cluster in NetBox.

Steps:
  1. Check (before anything changes): the group is configured and exists in Ganeti, the node is
     not in the cluster yet, NetBox has a device named FQDN and the group's NetBox cluster exists.
  2. Confirm, then run the pre-checks over SSH (read-only, also with -d). Every failure is listed
     with what to fix, and nothing is changed:
       - the node's SSH host key, as the master sees it (ssh-keyscan), has the trusted fingerprint:
         --ssh-host-key-fingerprint SHA256:..., else the NetBox device's custom field
         ssh_host_key_fingerprint (both given must agree), else the operator is shown the
         fingerprints and types "accept" at a terminal (-y never accepts an unverified key; without
         a terminal and without a fingerprint the run is refused before anything is done)
       - the master logs in to the node as root by key, accepting only that host key
       - the node runs the same Ganeti version as the master
       - the node's FQDN resolves, on the master, to one of the node's addresses
       - the bridges of the cluster config (`bridges`) exist on the node
       - the volume group (`volume_group`) exists on the node (skipped when not configured)
       - virtualization is available (`vm_capable_check`, e.g. `test -e /dev/kvm`)
  3. Pin the verified key (and the cluster's host keys, which Ganeti installs on the node during
     the add) for FQDN in the master's /var/lib/ganeti/known_hosts (the file `gnt-node add` checks)
     and /root/.ssh/known_hosts, then `gnt-node add -g GROUP FQDN` with Ganeti's host key check on:
     a node that is not the one verified never receives the cluster's keys. If the add fails and the
     node is not in the cluster, the pinned lines are removed again.
  4. `gnt-cluster verify` (ignoring the cluster's `verify_ignore` codes), before the add and after
     it. If the add brought new errors (or verify cannot complete), you are asked whether to remove
     the node again (-y answers yes). A verify job that fails because instances changed meanwhile
     is tried again.
  5. NetBox: the node's device joins the group's cluster.
  6. The Ganeti hooks are installed on the new node (`sre.ganeti.install-hooks --cluster C --node
     FQDN`, skipped with a warning when no etcd is configured for hooks), so that it records hook
     events once it is master.
  Each change registers its undo before it is made (`cookbook --recover` of a run that died runs them
  too). When the run fails or is interrupted (Ctrl-C, chat cancel): a node that did not join has its
  pinned keys removed again (exit 97/99, or 1 after a verify failure whose node was removed again); a
  node that joined stays, also when the operator keeps it after a verify failure or its hooks were not
  installed, and the run ends 93 naming it, what is left (NetBox device, hooks) and the commands that
  finish the work or undo the add.

--readd NODE (no --group: the node keeps its group): a node of the cluster that comes back after
sre.ganeti.node-down (or was reinstalled). The same pre-checks and pinning, then `gnt-node add --readd`
(Ganeti clears its offline and drained flags and renews its keys and certificates), its master candidate
role given back if node-down took it (tag cookbooks:was-master-candidate), verify as above (new errors fail
the run: exit 1, the node is left in the cluster), NetBox (the device back in the group's cluster and, if
node-down marked it failed, active), install-hooks. Nothing is undone: a failed readd is run again. The
master cannot be readded, and a node removed with sre.ganeti.removenode is added (with --group), not readded.

Usage:
  cookbook sre.ganeti.addnode --cluster prod1 --group A ganeti1010.example.org
  cookbook sre.ganeti.addnode --cluster lab --readd --ssh-host-key-fingerprint SHA256:... node4.lab.example
  cookbook -d sre.ganeti.addnode --cluster lab --group B --ssh-host-key-fingerprint SHA256:... node5.lab.example
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libcluster import hostkeys, interactive, resources
from libcluster.arguments import add_location_args, cluster_settings, default_group, fqdn_argument
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.ganeti.commands import VerifyIssue, VerifyResult
from libcluster.ganeti.nodes import DOWN_DEVICE_STATUS, readded
from libcluster.ganeti.waits import verify_cluster
from libcluster.hooks.events import HookSettings
from libcluster.hostkeys import HostKey
from libcluster.interactive import InteractiveError
from libcluster.netbox import NetBox
from libcluster.remote import CommandSpec, HostResult, HostStatus
from libcluster.undo import Undo

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 60
"""Seconds each pre-check command may take."""
INSTALL_HOOKS = "sre.ganeti.install-hooks"
COOKBOOK = "sre.ganeti.addnode"
"""This cookbook's name: its undo steps name it, so that `cookbook --recover` finds undo() here."""


@dataclass(frozen=True)
class Check:
    """Outcome of one pre-check: what was checked, whether it passed, what was seen and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class TrustedFingerprint:
    """The fingerprint the node's host key must have, and where it comes from (None: ask the operator)."""

    fingerprint: str | None
    source: str


@dataclass(frozen=True)
class NetBoxTarget:
    """The node's NetBox device and the cluster it must join."""

    device: dict[str, Any]
    cluster: dict[str, Any]

    @property
    def done(self) -> bool:
        """Whether the device is already in the cluster."""
        return bool((self.device.get("cluster") or {}).get("id") == self.cluster["id"])


def trusted_fingerprint(given: str | None, device: dict[str, Any], fqdn: str) -> TrustedFingerprint:
    """The fingerprint to check the node against: given, else the device's NetBox custom field; both must agree.

    Without either, the operator must confirm at a terminal: refused here when there is none (-y, chat, cron).
    """
    stored = ((device.get("custom_fields") or {}).get(hostkeys.NETBOX_FIELD) or "").strip()
    if stored:
        try:
            stored = hostkeys.check_fingerprint(stored)
        except ValueError as exc:
            raise LibclusterError(f"NetBox device {fqdn}, custom field {hostkeys.NETBOX_FIELD}: {exc}") from None
    if given and stored and given != stored:
        raise LibclusterError(f"--ssh-host-key-fingerprint {given} differs from NetBox device {fqdn}'s "
                              f"{hostkeys.NETBOX_FIELD} {stored}: check the node's console and fix the wrong one")
    if given:
        return TrustedFingerprint(given, "--ssh-host-key-fingerprint")
    if stored:
        return TrustedFingerprint(stored, f"NetBox custom field {hostkeys.NETBOX_FIELD}")
    if not interactive.is_terminal():
        raise LibclusterError(
            f"no verified SSH host key for {fqdn}, and no terminal to confirm one (-y never accepts an unverified "
            f"key): give --ssh-host-key-fingerprint SHA256:... as read on the node's console (`ssh-keygen -lf "
            f"/etc/ssh/ssh_host_ed25519_key.pub`), or set it in the NetBox device's custom field "
            f"{hostkeys.NETBOX_FIELD}")
    return TrustedFingerprint(None, "the operator")


def new_errors(before: VerifyResult, after: VerifyResult) -> list[VerifyIssue]:
    """Errors of `after` that `before` did not have (same code on the same item), i.e. those the change caused."""
    known = {(issue.code, issue.item) for issue in before.errors}
    return [issue for issue in after.errors if (issue.code, issue.item) not in known]


def netbox_target(netbox: NetBox, settings: ClusterSettings, group: str, fqdn: str) -> NetBoxTarget:
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

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --group (or --readd) and the node's FQDN."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser)
        parser.add_argument("--readd", action="store_true",
                            help="re-add a node of the cluster that comes back (after sre.ganeti.node-down, or "
                            "reinstalled): `gnt-node add --readd`, in its own group (no --group)")
        parser.add_argument("--ssh-host-key-fingerprint", type=hostkeys.fingerprint_argument, metavar="SHA256:...",
                            help="SHA256 fingerprint of one of the node's SSH host keys, read on its console "
                            "(default: the NetBox device's custom field ssh_host_key_fingerprint, else the "
                            "operator confirms at a terminal)")
        parser.add_argument("fqdn", type=fqdn_argument, help="the new node's FQDN")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Check group, membership and NetBox objects; nothing is changed here."""
        settings = cluster_settings(self.ctx.config, args)
        cluster = self.ctx.ganeti(args.cluster)
        if args.readd:
            return self._readd_runner(args, settings, cluster)
        args.group = default_group(settings, args.group)
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
        return self._runner(AddNodeRunner, args, settings, cluster, args.group)

    def _readd_runner(self, args: argparse.Namespace, settings: ClusterSettings,
                      cluster: GanetiCluster) -> CookbookRunnerBase:
        """--readd: the node must be a node of the cluster other than the master; its group is Ganeti's."""
        if args.group:
            raise LibclusterError("--readd keeps the node's group in Ganeti: no --group")
        try:
            node = cluster.node(args.fqdn)
        except RapiNotFoundError:
            raise LibclusterError(f"no node {args.fqdn} in cluster {args.cluster}: add it with --group GROUP (a "
                                  "removed node is added, not readded)") from None
        if node.name == cluster.master():
            raise LibclusterError(f"{args.fqdn} is the master of cluster {args.cluster}: Ganeti cannot readd the "
                                  "master")
        group = next(group.name for group in cluster.groups() if group.uuid == node.group_uuid)
        return self._runner(ReaddNodeRunner, args, settings, cluster, group)

    def _runner(self, runner: type[AddNodeRunner], args: argparse.Namespace, settings: ClusterSettings,
                cluster: GanetiCluster, group: str) -> AddNodeRunner:
        """The runner of an add or a readd into group, once its NetBox device and host key are found and the hooks
        section is read (a broken one stops the run before any change)."""
        target = netbox_target(self.ctx.netbox(), settings, group, args.fqdn)
        trusted = trusted_fingerprint(args.ssh_host_key_fingerprint, target.device, args.fqdn)
        hooks = HookSettings.configured(self.ctx.config)
        if hooks:
            HookSettings.from_config(self.ctx.config)
        return runner(self.ctx, cluster, settings, group, args.fqdn, target, trusted, hooks=hooks)


class AddNodeRunner(CookbookRunnerBase):
    """Pre-checks, `gnt-node add`, verify (offering removal), NetBox."""

    def __init__(self, ctx: Context, cluster: GanetiCluster, settings: ClusterSettings, group: str, fqdn: str,
                 target: NetBoxTarget, trusted: TrustedFingerprint, *, hooks: bool) -> None:
        """Keep what get_runner found; hooks: whether hook events are configured (install-hooks can run)."""
        self.ctx = ctx
        self.cluster = cluster
        self.settings = settings
        self.group = group
        self.fqdn = fqdn
        self.target = target
        self.trusted = trusted
        self.hooks = hooks
        self.host_key: HostKey | None = None

    @property
    def runtime_description(self) -> str:
        """Node, cluster and group."""
        return f"for new node {self.fqdn} in cluster {self.cluster.name} group {self.group}"

    @property
    def lock_args(self) -> LockArgs:
        """One node change at a time per cluster."""
        return LockArgs(suffix=self.cluster.name, concurrency=1, ttl=None)

    def run(self) -> int:
        """The runbook: confirm, pre-check, verify, pin the keys, add, verify again, record in NetBox, hooks.

        Each change registers its undo first: unpin the keys while the node is not in the cluster; a node
        that joined stays (removing it unasked could be worse than finishing by hand) and is named as left
        behind (exit 93) with what is not done and the commands that finish or undo the add.
        """
        print(f"Adding node {self.fqdn} to cluster {self.cluster.name}, group {self.group}; NetBox device "
              f"{self.target.device['name']} joins cluster {self.target.cluster['name']}.", flush=True)
        self.ctx.confirm(f"Add {self.fqdn} to {self.cluster.name}/{self.group}?")
        master = self.cluster.master()
        if not self._prechecked(master):
            return 1
        before = verify_cluster(self.cluster.commands, "before the add")
        self._pin(master)
        self._undo("node-add", master=master)
        logger.info("Adding %s to group %s (gnt-node add on %s, host key checked)", self.fqdn, self.group, master)
        self.cluster.commands.node_add(self.fqdn, group=self.group, ssh_key_check=True)
        self.ctx.undo.enabled = False  # the node joined: from here on the run goes forward, nothing more is undone
        if not self.ctx.dry_run:
            after = verify_cluster(self.cluster.commands, "after the add")
            new = new_errors(before, after)
            if new or not (after.ok or after.errors):
                return self._verify_failed(after, new)
        self._update_netbox()
        return self._install_hooks()

    def _undo(self, action: str, **args: Any) -> None:
        """Register one of this cookbook's undo steps (see undo()) for the change about to be made."""
        self.ctx.undo.push(Undo("cookbook", action, self.fqdn, {
            "cookbook": COOKBOOK, "kind": "node", "cluster": self.cluster.name, "node": self.fqdn,
            "group": self.group, "device": self.target.device["name"], "netbox_cluster": self.target.cluster["name"],
            "netbox_cluster_id": self.target.cluster["id"], "hooks": self.hooks, **args}))

    # Pre-checks --------------------------------------------------------------------------

    def _prechecked(self, master: str) -> bool:
        """Run the pre-checks; log each failure with its fix and return False if any failed."""
        failed = [check for check in self.prechecks(master) if not check.ok]
        for check in failed:
            logger.error("Pre-check failed: %s: %s. Fix: %s", check.name, check.detail, check.fix)
        if failed:
            logger.error("%d pre-check(s) failed for %s: nothing was changed; fix and re-run the cookbook",
                         len(failed), self.fqdn)
        return not failed

    def _on(self, host: str, command: CommandSpec) -> HostResult:
        return self.ctx.remote().hosts([host]).run_sync(command, is_safe=True, timeout=CHECK_TIMEOUT)[host]

    def prechecks(self, master: str) -> list[Check]:
        """Run every pre-check (read-only) and log each outcome; stop after SSH if the host key or login fails."""
        checks = [self._host_key(master)]
        if checks[0].ok:
            checks.append(self._ssh_from_master(master))
        if checks[-1].ok:
            checks += [self._version(master), self._resolves(master), *self._bridges(), self._volume_group(),
                       self._virtualization()]
        for check in checks:
            logger.info("Pre-check %s: %s (%s)", check.name, "OK" if check.ok else "FAILED", check.detail)
        return checks

    def _host_key(self, master: str) -> Check:
        """The node's host key as the master sees it, matched against the trusted fingerprint (or the operator)."""
        name, fqdn = "SSH host key", self.fqdn
        scan = self._on(master, ["ssh-keyscan", "-T", "10", fqdn])
        seen = hostkeys.parse_keyscan(scan.output, fqdn)
        if not seen:
            return Check(name, False, f"{master} read no SSH host key from {fqdn}: {scan.output.strip()[-300:]}",
                         f"check that sshd runs on {fqdn} and that the master reaches it on port 22")
        shown = ", ".join(key.describe() for key in seen)
        expected = self.trusted.fingerprint
        if expected is None:
            listing = "".join(f"  {key.describe()}\n" for key in seen)
            print(f"The master sees these SSH host keys for {fqdn}:\n{listing}Compare them with the node's console "
                  "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`).", flush=True)
            if self.ctx.ask_input(f"Trust the SSH host keys of {fqdn}?", choices=["accept", "abort"]) != "accept":
                raise interactive.AbortError(f"aborted by the operator: SSH host keys of {fqdn} not trusted")
            expected = next((key for key in seen if key.kind == "ssh-ed25519"), seen[0]).fingerprint
        matching = [key for key in seen if key.fingerprint == expected]
        if not matching:
            return Check(name, False, f"mismatch: expected {expected} (from {self.trusted.source}), the master sees "
                         f"{shown}", f"check the fingerprint on {fqdn}'s console; if it is right, the master is not "
                         f"talking to the real {fqdn} (spoofed name or address): do not add it")
        self.host_key = matching[0]
        return Check(name, True, f"{self.host_key.describe()} of {fqdn}, trusted from {self.trusted.source}")

    def _ssh_from_master(self, master: str) -> Check:
        assert self.host_key is not None
        result = self._on(master, hostkeys.strict_probe(self.fqdn, self.host_key))
        if result.status is HostStatus.OK:
            return Check("SSH from the master", True, f"{master} -> {self.fqdn} as root, host key "
                         f"{self.host_key.fingerprint} proven")
        return Check("SSH from the master", False, f"{master} cannot log in to {self.fqdn} as root with host key "
                     f"{self.host_key.fingerprint}: {result.describe()}: {result.output.strip()[-300:]}",
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

    # Host key pinning --------------------------------------------------------------------

    def _pin(self, master: str) -> None:
        """Append the verified key and the cluster's host keys for the node to the master's known_hosts files."""
        assert self.host_key is not None
        cluster_keys = hostkeys.parse_public_keys(self._on(master, [
            "sh", "-c", 'for f in "$@"; do [ -f "$f" ] && cat "$f"; done; true', "-",
            *hostkeys.CLUSTER_HOST_KEYS]).output)
        lines = [key.line(self.fqdn) for key in dict.fromkeys([self.host_key, *cluster_keys])]
        pins: dict[str, list[str]] = {}
        for path in hostkeys.KNOWN_HOSTS_FILES:
            present = self._on(master, ["sh", "-c", 'cat "$1" 2>/dev/null; true', "-", path]).output.splitlines()
            pins[path] = [line for line in lines if line not in present]
        if not any(pins.values()):
            logger.info("Host keys of %s already pinned on %s", self.fqdn, master)
            return
        self._undo("unpin", master=master, pins=pins)
        logger.info("Pinning %s for %s in %s on %s", ", ".join(key.split()[1] for key in lines), self.fqdn,
                    " and ".join(path for path, new in pins.items() if new), master)
        self.ctx.remote().hosts([master]).run_sync(hostkeys.pin_program(pins), is_safe=False, timeout=CHECK_TIMEOUT)

    # After the add -----------------------------------------------------------------------

    def _install_hooks(self) -> int:
        """Install the hooks on the new node with the install-hooks cookbook; 1 (with the command) if it failed."""
        command = f"cookbook {INSTALL_HOOKS} --cluster {self.cluster.name} --node {self.fqdn}"
        if not self.hooks:
            logger.warning("No etcd configured for hook events (hooks.etcd_url, locks.etcd_url): hooks not "
                           "installed on %s (once configured: %s)", self.fqdn, command)
            return 0
        exit_code = self.ctx.run_cookbook(INSTALL_HOOKS, ["--cluster", self.cluster.name, "--node", self.fqdn],
                                          raises=False)
        if exit_code:
            logger.error("%s is in the cluster, but its hooks were not installed (exit code %d): run %s", self.fqdn,
                         exit_code, command)
            return 1
        return 0

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
        self.cluster.commands.node_remove(self.fqdn)
        logger.info("Removed %s from cluster %s again; NetBox unchanged", self.fqdn, self.cluster.name)
        return 1

    def _update_netbox(self) -> None:
        """The node's NetBox device joins the group's cluster (unless it is in it already)."""
        device, cluster = self.target.device, self.target.cluster
        if self.target.done:
            logger.info("NetBox: device %s is already in cluster %s", device["name"], cluster["name"])
            return
        self.ctx.netbox(read_write=True).update("device", [{"id": device["id"], "cluster": cluster["id"]}])
        if not self.ctx.dry_run:
            logger.info("NetBox: device %s joined cluster %s", device["name"], cluster["name"])


class ReaddNodeRunner(AddNodeRunner):
    """--readd: pre-checks, `gnt-node add --readd`, the node's role back, verify, NetBox, hooks."""

    @property
    def runtime_description(self) -> str:
        """Node, cluster and group."""
        return f"for node {self.fqdn} readded to cluster {self.cluster.name} group {self.group}"

    def run(self) -> int:
        """The runbook of --readd: confirm, lock the node, pre-check, verify, pin the keys, readd, role back, verify
        again, NetBox, hooks. Nothing is undone: the node was in the cluster before, and a failed readd is run
        again."""
        print(f"Readding node {self.fqdn} to cluster {self.cluster.name} (group {self.group}); NetBox device "
              f"{self.target.device['name']} in cluster {self.target.cluster['name']}.", flush=True)
        self.ctx.confirm(f"Readd {self.fqdn} to {self.cluster.name}/{self.group}?")
        resources.hold(self.ctx, self.cluster.name, node=self.fqdn)
        self.ctx.undo.enabled = False
        master = self.cluster.master()
        if not self._prechecked(master):
            return 1
        before = verify_cluster(self.cluster.commands, "before the readd")
        self._pin(master)
        logger.info("Readding %s (gnt-node add --readd on %s, host key checked)", self.fqdn, master)
        self.cluster.commands.node_add(self.fqdn, readd=True, ssh_key_check=True)
        role = readded(self.cluster, self.fqdn)
        verb = "would be" if self.ctx.dry_run else "is"
        print(f"{self.fqdn} {verb} {role.new.value} (was {role.old.value})", flush=True)
        if not self.ctx.dry_run:
            after = verify_cluster(self.cluster.commands, "after the readd")
            new = new_errors(before, after)
            for issue in new:
                logger.error("verify: %s %s %s: %s", issue.level, issue.code, issue.item, issue.message)
            if new or not (after.ok or after.errors):
                logger.error("gnt-cluster verify after readding %s: %s; the node stays in the cluster", self.fqdn,
                             f"{len(new)} new error(s)" if new else f"did not complete (exit code {after.rc})")
                return 1
        self._update_netbox()
        return self._install_hooks()

    def _update_netbox(self) -> None:
        """The device joins the group's cluster if it is not in it, and is active again if node-down marked it
        failed (any other status is the operator's: left as it is)."""
        super()._update_netbox()
        status = self.target.device.get("status") or {}
        if (status.get("value") if isinstance(status, dict) else status) == DOWN_DEVICE_STATUS:
            self.ctx.netbox(read_write=True).update("device", [{"id": self.target.device["id"], "status": "active"}])
            logger.info("NetBox: device %s is active again", self.target.device["name"])


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """This cookbook's undo steps (run by the rollback, or by `cookbook --recover` of a run that died).

    "unpin": remove the host keys a run pinned on the master, unless the node is in the cluster now.
    "node-add": nothing to do if the node did not join; a node that joined stays and LibclusterError names
    it, what of NetBox and the hooks may not be done, and the commands that finish the work or undo the add.
    """
    cluster, node = ctx.ganeti(str(args["cluster"])), str(args["node"])
    try:
        cluster.node(node)
        joined = True
    except RapiNotFoundError:
        joined = False
    if action == "unpin":
        if joined:
            return "absent"  # the keys of a member node stay
        pins = {str(path): [str(line) for line in lines] for path, lines in dict(args["pins"]).items()}
        ctx.remote().hosts([str(args["master"])]).run_sync(hostkeys.unpin_program(pins), is_safe=False,
                                                          timeout=CHECK_TIMEOUT)
        logger.info("Removed the host keys pinned for %s from %s again", node, args["master"])
        return "undone"
    if action != "node-add":
        raise LibclusterError(f"{COOKBOOK} has no undo action {action!r}")
    if not joined:
        logger.info("%s did not join cluster %s: nothing is left", node, cluster.name)
        return "absent"
    left = [f"{node} is a node of cluster {cluster.name} (group {args['group']})"]
    device = ctx.netbox().find("device", name=str(args["device"]))
    if device is None or (device.get("cluster") or {}).get("id") != args["netbox_cluster_id"]:
        left.append(f"NetBox device {args['device']} is not in cluster {args['netbox_cluster']} yet "
                    f"(sre.ganeti.sync-netbox --cluster {cluster.name} sets it)")
    if args.get("hooks"):
        left.append(f"its hooks may not be installed (cookbook {INSTALL_HOOKS} --cluster {cluster.name} "
                    f"--node {node})")
    raise LibclusterError(f"left: {'; '.join(left)}; to undo the add instead: gnt-node remove {node} on "
                          f"{args['master']}")
