"""Reconcile Ganeti into NetBox: clusters, node devices, VMs with sizes, status, NICs, MACs and addresses.

Whole cluster (the default):
  1. Read Ganeti (RAPI: groups, instances) and NetBox (the cluster group, its clusters, the node
     devices, VMs, interfaces, addresses) in bulk: a few paged reads whatever the cluster's size.
  2. Print the difference as a table. Mapping: node group -> cluster of the cluster group; node ->
     its device's cluster; instance -> VM (vcpus, memory and disk in MB, status running -> active,
     stopped -> offline, error -> failed), each NIC an interface with Ganeti's MAC; primary IPs are
     kept; a VM without any address gets its Ganeti NIC IP; without one it is recorded without
     address and reported, unless sync.allocate_ips (default false) allocates from its group's
     prefixes, and then its Ganeti NIC is given the IPv4 address (a RAPI modify job), so both agree.
  3. Write only the differences, in bulk calls. VMs NetBox has and Ganeti not are only reported:
     --delete removes them (the DNS records of their addresses first, so a failed DNS update leaves
     NetBox as it was for a retry; then their addresses released, or kept with sync.release_ips:
     false), and more
     than the delete limit (sync.max_delete, lowered to sync.max_delete_percent of the VMs on small
     clusters) stops and asks for their number to be typed.
  With -d nothing is written: the table is what would change. --match GLOB limits the VMs compared
  (instances and NetBox VMs) to matching names, and the delete limit to their number.

One VM (--vm FQDN, what the hooks agent runs after a hand-made change): the VM is recorded (or, gone
from Ganeti and --delete given, deleted), gets addresses if it has none (as above), and its DNS records
are made to match its addresses; --renamed-from OLD first gives OLD's NetBox VM and addresses the new
name (only when Ganeti no longer has OLD and NetBox has no VM called FQDN yet), after OLD's DNS records
went. Only DNS records NetBox accounts for when the run starts (the names and addresses of the
addresses of the VMs named FQDN or OLD in the cluster group) are replaced or deleted: any other record
of the name is left as it is and reported ("kept"); zone apexes, name servers and rrsets outside the
dns.netbox scope (names, networks) are never touched, not even added. A name in neither Ganeti nor the
NetBox cluster group changes nothing, and the run says so. An allocated IPv6 address is reported as not
carried by Ganeti's NIC (one IP); a NetBox IPv4 address the NIC does not have is carried to a NIC without
IP when sync.allocate_ips, otherwise reported.

A failed or interrupted run is not rolled back (it converges: running it again completes the work);
its writes are in the audit journal, and `cookbook --recover` of it undoes nothing.

Usage:
  cookbook -d sre.ganeti.sync-netbox --cluster prod1
  cookbook sre.ganeti.sync-netbox --cluster prod1 --delete
  cookbook sre.ganeti.sync-netbox --cluster prod1 --match 'web*'
  cookbook sre.ganeti.sync-netbox --cluster prod1 --vm vm1.example.org
"""

from __future__ import annotations

import argparse
import logging
import time

from libcluster import locks, resources
from libcluster.arguments import add_location_args, cluster_settings
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.ganeti import GanetiCluster
from libcluster.netbox import NetBox
from libcluster.sync import cluster as sync_cluster
from libcluster.sync import dns as sync_dns
from libcluster.sync.instance import Follower
from libcluster.sync.netbox_dns import DNSSyncSettings

logger = logging.getLogger(__name__)


class SyncNetbox(CookbookBase):
    """Reconcile Ganeti into NetBox (whole cluster, or one VM with its DNS records)."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, and optionally --vm, --renamed-from, --delete."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--vm", metavar="FQDN", help="sync only this VM (and its DNS records)")
        parser.add_argument("--renamed-from", metavar="FQDN", help="with --vm: the VM's name before a rename")
        parser.add_argument("--match", action="append", metavar="GLOB",
                            help="only VMs whose name matches (repeatable), e.g. 'web*': the others are not compared")
        parser.add_argument("--delete", action="store_true",
                            help="delete NetBox VMs that Ganeti no longer has (within the delete limit)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> SyncNetboxRunner:
        """Check the cluster is configured and the options fit together; nothing is read yet."""
        if args.renamed_from and not args.vm:
            raise ValueError("--renamed-from needs --vm")
        if args.match and args.vm:
            raise ValueError("--match and --vm exclude each other")
        return SyncNetboxRunner(self.ctx, args, cluster_settings(self.ctx.config, args))


class SyncNetboxRunner(CookbookRunnerBase):
    """Reads both sides, shows the difference, writes it."""

    def __init__(self, ctx: Context, args: argparse.Namespace, settings: ClusterSettings) -> None:
        """Keep the context, the arguments and the cluster's settings; open the clients (no request yet)."""
        self.ctx = ctx
        ctx.undo.enabled = False  # converging: a failed sync is finished by the next one, its writes are not undone
        self.args = args
        self.settings = settings
        self.sync = sync_cluster.SyncSettings.from_config(ctx.config)
        self.netbox: NetBox = ctx.netbox(read_write=True)
        self.ganeti: GanetiCluster = ctx.ganeti(args.cluster)

    @property
    def runtime_description(self) -> str:
        """Which cluster (and VM)."""
        what = f"VM {self.args.vm} of " if self.args.vm else ""
        return f"for {what}cluster {self.args.cluster}" + (" with --delete" if self.args.delete else "")

    @property
    def lock_args(self) -> LockArgs:
        """One sync per cluster at a time (a VM sync and a cluster sync would create the same VM twice)."""
        return LockArgs(suffix=self.args.cluster, concurrency=1, ttl=None)

    def _being_created(self, names: set[str]) -> set[str]:
        """Of names, the instances whose instance lock a cookbook holds (makevm creating one records it itself)."""
        backend = locks.from_config(self.ctx.config, owner="sync-netbox", dry_run=True).backend
        return resources.instances_held(backend, self.args.cluster, names)

    def run(self) -> int:
        """Sync one VM or the whole cluster."""
        if self.args.vm:
            if self._being_created({self.args.vm}):
                logger.warning("A cookbook holds the instance lock of %s (creating or changing it): left alone",
                               self.args.vm)
                return 0
            follower = Follower(self.netbox, self.ctx.dns(), self.ganeti, self.settings, self.sync,
                                DNSSyncSettings.from_config(self.ctx.config))
            done = follower.follow(self.args.vm, delete=self.args.delete, renamed_from=self.args.renamed_from)
            logger.info("%s:\n%s", done.name, sync_cluster.table(done.rows))
            return 0
        return self._cluster()

    def _cluster(self) -> int:
        started, requests = time.monotonic(), self.netbox.request_count
        state = sync_cluster.GanetiState.read(self.ganeti)
        prefixes = [p for group in self.settings.groups.values() for p in group.all_prefixes]
        current = sync_cluster.NetBoxState.read(self.netbox, self.settings.netbox_cluster_group, state, prefixes)
        if self.args.match:
            state, current = sync_cluster.narrowed(state, current, self.args.match)
        busy = self._being_created({str(i["name"]) for i in state.instances} - {str(vm["name"]) for vm in current.vms})
        plan = sync_cluster.compute(state, current, self.settings, self.sync, delete=self.args.delete, busy=busy)
        logger.info("Ganeti %s: %d instances; NetBox cluster group %s: %d VMs (read in %.1fs, %d NetBox requests)",
                    self.args.cluster, len(state.instances), current.group["name"], len(current.vms),
                    time.monotonic() - started, self.netbox.request_count - requests)
        logger.info("Difference:\n%s", plan.table())
        if self.args.delete and plan.extra:
            limit = self.sync.delete_limit(len(current.vms))
            if len(plan.extra) > limit:
                count = str(len(plan.extra))
                self.ctx.ask_input(f"{count} of the {len(current.vms)} NetBox VMs would be deleted, more than the "
                                   f"limit of {limit} (sync.max_delete, sync.max_delete_percent). Type {count} to "
                                   "delete them", choices=[count])
        retired = self.netbox.objects("ip-address", virtual_machine_id=[int(vm["id"]) for vm in plan.extra]) \
            if self.args.delete and plan.extra else []
        # DNS first: a failed update leaves NetBox as it was, so a retry still accounts for these records.
        for diff in sync_dns.retire(self.ctx.dns(), retired):
            for change in diff:
                logger.info("DNS of a deleted VM: %s", change.describe())
            for item in diff.left:
                logger.warning("DNS record not ours, left as is: %s", item.describe())
        applied = sync_cluster.apply(self.netbox, plan, self.sync, delete=self.args.delete, ganeti=self.ganeti)
        logger.info("%s: %s (%d NetBox requests in %.1fs)", "Planned" if self.ctx.dry_run else "Written",
                    applied.describe(), self.netbox.request_count - requests, time.monotonic() - started)
        return 0
