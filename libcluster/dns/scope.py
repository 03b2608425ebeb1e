"""The `dns.netbox` scope (names, networks): the only rrsets any run may create, change or delete.

Forward rrsets whose owner matches none of the ``names`` glob patterns, and reverse rrsets of addresses
outside ``networks``, are out of scope; empty means everything. Every DNS write path checks it in the
diff guard (:func:`libcluster.dns.protection.guard`): makevm and its rollback, sync-netbox (one VM, as
the hooks agent runs it, and whole cluster) and sre.dns.netbox.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.name
import dns.rdatatype
import dns.reversename

from libcluster.config import Section
from libcluster.dns.zones import FORWARD_TYPES, Zones
from libcluster.errors import ConfigError

OUTSIDE = "outside dns.netbox scope"
"""Why an rrset out of scope is left as is."""


class ScopeConfig(Protocol):
    """Anything with the scope's names and networks (ScopeSettings, DNSSyncSettings)."""

    @property
    def names(self) -> tuple[str, ...]:
        """Glob patterns of forward owner names, lower case, without the final dot."""

    @property
    def networks(self) -> tuple[str, ...]:
        """Networks whose addresses' reverse records are in scope, as text."""


@dataclass(frozen=True)
class ScopeSettings:
    """The `names` and `networks` of the `dns.netbox` section (empty: everything)."""

    names: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()

    @classmethod
    def from_section(cls, section: Section) -> ScopeSettings:
        """Read names (glob patterns) and networks of a `dns.netbox` section; a bad network is a ConfigError."""
        networks = []
        for net in section.list("networks", []):
            try:
                networks.append(str(ipaddress.ip_network(str(net))))
            except ValueError as exc:
                raise ConfigError(f"{section.key('networks')}: {net!r} is not a network ({exc})") from None
        return cls(names=tuple(str(pattern).lower().rstrip(".") for pattern in section.list("names", [])),
                   networks=tuple(networks))


class Scope:
    """Which rrsets of the zones we may create, change or delete (see the module docstring)."""

    def __init__(self, settings: ScopeConfig, zones: Zones) -> None:
        """Patterns and networks of settings; zones tell RFC 2317 owner names apart."""
        self._names = settings.names
        self._networks = [ipaddress.ip_network(net) for net in settings.networks]
        self._zones = zones

    def name_in(self, name: dns.name.Name) -> bool:
        """Whether a forward owner name is ours."""
        if not self._names:
            return True
        text = name.to_text(omit_final_dot=True).lower()
        return any(fnmatch.fnmatchcase(text, pattern) for pattern in self._names)

    def address_in(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """Whether the reverse records of an address are ours."""
        return not self._networks or (address is not None and any(address in net for net in self._networks))

    def owns(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether the rrset (name, type) is ours to create, change or delete."""
        if rdtype in FORWARD_TYPES:
            return self.name_in(name)
        return not self._networks or self.address_in(reverse_address(name, self._zones))


def reverse_address(name: dns.name.Name, zones: Zones) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a reverse owner name stands for, RFC 2317 classless owners included; None if none."""
    for classless in zones.classless:
        if name.parent() == classless.zone:
            try:
                last = int(name.labels[0])
            except ValueError:
                return None
            return ipaddress.IPv4Address(int(classless.network.network_address) & ~0xFF | last)
    try:
        return ipaddress.ip_address(dns.reversename.to_address(name))
    except (dns.exception.DNSException, ValueError):
        return None
