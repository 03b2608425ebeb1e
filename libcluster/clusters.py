"""Operator settings of each configured Ganeti cluster (`ganeti.clusters.<name>`), typed and checked.

Connection keys (RAPI URL, users, CA) are read by libcluster.ganeti.connect(); this module holds what
cookbooks need beyond that: domain, defaults, node groups with their NetBox cluster and networks (the
group's own ``nic_link``/``prefixes`` are its default network, named by ``defaults.network``; more under
``networks: {NAME: {nic_link, prefixes}}``, which ``makevm --network NAME`` picks), and the knobs of
pre-checks. Errors name the wrong key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from libcluster.config import Section
from libcluster.errors import ConfigError


@dataclass(frozen=True)
class NetworkSettings:
    """One network VMs of a node group can be on: the NIC link (bridge) of their NIC and their prefixes."""

    name: str
    nic_link: str | None
    prefixes_v4: tuple[str, ...]
    prefixes_v6: tuple[str, ...]


@dataclass(frozen=True)
class GroupSettings:
    """One node group: its NetBox cluster and its networks; nic_link and prefixes are those of its default one."""

    name: str
    netbox_cluster: str
    nic_link: str | None
    prefixes_v4: tuple[str, ...]
    prefixes_v6: tuple[str, ...]
    networks: Mapping[str, NetworkSettings] = field(default_factory=dict)
    """Every network of the group by name, the default one (nic_link and prefixes above) first."""

    def network(self, name: str) -> NetworkSettings:
        """The network called name; a clear error lists the group's networks."""
        if name not in self.networks:
            known = ", ".join(self.networks) or "none"
            raise ConfigError(f"group {self.name}: unknown network '{name}' (configured: {known})")
        return self.networks[name]

    @property
    def all_prefixes(self) -> tuple[str, ...]:
        """The prefixes of every network of the group (the default network's first)."""
        found = [prefix for network in self.networks.values() for prefix in network.prefixes_v4 + network.prefixes_v6]
        return tuple(found) or self.prefixes_v4 + self.prefixes_v6


@dataclass(frozen=True)
class VMDefaults:
    """makevm defaults (sizes in GB as operators type them)."""

    vcpus: int = 1
    memory: float = 2.0
    disk: int = 10
    disk_template: str = "drbd"
    os: str = "debootstrap+default"
    network: str = "private"


@dataclass(frozen=True)
class ClusterSettings:
    """Everything cookbooks read from a cluster's configuration besides the RAPI connection."""

    name: str
    domain: str
    netbox_cluster_group: str
    groups: dict[str, GroupSettings]
    defaults: VMDefaults
    verify_ignore: tuple[str, ...] = ()
    vm_capable_check: str = "test -e /dev/kvm"
    volume_group: str | None = None
    bridges: tuple[str, ...] = ()
    depool_command: str | None = None
    pool_command: str | None = None
    cert_warning_days: int = 30

    def group(self, name: str) -> GroupSettings:
        """The settings of node group `name`; a clear error lists the configured groups."""
        if name not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none"
            raise ConfigError(f"cluster {self.name}: unknown node group '{name}' (configured: {known})")
        return self.groups[name]

    def fqdn(self, hostname: str) -> str:
        """hostname.domain of this cluster."""
        return f"{hostname}.{self.domain}"


def _prefixes(section: Section, group: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    v4: list[str] = []
    v6: list[str] = []
    for value in section.list("prefixes", []):
        try:
            network = ipaddress.ip_network(str(value))
        except ValueError:
            raise ConfigError(f"{section.source}: key '{section.where}.prefixes': {value!r} is not a prefix") from None
        (v4 if network.version == 4 else v6).append(str(network))
    if not v4:
        raise ConfigError(f"{section.source}: key '{section.where}.prefixes' has no IPv4 prefix for group {group}")
    return tuple(v4), tuple(v6)


def _group(sub: Section, group: str, default_network: str) -> GroupSettings:
    """A group's settings: its own nic_link and prefixes are its default network, `networks` holds the others."""
    nic_link = sub.str("nic_link", None)
    v4, v6 = _prefixes(sub, group)
    networks = {default_network: NetworkSettings(default_network, nic_link, v4, v6)}
    extra = sub.section("networks", {})
    for name in extra:
        if str(name) in networks:
            raise ConfigError(f"{extra.source}: key '{extra.key(str(name))}': network {name} is the group's default "
                              "network (defaults.network): its nic_link and prefixes are the group's own keys")
        network = extra.section(name)
        n4, n6 = _prefixes(network, group)
        networks[str(name)] = NetworkSettings(str(name), network.str("nic_link", nic_link), n4, n6)
    return GroupSettings(name=group, netbox_cluster=sub.str("netbox_cluster", group), nic_link=nic_link,
                         prefixes_v4=v4, prefixes_v6=v6, networks=networks)


def load(config: Section, name: str) -> ClusterSettings:
    """Settings of cluster `name` from the root configuration; unknown names list the configured ones."""
    clusters = config.section("ganeti").section("clusters")
    if name not in set(clusters):
        known = ", ".join(sorted(clusters)) or "none"
        raise ConfigError(f"{config.source}: unknown Ganeti cluster '{name}' "
                          f"(configured under ganeti.clusters: {known})")
    section = clusters.section(name)
    defaults = section.section("defaults", {})
    base = VMDefaults()
    vm_defaults = VMDefaults(
        vcpus=defaults.int("vcpus", base.vcpus),
        memory=defaults.float("memory", base.memory),
        disk=defaults.int("disk", base.disk),
        disk_template=defaults.str("disk_template", base.disk_template),
        os=defaults.str("os", base.os),
        network=defaults.str("network", base.network),
    )
    groups_section = section.section("groups", {})
    groups = {str(group): _group(groups_section.section(group), str(group), vm_defaults.network)
              for group in groups_section}
    return ClusterSettings(
        name=name,
        domain=section.str("domain"),
        netbox_cluster_group=section.str("netbox_cluster_group", name),
        groups=groups,
        defaults=vm_defaults,
        verify_ignore=tuple(str(code) for code in section.list("verify_ignore", [])),
        vm_capable_check=section.str("vm_capable_check", "test -e /dev/kvm"),
        volume_group=section.str("volume_group", None),
        bridges=tuple(str(bridge) for bridge in section.list("bridges", [])),
        depool_command=section.str("depool_command", None),
        pool_command=section.str("pool_command", None),
        cert_warning_days=section.int("cert_warning_days", 30),
    )


def names(config: Section) -> list[str]:
    """Names of the configured clusters."""
    return sorted(config.section("ganeti").section("clusters", {}))
