"""The undo of DNS changes against the lab's Knot: each rrset journaled, restored only while it holds what was written.

Names carry a random suffix and are removed at teardown. Undo steps are rebuilt from the journal and run
on a fresh client, as `cookbook --recover` does. A lost answer is made by a TCP proxy that passes the
update message to Knot and closes the connection instead of returning Knot's answer.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from cookbook_lab import topology
from libcluster import undo as undo_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS, DNSAnswerLost
from libcluster.dns.diff import Diff, RRsetChange
from libcluster.dns.inverse import declared
from libcluster.dns.protection import owns_everything
from libcluster.writes import NotOursError
from tests.lab.undo_lab import Clients, Journaled

FORWARD = topology.DOMAIN


@pytest.fixture
def dns_part(lab_part: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The lab's DNS part (server, port, TSIG key, zones)."""
    return lab_part("dns")


def _client(part: dict[str, Any], changes: ChangeLog | None = None, *, port: int | None = None) -> DNS:
    data = {key: part[key] for key in ("server", "port", "tsig_name", "tsig_algorithm", "tsig_secret", "zones")}
    section = Section({**data, "ttl": 300, "timeout": 5, **({"port": port} if port else {})}, "dns", "lab")
    return DNS(section, dry_run=False, changes=changes or ChangeLog(dry_run=False))


@pytest.fixture
def run(dns_part: dict[str, Any], tmp_path: Path) -> Journaled:
    """A journaled run whose undo steps run on a fresh DNS client."""
    return Journaled(tmp_path, Clients(dns=lambda: _client(dns_part)))


@pytest.fixture
def tag() -> str:
    """Random suffix of this test's names."""
    return secrets.token_hex(3)


@pytest.fixture
def hosts(dns_part: dict[str, Any]) -> Iterator[list[str]]:
    """Names the test adds; their records and PTRs are removed at teardown."""
    names: list[str] = []
    yield names
    cleaner = _client(dns_part)
    for name in names:
        cleaner.remove_host(name, owns=owns_everything)


def _ptr(address: str) -> str:
    return str(dns.reversename.from_address(address))


def _address(tag: str, index: int) -> str:
    return str(ipaddress.ip_address("198.18.16.0") + 100 + (int(tag, 16) + index) % 150)


def test_added_records_are_journaled_and_restored_from_the_journal(
        run: Journaled, dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    fqdn = f"undo-{tag}.{FORWARD}"
    hosts.append(fqdn)
    _client(dns_part, run.changes).set_host(fqdn, [_address(tag, 0)], owns=owns_everything)
    intents = run.lines("intent")
    assert sorted((line["action"], line["detail"]["type"]) for line in intents) == [("record-add", "A"),
                                                                                    ("record-add", "PTR")]
    assert [line["status"] for line in run.lines("result")] == ["done", "done"]
    assert all(line["undo"]["action"] == "rrset-restore" and line["undo"]["args"]["old"] is None for line in intents)
    clients = Clients(dns=lambda: _client(dns_part))
    undos = run.from_journal()
    assert [undo_module.run(undo, clients) for undo in reversed(undos)] == ["undone", "undone"]
    reader = _client(dns_part)
    assert reader.resolve(fqdn, "A") == [] and reader.resolve(_ptr(_address(tag, 0)), "PTR") == []
    assert [undo_module.run(undo, clients) for undo in reversed(undos)] == ["absent", "absent"]


def test_a_moved_host_gets_its_old_address_and_ptr_back(
        run: Journaled, dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    fqdn = f"move-{tag}.{FORWARD}"
    hosts.append(fqdn)
    old, new = _address(tag, 0), _address(tag, 1)
    _client(dns_part).set_host(fqdn, [old], owns=owns_everything)
    diff = _client(dns_part, run.changes).set_host(fqdn, [new], owns=owns_everything)
    assert diff.counts() == {"add": 1, "replace": 1, "delete": 1}
    reader = _client(dns_part)
    assert reader.resolve(fqdn, "A") == [new]
    assert run.stack.rollback() == []
    assert [line["status"] for line in run.lines("undo")] == ["undone"] * 3
    assert reader.resolve(fqdn, "A") == [old]
    assert reader.resolve(_ptr(old), "PTR") == [f"{fqdn}."]
    assert reader.resolve(_ptr(new), "PTR") == []


def test_an_rrset_changed_since_or_protected_is_left_as_is(
        run: Journaled, dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    fqdn = f"since-{tag}.{FORWARD}"
    hosts.append(fqdn)
    _client(dns_part, run.changes).set_host(fqdn, [_address(tag, 0)], owns=owns_everything)
    other = _client(dns_part)
    other.set_host(fqdn, [_address(tag, 2)], owns=owns_everything)
    undo = next(undo for undo in run.from_journal() if undo.args["type"] == "A")
    with pytest.raises(NotOursError, match=f"{fqdn}.*changed since"):
        other.undo(undo.action, undo.args)
    assert other.resolve(fqdn, "A") == [_address(tag, 2)]
    apex = dns.name.from_text(FORWARD)
    planted = dns.rrset.from_text(apex, 300, "IN", "A", "198.18.16.1")
    apex_undo = declared(RRsetChange(zone=apex, old=planted, new=None))
    with pytest.raises(NotOursError, match="zone apex"):
        other.undo(apex_undo.action, apex_undo.args)
    assert other.resolve(FORWARD, "A") == []


class DroppingProxy:
    """A TCP proxy to the DNS server that passes each message on and closes the connection instead of answering."""

    def __init__(self, server: str, port: int) -> None:
        """Listen on a free loopback port, forwarding to server:port."""
        self.upstream = (server, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarded = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with client:
                size = int.from_bytes(_read(client, 2), "big")
                message = _read(client, size)
                with socket.create_connection(self.upstream, timeout=5) as upstream:
                    upstream.sendall(len(message).to_bytes(2, "big") + message)
                    _read(upstream, int.from_bytes(_read(upstream, 2), "big"))
                self.forwarded += 1

    def close(self) -> None:
        """Stop listening."""
        self.listener.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def test_an_update_whose_answer_was_lost_is_maybe_and_restored(
        run: Journaled, dns_part: dict[str, Any], hosts: list[str], tag: str) -> None:
    fqdn = f"lost-{tag}.{FORWARD}"
    hosts.append(fqdn)
    whole = _client(dns_part).host_diff(fqdn, [_address(tag, 0)], owns=owns_everything)
    diff = Diff(tuple(change for change in whole if change.rdtype == dns.rdatatype.A))
    proxy = DroppingProxy(dns_part["server"], int(dns_part["port"]))
    try:
        with pytest.raises(DNSAnswerLost):
            _client(dns_part, run.changes, port=proxy.port).apply(diff)
    finally:
        proxy.close()
    assert proxy.forwarded == 1
    assert [line["status"] for line in run.lines("result")] == ["maybe"]
    reader = _client(dns_part)
    assert reader.resolve(fqdn, "A") == [_address(tag, 0)], "the update whose answer was dropped was not applied"
    assert run.stack.rollback() == []
    assert [line["status"] for line in run.lines("undo")] == ["undone"]
    assert reader.resolve(fqdn, "A") == []
