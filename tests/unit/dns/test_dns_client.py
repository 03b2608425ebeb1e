"""The DNS client without a server: config and secrets, dry-run, batching into messages, error mapping, framing."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS, DNSAuthError, DNSPrerequisiteError, DNSUnavailable
from libcluster.dns.diff import compute
from libcluster.dns.protection import NOT_OURS, owns_everything
from libcluster.dns.scope import OUTSIDE
from libcluster.dns.server import Server, _Frames
from libcluster.errors import ConfigError
from cookbook_lab import topology

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


def section(**extra: Any) -> Section:
    """A dns config section for the lab zones."""
    data = {"server": "127.0.0.1", "port": 1, "tsig_name": "cookbooks", "tsig_algorithm": "hmac-sha256",
            "tsig_secret": SECRET, "ttl": 300, "timeout": 1, "zones": list(topology.DNS_ZONES), **extra}
    return Section(data, "dns", "test")


class FakeWire:
    """Stands in for the server's socket side: renders each message (as sending does) and answers rcodes."""

    def __init__(self, rcodes: list[dns.rcode.Rcode] | None = None) -> None:
        """Answer NOERROR unless rcodes lists answers in order."""
        self.rcodes = rcodes or []
        self.messages: list[dns.update.UpdateMessage] = []
        self.sizes: list[int] = []

    def send(self, server: Server, message: dns.update.UpdateMessage, sock: Any) -> dns.rcode.Rcode:
        """Sign and render like Server.send, then answer."""
        message.use_tsig(server.keyring, server.keyname, algorithm=server.algorithm)
        self.sizes.append(len(message.to_wire()))
        self.messages.append(message)
        return self.rcodes.pop(0) if self.rcodes else dns.rcode.NOERROR


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> FakeWire:
    """A FakeWire under Server.connection/send."""
    fake = FakeWire()

    @contextlib.contextmanager
    def connection(server: Server) -> Iterator[None]:
        yield None

    monkeypatch.setattr(Server, "connection", connection)
    monkeypatch.setattr(Server, "send", lambda server, message, sock: fake.send(server, message, sock))
    return fake


def host_entries(count: int) -> list[tuple[str, str]]:
    """count hosts with an IPv6 address each (long PTR names make big messages)."""
    base = ipaddress.IPv6Address("2001:2:0:a::")
    return [(f"host{i}.lab.example", str(base + i)) for i in range(count)]


def test_a_secret_that_is_not_base64_is_a_config_error_without_the_secret() -> None:
    bad = "not*base64*secret*value"
    with pytest.raises(ConfigError, match="tsig_secret") as caught:
        DNS(section(tsig_secret=bad), dry_run=False, changes=ChangeLog(dry_run=False))
    assert bad not in str(caught.value)
    with pytest.raises(ConfigError, match="tsig_algorithm"):
        DNS(section(tsig_algorithm="hmac-nothing"), dry_run=False, changes=ChangeLog(dry_run=False))


def test_dry_run_records_every_change_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dry-run must not send")

    monkeypatch.setattr(Server, "connection", forbidden)
    monkeypatch.setattr(Server, "send", forbidden)
    changes = ChangeLog(dry_run=True)
    client = DNS(section(), dry_run=True, changes=changes)
    diff = compute(client.records(host_entries(3)).records, {}, client.zones)
    assert client.apply(diff) == 0
    assert client.messages_sent == 0
    assert len(changes.changes) == len(diff) == 6
    assert all(entry.dry_run and entry.system == "dns" and entry.action == "record-add" for entry in changes.changes)


def test_apply_batches_changes_into_few_messages_and_records_each(wire: FakeWire) -> None:
    changes = ChangeLog(dry_run=False)
    client = DNS(section(update_batch=400), dry_run=False, changes=changes)
    diff = compute(client.records(host_entries(1000)).records, {}, client.zones)
    sent = client.apply(diff)
    # Each add is 2 records (absence prerequisite + record): 200 rrsets per message, per zone.
    assert sent == client.messages_sent == len(wire.messages) == 10
    assert {message.origin for message in wire.messages} == {dns.name.from_text(topology.DOMAIN),
                                                             dns.name.from_text(topology.DNS_ZONES[3])}
    assert sum(len(message.update) for message in wire.messages) == 2000
    assert len(changes.changes) == 2000 and not any(entry.dry_run for entry in changes.changes)


def test_a_batch_too_big_for_one_message_is_split(wire: FakeWire) -> None:
    client = DNS(section(update_batch=100000), dry_run=False, changes=ChangeLog(dry_run=False))
    diff = compute(client.records(host_entries(2000)).records, {}, client.zones)
    sent = client.apply(diff)
    assert sent > len(diff.by_zone())
    assert all(size <= 65535 for size in wire.sizes)
    assert sum(len(message.update) for message in wire.messages) == len(diff)


def test_a_failed_prerequisite_stops_with_what_was_applied(wire: FakeWire) -> None:
    wire.rcodes = [dns.rcode.NOERROR, dns.rcode.YXRRSET]
    changes = ChangeLog(dry_run=False)
    client = DNS(section(update_batch=100), dry_run=False, changes=changes)
    diff = compute(client.records(host_entries(200)).records, {}, client.zones)
    with pytest.raises(DNSPrerequisiteError, match="YXRRSET") as caught:
        client.apply(diff)
    assert caught.value.applied == 50
    assert len(changes.changes) == 50


@pytest.mark.parametrize("raised, error, text", [
    (dns.tsig.PeerBadSignature, DNSAuthError, "wrong secret"),
    (dns.tsig.PeerBadKey, DNSAuthError, "does not know TSIG key 'cookbooks'"),
    (dns.tsig.PeerBadTime, DNSAuthError, "clocks differ"),
    (dns.tsig.BadSignature, DNSAuthError, "TSIG with"),
    (dns.exception.Timeout, DNSUnavailable, "did not answer"),
    (ConnectionRefusedError, DNSUnavailable, "cannot reach"),
    (EOFError, DNSUnavailable, "closed the connection"),
])
def test_transport_errors_are_typed_and_name_the_key_not_the_secret(
        raised: type[Exception], error: type[Exception], text: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = DNS(section(), dry_run=False, changes=ChangeLog(dry_run=False))
    with pytest.raises(error, match=text) as caught:
        with client.server._errors("UPDATE lab.example."):
            raise raised()
    assert SECRET not in str(caught.value) and SECRET not in caplog.text
    assert caught.value.__cause__ is None


def test_an_unreachable_server_is_a_typed_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DNS(section(port=port), dry_run=False, changes=ChangeLog(dry_run=False))
    with pytest.raises(DNSUnavailable, match=f"127.0.0.1@{port}"):
        client.zone_records(topology.DOMAIN)


def test_host_diff_moves_records_leaves_a_reassigned_ptr_alone_and_what_is_not_ours_or_protected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = DNS(section(), dry_run=False, changes=ChangeLog(dry_run=False))
    served = {
        ("vm.lab.example.", "A"): ["198.18.16.5", "198.18.16.6"],
        ("5.16.18.198.in-addr.arpa.", "PTR"): ["vm.lab.example."],
        ("6.16.18.198.in-addr.arpa.", "PTR"): ["other.lab.example."],
    }

    def query(server: Server, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
        values = served.get((name.to_text(), dns.rdatatype.to_text(rdtype)))
        return dns.rrset.from_text(name, 300, "IN", rdtype, *values) if values else None

    def authority(server: Server, name: dns.name.Name) -> tuple[set[dns.name.Name], set[dns.name.Name]]:
        apex = client.zones.zone_of(name)
        return ({apex}, {dns.name.from_text("ns1.lab.example")}) if name == apex else (set(), set())

    monkeypatch.setattr(Server, "query", query)
    monkeypatch.setattr(Server, "authority", authority)
    diff = client.host_diff("vm.lab.example", ["198.18.16.7"], owns=owns_everything)
    assert diff.lines() == [
        "zone 16.18.198.in-addr.arpa.:",
        "  - 5.16.18.198.in-addr.arpa. 300 PTR vm.lab.example.",
        "  + 7.16.18.198.in-addr.arpa. 300 PTR vm.lab.example.",
        "zone lab.example.:",
        "  ~ vm.lab.example. A 300 198.18.16.5 198.18.16.6 -> 300 198.18.16.7",
    ]
    kept = client.host_diff("vm.lab.example", ["198.18.16.7"], owns=lambda name, rdtype, rrset: False)
    assert kept.lines() == [
        "zone 16.18.198.in-addr.arpa.:",
        "  + 7.16.18.198.in-addr.arpa. 300 PTR vm.lab.example.",
        "  ! 5.16.18.198.in-addr.arpa. PTR: the server has vm.lab.example., NetBox gives nothing; left as is: "
        f"{NOT_OURS}",
        "zone lab.example.:",
        "  ! vm.lab.example. A: the server has 198.18.16.5 198.18.16.6, NetBox gives 198.18.16.7; left as is: "
        f"{NOT_OURS}",
    ]
    served[("ns1.lab.example.", "A")] = ["198.18.16.53"]
    name_server = client.host_diff("ns1.lab.example", ["198.18.16.9"], owns=owns_everything)
    assert [item.reason for item in name_server.left] == [
        "address of a name server of the zone"]
    apex = client.host_diff("lab.example", ["198.18.16.9"], owns=owns_everything)
    assert [item.reason for item in apex.left] == ["zone apex"]


def test_nothing_outside_the_dns_netbox_scope_is_added_changed_or_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    client = DNS(section(netbox={"names": ["*.vm.lab.example"], "networks": ["198.18.16.64/28"]}), dry_run=False,
                 changes=ChangeLog(dry_run=False))
    served = {("db1.lab.example.", "A"): ["198.18.16.5"]}

    def query(server: Server, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
        values = served.get((name.to_text(), dns.rdatatype.to_text(rdtype)))
        return dns.rrset.from_text(name, 300, "IN", rdtype, *values) if values else None

    monkeypatch.setattr(Server, "query", query)
    monkeypatch.setattr(Server, "authority", lambda server, name: (set(), set()))
    outside = client.host_diff("db1.lab.example", ["198.18.16.7"], owns=owns_everything)
    assert list(outside) == []
    assert sorted((item.rrset.name.to_text(), item.reason) for item in outside.left) == [
        ("7.16.18.198.in-addr.arpa.", OUTSIDE), ("db1.lab.example.", OUTSIDE)]
    inside = client.host_diff("db1.vm.lab.example", ["198.18.16.7", "198.18.16.77"], owns=owns_everything)
    assert [change.describe() for change in inside] == [
        "+ 77.16.18.198.in-addr.arpa. 300 PTR db1.vm.lab.example.",
        "+ db1.vm.lab.example. 300 A 198.18.16.7 198.18.16.77"]
    assert [(item.rrset.name.to_text(), item.reason) for item in inside.left] == [
        ("7.16.18.198.in-addr.arpa.", OUTSIDE)]


def test_frames_hand_out_whole_messages_from_any_chunking() -> None:
    messages = [b"a" * 3, b"", b"b" * 65535, b"c" * 40000]
    stream = b"".join(len(item).to_bytes(2, "big") + item for item in messages)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(2)
        theirs.sendall(stream[:1])
        frames = _Frames(ours)
        theirs.sendall(stream[1:5])
        theirs.sendall(stream[5:])
        assert [frames.next() for _ in messages] == messages
        theirs.sendall(b"\x00\x10abc")
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            frames.next()


def test_a_scope_network_that_is_not_a_network_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"dns\.netbox\.networks: '10\.0\.0\.0/33' is not a network"):
        DNS(section(netbox={"networks": ["10.0.0.0/33"]}), dry_run=False, changes=ChangeLog(dry_run=False))
