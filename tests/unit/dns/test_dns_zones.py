"""Zone selection, reverse names (IPv4, IPv6) and RFC 2317 classless zones, without a server."""

from __future__ import annotations

import ipaddress

import dns.name
import dns.rdatatype
import pytest

from libcluster.dns import DNSZoneError, Zones
from cookbook_lab import topology

CLASSLESS = ["example.org", "sub.example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa",
             "128/26.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"]


def name(text: str) -> dns.name.Name:
    """An absolute name."""
    return dns.name.from_text(text)


def test_a_name_belongs_to_the_longest_configured_zone() -> None:
    zones = Zones(CLASSLESS)
    assert zones.zone_of("www.example.org") == name("example.org")
    assert zones.zone_of("a.b.sub.example.org.") == name("sub.example.org")
    assert zones.zone_of("sub.example.org") == name("sub.example.org")
    assert zones.zone_of("example.net") is None
    assert zones.zone_of("notexample.org") is None


@pytest.mark.parametrize("address", ["198.18.16.5", "198.18.17.254", "2001:2:0:a::5", "2001:2:0:b:1234:5678:9abc:def0"])
def test_reverse_names_of_the_lab_prefixes_fall_in_the_lab_zones(address: str) -> None:
    zones = Zones(topology.DNS_ZONES)
    ip = ipaddress.ip_address(address)
    owner, alias = zones.ptr_owner(ip)
    # ipaddress computes reverse pointers independently of dnspython.
    assert owner == name(ip.reverse_pointer)
    assert alias is None
    assert zones.zone_of(owner) is not None and zones.is_reverse(zones.zone_of(owner))


def test_classless_zone_names_are_parsed_in_both_spellings() -> None:
    zones = Zones(CLASSLESS)
    networks = {str(found.zone): str(found.network) for found in zones.classless}
    assert networks == {"0-25.2.0.192.in-addr.arpa.": "192.0.2.0/25", "128/26.2.0.192.in-addr.arpa.": "192.0.2.128/26"}
    assert {found.parent for found in zones.classless} == {name("2.0.192.in-addr.arpa")}


@pytest.mark.parametrize("zone, problem", [
    ("5-25.2.0.192.in-addr.arpa", "not a valid RFC 2317"),
    ("0-24.2.0.192.in-addr.arpa", "longer than /24"),
    ("0-33.2.0.192.in-addr.arpa", "not a valid RFC 2317"),
])
def test_malformed_classless_zones_are_refused(zone: str, problem: str) -> None:
    with pytest.raises(DNSZoneError, match=problem):
        Zones([zone])


def test_classless_ptr_lives_in_the_child_zone_with_a_cname_from_the_parent_name() -> None:
    zones = Zones(CLASSLESS)
    owner, alias = zones.ptr_owner(ipaddress.ip_address("192.0.2.5"))
    assert owner == name("5.0-25.2.0.192.in-addr.arpa")
    assert alias == name("5.2.0.192.in-addr.arpa")
    assert zones.zone_of(owner) == name("0-25.2.0.192.in-addr.arpa")
    assert zones.zone_of(alias) == name("2.0.192.in-addr.arpa")
    owner, alias = zones.ptr_owner(ipaddress.ip_address("192.0.2.150"))
    assert owner == name("150.128/26.2.0.192.in-addr.arpa")
    owner, alias = zones.ptr_owner(ipaddress.ip_address("192.0.2.127"))
    assert owner == name("127.0-25.2.0.192.in-addr.arpa")
    # 192.0.2.192-255 is in no classless zone (128/26 ends at .191): its PTR stays in the /24 zone.
    assert zones.ptr_owner(ipaddress.ip_address("192.0.2.250")) == (name("250.2.0.192.in-addr.arpa"), None)


def test_only_our_kinds_of_rrsets_are_managed() -> None:
    zones = Zones(CLASSLESS)
    assert zones.managed(name("www.example.org"), dns.rdatatype.A)
    assert zones.managed(name("www.example.org"), dns.rdatatype.AAAA)
    assert not zones.managed(name("www.example.org"), dns.rdatatype.CNAME)
    assert not zones.managed(name("example.org"), dns.rdatatype.MX)
    assert not zones.managed(name("example.org"), dns.rdatatype.SOA)
    assert zones.managed(name("5.0-25.2.0.192.in-addr.arpa"), dns.rdatatype.PTR)
    assert zones.managed(name("5.2.0.192.in-addr.arpa"), dns.rdatatype.CNAME)
    assert not zones.managed(name("250.2.0.192.in-addr.arpa"), dns.rdatatype.CNAME)
    assert not zones.managed(name("2.0.192.in-addr.arpa"), dns.rdatatype.NS)
    assert not zones.managed(name("www.example.net"), dns.rdatatype.A)
