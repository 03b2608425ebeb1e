"""Building A, AAAA, PTR and RFC 2317 CNAME records from (name, address) pairs."""

from __future__ import annotations

import ipaddress

import dns.name
import dns.rdatatype
import pytest

from libcluster.dns import DNSZoneError, Zones
from libcluster.dns.records import build
from cookbook_lab import topology

A, AAAA, PTR, CNAME = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.PTR, dns.rdatatype.CNAME


def texts(built: dict, owner: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
    """Records of one rrset as sorted text."""
    return sorted(rdata.to_text() for rdata in built[(dns.name.from_text(owner), rdtype)])


def test_forward_and_reverse_records_for_both_families() -> None:
    v4, v6 = "198.18.16.7/24", "2001:2:0:a::7/64"
    built = build([("vm7.lab.example", v4), ("vm7.lab.example", v6)], Zones(topology.DNS_ZONES), 300)
    assert built.skipped == []
    assert texts(built.records, "vm7.lab.example", A) == ["198.18.16.7"]
    assert texts(built.records, "vm7.lab.example", AAAA) == ["2001:2:0:a::7"]
    for address in (v4, v6):
        owner = ipaddress.ip_interface(address).ip.reverse_pointer
        assert texts(built.records, owner, PTR) == ["vm7.lab.example."]
    assert {rrset.ttl for rrset in built.records.values()} == {300}
    assert len(built.records) == 4


def test_several_addresses_make_one_rrset_and_duplicates_collapse() -> None:
    entries = [("web.lab.example", "198.18.16.10"), ("web.lab.example", "198.18.16.11"),
               ("web.lab.example", "198.18.16.10")]
    built = build(entries, Zones(topology.DNS_ZONES), 60)
    assert texts(built.records, "web.lab.example", A) == ["198.18.16.10", "198.18.16.11"]
    assert len(built.records) == 3


def test_names_and_addresses_outside_the_zones_are_reported_not_built() -> None:
    built = build([("vm.other.example", "198.18.16.9"), ("vm9.lab.example", "203.0.113.9")],
                  Zones(topology.DNS_ZONES), 300)
    assert set(built.records) == {(dns.name.from_text("9.16.18.198.in-addr.arpa"), PTR),
                                  (dns.name.from_text("vm9.lab.example"), A)}
    assert len(built.skipped) == 2
    assert any("vm.other.example" in line for line in built.skipped)
    assert any("203.0.113.9" in line for line in built.skipped)


def test_classless_zone_gets_the_ptr_and_the_parent_the_cname() -> None:
    zones = Zones(["example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa"])
    built = build([("host.example.org", "192.0.2.5")], zones, 300)
    assert texts(built.records, "5.0-25.2.0.192.in-addr.arpa", PTR) == ["host.example.org."]
    assert texts(built.records, "5.2.0.192.in-addr.arpa", CNAME) == ["5.0-25.2.0.192.in-addr.arpa."]
    # Without the parent zone configured, someone else holds the CNAMEs: only the PTR is ours.
    built = build([("host.example.org", "192.0.2.5")], Zones(["example.org", "0-25.2.0.192.in-addr.arpa"]), 300)
    assert (dns.name.from_text("5.2.0.192.in-addr.arpa"), CNAME) not in built.records
    assert texts(built.records, "5.0-25.2.0.192.in-addr.arpa", PTR) == ["host.example.org."]


@pytest.mark.parametrize("fqdn, address", [("bad..name", "198.18.16.1"), ("vm.lab.example", "not-an-ip"),
                                           (" ", "198.18.16.1")])
def test_invalid_input_is_a_typed_error(fqdn: str, address: str) -> None:
    with pytest.raises(DNSZoneError):
        build([(fqdn, address)], Zones(topology.DNS_ZONES), 300)
