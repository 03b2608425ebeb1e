"""Create a Ganeti VM with its IP addresses, DNS records and NetBox records, or leave nothing behind."""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from libcluster import parallel, resources
from libcluster.arguments import add_location_args, cluster_settings, default_group, positive_float, positive_int
from libcluster.capacity import format_mib
from libcluster.clusters import ClusterSettings, GroupSettings, NetworkSettings
from libcluster.context import Context
from libcluster.cookbook import CookbookBase, CookbookRunnerBase, LockArgs
from libcluster.dns import Diff
from libcluster.dns.protection import owns_nothing
from libcluster.dns.scope import OUTSIDE
from libcluster.errors import LibclusterError
from libcluster.ganeti import GanetiCluster, JobFailedError, JobHandle, RapiNotFoundError, fit, macs
from libcluster.sync import dns as sync_dns
from libcluster.sync import vm as sync_vm

logger = logging.getLogger(__name__)

EXIT_STEP_FAILED = 1
"""A step after the confirmation failed; what the run created was removed."""
EXIT_PRECHECK_FAILED = 10
"""A pre-check failed (name taken, size outside the policy, template not enabled...): nothing changed."""
EXIT_DOES_NOT_FIT = 11
"""Ganeti's allocator found no node with enough resources: nothing changed."""

SHORTAGES = {"FailMem": "memory", "FailDisk": "disk", "FailCPU": "vCPUs (vcpu-ratio)", "FailN1": "N+1 redundancy",
             "FailSpindles": "spindles", "FailTooSmall": "instance policy (too small)",
             "FailTooBig": "instance policy (too big)", "FailInternal": "allocator error"}
"""hail's failure reasons and the resource each one means."""
FIT_CLASSIFICATIONS = ("insufficient_resources", "temp_insufficient_resources")
"""Ganeti classifications of a create that failed for lack of resources."""

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SHORTAGE = re.compile(r"\b(Fail[A-Za-z0-9]+): (\d+)")


class PrecheckError(LibclusterError):
    """Step 1 or 2 found a reason not to create the VM; nothing was changed."""


class NoCapacityError(PrecheckError):
    """Ganeti's allocator found no node in the group with enough resources."""


def _problems(problems: list[str]) -> PrecheckError:
    """One PrecheckError listing problems, one per line."""
    return PrecheckError("\n".join(f"  - {problem}" for problem in problems))


def hostname_arg(value: str) -> str:
    """Argparse type of HOSTNAME: one DNS label (the cluster's domain is appended), not an FQDN."""
    if "." in value:
        raise argparse.ArgumentTypeError(
            f"{value!r} looks like an FQDN: give the host name only (e.g. {value.split('.', 1)[0]!r}); "
            "the cluster's domain is appended")
    if not _LABEL.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid DNS label: 1 to 63 lowercase letters, digits and hyphens, "
            "not starting or ending with a hyphen")
    return value


@dataclass(frozen=True)
class VMSpec:
    """The VM to create, with the cluster defaults applied: sizes in MiB as Ganeti takes them."""

    fqdn: str
    cluster: str
    group: GroupSettings
    network: NetworkSettings
    """The group's network the VM is on (--network, default defaults.network): its NIC link and prefixes."""
    vcpus: int
    memory: int
    disk: int
    disk_template: str
    os_type: str
    install: bool
    skip_v6: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace, settings: ClusterSettings) -> VMSpec:
        """Apply the cluster's defaults to the arguments; ValueError names a wrong one."""
        defaults = settings.defaults
        given = vars(args)
        os_name = given.get("os") or defaults.os
        if os_name == "none" and defaults.os == "none":
            raise ValueError(f"--os none creates the instance with the OS definition of the cluster's defaults.os, "
                             f"but cluster {settings.name} sets defaults.os to 'none'")
        fqdn = settings.fqdn(args.hostname)
        if len(fqdn) > 253:
            raise ValueError(f"{fqdn} is longer than 253 characters")
        group = settings.group(default_group(settings, args.group))
        network = group.network(given.get("network") or defaults.network)
        return cls(
            fqdn=fqdn, cluster=settings.name, group=group, network=network,
            vcpus=given.get("vcpus") or defaults.vcpus,
            memory=max(1, round((given.get("memory") or defaults.memory) * 1024)),
            disk=(given.get("disk") or defaults.disk) * 1024,
            disk_template=given.get("disk_template") or defaults.disk_template,
            os_type=defaults.os if os_name == "none" else os_name, install=os_name != "none",
            skip_v6=bool(given.get("skip_v6")) or not network.prefixes_v6,
        )

    def create_params(self, mac: str, **placement: Any) -> dict[str, Any]:
        """Keyword arguments of GanetiCluster.create_instance: this VM with its NIC's MAC, placed by pnode/snode
        or iallocator."""
        return {
            "disk_template": self.disk_template,
            "disks": [self.disk],
            "os_type": self.os_type,
            "memory": self.memory,
            "vcpus": self.vcpus,
            "nics": [{"mac": mac, **({"link": self.network.nic_link} if self.network.nic_link else {})}],
            "no_install": None if self.install else True,
            "ip_check": False,
            "name_check": False,
            **placement,
        }

    def planned_instance(self, mac: str) -> dict[str, Any]:
        """The RAPI dict the instance will have, for NetBox: the plan, and the record made while Ganeti creates."""
        return {"name": self.fqdn, "admin_state": "up" if self.install else "down",
                "beparams": {"vcpus": self.vcpus, "maxmem": self.memory}, "disk.sizes": [self.disk],
                "nic.macs": [mac]}


def policy_problems(ipolicy: Mapping[str, Any], spec: VMSpec) -> list[str]:
    """Why the VM falls outside a group's instance policy (empty when it fits one min/max pair) or its templates."""
    values = {"memory-size": spec.memory, "disk-size": spec.disk, "cpu-count": spec.vcpus, "disk-count": 1,
              "nic-count": 1}
    return fit.policy_problems(ipolicy, values, spec.disk_template)


def new_mac(info: Mapping[str, Any]) -> str:
    """A MAC for the VM's NIC in the cluster's prefix (/2/info mac_prefix); PrecheckError if Ganeti gave none usable."""
    try:
        return macs.random_mac(str(info.get("mac_prefix") or ""))
    except ValueError as exc:
        raise _problems([f"Ganeti: {exc}"]) from None


def shortage(message: str) -> str:
    """The resources hail says are short, e.g. "memory on 2 nodes", from its failure reasons; "" if none parse."""
    found = [(SHORTAGES.get(reason, reason), int(count)) for reason, count in _SHORTAGE.findall(message)]
    return ", ".join(f"{what} on {count} node{'s' if count != 1 else ''}" for what, count in found if count)


def precheck_failure(fqdn: str, group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error the pre-checks raise: every problem found, or only the capacity one, or a failure to ask."""
    other = [error for error in group.exceptions if not isinstance(error, PrecheckError)]
    if other:
        return other[0]  # a system could not be asked (unreachable, refused): not a pre-check verdict
    problems = [error for error in group.exceptions if isinstance(error, PrecheckError)]
    if all(isinstance(error, NoCapacityError) for error in problems):
        return problems[0]
    return PrecheckError("\n".join(f"  - Ganeti: {fqdn} does not fit: {error}" if isinstance(error, NoCapacityError)
                                   else str(error) for error in problems))


@dataclass(frozen=True)
class Placement:
    """Step 2's answer: the nodes Ganeti's allocator chose, by which allocator, in which (dry-run) job, for
    a NIC with which MAC (picked by us in the cluster's prefix, checked unused by that job)."""

    nodes: list[str]
    iallocator: str
    job_id: int
    mac: str


@dataclass(frozen=True)
class FreeAddress:
    """A prefix of the group with a free address, and that address (read, not allocated)."""

    prefix: dict[str, Any]
    address: str


@dataclass(frozen=True)
class NetBoxPlan:
    """Step 1's answer from NetBox: the group's NetBox cluster, and per IP version a prefix and its next free IP."""

    cluster: dict[str, Any]
    prefixes: list[dict[str, Any]]
    """The NetBox prefix chosen per IP version, in allocation order."""
    addresses: list[str]
    """The next free address of each chosen prefix (read, not allocated)."""


@dataclass(frozen=True)
class Checked:
    """What the pre-checks, made at the same time, found: where the VM goes, its NetBox objects, its DNS zone."""

    placement: Placement
    netbox: NetBoxPlan
    zone: str


@dataclass(frozen=True)
class Plan:
    """What the run will do, from reads only: nodes, next free IPs, DNS changes, NetBox objects."""

    spec: VMSpec
    placement: Placement
    netbox: NetBoxPlan
    dns: Diff

    def render(self) -> str:
        """The plan as printed before the confirmation."""
        spec = self.spec
        install = "installed and started" if spec.install else "not installed, not started (--os none)"
        node = " + ".join(self.placement.nodes)
        link = f", NIC link {spec.network.nic_link}" if spec.network.nic_link else ""
        lines = [
            f"Plan for new VM {spec.fqdn} (cluster {spec.cluster}, group {spec.group.name}, network "
            f"{spec.network.name}):",
            f"  Ganeti: create on {node} (chosen by {self.placement.iallocator}): {spec.vcpus} vCPU, "
            f"{format_mib(spec.memory)} memory, {format_mib(spec.disk)} disk ({spec.disk_template}), "
            f"OS {spec.os_type} {install}{link}",
        ]
        ips = ", ".join(f"{address} (from {prefix['prefix']})"
                        for address, prefix in zip(self.netbox.addresses, self.netbox.prefixes, strict=True))
        vm = sync_vm.vm_fields(spec.planned_instance(self.placement.mac), self.netbox.cluster["id"])
        lines += [
            f"  NetBox: allocate {ips} with dns_name {spec.fqdn}",
            f"          VM {spec.fqdn} in cluster {self.netbox.cluster['name']}: status {vm['status']}, "
            f"vcpus {vm['vcpus']}, memory {vm['memory']} MB, disk {vm['disk']} MB",
            f"          interface eth0 with MAC {self.placement.mac}; the IPs on it, primary",
            "  DNS:" + ("" if self.dns else " no change"),
        ]
        lines += [f"    {line}" for line in self.dns.lines()]
        return "\n".join(lines)


@dataclass(frozen=True)
class NewInstance:
    """Step 5's answer: the instance's RAPI fields (planned ones in dry-run) and the id of its create job."""

    fields: dict[str, Any]
    job_id: int | None


class MakeVM(CookbookBase):
    """Create a Ganeti VM with its IP addresses, DNS records and NetBox records

    Creates HOSTNAME.DOMAIN (DOMAIN from the cluster's configuration) in a node group and does the
    bookkeeping, or leaves nothing behind:

      1. Validate: HOSTNAME is a DNS label, not an FQDN; the FQDN is free in Ganeti, NetBox (no VM, no
         IP with that dns_name) and DNS (no A/AAAA; the name and addresses inside the dns.netbox scope,
         when one is configured); the sizes are inside the group's instance policy;
         the disk template is enabled in the cluster and allowed by the group.
      2. Capacity: Ganeti checks the create in dry-run mode with its iallocator, restricted to the
         group, and names the node it would use. If the VM does not fit, stop (exit 11) with the
         resource that is short (memory, disk, vCPUs, N+1) before anything changes.
      3. Print the plan and ask for confirmation (-y answers it). Allocate the IPv4 (and IPv6 unless
         --skip-v6) in NetBox from the prefixes of its network (--network), with the FQDN as dns_name.
      4. Add the A/AAAA and PTR records (TSIG-signed RFC 2136 updates) and check that the DNS server
         answers them.
      5. Create the instance through the RAPI on the node of step 2, with the NIC's MAC picked in
         step 2 (the cluster's mac_prefix and three random bytes; Ganeti's check refuses one in use).
         With --os none the OS is not installed and the instance is not started.
      6. While Ganeti creates it, record it in NetBox: the VM in the group's cluster (vcpus, memory,
         disk, status), an interface with that MAC, the IPs on it and marked primary. Then wait for
         the create job, showing its progress, read the instance Ganeti made and correct in NetBox
         what differs from the plan.
      7. Print a summary: FQDN, node, IPs, NetBox URL of the VM, Ganeti job ids.

    Every change is journaled before and after it is made (the audit file; with locks in etcd, etcd too).
    If a step after the confirmation fails, or Ctrl+C is pressed, each change is undone, newest first:
    the NetBox VM's primary IPs, the IPs' assignment, its interface and the VM (deleted by id), the
    instance (once its create job ended, only if that job made it), the DNS records as written (one the
    server no longer answers as written is left as is), the IPs it allocated (by id; a request whose
    answer was lost is looked up by dns_name in its prefix). Each undo runs even if an earlier one fails;
    each object that could not be removed is named by kind, name and id and the exit code is 93: once
    the cause is fixed, `cookbook -y --recover RUN_ID` removes it. After a crash of the runner (killed,
    host down) `cookbook --recover` lists the run and `--recover RUN_ID` undoes it the same way.
    With -d (dry-run) the plan is printed (node Ganeti chooses, next free IPs, DNS records, NetBox
    objects) and nothing is changed anywhere. Two runs for the same FQDN never overlap (per-FQDN lock).
    The instance's lock is held until the run has ended or rolled back: sync-netbox and the hooks agent
    leave the new instance alone until then.

    Exit codes: 0 created; 10 a pre-check failed; 11 the VM does not fit; 1 a step failed (rolled back);
    97 interrupted (rolled back); 93 the rollback left something (named); 94/96 invalid cluster, group or
    arguments.

    Examples:
      cookbook sre.ganeti.makevm --cluster lab --group A --vcpus 2 --memory 4 --disk 20 -t T12345 vm1
      cookbook -d sre.ganeti.makevm --cluster lab --group A --os none vm2     # show the plan only
    """

    argument_task_required = False

    def argument_parser(self) -> argparse.ArgumentParser:
        """HOSTNAME, --cluster/--group and the sizes; unset options take the cluster's defaults."""
        parser = super().argument_parser()
        unset = argparse.SUPPRESS
        parser.add_argument("--vcpus", type=positive_int, default=unset, help="vCPUs (default: the cluster's)")
        parser.add_argument("--memory", type=positive_float, default=unset, metavar="GB",
                            help="memory in GB, e.g. 1.5 (default: the cluster's)")
        parser.add_argument("--disk", type=positive_int, default=unset, metavar="GB",
                            help="disk size in GB (default: the cluster's)")
        parser.add_argument("--network", default=unset, metavar="NAME",
                            help="network of the VM among those its group configures (groups.G.networks; "
                            "default: defaults.network, the group's own nic_link and prefixes)")
        parser.add_argument("--disk-template", default=unset, metavar="T",
                            help="Ganeti disk template, e.g. drbd, plain, file (default: the cluster's)")
        parser.add_argument("--os", default=unset, metavar="NAME|none",
                            help="OS definition to install; none: create without installing, not started "
                            "(default: the cluster's)")
        parser.add_argument("--skip-v6", action="store_true", help="allocate no IPv6 address")
        add_location_args(parser)
        parser.add_argument("hostname", type=hostname_arg, help="host name of the VM, without the domain")
        return parser

    def get_runner(self, args: argparse.Namespace) -> MakeVMRunner:
        """Check cluster, group and arguments against the configuration; nothing is read from the clusters yet."""
        settings = cluster_settings(self.ctx.config, args)
        return MakeVMRunner(self.ctx, VMSpec.from_args(args, settings), settings)


class MakeVMRunner(CookbookRunnerBase):
    """Validate, check capacity, plan, then allocate, publish, create, record; undo all of it on failure."""

    def __init__(self, ctx: Context, spec: VMSpec, settings: ClusterSettings) -> None:
        """Keep the spec and open the run's clients (no request is made here)."""
        self.ctx = ctx
        self.spec = spec
        self.settings = settings
        self.ganeti: GanetiCluster = ctx.ganeti(spec.cluster)
        self.netbox = ctx.netbox(read_write=True)
        self.dns = ctx.dns()

    @property
    def runtime_description(self) -> str:
        """Names the VM and its group (the runner adds the task id)."""
        return f"for new VM {self.spec.fqdn} in {self.spec.cluster}/{self.spec.group.name}"

    @property
    def lock_args(self) -> LockArgs:
        """One run per FQDN at a time, held through rollback."""
        return LockArgs(suffix=self.spec.fqdn, concurrency=1, ttl=None)

    def run(self) -> int:
        """The runbook: steps 1-2 (read only), the plan and the confirmation, then steps 3-7."""
        resources.hold(self.ctx, self.spec.cluster, instances=[self.spec.fqdn])  # the sync leaves it to us
        try:
            plan = self.check_and_plan()  # steps 1 and 2
        except NoCapacityError as exc:
            logger.error("%s does not fit: %s. Nothing was changed.", self.spec.fqdn, exc)
            return EXIT_DOES_NOT_FIT
        except PrecheckError as exc:
            logger.error("Pre-check failed, nothing was changed:\n%s", exc)
            return EXIT_PRECHECK_FAILED
        logger.info("%s", plan.render())
        self.ctx.confirm(f"Create {self.spec.fqdn} as planned?")
        try:
            ips = self.allocate_addresses(plan)  # step 3
            self.publish_dns(plan, ips)  # step 4
            job = self.create_instance(plan)  # step 5: Ganeti creates the instance...
            recorded = self.record_in_netbox(plan, ips)  # step 6: ...while NetBox records it as planned
            instance = self.wait_created(plan, job, recorded)
        except LibclusterError as exc:
            logger.error("Creating %s failed: %s: %s", self.spec.fqdn, type(exc).__name__, exc)
            return EXIT_STEP_FAILED
        self.print_summary(plan, instance, ips, recorded.vm)  # step 7
        return 0

    # Steps 1 and 2: read only

    def check_and_plan(self) -> Plan:
        """Steps 1 and 2, Ganeti, NetBox and DNS asked at the same time, then the DNS changes of the plan.

        Every problem found is reported (PrecheckError), nothing is changed.
        """
        try:
            checked = parallel.gather(Checked, placement=self._check_ganeti, netbox=self._check_netbox,
                                      zone=self._check_dns)
        except ExceptionGroup as group:
            raise precheck_failure(self.spec.fqdn, group) from None
        diff = self.dns.host_diff(self.spec.fqdn, checked.netbox.addresses, owns=owns_nothing)
        outside = [item.describe() for item in diff.left if item.reason == OUTSIDE]
        if outside:
            raise _problems([f"DNS: {line}" for line in outside])
        return Plan(self.spec, checked.placement, checked.netbox, diff)

    def _check_ganeti(self) -> Placement:
        """Step 1 in Ganeti (name free, template enabled, instance policy), then step 2."""
        spec, problems = self.spec, []
        try:
            existing = self.ganeti.instance(spec.fqdn)
            problems.append(f"Ganeti: instance {spec.fqdn} already exists (on {existing.get('pnode')})")
        except RapiNotFoundError:
            pass
        info = self.ganeti.info()
        enabled = info.get("enabled_disk_templates") or []
        if spec.disk_template not in enabled:
            problems.append(f"Ganeti: disk template {spec.disk_template} is not enabled in cluster {spec.cluster} "
                            f"(enabled: {', '.join(enabled)})")
        try:
            group = self.ganeti.group(spec.group.name)
            problems += [f"Ganeti: group {spec.group.name}: {text}" for text in policy_problems(group["ipolicy"], spec)]
        except RapiNotFoundError:
            problems.append(f"Ganeti: cluster {spec.cluster} has no node group {spec.group.name}")
        if problems:
            raise _problems(problems)
        return self._capacity(str(info.get("default_iallocator") or "hail"), new_mac(info))

    def _capacity(self, iallocator: str, mac: str) -> Placement:
        """Step 2: Ganeti checks the create (dry-run job) with the iallocator in the group; the nodes it chose."""
        logger.info("Asking Ganeti where %s fits: create in dry-run mode with %s in group %s", self.spec.fqdn,
                    iallocator, self.spec.group.name)
        job = self.ganeti.check_create(self.spec.fqdn, **self.spec.create_params(
            mac, iallocator=iallocator, group_name=self.spec.group.name))
        try:
            result = job.wait()
        except JobFailedError as exc:
            if exc.classification in FIT_CLASSIFICATIONS:
                short = shortage(exc.message)
                group = self.spec.group.name
                raise NoCapacityError(f"short of {short} in group {group}" if short else exc.message) from None
            raise _problems([f"Ganeti refuses the create: {exc.message}"]) from None
        return Placement(list(result.value or []), iallocator, job.id, mac)

    def _check_netbox(self) -> NetBoxPlan:
        """Step 1 in NetBox (no VM or IP named after the FQDN, the group's cluster exists), then the next free IPs."""
        spec, netbox, problems = self.spec, self.netbox, []
        for vm in netbox.objects("vm", name=spec.fqdn):
            problems.append(f"NetBox: VM {spec.fqdn} already exists (id {vm['id']}, cluster "
                            f"{(vm.get('cluster') or {}).get('name')})")
        ips = netbox.objects("ip-address", dns_name=spec.fqdn)
        if ips:
            problems.append(f"NetBox: IP addresses with dns_name {spec.fqdn} exist: "
                            f"{', '.join(ip['address'] for ip in ips)}")
        group = netbox.find("cluster-group", name=self.settings.netbox_cluster_group)
        cluster = netbox.find("cluster", name=spec.group.netbox_cluster, group_id=group["id"]) if group else None
        if cluster is None:
            problems.append(f"NetBox: no cluster {spec.group.netbox_cluster} in cluster group "
                            f"{self.settings.netbox_cluster_group}")
        if problems or cluster is None:
            raise _problems(problems)
        netbox.version  # noqa: B018 - read now, while Ganeti checks capacity: step 6 needs it
        free = [self._free_address(candidates) for candidates in self._prefix_families()]
        return NetBoxPlan(cluster, [found.prefix for found in free], [found.address for found in free])

    def _prefix_families(self) -> list[tuple[str, ...]]:
        """The prefixes of the VM's network, IPv4 then IPv6 (unless --skip-v6 or none configured)."""
        network = self.spec.network
        return [network.prefixes_v4] + ([] if self.spec.skip_v6 else [network.prefixes_v6])

    def _free_address(self, candidates: tuple[str, ...]) -> FreeAddress:
        """The first of the candidate prefixes with a free address, and that address (read only)."""
        for text in candidates:
            prefix = self.netbox.find("prefix", prefix=text)
            if prefix is None:
                raise _problems([f"NetBox: prefix {text} of network {self.spec.network.name} of group "
                                 f"{self.spec.group.name} does not exist"])
            free = self.netbox.available_ips(prefix, 1)
            if free:
                return FreeAddress(prefix, free[0])
        raise _problems([f"NetBox: no free address in {', '.join(candidates)}"])

    def _check_dns(self) -> str:
        """Step 1 in DNS: the FQDN is in a configured zone and has no A/AAAA yet; returns its zone."""
        spec, problems = self.spec, []
        zone = self.dns.zones.zone_of(spec.fqdn)
        if zone is None:
            problems.append(f"DNS: {spec.fqdn} is in none of the configured zones")
        for rdtype in ("A", "AAAA"):
            if answer := self.dns.resolve(spec.fqdn, rdtype):
                problems.append(f"DNS: {spec.fqdn} already has {rdtype} {', '.join(answer)}")
        if problems or zone is None:
            raise _problems(problems)
        return str(zone)

    # Steps 3-7: changes

    def allocate_addresses(self, plan: Plan) -> list[dict[str, Any]]:
        """Step 3: one address per planned prefix, allocated at the same time, with the FQDN as dns_name."""
        allocate = partial(self.netbox.allocate_ip, dns_name=self.spec.fqdn)
        try:
            ips = parallel.map_all(allocate, plan.netbox.prefixes)
        except ExceptionGroup as group:
            raise group.exceptions[0] from None  # the allocations made (or maybe made) are on ctx.undo all the same
        if not self.ctx.dry_run:
            for ip, address in zip(ips, plan.netbox.addresses, strict=True):
                moved = f" (planned {address}, taken meanwhile)" if ip["address"] != address else ""
                logger.info("Allocated %s in NetBox for %s%s", ip["address"], self.spec.fqdn, moved)
        return ips

    def publish_dns(self, plan: Plan, ips: list[dict[str, Any]]) -> None:
        """Step 4: the A/AAAA and PTR records of the allocated addresses, checked on the server."""
        addresses = [str(ip["address"]) for ip in ips]
        # The plan's diff still holds when the planned addresses were allocated (its prerequisites guard the rest).
        diff = (plan.dns if addresses == plan.netbox.addresses
                else self.dns.host_diff(self.spec.fqdn, addresses, owns=owns_nothing))
        self.dns.apply(diff)
        if not self.ctx.dry_run:
            sync_dns.verify(self.dns, diff)
            logger.info("DNS: the server answers the %d new rrsets of %s", len(diff), self.spec.fqdn)

    def create_instance(self, plan: Plan) -> JobHandle | None:
        """Step 5: submit the create job on the planned nodes (None in dry-run: step 2's check stands for it)."""
        nodes = plan.placement.nodes
        if self.ctx.dry_run:
            self.ctx.changes.record("ganeti", "instance-create", self.spec.fqdn, cluster=self.spec.cluster,
                                    checked=True, job_id=plan.placement.job_id, pnode=nodes[0])
            return None
        job = self.ganeti.create_instance(self.spec.fqdn, **self.spec.create_params(
            plan.placement.mac, pnode=nodes[0], snode=nodes[1] if len(nodes) > 1 else None))
        logger.info("Ganeti job %s creates %s on %s", job.id, self.spec.fqdn, " + ".join(nodes))
        return job

    def record_in_netbox(self, plan: Plan, ips: list[dict[str, Any]]) -> sync_vm.Recorded:
        """Step 6: the planned VM in the group's NetBox cluster, its interface with the MAC, the IPs on it, primary."""
        return sync_vm.record_instance(self.netbox, self.spec.planned_instance(plan.placement.mac),
                                       cluster_id=plan.netbox.cluster["id"], addresses=ips,
                                       current=sync_vm.Current(vm=None))

    def wait_created(self, plan: Plan, job: JobHandle | None, recorded: sync_vm.Recorded) -> NewInstance:
        """The create job's end; the instance as Ganeti made it, and NetBox corrected where it differs."""
        if job is None:
            return NewInstance(self.spec.planned_instance(plan.placement.mac), job_id=None)
        job.wait()
        fields = self.ganeti.instance(self.spec.fqdn).raw
        corrected = sync_vm.record_instance(self.netbox, fields, cluster_id=plan.netbox.cluster["id"],
                                            current=sync_vm.Current(vm=recorded.vm, interfaces=recorded.interfaces))
        if corrected.writes:
            logger.info("NetBox: %s corrected to what Ganeti made: %s", self.spec.fqdn, ", ".join(corrected.writes))
        return NewInstance(fields, job_id=job.id)

    def print_summary(self, plan: Plan, instance: NewInstance, ips: list[dict[str, Any]],
                      vm: Mapping[str, Any]) -> None:
        """Step 7: FQDN, node, IPs, MAC, the NetBox URL of the VM and the Ganeti job ids."""
        fields = instance.fields
        node = " + ".join([str(fields.get("pnode") or plan.placement.nodes[0]), *map(str, fields.get("snodes") or [])])
        url = vm.get("display_url") or vm.get("url") or "(not created: dry-run)"
        jobs = [f"{plan.placement.job_id} (capacity check, dry-run)"]
        jobs += [f"{instance.job_id} (create)"] if instance.job_id is not None else []
        macs = ", ".join(str(mac) for mac in fields.get("nic.macs") or [] if mac) or "assigned at creation"
        status = "planned (dry-run: nothing was changed)" if self.ctx.dry_run else "created"
        logger.info("VM %s %s:\n  node: %s\n  IPs: %s\n  MAC: %s\n  NetBox: %s\n  Ganeti jobs: %s", self.spec.fqdn,
                    status, node, ", ".join(str(ip["address"]) for ip in ips), macs, url, ", ".join(jobs))
