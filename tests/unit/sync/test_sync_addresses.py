"""libcluster.sync.addresses: which address a VM without any gets, and how addresses go with their VM."""

from __future__ import annotations

import pytest
from tests.unit.sync.sync_fakes import RecordingNetBox, instance, settings

from libcluster.netbox import NetBoxConflict
from libcluster.sync import addresses
from libcluster.sync.addresses import AddressRequest


@pytest.mark.parametrize("address, prefixes, expected", [
    ("198.51.100.7", ["203.0.113.0/24", "198.51.100.0/26"], "198.51.100.7/26"),
    ("198.51.100.200", ["198.51.100.0/26"], "198.51.100.200/32"),
    ("2001:db8:a::5", ["198.51.100.0/26", "2001:db8:a::/64"], "2001:db8:a::5/64"),
    ("2001:db8:b::5/48", [], "2001:db8:b::5/128"),
])
def test_with_mask_takes_the_mask_of_the_prefix_holding_the_address(address: str, prefixes: list[str],
                                                                     expected: str) -> None:
    assert addresses.with_mask(address, prefixes) == expected


def test_requests_prefer_the_ganeti_nic_ip_else_one_per_ip_version_of_the_group_only_when_allocating() -> None:
    group = settings().groups["A"]
    with_ip = instance("a.lab.example", ips=["198.51.100.9"])
    for allocate in (True, False):
        assert addresses.requests_for(with_ip, group, allocate=allocate) == [
            AddressRequest("a.lab.example", "198.51.100.9/26")]
    assert addresses.requests_for(instance("b.lab.example"), group, allocate=True) == [
        AddressRequest("b.lab.example", prefixes=("198.51.100.0/26",)),
        AddressRequest("b.lab.example", prefixes=("2001:db8:a::/64",))]
    assert addresses.requests_for(instance("b.lab.example"), group, allocate=False) == []
    assert addresses.requests_for(instance("c.lab.example"), settings().groups["B"], allocate=True) == [
        AddressRequest("c.lab.example", prefixes=("198.51.100.64/26",))]
    assert addresses.requests_for(instance("d.lab.example"), None, allocate=True) == []


def test_give_creates_given_addresses_and_allocates_others_in_bulk_assigned_when_the_interface_is_known() -> None:
    netbox = RecordingNetBox(free={"198.51.100.0/26": 10})
    made = addresses.give(netbox, [
        AddressRequest("a.lab.example", "198.51.100.9/26"),
        AddressRequest("b.lab.example", prefixes=("198.51.100.0/26",)),
        AddressRequest("c.lab.example", prefixes=("198.51.100.0/26",)),
    ], {"a.lab.example": 11, "b.lab.example": None, "c.lab.example": 13})
    assert netbox.writes() == [
        ("create", "ip-address", [{"dns_name": "a.lab.example", "status": "active", "address": "198.51.100.9/26",
                                   "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 11}]),
        ("allocate", "198.51.100.0/26", [
            {"dns_name": "b.lab.example", "status": "active"},
            {"dns_name": "c.lab.example", "status": "active", "assigned_object_type": "virtualization.vminterface",
             "assigned_object_id": 13}]),
    ]
    assert [ip["address"] for ip in made] == ["198.51.100.9/26", "198.51.100.1/26", "198.51.100.2/26"]


def test_give_fails_clearly_when_the_prefixes_are_full() -> None:
    netbox = RecordingNetBox(free={"198.51.100.0/30": 1})
    with pytest.raises(NetBoxConflict, match=r"no free address left in 198.51.100.0/30 for 1 VM\(s\): b.lab.example"):
        addresses.give(netbox, [AddressRequest(name, prefixes=("198.51.100.0/30",))
                                for name in ("a.lab.example", "b.lab.example")], {})


def test_retire_releases_or_keeps_reserved_without_dns_name() -> None:
    ips = [{"id": 1, "address": "198.51.100.9/26", "dns_name": "gone.lab.example"}]
    netbox = RecordingNetBox()
    addresses.retire(netbox, ips, release=True)
    assert netbox.writes() == [("release", "ip-address", ips)]
    netbox = RecordingNetBox()
    addresses.retire(netbox, ips, release=False)
    assert netbox.writes() == [("update", "ip-address", [{
        "id": 1, "assigned_object_type": None, "assigned_object_id": None, "status": "reserved", "dns_name": "",
        "description": "kept from gone.lab.example"}])]
    netbox = RecordingNetBox()
    addresses.retire(netbox, [], release=True)
    assert netbox.writes() == []
