"""Decommission a VM: remove its Ganeti instance, then its NetBox VM, its addresses and its DNS records.

Steps:
  1. Read what goes: the instance in --cluster (nodes, disks), its NetBox VM in the cluster group with
     its interfaces and addresses, and its DNS records (A, AAAA, PTR) that NetBox accounts for. An
     address on its interfaces named after another host (another dns_name) is not its own, nor is a
     DNS record NetBox does not account for: both are listed as kept.
  2. Print the plan. With -d Ganeti also checks the remove (its dry-run job).
  3. The operator types the VM's FQDN to confirm; without a terminal (chat, automation) --confirm-fqdn
     FQDN must repeat it. -y never answers this. From chat a real run also needs an approval (the
     cookbook is listed in chatops.need_approval of the example configuration).
  4. Take the instance's lock (the one reboot-vm, changedisk and the sync take) until the run ends.
  5. Remove the instance through the RAPI: one Ganeti job shuts it down (forced off after
     --shutdown-timeout seconds) and deletes it with its disks, showing the job's log.
  6. Then, with the code of `sync-netbox --vm FQDN --delete` (libcluster.sync.instance.Follower.retire):
     remove its DNS records, release its addresses (kept reserved when sync.release_ips is false), and
     delete the NetBox VM with its interfaces. Addresses named after another host are kept with their
     DNS records (unassigned from its interface, which goes) and reported.
An instance Ganeti no longer has (a run interrupted after step 5) is not an error when NetBox still has
the VM: the run does step 6 only.
Nothing is undone. If the Ganeti removal fails, NetBox and DNS are not touched. Once the instance is
gone, a failure in step 6 is finished by running this cookbook again (or `sync-netbox --vm FQDN --delete`).
Exit codes: 0 removed everywhere (or, with -d, the plan checked); 94 unknown cluster, or neither Ganeti
nor the NetBox cluster group has the VM (nothing changed); 99 the FQDN was not confirmed (nothing
changed), Ganeti refused the remove (with -d: its check; NetBox and DNS untouched) or step 6 failed
(the instance is gone: run again); 97 interrupted.

Usage:
  cookbook -d sre.ganeti.decommission-vm --cluster lab vm1.lab.example
  cookbook sre.ganeti.decommission-vm --cluster lab -t T12345 vm1.lab.example
  cookbook -y sre.ganeti.decommission-vm --cluster lab --confirm-fqdn vm1.lab.example vm1.lab.example
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources, vmops
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.capacity import format_mib
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, Instance, RapiNotFoundError
from libcluster.sync import cluster as sync_cluster
from libcluster.sync.instance import Follower, Leaving
from libcluster.sync.netbox_dns import DNSSyncSettings

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT = 120
"""Seconds the guest gets to shut down before Ganeti forces it off."""


class DecommissionVM(CookbookBase):
    """Remove a VM for good: its Ganeti instance and disks, NetBox VM, addresses and DNS records."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --confirm-fqdn, --shutdown-timeout and the instance (-t is added by the runner)."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--confirm-fqdn", type=fqdn_argument, metavar="FQDN",
                            help="repeat the VM's FQDN to confirm without a terminal (-y never confirms this)")
        parser.add_argument("--shutdown-timeout", type=int, default=DEFAULT_SHUTDOWN_TIMEOUT, metavar="SECONDS",
                            help="seconds the guest gets to shut down before Ganeti forces it off")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance (it may be gone already if NetBox still has the VM); nothing changes here."""
        if args.shutdown_timeout < 0:
            raise ValueError("--shutdown-timeout must be >= 0")
        settings = cluster_settings(self.ctx.config, args)
        cluster = self.ctx.ganeti(settings.name)
        follower = Follower(self.ctx.netbox(read_write=True), self.ctx.dns(), cluster, settings,
                            sync_cluster.SyncSettings.from_config(self.ctx.config),
                            DNSSyncSettings.from_config(self.ctx.config))
        try:
            instance: Instance | None = cluster.instance(args.fqdn)
        except RapiNotFoundError:
            instance = None
        leaving = follower.leaving(args.fqdn)
        if instance is None and not leaving.vms:
            raise LibclusterError(f"no instance {args.fqdn} in cluster {settings.name} and no NetBox VM of that name "
                                  f"in cluster group {settings.netbox_cluster_group}: nothing to decommission")
        return DecommissionVMRunner(self.ctx, settings, cluster, follower, instance, leaving, args)


class DecommissionVMRunner(CookbookRunnerBase):
    """Plan, typed confirmation, lock, Ganeti remove, then NetBox and DNS through the sync's one-VM code."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster, follower: Follower,
                 instance: Instance | None, leaving: Leaving, args: argparse.Namespace) -> None:
        """Keep what get_runner read; nothing of this run is undone (the remove cannot be, the rest converges)."""
        self.ctx = ctx
        ctx.undo.enabled = False
        self.settings = settings
        self.cluster = cluster
        self.follower = follower
        self.instance = instance
        self.leaving = leaving
        self.fqdn: str = args.fqdn
        self.confirm_fqdn: str | None = args.confirm_fqdn
        self.shutdown_timeout: int = args.shutdown_timeout

    @property
    def runtime_description(self) -> str:
        """VM and cluster (the runner adds the task id)."""
        return f"for {self.fqdn} on cluster {self.cluster.name}"

    def run(self) -> int:
        """The runbook: plan, Ganeti's check (dry-run), typed confirmation, lock, remove, NetBox and DNS."""
        print(self.plan(), flush=True)
        if self.ctx.dry_run and self.instance is not None:
            logger.info("Ganeti checks the remove of %s (dry-run job)", self.fqdn)
            self.cluster.remove_instance(self.fqdn, shutdown_timeout=self.shutdown_timeout).wait()
        vmops.confirm_fqdn(self.ctx, self.fqdn, self.confirm_fqdn,
                           f"Decommissioning {self.fqdn} destroys its instance and disks for good")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])
        if self.instance is not None and not self.ctx.dry_run:
            try:
                self.cluster.instance(self.fqdn)
            except RapiNotFoundError:
                logger.warning("%s was removed from Ganeti meanwhile", self.fqdn)
            else:
                self.cluster.remove_instance(self.fqdn, shutdown_timeout=self.shutdown_timeout).wait()
                logger.info("Ganeti removed %s and its disks", self.fqdn)
        try:
            done = self.follower.retire(self.fqdn)
        except LibclusterError as exc:
            raise LibclusterError(f"{self.fqdn} is gone from Ganeti, but its NetBox and DNS records are not all "
                                  f"removed ({exc}): run this cookbook again to finish") from exc
        logger.info("NetBox and DNS of %s:\n%s", self.fqdn, sync_cluster.table(done.rows))
        kept = [row for row in done.rows if row.action == "kept"]
        if kept:
            logger.warning("%d record(s) of %s are not its own and were left as they are (see 'kept' above)",
                           len(kept), self.fqdn)
        logger.info("%s %s", self.fqdn, "would be decommissioned (dry-run: nothing changed)" if self.ctx.dry_run
                    else "is decommissioned")
        return 0

    def plan(self) -> str:
        """What goes, and what is kept as not its own: instance and disks, NetBox VM, interfaces, addresses, DNS."""
        leaving, instance = self.leaving, self.instance
        lines = [f"Decommissioning {self.fqdn} (cluster {self.cluster.name}): this cannot be undone."]
        if instance is None:
            lines.append("  Ganeti: no such instance any more (removed already): only NetBox and DNS are cleaned")
        else:
            nodes = " + ".join((instance.primary_node, *instance.secondary_nodes))
            disks = ", ".join(f"disk {index}: {format_mib(size)}" for index, size in enumerate(instance.disk_sizes))
            lines.append(f"  Ganeti: instance on {nodes} ({instance.disk_template}, {instance.status}, "
                         f"{instance.vcpus} vCPU, {format_mib(instance.memory or 0)} memory), shut down (forced off "
                         f"after {self.shutdown_timeout} s) and removed with its disks ({disks or 'none'})")
        verb = "released" if self.follower.sync.release_ips else "kept, reserved, without DNS name (sync.release_ips)"
        for vm in leaving.vms:
            lines.append(f"  NetBox: VM {vm['name']} (id {vm['id']}, cluster {(vm.get('cluster') or {}).get('name')}) "
                         "deleted")
        lines += [f"          interface {iface['name']} (id {iface['id']}) deleted" for iface in leaving.interfaces]
        lines += [f"          address {ip['address']} (id {ip['id']}) {verb}" for ip in leaving.owned]
        lines += [f"          KEPT: address {ip['address']} (id {ip['id']}) named {ip['dns_name']}: not its own, "
                  "unassigned from its interface" for ip in leaving.foreign]
        if not leaving.vms:
            lines.append(f"  NetBox: no VM {self.fqdn} in cluster group {self.settings.netbox_cluster_group}")
        if leaving.dns is None:
            lines.append("  DNS: no configured zone holds the name: nothing changed")
        else:
            lines.append("  DNS:" + ("" if leaving.dns else " no record to remove"))
            lines += [f"    {line}" for line in leaving.dns.lines()]
            lines += [f"    KEPT: {item.describe()}" for item in leaving.dns.left]
        return "\n".join(lines)
