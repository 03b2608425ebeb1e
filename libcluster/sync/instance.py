"""Follow one instance into NetBox and DNS: what `sync-netbox --vm` and the hooks agent do after any change.

- Ganeti has it: it is recorded by :func:`libcluster.sync.vm.record_instance` (the mapping makevm uses) in
  its primary node's group's cluster. A VM NetBox knows no address of gets its Ganeti NIC IP; without
  one it is recorded without address and reported, unless ``sync.allocate_ips`` asks for an address
  from its group's prefixes, which Ganeti's NIC then carries too (see :mod:`libcluster.sync.addresses`);
  an allocated IPv6 address, which the NIC's one IP cannot hold, is reported. A VM NetBox already gives
  an IPv4 address that Ganeti's NIC does not have: a NIC without IP carries it when ``sync.allocate_ips``,
  otherwise the difference is reported (never changed).
  Renamed (``renamed_from``): the old name's records go, then the NetBox VM and its addresses take the
  new name, so they keep their ids and addresses; not while Ganeti still has the old name (then nothing of it changes).
- Ganeti no longer has it: reported; with ``delete`` (and :meth:`Follower.retire`, what decommission-vm calls
  once Ganeti removed it) its DNS records go first (so a failed DNS update leaves NetBox as it was, and a
  retry still owns them), then its addresses are released or kept (``sync.release_ips``) and the VM is
  deleted. An address on its interfaces named after another host (another dns_name) is not its own: it is
  kept with its DNS records, only unassigned (deleting the interface would delete it), and reported.
  :meth:`Follower.leaving` reads all of that beforehand, changing nothing (a plan to show).
- Neither Ganeti nor NetBox (a VM of the cluster group) has it: nothing is changed, and said so (with
  the records the server has for it, reported).
- DNS: the name's A/AAAA and PTR records are made to match the NetBox addresses named after it
  (:func:`libcluster.sync.dns.publish`); an old name's records go. Only records NetBox accounts for
  when the run starts (names and addresses of the addresses of the VMs followed, see
  :class:`libcluster.sync.netbox_dns.Accounted`) are replaced or deleted; any other record of those
  names is left as it is and reported, and zone apexes and name servers are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from libcluster.clusters import ClusterSettings
from libcluster.dns import DNS, Diff, DNSZoneError
from libcluster.dns.protection import owns_nothing
from libcluster.ganeti import GanetiCluster, RapiNotFoundError
from libcluster.netbox import NetBox, NetBoxError
from libcluster.sync import addresses
from libcluster.sync import dns as sync_dns
from libcluster.sync import vm as sync_vm
from libcluster.sync.cluster import Row, SyncSettings
from libcluster.sync.netbox_dns import Accounted, DNSSyncSettings, host_addresses

logger = logging.getLogger(__name__)


@dataclass
class Followed:
    """What following one instance changed (or would change in dry-run)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    """NetBox writes and DNS rrset changes, one row each (the cookbook prints them as a table)."""


@dataclass(frozen=True)
class Leaving:
    """What goes with a VM that Ganeti no longer has (read before anything changes): see Follower.leaving()."""

    name: str
    vms: list[dict[str, Any]]
    """Its NetBox VMs in the cluster group's clusters (deleted, with their interfaces)."""
    interfaces: list[dict[str, Any]]
    owned: list[dict[str, Any]]
    """The addresses on its interfaces named after it (or unnamed): released, or kept reserved (sync.release_ips)."""
    foreign: list[dict[str, Any]]
    """The addresses on its interfaces named after another host: not its own, kept (unassigned) and reported."""
    dns: Diff | None
    """Its DNS changes (diff.left: the records left as not ours); None when no configured zone holds the name."""


def owned_addresses(ips: Sequence[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a VM's addresses into its own (dns_name empty or its name) and those named after another host."""
    def foreign(ip: dict[str, Any]) -> bool:
        dns_name = str(ip.get("dns_name") or "").rstrip(".").lower()
        return bool(dns_name) and dns_name != name.rstrip(".").lower()

    return [ip for ip in ips if not foreign(ip)], [ip for ip in ips if foreign(ip)]


@dataclass
class Follower:
    """The clients and settings of one cluster, to follow instances one at a time."""

    netbox: NetBox
    dns: DNS
    ganeti: GanetiCluster
    settings: ClusterSettings
    sync: SyncSettings
    dns_settings: DNSSyncSettings

    def follow(self, name: str, *, delete: bool, renamed_from: str | None = None) -> Followed:
        """Make NetBox and DNS match what Ganeti says about instance name now (see the module docstring)."""
        done = Followed(name)
        clusters = self._clusters()
        try:
            instance: dict[str, Any] | None = self.ganeti.instance(name).raw
        except RapiNotFoundError:
            instance = None
        accounted = self._accounted([name, *([renamed_from] if renamed_from else [])], clusters)
        if instance is None:
            self._gone(name, clusters, delete, done, accounted)
            return done
        name = done.name = str(instance["name"])
        if renamed_from and renamed_from != name:
            self._rename(renamed_from, name, clusters, done, accounted)
        self._record(instance, clusters, done, accounted)
        return done

    def leaving(self, name: str) -> Leaving:
        """What retire(name) would take away (reads only): NetBox VMs, interfaces, addresses, DNS changes."""
        vms = self._vms(name, self._clusters())
        ids = [int(vm["id"]) for vm in vms]
        ips = self.netbox.objects("ip-address", virtual_machine_id=ids) if ids else []
        interfaces = self.netbox.objects("vm-interface", virtual_machine_id=ids) if ids else []
        owned, foreign = owned_addresses(ips, name)
        try:
            diff: Diff | None = self.dns.host_diff(name, self._host_addresses(name, leaving=owned),
                                                   owns=Accounted.of(self.dns.zones, ips).owns)
        except DNSZoneError as exc:
            logger.warning("DNS of %s left alone: %s", name, exc)
            diff = None
        return Leaving(name, vms, interfaces, owned, foreign, diff)

    def retire(self, name: str) -> Followed:
        """Remove what NetBox and DNS hold of a VM Ganeti no longer has, as follow(name, delete=True) does for one
        Ganeti does not have (the caller removed it, or plans to in dry-run): DNS first, addresses, then the VM."""
        done = Followed(name)
        clusters = self._clusters()
        self._gone(name, clusters, True, done, self._accounted([name], clusters))
        return done

    def _clusters(self) -> dict[str, dict[str, Any]]:
        """The NetBox clusters of the cluster group, by name."""
        group = self.netbox.get("cluster-group", name=self.settings.netbox_cluster_group)
        return {str(c["name"]): c for c in self.netbox.objects("cluster", group_id=group["id"])}

    def _accounted(self, names: Sequence[str], clusters: dict[str, dict[str, Any]]) -> Accounted:
        """What NetBox accounts for before anything changes: the addresses of the VMs called names in clusters."""
        vms = [vm for name in names for vm in self._vms(name, clusters)]
        ips = self.netbox.objects("ip-address", virtual_machine_id=[int(vm["id"]) for vm in vms]) if vms else []
        return Accounted.of(self.dns.zones, ips)

    def _vms(self, name: str, clusters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [int(c["id"]) for c in clusters.values()]
        return self.netbox.objects("vm", name=name, cluster_id=ids) if ids else []

    def _publish(self, name: str, done: Followed, accounted: Accounted, planned: Sequence[dict[str, Any]] = (),
                 leaving: Sequence[dict[str, Any]] = ()) -> None:
        """Make name's records match the NetBox addresses named after it, but those leaving it (being deleted or
        renamed next) plus planned ones; only records NetBox accounted for at the start are replaced or deleted,
        the others are reported."""
        try:
            diff = sync_dns.publish(self.dns, name, self._host_addresses(name, planned, leaving), owns=accounted.owns)
        except DNSZoneError as exc:
            logger.warning("DNS of %s left alone: %s", name, exc)
            return
        done.rows += [Row("dns", "rrset", change.name.to_text(), change.describe()) for change in diff]
        self._kept(diff, done)

    def _host_addresses(self, name: str, planned: Sequence[dict[str, Any]] = (),
                        leaving: Sequence[dict[str, Any]] = ()) -> list[str]:
        """The addresses name's records should hold: NetBox addresses named after it, but leaving, plus planned."""
        gone = {ip["id"] for ip in leaving}
        ips = [ip for ip in self.netbox.objects("ip-address", fields=("id", "address", "dns_name", "status"),
                                                dns_name=name) if ip["id"] not in gone]
        ips += [{**ip, "dns_name": name} for ip in planned]
        return host_addresses(ips, name, self.dns_settings)

    def _kept(self, diff: Diff, done: Followed) -> None:
        """Report the records diff leaves as they are."""
        for item in diff.left:
            logger.warning("DNS record not ours, left as is: %s", item.describe())
            done.rows.append(Row("kept", "rrset", item.rrset.name.to_text(), item.describe()))

    def _gone(self, name: str, clusters: dict[str, dict[str, Any]], delete: bool, done: Followed,
              accounted: Accounted) -> None:
        vms = self._vms(name, clusters)
        if not vms:
            done.rows.append(Row("nothing", "vm", name, "in neither Ganeti nor NetBox cluster group "
                                 f"{self.settings.netbox_cluster_group}: nothing changed"))
            try:
                self._kept(self.dns.host_diff(name, [], owns=owns_nothing), done)
            except DNSZoneError as exc:
                logger.warning("DNS of %s left alone: %s", name, exc)
            return
        if not delete:
            done.rows += [Row("extra", "vm", name, f"in cluster {vm['cluster']['name']}, not in Ganeti "
                              "(--delete removes it)") for vm in vms]
            return
        ips, foreign = owned_addresses(
            self.netbox.objects("ip-address", virtual_machine_id=[int(vm["id"]) for vm in vms]), name)
        self._publish(name, done, accounted, leaving=ips)
        if foreign:  # deleting the VM's interface would delete them: unassigned, they stay as they are
            self.netbox.update("ip-address", [{"id": ip["id"], "assigned_object_type": None,
                                               "assigned_object_id": None} for ip in foreign])
            for ip in foreign:
                logger.warning("NetBox address %s on %s is named %s, not %s: not its own, kept (unassigned)",
                               ip["address"], name, ip["dns_name"], name)
        done.rows += [Row("kept", "ip-address", str(ip["address"]), f"dns_name {ip['dns_name']}, not {name}: not "
                          "its own, kept with its DNS records (unassigned from its interface)") for ip in foreign]
        addresses.retire(self.netbox, ips, release=self.sync.release_ips)
        self.netbox.delete("vm", vms)
        verb = "released" if self.sync.release_ips else "kept (reserved)"
        done.rows += [Row("delete", "vm", name, f"not in Ganeti; {len(ips)} address(es) {verb}")]

    def _rename(self, old: str, new: str, clusters: dict[str, dict[str, Any]], done: Followed,
                accounted: Accounted) -> None:
        """Drop old's records (those NetBox accounts for), then give the NetBox VM named old, and its addresses named
        old, the new name (a failed DNS update leaves NetBox as it was, for a retry).

        Nothing of old changes while Ganeti still has it (a rename never takes a live instance's records) or
        when NetBox already has a VM called new."""
        try:
            self.ganeti.instance(old)
            done.rows.append(Row("refused", "vm", old, f"still in Ganeti: not renamed to {new}, nothing of it "
                                 "changed"))
            return
        except RapiNotFoundError:
            pass
        if self._vms(new, clusters):
            done.rows.append(Row("extra", "vm", old, f"not renamed: NetBox already has a VM {new} (left as is)"))
            return
        for vm in self._vms(old, clusters)[:1]:
            ips = [ip for ip in self.netbox.objects("ip-address", virtual_machine_id=vm["id"])
                   if ip.get("dns_name") == old]
            self._publish(old, done, accounted, leaving=ips)
            self.netbox.update("vm", [{"id": vm["id"], "name": new}])
            done.rows.append(Row("update", "vm", new, f"name {old} -> {new}"))
            if ips:
                self.netbox.update("ip-address", [{"id": ip["id"], "dns_name": new} for ip in ips])
                done.rows.append(Row("update", "ip-address", new, f"dns_name {old} -> {new} x{len(ips)}"))

    def _record(self, instance: dict[str, Any], clusters: dict[str, dict[str, Any]], done: Followed,
                accounted: Accounted) -> None:
        name = str(instance["name"])
        group = next((g.name for g in self.ganeti.groups() if instance.get("pnode") in g.nodes), None)
        wanted = self.settings.groups[group].netbox_cluster if group in self.settings.groups else group
        if wanted not in clusters:
            raise NetBoxError(f"{name}: node group {group} has no NetBox cluster {wanted} in cluster group "
                              f"{self.settings.netbox_cluster_group}: run sync-netbox on the whole cluster first")
        vms = self._vms(name, clusters)
        vm = next((v for v in vms if v["cluster"]["name"] == wanted), vms[0] if vms else None)
        for other in (v for v in vms if v is not vm):
            done.rows.append(Row("extra", "vm", name, f"also in cluster {other['cluster']['name']} (left as is)"))
        interfaces = self.netbox.objects("vm-interface", virtual_machine_id=vm["id"]) if vm else []
        nics = sync_vm.nics(instance)
        first = next((int(i["id"]) for i in interfaces if nics and i["name"] == nics[0].name), None)
        owned = self.netbox.objects("ip-address", virtual_machine_id=vm["id"]) if vm else []
        loose = [ip for ip in self.netbox.objects("ip-address", dns_name=name) if not ip.get("assigned_object_id")]
        ours = [ip for ip in owned if first is not None and ip.get("assigned_object_id") == first] + loose
        primaries = {(vm.get(k) or {}).get("id") for k in ("primary_ip4", "primary_ip6")} if vm else set()
        ours.sort(key=lambda ip: ip["id"] not in primaries)
        if not (owned or loose or primaries - {None}) and nics:
            ours += self._new_addresses(instance, group, done)
        else:
            self._match_nic(instance, ours, done)
        recorded = sync_vm.record_instance(self.netbox, instance, cluster_id=int(clusters[wanted]["id"]),
                                           addresses=ours, current=sync_vm.Current(vm, interfaces))
        done.rows += [Row("write", "vm", name, write) for write in recorded.writes]
        self._publish(name, done, accounted, planned=ours)

    def _new_addresses(self, instance: dict[str, Any], group: str | None, done: Followed) -> list[dict[str, Any]]:
        """Addresses for a VM NetBox knows none of: its Ganeti NIC IP (taken over if free in NetBox), else allocated
        when sync.allocate_ips (and then carried by its Ganeti NIC), else none (reported)."""
        name = str(instance["name"])
        taken, requests = [], []
        wanted = addresses.requests_for(instance, self.settings.groups.get(group or ""),
                                        allocate=self.sync.allocate_ips)
        if not wanted:
            done.rows.append(Row("missing", "ip-address", name, addresses.NO_ADDRESS))
        for request in wanted:
            existing = self.netbox.find("ip-address", address=request.address) if request.address else None
            if existing is None:
                requests.append(request)
            elif existing.get("assigned_object_id") or existing.get("dns_name") not in ("", None, name):
                done.rows.append(Row("conflict", "ip-address", name, f"Ganeti NIC IP {request.address} is already "
                                     f"{existing.get('dns_name') or 'assigned'} in NetBox (not taken)"))
            else:
                taken.append(existing)
        given = addresses.give(self.netbox, requests, {}) if requests else []
        done.rows += [Row("create", "ip-address", name, str(ip.get("address"))) for ip in given]
        if any(request.address is None for request in requests):
            carried = addresses.carry(self.ganeti, name, given)
            if carried:
                done.rows.append(Row("update", "ganeti-nic", name, f"NIC 0 ip -> {carried} (allocated in NetBox)"))
            done.rows += [Row("uncarried", "ganeti-nic", name, f"{address} {addresses.NOT_CARRIED}")
                          for address in addresses.uncarried(given)]
        return taken + given

    def _match_nic(self, instance: dict[str, Any], ours: Sequence[dict[str, Any]], done: Followed) -> None:
        """A VM NetBox already gives an IPv4 address: Ganeti's NIC without IP carries it when sync.allocate_ips (as
        for a new allocation); a NIC IP that differs, or none without allocate_ips, is reported, never changed."""
        name, differs = str(instance["name"]), addresses.nic_differs(instance, ours)
        if differs is None:
            return
        if addresses.nic_ip(instance) is None and self.sync.allocate_ips:
            carried = addresses.carry(self.ganeti, name, ours)
            done.rows.append(Row("update", "ganeti-nic", name, f"NIC 0 ip -> {carried} (as in NetBox)"))
            return
        done.rows.append(Row("differs", "ganeti-nic", name, f"{differs} (left as is)"))
