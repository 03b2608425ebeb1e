"""Add, grow or remove a disk of a Ganeti VM, and keep its NetBox VM's disk total true.

Actions (sizes in GB like makevm's, e.g. 1 or 1.5; INDEX is Ganeti's disk index, 0 for the first disk):
  add SIZE          a new disk of SIZE GB
  grow INDEX SIZE   disk INDEX grown TO SIZE GB (an absolute size: never smaller than now, never shrunk)
  remove INDEX      disk INDEX removed with its data; only from a STOPPED instance (sre.ganeti.stop-vm),
                    and only after a typed confirmation: the disk index and the FQDN as INDEX:FQDN (e.g.
                    1:vm1.lab.example); without a terminal (chat, automation) --confirm INDEX:FQDN must
                    repeat it; -y never answers it.
Steps:
  1. Check (nothing is changed if one fails, exit 10): the instance and the disk index exist, a grow is to a
     larger size, the new size and disk count are inside the group's instance policy, the nodes holding the
     instance's disks (primary and drbd secondary) have the free storage (Ganeti's node dfree), a remove is
     of a stopped instance.
  2. Show old -> new and confirm, take the instance's lock (the one reboot-vm, changedisk and the sync
     take), held until any rollback is done.
  3. The change through the RAPI, showing the job's progress. The job waits until mirrored (drbd) disks are
     in sync before it ends (Ganeti's wait_for_sync; on the lab, which has no drbd, only unit-tested on
     recorded job output).
  4. Set the NetBox VM's disk total (a VM NetBox lacks is reported, not created).
  5. Say what the guest must still do: grow its partition and filesystem; use a new disk (it may appear
     only at the next start through Ganeti, and may rename devices: mount by UUID or label).
Rollback (a step fails, Ctrl-C, `cancel` from chat; `cookbook --recover` of a run that died runs the same
undo steps): the NetBox disk total is put back and a disk this run added is removed (by the name Ganeti
gave it, only while it has the size added). Ganeti removes a disk from a running instance only with
hotplug: otherwise the undo fails, names the disk (exit 93) and says to stop the instance and remove it.
A grow cannot be undone (Ganeti cannot shrink a disk), nor a remove (the data is gone).
Exit codes: 0 done; 10 a check of step 1 failed (nothing changed); 94 unknown cluster or instance; 99 a
step failed or a confirmation was refused or wrong (rolled back); 97 interrupted (rolled back); 93 the
rollback left something (named). With -d Ganeti checks the change (its dry-run job); the NetBox change
is only listed.

Usage:
  cookbook sre.ganeti.disk --cluster lab -t T12345 vm1.lab.example add 10
  cookbook sre.ganeti.disk --cluster lab vm1.lab.example grow 0 20.5
  cookbook sre.ganeti.disk --cluster lab --confirm 1:vm1.lab.example vm1.lab.example remove 1
"""

from __future__ import annotations

import argparse
import logging

from libcluster import resources, vmops
from libcluster.arguments import add_location_args, fqdn_argument, positive_float
from libcluster.capacity import format_mib
from libcluster.clusters import ClusterSettings
from libcluster.context import Context
from libcluster.cookbook import ArgparseFormatter, CookbookBase, CookbookRunnerBase
from libcluster.ganeti import GanetiCluster, Instance, fit
from libcluster.interactive import AbortError, InputError, is_terminal

logger = logging.getLogger(__name__)

EXIT_PRECHECK_FAILED = 10
"""Unknown disk index, a size not larger than now, outside the policy, no free storage, a running instance."""


def index_arg(value: str) -> int:
    """Argparse type of a disk index: an integer >= 0."""
    try:
        index = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a disk index (0 for the first disk)") from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a disk index: 0 for the first disk, 1 for the second...")
    return index


def mib(gigabytes: float) -> int:
    """A size in GB (as typed) in MiB, as Ganeti takes it."""
    return max(1, round(gigabytes * 1024))


class Disk(CookbookBase):
    """Add, grow or remove a disk of a VM; NetBox's disk total follows."""

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """--cluster, --confirm, the instance, then the action and its arguments."""
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=ArgparseFormatter)
        add_location_args(parser, group=False)
        parser.add_argument("--confirm", metavar="INDEX:FQDN",
                            help="for remove without a terminal: the disk index and the FQDN, e.g. 1:vm1.lab.example")
        parser.add_argument("fqdn", type=fqdn_argument, help="the instance's name (FQDN)")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser("add", help="add a disk of SIZE GB")
        add.add_argument("size", type=positive_float, metavar="SIZE", help="size in GB, e.g. 1 or 1.5")
        grow = actions.add_parser("grow", help="grow disk INDEX to SIZE GB (never shrinks)")
        grow.add_argument("index", type=index_arg, metavar="INDEX", help="the disk's index (0: the first disk)")
        grow.add_argument("size", type=positive_float, metavar="SIZE", help="the new size in GB, e.g. 20 or 20.5")
        remove = actions.add_parser("remove", help="remove disk INDEX of a stopped instance (data lost)")
        remove.add_argument("index", type=index_arg, metavar="INDEX", help="the disk's index (0: the first disk)")
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Read the instance (an unknown cluster or instance is refused here); the checks come in run()."""
        if args.confirm is not None and args.action != "remove":
            raise ValueError("--confirm only applies to remove")
        settings, cluster, instance = vmops.read_instance(self.ctx, args)
        return DiskRunner(self.ctx, settings, cluster, instance, args)


class DiskRunner(CookbookRunnerBase):
    """Check, confirm, change the disk through Ganeti, NetBox's disk total, what the guest must do."""

    def __init__(self, ctx: Context, settings: ClusterSettings, cluster: GanetiCluster, instance: Instance,
                 args: argparse.Namespace) -> None:
        """Keep what get_runner read and the action."""
        self.ctx = ctx
        self.settings = settings
        self.cluster = cluster
        self.fqdn = args.fqdn
        self.instance = instance
        self.action: str = args.action
        self.index: int | None = getattr(args, "index", None)
        self.size = mib(args.size) if getattr(args, "size", None) is not None else None
        self.confirm = args.confirm

    @property
    def runtime_description(self) -> str:
        """VM, cluster and the change."""
        return f"for {self.fqdn} on cluster {self.cluster.name}: {self._change()}"

    def _change(self) -> str:
        if self.action == "add":
            return f"add a {format_mib(self.size or 0)} disk"
        if self.action == "grow":
            return f"grow disk {self.index} to {format_mib(self.size or 0)}"
        return f"remove disk {self.index}"

    def _sizes_after(self) -> list[int]:
        """The instance's disk sizes (MiB) after the change."""
        sizes = list(self.instance.disk_sizes)
        if self.action == "add":
            sizes.append(self.size or 0)
        elif self.action == "grow" and self.index is not None:
            sizes[self.index] = self.size or 0
        elif self.index is not None:
            sizes.pop(self.index)
        return sizes

    def problems(self) -> list[str]:
        """Step 1: index and size, the group's policy, free storage, a stopped instance for remove."""
        instance = self.instance
        if self.action == "add" and instance.disk_template == "diskless":
            return [f"{self.fqdn} is diskless: Ganeti adds no disk to a diskless instance (sre.ganeti.changedisk)"]
        if self.index is not None:
            found = fit.disk_problems(instance, self.index, self.size if self.action == "grow" else None)
            if found:
                return found
        if self.action == "remove" and instance.admin_state != "down":
            return [f"{self.fqdn} is {instance.admin_state} in Ganeti: a disk is removed only from a stopped "
                    "instance (stop it first: sre.ganeti.stop-vm)"]
        values = {"disk-count": len(self._sizes_after())}
        if self.size is not None:
            values["disk-size"] = self.size
        nodes = self.cluster.nodes()
        found = []
        primary = next((node for node in nodes if node.name == instance.primary_node), None)
        group = next((group for group in self.cluster.groups() if primary and group.uuid == primary.group_uuid), None)
        if group is not None:
            found += [f"group {group.name}'s instance policy: {text}" for text in fit.policy_problems(group.ipolicy,
                                                                                                      values)]
        extra = sum(self._sizes_after()) - sum(instance.disk_sizes)
        return found + fit.storage_problems(instance, extra, nodes)

    def run(self) -> int:
        """The runbook: check, show, confirm, lock, change, NetBox, what the guest must do."""
        problems = self.problems()
        if problems:
            logger.error("%s: cannot %s, nothing was changed:\n%s", self.fqdn, self._change(),
                         "\n".join(f"  - {problem}" for problem in problems))
            return EXIT_PRECHECK_FAILED
        old, new = self.instance.disk_sizes, self._sizes_after()
        print(f"{self.fqdn} on cluster {self.cluster.name} ({self.instance.disk_template}, nodes "
              f"{', '.join(self.instance.nodes)}): {self._change()}\n"
              f"  disks: {_disks(old)} -> {_disks(new)}\n"
              f"  NetBox VM disk: {sum(old)} MB -> {sum(new)} MB", flush=True)
        if self.action == "remove":
            self._confirm_removal()
        else:
            change = self._change()
            self.ctx.confirm(f"{change[0].upper()}{change[1:]} of {self.fqdn}?")
        resources.hold(self.ctx, self.cluster.name, instances=[self.fqdn])  # until the run and its undo end
        if self.action == "add":
            job = self.cluster.add_disk(self.fqdn, self.size or 0)
        elif self.action == "grow":
            job = self.cluster.grow_disk_to(self.fqdn, self.index or 0, self.size or 0)
        else:
            job = self.cluster.remove_disk(self.fqdn, self.index or 0)
        job.wait()
        sizes = new if self.ctx.dry_run else list(self.cluster.instance(self.fqdn).disk_sizes)
        vmops.follow_size(self.ctx, self.settings, self.fqdn, {"disk": sum(sizes)})
        logger.info("%s: disks %s %s. %s", self.fqdn, "planned:" if self.ctx.dry_run else "now", _disks(sizes),
                    self._guest_todo())
        return 0

    def _confirm_removal(self) -> None:
        """The operator types INDEX:FQDN (at a terminal) or repeats it with --confirm; -y never answers this."""
        wanted = f"{self.index}:{self.fqdn}"
        what = f"Disk {self.index} of {self.fqdn} and ALL ITS DATA will be removed"
        if self.confirm is not None:
            if self.confirm != wanted:
                raise AbortError(f"--confirm {self.confirm} is not {wanted}: nothing done")
            logger.info("==> %s: confirmed by --confirm", what)
            return
        if not is_terminal():
            raise InputError(f"{what}: type {wanted} at a terminal, or repeat it with --confirm {wanted} "
                             "(-y does not answer this)")
        answer = self.ctx.ask_input(f"{what}. Type the disk index and the FQDN ({wanted}) to confirm")
        if answer != wanted:
            raise AbortError(f"typed {answer!r}, not {wanted}: nothing done")

    def _guest_todo(self) -> str:
        """What is left to do inside the guest."""
        if self.action == "grow":
            return (f"In the guest: grow the partition and filesystem on disk {self.index} (e.g. growpart, then "
                    "resize2fs or xfs_growfs); a running guest may see the new size only after a reboot through "
                    "Ganeti (sre.ganeti.reboot-vm).")
        if self.action == "add":
            return ("In the guest: the new disk appears at the next start through Ganeti (sre.ganeti.reboot-vm) "
                    "unless the hypervisor hotplugged it; device names may change (vdb may become another name): "
                    "partition it, make a filesystem and mount it by UUID or label.")
        return ("In the guest: remove the removed disk's mounts (fstab) before it starts; the remaining disks may "
                "be renamed: mount by UUID or label.")


def _disks(sizes: list[int] | tuple[int, ...]) -> str:
    return ", ".join(f"{index}: {format_mib(size)}" for index, size in enumerate(sizes)) or "none"
