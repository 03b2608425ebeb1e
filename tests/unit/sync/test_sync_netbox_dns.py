"""libcluster.sync.netbox_dns without a server: settings, scope, records from NetBox entries, threshold, table,
snippets; the difference against a zone served by a stand-in AXFR (the server's transfer answers a zone text)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS
from libcluster.dns.protection import NOT_OURS
from libcluster.dns.snippets import parse
from libcluster.sync import netbox_dns
from libcluster.sync.netbox_dns import DNSSyncSettings, Scope, ThresholdExceeded

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
ZONES = ["example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"]


def client(**netbox: Any) -> DNS:
    """A DNS client of the test zones (no request is made unless a test stands in for the server)."""
    data = {"server": "127.0.0.1", "port": 1, "tsig_name": "cookbooks", "tsig_secret": SECRET, "ttl": 300,
            "zones": ZONES, "netbox": netbox}
    return DNS(Section(data, "dns", "test"), dry_run=False, changes=ChangeLog(dry_run=False))


def root(**netbox: Any) -> Section:
    return Section({"dns": {"netbox": netbox}}, "", "test")


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_settings_defaults_and_values() -> None:
    assert DNSSyncSettings.from_config(root()) == DNSSyncSettings()
    settings = DNSSyncSettings.from_config(root(statuses=["active"], max_changes=3, max_percent=1.5,
                                                names=["T-*.Example.org."], networks=["192.0.2.0/25"]))
    assert settings == DNSSyncSettings(("active",), 3, 1.5, ("t-*.example.org",), ("192.0.2.0/25",))


@pytest.mark.parametrize("wanted, limit", [(0, 20), (100, 20), (1000, 50)])
def test_limit_is_the_larger_of_max_changes_and_the_percentage(wanted: int, limit: int) -> None:
    assert DNSSyncSettings(max_changes=20, max_percent=5).limit(wanted) == limit


@pytest.mark.parametrize("owner, address", [
    ("5.2.0.192.in-addr.arpa", "192.0.2.5"),
    ("5.0-25.2.0.192.in-addr.arpa", "192.0.2.5"),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "2001:db8::1"),
    ("host.example.org", None),
])
def test_reverse_address_reads_plain_classless_and_ipv6_owners(owner: str, address: str | None) -> None:
    found = netbox_dns.reverse_address(name(owner), client().zones)
    assert found == (ipaddress.ip_address(address) if address else None)


def test_scope_owns_forward_names_by_pattern_and_reverse_records_by_network() -> None:
    zones = client().zones
    everything = Scope(DNSSyncSettings(), zones)
    assert everything.owns(name("any.example.org"), dns.rdatatype.A)
    assert everything.owns(name("9.2.0.192.in-addr.arpa"), dns.rdatatype.PTR)
    scoped = Scope(DNSSyncSettings(names=("t-*.example.org",), networks=("192.0.2.0/28", "2001:db8::/120")), zones)
    assert scoped.owns(name("t-1.example.org"), dns.rdatatype.AAAA)
    assert not scoped.owns(name("web.example.org"), dns.rdatatype.A)
    assert scoped.owns(name("9.0-25.2.0.192.in-addr.arpa"), dns.rdatatype.PTR)
    assert scoped.owns(name("9.2.0.192.in-addr.arpa"), dns.rdatatype.CNAME)
    assert not scoped.owns(name("99.2.0.192.in-addr.arpa"), dns.rdatatype.PTR)


def test_wanted_records_follow_the_zones_and_the_scope() -> None:
    dns_client = client()
    scope = Scope(DNSSyncSettings(names=("t-*.example.org",)), dns_client.zones)
    built = netbox_dns.wanted(dns_client, [("t-a.example.org", "192.0.2.5/25"), ("t-b.example.org", "2001:db8::7/64"),
                                           ("web.example.org", "192.0.2.200/24"), ("t-c.other.net", "198.51.100.1")],
                              scope)
    texts = {(key[0].to_text(), dns.rdatatype.to_text(key[1])): sorted(r.to_text() for r in rrset)
             for key, rrset in built.records.items()}
    assert texts == {
        ("t-a.example.org.", "A"): ["192.0.2.5"],
        ("5.0-25.2.0.192.in-addr.arpa.", "PTR"): ["t-a.example.org."],
        ("5.2.0.192.in-addr.arpa.", "CNAME"): ["5.0-25.2.0.192.in-addr.arpa."],
        ("t-b.example.org.", "AAAA"): ["2001:db8::7"],
        ("7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR"): ["t-b.example.org."],
        ("200.2.0.192.in-addr.arpa.", "PTR"): ["web.example.org."],
    }
    assert built.skipped == ["t-c.other.net.: no configured zone holds this name, no A/AAAA record",
                             "198.51.100.1: no configured reverse zone holds 1.100.51.198.in-addr.arpa., no PTR record"]


def test_netbox_entries_read_named_addresses_of_the_dns_statuses() -> None:
    asked: list[dict[str, Any]] = []

    class Reader:
        def objects(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
            asked.append({"kind": kind, **filters})
            return [{"dns_name": "b.example.org", "address": "192.0.2.2/25"},
                    {"dns_name": "a.example.org", "address": "192.0.2.1/25"}]

    ips = netbox_dns.netbox_entries(Reader(), DNSSyncSettings(statuses=("active",)))  # type: ignore[arg-type]
    assert netbox_dns.entries(ips) == [("a.example.org", "192.0.2.1/25"), ("b.example.org", "192.0.2.2/25")]
    assert asked == [{"kind": "ip-address", "fields": netbox_dns.IP_FIELDS, "dns_name__empty": False,
                      "status": ["active"]}]


SERVED = {
    "example.org": """$ORIGIN example.org.
@ 300 IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 300
@ 300 IN NS ns1.example.org.
ns1 300 IN A 192.0.2.53
t-stale 300 IN A 192.0.2.9
t-a 300 IN A 192.0.2.99
web 300 IN A 192.0.2.80
web 300 IN TXT "hand made"
""",
    "0-25.2.0.192.in-addr.arpa": """$ORIGIN 0-25.2.0.192.in-addr.arpa.
@ 300 IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 300
@ 300 IN NS ns1.example.org.
5 300 IN PTR wrong.example.org.
80 300 IN PTR web.example.org.
""",
}


def served(zone: str) -> Iterator[tuple[dns.name.Name, dns.rdatatype.RdataType, int, Any]]:
    """The records of a served zone as Server.transfer gives them."""
    text = SERVED.get(zone) or (f"$ORIGIN {zone}.\n@ 300 IN SOA ns1.example.org. h.example.org. 1 3600 600 86400 300\n"
                                "@ 300 IN NS ns1.example.org.\n")
    for owner, ttl, rdata in dns.zone.from_text(text, origin=zone, relativize=False).iterate_rdatas():
        yield owner, rdata.rdtype, ttl, rdata


def test_difference_changes_in_scope_rrsets_netbox_accounts_for_and_never_name_servers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dns_client = client()
    monkeypatch.setattr(dns_client.server, "transfer", lambda origin: served(origin.to_text(omit_final_dot=True)))
    scope = Scope(DNSSyncSettings(names=("t-*.example.org", "ns1.example.org", "example.org"),
                                  networks=("192.0.2.0/28",)),
                  dns_client.zones)
    built = netbox_dns.wanted(dns_client, [("t-a.example.org", "192.0.2.5"), ("ns1.example.org", "192.0.2.6"),
                                           ("example.org", "192.0.2.7")], scope)
    ours = [{"dns_name": "t-a.example.org", "address": "192.0.2.5/25"},
            {"dns_name": "ns1.example.org", "address": "192.0.2.6/25"}]
    accounted = netbox_dns.Accounted.of(dns_client.zones, ours)
    diff = netbox_dns.difference(dns_client, built.records, scope, accounted.owns)
    assert netbox_dns.rows(diff) == [
        ("2.0.192.in-addr.arpa.", "add", "5.2.0.192.in-addr.arpa.", "CNAME", "5.0-25.2.0.192.in-addr.arpa."),
        ("2.0.192.in-addr.arpa.", "add", "6.2.0.192.in-addr.arpa.", "CNAME", "6.0-25.2.0.192.in-addr.arpa."),
        ("2.0.192.in-addr.arpa.", "add", "7.2.0.192.in-addr.arpa.", "CNAME", "7.0-25.2.0.192.in-addr.arpa."),
        ("0-25.2.0.192.in-addr.arpa.", "replace", "5.0-25.2.0.192.in-addr.arpa.", "PTR",
         "wrong.example.org. -> t-a.example.org."),
        ("0-25.2.0.192.in-addr.arpa.", "add", "6.0-25.2.0.192.in-addr.arpa.", "PTR", "ns1.example.org."),
        ("0-25.2.0.192.in-addr.arpa.", "add", "7.0-25.2.0.192.in-addr.arpa.", "PTR", "example.org."),
        ("example.org.", "replace", "t-a.example.org.", "A", "192.0.2.99 -> 192.0.2.5"),
    ]
    assert [item.describe() for item in diff.left] == [
        "example.org. A: the server has nothing, NetBox gives 192.0.2.7; left as is: zone apex",
        "ns1.example.org. A: the server has 192.0.2.53, NetBox gives 192.0.2.6; left as is: address of a name "
        "server of the zone",
        f"t-stale.example.org. A: the server has 192.0.2.9, NetBox gives nothing; left as is: {NOT_OURS}",
    ]
    with_stale = netbox_dns.Accounted.of(dns_client.zones, [*ours, {"dns_name": "t-stale.example.org",
                                                                    "address": "192.0.2.9/25"}])
    assert ("example.org.", "delete", "t-stale.example.org.", "A", "192.0.2.9") in netbox_dns.rows(
        netbox_dns.difference(dns_client, built.records, scope, with_stale.owns))
    only = netbox_dns.difference(dns_client, built.records, scope, accounted.owns, zones=["example.org"])
    assert {change.zone.to_text() for change in only} == {"example.org."}


def test_accounted_owns_its_names_its_addresses_and_ptrs_pointing_only_to_its_names() -> None:
    zones = client().zones
    accounted = netbox_dns.Accounted.of(zones, [{"dns_name": "vm.example.org", "address": "192.0.2.5/25"},
                                                {"dns_name": "", "address": "192.0.2.6/25"}])
    ptr = dns.rrset.from_text("9.0-25.2.0.192.in-addr.arpa.", 300, "IN", "PTR", "vm.example.org.")
    other = dns.rrset.from_text("9.0-25.2.0.192.in-addr.arpa.", 300, "IN", "PTR", "other.example.org.")
    assert accounted.owns(name("vm.example.org"), dns.rdatatype.A, [])
    assert not accounted.owns(name("web.example.org"), dns.rdatatype.A, [])
    assert accounted.owns(name("5.0-25.2.0.192.in-addr.arpa"), dns.rdatatype.PTR, other)
    assert accounted.owns(name("5.2.0.192.in-addr.arpa"), dns.rdatatype.CNAME, [])
    assert not accounted.owns(name("6.0-25.2.0.192.in-addr.arpa"), dns.rdatatype.PTR, other)
    assert accounted.owns(ptr.name, dns.rdatatype.PTR, ptr)
    assert not accounted.owns(other.name, dns.rdatatype.PTR, other)


def test_threshold_stops_an_oversized_difference_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    dns_client = client()
    monkeypatch.setattr(dns_client.server, "transfer", lambda origin: served(origin.to_text(omit_final_dot=True)))
    scope = Scope(DNSSyncSettings(), dns_client.zones)
    diff = netbox_dns.difference(dns_client, {}, scope, lambda *_: True)
    assert len(diff) == 5 and [item.rrset.name.to_text() for item in diff.left] == ["ns1.example.org."]
    settings = DNSSyncSettings(max_changes=4, max_percent=0)
    with pytest.raises(ThresholdExceeded, match=r"changes 5 rrsets \(5 delete\), more than the threshold of 4"):
        netbox_dns.check_threshold(diff, 0, settings, force=False)
    netbox_dns.check_threshold(diff, 0, settings, force=True)
    netbox_dns.check_threshold(diff, 0, DNSSyncSettings(max_changes=5, max_percent=0), force=False)


def test_snippets_are_written_per_zone_and_parse_back(tmp_path: Path) -> None:
    dns_client = client()
    built = netbox_dns.wanted(dns_client, [("t-a.example.org", "192.0.2.5"), ("t-b.example.org", "2001:db8::7")],
                              Scope(DNSSyncSettings(), dns_client.zones))
    written = netbox_dns.write_snippets(dns_client, built.records, tmp_path / "out", changes=ChangeLog(dry_run=False))
    assert sorted(path.name for path in written) == sorted(
        ["example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"])
    for path in written:
        zone = name(path.name)
        expected = {key: rrset for key, rrset in built.records.items() if dns_client.zones.zone_of(key[0]) == zone}
        assert parse(zone, path.read_text()) == expected
    only = netbox_dns.write_snippets(dns_client, built.records, tmp_path / "one", ["example.org"],
                                     changes=ChangeLog(dry_run=False))
    assert [path.name for path in only] == ["example.org"]


def test_host_addresses_keep_the_name_and_statuses_that_get_records() -> None:
    ips = [{"address": "192.0.2.5/25", "dns_name": "a.example.org", "status": {"value": "active"}},
           {"address": "192.0.2.5/25", "dns_name": "A.example.org.", "status": "active"},
           {"address": "192.0.2.6/25", "dns_name": "a.example.org", "status": {"value": "reserved"}},
           {"address": "2001:db8::5/64", "dns_name": "b.example.org", "status": {"value": "active"}}]
    assert netbox_dns.host_addresses(ips, "a.example.org", DNSSyncSettings()) == ["192.0.2.5"]
