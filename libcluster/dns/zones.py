"""The zones we manage: which zone a name belongs to, where an address's PTR lives, and which rrsets are ours.

A name belongs to the longest configured zone it is under. An IPv4 reverse zone whose first
label is `START-PREFIXLEN` (or RFC 2317's `START/PREFIXLEN`), e.g. `0-25.2.0.192.in-addr.arpa`,
is a classless zone: PTRs of the addresses of 192.0.2.0/25 live in it, and the parent zone
(`2.0.192.in-addr.arpa`), when it is ours too, holds CNAMEs pointing to them (RFC 2317).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.reversename

from libcluster.dns.errors import DNSZoneError

_CLASSLESS_LABEL = re.compile(r"^(\d{1,3})[-/](\d{1,2})$")
_IPV4_REVERSE = dns.name.from_text("in-addr.arpa.")
_IPV6_REVERSE = dns.name.from_text("ip6.arpa.")

FORWARD_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
"""Types we manage in forward zones."""


@dataclass(frozen=True)
class Classless:
    """An RFC 2317 classless IPv4 reverse zone: its name, the network it covers and its parent /24 zone name."""

    zone: dns.name.Name
    network: ipaddress.IPv4Network
    parent: dns.name.Name


def _classless(zone: dns.name.Name) -> Classless | None:
    """The classless zone described by zone's name, None for an ordinary zone."""
    if not zone.is_subdomain(_IPV4_REVERSE) or len(zone.labels) != 7:
        return None
    match = _CLASSLESS_LABEL.match(zone.labels[0].decode())
    if match is None:
        return None
    start, length = int(match.group(1)), int(match.group(2))
    octets = [label.decode() for label in zone.labels[1:4]]
    try:
        network = ipaddress.IPv4Network(f"{'.'.join(reversed(octets))}.{start}/{length}")
    except ValueError as exc:
        raise DNSZoneError(f"zone {zone}: not a valid RFC 2317 START-PREFIXLEN zone name: {exc}") from None
    if not 24 < length <= 32:
        raise DNSZoneError(f"zone {zone}: a classless reverse zone covers a prefix longer than /24, not /{length}")
    return Classless(zone=zone, network=network, parent=zone.parent())


def folded(name: dns.name.Name) -> tuple[bytes, ...]:
    """Name's labels lower-cased: a cheap key (dnspython's Name hash and compare fold every label each time)."""
    return tuple(map(bytes.lower, name.labels))


def _name(text: str | dns.name.Name) -> dns.name.Name:
    if isinstance(text, dns.name.Name):
        return text
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise DNSZoneError(f"{text!r} is not a valid DNS name: {exc}") from None


class Zones:
    """The configured zones, with longest-suffix lookup and RFC 2317 classless reverse zones."""

    def __init__(self, names: Iterable[str | dns.name.Name]) -> None:
        """Parse the zone names (absolute or not); classless reverse zones are recognised by their first label."""
        self.names: tuple[dns.name.Name, ...] = tuple(
            sorted({_name(name) for name in names}, key=lambda name: len(name.labels), reverse=True)
        )
        self.classless: tuple[Classless, ...] = tuple(
            found for found in (_classless(name) for name in self.names) if found is not None
        )
        self._suffixes = tuple((folded(zone), zone) for zone in self.names)
        self._reverse = tuple(zone for zone in self.names
                              if zone.is_subdomain(_IPV4_REVERSE) or zone.is_subdomain(_IPV6_REVERSE))
        """A tuple: zones come from `names`, so identity answers first (Name's hash folds every label each time)."""

    def zone_of(self, name: str | dns.name.Name) -> dns.name.Name | None:
        """The longest configured zone name is under, None if it is under none.

        Compares case-folded label tuples: this runs for every record of every zone read, and
        Name.is_subdomain costs tens of microseconds on long reverse names.
        """
        return self.zone_of_folded(folded(_name(name)))

    def zone_of_folded(self, labels: tuple[bytes, ...]) -> dns.name.Name | None:
        """zone_of() for a name given as its folded labels (see folded); the zone is one of `names`."""
        for suffix, zone in self._suffixes:
            if len(suffix) <= len(labels) and labels[len(labels) - len(suffix):] == suffix:
                return zone
        return None

    def is_reverse(self, zone: dns.name.Name) -> bool:
        """Whether zone (a configured zone) is an IPv4 or IPv6 reverse zone."""
        if any(zone is known for known in self.names):
            return any(zone is reverse for reverse in self._reverse)
        return zone in self._reverse

    def ptr_owner(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
                  ) -> tuple[dns.name.Name, dns.name.Name | None]:
        """Where address's PTR lives, and the RFC 2317 CNAME alias pointing there (None outside classless zones)."""
        reverse = dns.reversename.from_address(str(address))
        for classless in self.classless:
            if address in classless.network:
                return dns.name.Name(reverse.labels[:1]) + classless.zone, reverse
        return reverse, None

    def managed(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether an rrset found on the server is ours to change: A/AAAA forward, PTR reverse, RFC 2317 CNAMEs."""
        zone = self.zone_of(name)
        return zone is not None and self.managed_in(zone, name, rdtype)

    def managed_in(self, zone: dns.name.Name, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, *,
                   reverse: bool | None = None) -> bool:
        """managed() for a name already known to be in zone (a zone read calls this for every record, and may say
        once whether zone is_reverse)."""
        if not (self.is_reverse(zone) if reverse is None else reverse):
            return rdtype in FORWARD_TYPES
        if rdtype == dns.rdatatype.PTR:
            return True
        if rdtype != dns.rdatatype.CNAME or not name.is_subdomain(_IPV4_REVERSE) or len(name.labels) != 7:
            return False
        try:
            address = ipaddress.IPv4Address(dns.reversename.to_address(name))
        except (dns.exception.DNSException, ValueError):
            return False
        return any(address in classless.network and classless.parent == zone for classless in self.classless)
