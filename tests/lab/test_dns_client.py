"""The DNS client against the lab's real Knot: TSIG updates, AXFR, serials, prerequisites, wrong keys, dry-run.

Every record a test makes carries a random suffix and is removed at teardown, even on failure;
records of others sharing the lab are never touched (zone-wide diffs keep what is not ours).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import dns.name
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS, DNSAuthError, DNSPrerequisiteError
from libcluster.dns.protection import owns_everything
from cookbook_lab import topology

FORWARD = topology.DOMAIN
V4_REVERSE, V6_REVERSE = topology.DNS_ZONES[1], topology.DNS_ZONES[3]


@pytest.fixture
def dns_part(lab_part: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The lab's DNS part (server, port, TSIG key, zones)."""
    return lab_part("dns")


def config(part: dict[str, Any], **extra: Any) -> Section:
    """The `dns` section for the lab server."""
    data = {key: part[key] for key in ("server", "port", "tsig_name", "tsig_algorithm", "tsig_secret", "zones")}
    return Section({**data, "ttl": 300, "timeout": 5, **extra}, "dns", "lab")


@pytest.fixture
def tag() -> str:
    """Random suffix of this test's names."""
    return secrets.token_hex(3)


@pytest.fixture
def hosts(dns_part: dict[str, Any]) -> Iterator[list[str]]:
    """Names the test adds; their forward records and PTRs are removed at teardown."""
    names: list[str] = []
    yield names
    cleaner = DNS(config(dns_part), dry_run=False, changes=ChangeLog(dry_run=False))
    for name in names:
        cleaner.remove_host(name, owns=owns_everything)


def address(tag: str, index: int, version: int) -> str:
    """A lab VM address (group A prefixes) unlikely to collide with other tests: derived from the tag."""
    if version == 4:
        return str(ipaddress.ip_address("198.18.16.0") + 100 + (int(tag, 16) + index) % 150)
    return str(ipaddress.ip_address("2001:2:0:a::") + (int(tag, 16) << 16) + index)


def test_add_and_remove_a_aaaa_ptr_moves_the_serials(dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    changes = ChangeLog(dry_run=False)
    client = DNS(config(dns_part), dry_run=False, changes=changes)
    fqdn = f"dnstest-{tag}.{FORWARD}"
    hosts.append(fqdn)
    v4, v6 = address(tag, 0, 4), address(tag, 0, 6)
    before = {zone: client.serial(zone) for zone in (FORWARD, V4_REVERSE, V6_REVERSE)}
    diff = client.set_host(fqdn, [v4, v6], owns=owns_everything)
    assert diff.counts() == {"add": 4, "replace": 0, "delete": 0}
    assert client.messages_sent == 3
    after_add = {zone: client.serial(zone) for zone in before}
    assert all(after_add[zone] > before[zone] for zone in before)
    assert client.resolve(fqdn, "A") == [v4]
    assert client.resolve(fqdn, "AAAA") == [v6]
    assert client.resolve(ipaddress.ip_address(v4).reverse_pointer, "PTR") == [f"{fqdn}."]
    assert client.resolve(ipaddress.ip_address(v6).reverse_pointer, "PTR") == [f"{fqdn}."]
    assert len(client.host_diff(fqdn, [v4, v6], owns=owns_everything)) == 0
    assert [entry.action for entry in changes.changes] == ["record-add"] * 4

    removed = client.remove_host(fqdn, owns=owns_everything)
    assert removed.counts() == {"add": 0, "replace": 0, "delete": 4}
    after_remove = {zone: client.serial(zone) for zone in before}
    assert all(after_remove[zone] > after_add[zone] for zone in before)
    assert client.resolve(fqdn, "A") == [] and client.resolve(ipaddress.ip_address(v4).reverse_pointer, "PTR") == []


def test_a_zone_diff_applied_converges_in_few_messages(dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    client = DNS(config(dns_part), dry_run=False, changes=ChangeLog(dry_run=False))
    names = [f"bulk{index}-{tag}.{FORWARD}" for index in range(60)]
    hosts.extend(names)
    wanted = client.records((name, address(tag, index, 6)) for index, name in enumerate(names)).records

    def not_ours(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> bool:
        return name not in {key[0] for key in wanted}

    zones = [FORWARD, V6_REVERSE]
    diff = client.diff(wanted, zones=zones, keep=not_ours, owns=owns_everything)
    assert diff.counts() == {"add": 120, "replace": 0, "delete": 0}
    assert client.apply(diff) == 2
    assert len(client.diff(wanted, zones=zones, keep=not_ours, owns=owns_everything)) == 0
    read = client.zone_records(FORWARD)
    assert all(read[key] == rrset for key, rrset in wanted.items() if key in read)
    # Snippets of what the server holds round-trip through dnspython's parser.
    ours = {key: rrset for key, rrset in read.items() if key in wanted}
    assert len(ours) == 60
    assert client.snippets(ours)[dns.name.from_text(FORWARD)].count("\n") == 61


def _sneak(part: dict[str, Any], zone: str, name: str, rdtype: str, value: str) -> None:
    """Another writer replaces name's rrset behind the client's back (a plain signed update)."""
    keyring = dns.tsigkeyring.from_text({part["tsig_name"]: (part["tsig_algorithm"], part["tsig_secret"])})
    update = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm=part["tsig_algorithm"])
    update.replace(name, 300, rdtype, value)
    response = dns.query.tcp(update, part["server"], port=part["port"], timeout=5)
    assert response.rcode() == 0


def test_a_concurrent_change_fails_the_prerequisite_and_is_not_overwritten(
        dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    client = DNS(config(dns_part), dry_run=False, changes=ChangeLog(dry_run=False))
    fqdn = f"race-{tag}.{FORWARD}"
    hosts.append(fqdn)
    mine, theirs = address(tag, 1, 4), address(tag, 2, 4)
    diff = client.host_diff(fqdn, [mine], owns=owns_everything)
    _sneak(dns_part, FORWARD, f"{fqdn}.", "A", theirs)
    with pytest.raises(DNSPrerequisiteError, match="YXRRSET") as caught:
        client.apply(diff)
    assert caught.value.zone == f"{FORWARD}."
    assert client.resolve(fqdn, "A") == [theirs]

    # A replace planned on the old value fails too once the value changed again.
    diff = client.host_diff(fqdn, [mine], owns=owns_everything)
    assert diff.counts()["replace"] == 1
    _sneak(dns_part, FORWARD, f"{fqdn}.", "A", address(tag, 3, 4))
    with pytest.raises(DNSPrerequisiteError, match="NXRRSET"):
        client.apply(diff)
    assert client.resolve(fqdn, "A") == [address(tag, 3, 4)]


@pytest.mark.parametrize("change", ["secret", "name"])
def test_a_wrong_tsig_key_is_refused_with_a_clear_error(dns_part: dict[str, Any], hosts: list[str], tag: str,
                                                        change: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_secret = base64.b64encode(secrets.token_bytes(32)).decode()
    extra = {"tsig_secret": wrong_secret} if change == "secret" else {"tsig_name": f"nokey-{tag}"}
    client = DNS(config(dns_part, **extra), dry_run=False, changes=ChangeLog(dry_run=False))
    fqdn = f"wrongkey-{tag}.{FORWARD}"
    hosts.append(fqdn)
    serial = client.serial(FORWARD)
    expected = "wrong secret" if change == "secret" else "does not know TSIG key"
    with pytest.raises(DNSAuthError, match=expected) as caught:
        client.set_host(fqdn, [address(tag, 4, 4)], owns=owns_everything)
    with pytest.raises(DNSAuthError, match=expected):
        client.zone_records(FORWARD)
    for secret in (wrong_secret, dns_part["tsig_secret"]):
        assert secret not in str(caught.value) and secret not in caplog.text
    assert client.serial(FORWARD) == serial
    assert client.resolve(fqdn, "A") == []


def test_dry_run_reads_and_records_but_changes_no_zone(dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    changes = ChangeLog(dry_run=True)
    client = DNS(config(dns_part), dry_run=True, changes=changes)
    fqdn = f"dryrun-{tag}.{FORWARD}"
    hosts.append(fqdn)
    serials = {zone: client.serial(zone) for zone in dns_part["zones"]}
    diff = client.set_host(fqdn, [address(tag, 5, 4), address(tag, 5, 6)], owns=owns_everything)
    wanted = client.records([(fqdn, address(tag, 6, 4))]).records
    zone_diff = client.diff(wanted, zones=[FORWARD, V4_REVERSE], keep=lambda name, rdtype: True,
                            owns=owns_everything)
    client.apply(zone_diff)
    assert len(diff) == 4 and len(zone_diff) == 2
    assert {zone: client.serial(zone) for zone in serials} == serials
    assert client.resolve(fqdn, "A") == []
    assert client.messages_sent == 0
    assert len(changes.changes) == 6 and all(entry.dry_run for entry in changes.changes)
