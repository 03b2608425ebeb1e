"""The writes of one request journaled together, on the lab's Knot and etcd: a DNS update message of many rrsets
costs one journal write() and fsync for all its intents and one for all its results, mirrored in etcd by
one put each; each rrset keeps its own seq and undo, and the rollback takes every one back.

Names live under a subdomain of their own (`h<i>.jb-<random>.lab.example`) with addresses in a /64 of their
own; they and the etcd copy are removed at the end, pass or fail.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path

import pytest

from cookbook_lab import topology
from libcluster import audit, config, journal, locks
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.sync import netbox_dns
from libcluster.sync.netbox_dns import Accounted, DNSSyncSettings, Scope
from libcluster.undo import UndoStack
from tests.lab.undo_lab import Clients

ZONES = [topology.DOMAIN, "0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa"]
HOSTS = 150
"""150 AAAA in one message and 150 PTR in another."""


def test_a_dns_update_message_of_many_rrsets_is_journaled_in_one_write_per_side(
        lab_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = config.load(lab_config)
    mirror = journal.mirror_for(locks.from_config(root, owner="test-journal-batch", dry_run=False))
    assert mirror is not None, "the lab's locks are in etcd"
    run_id = audit.new_run_id()
    path = tmp_path / "audit.jsonl"
    lines = journal.Journal(run_id, audit.AuditLog(path), mirror, dry_run=False)
    changes = ChangeLog(dry_run=False, journal=lines)

    def fresh() -> DNS:
        return DNS(root.section("dns"), dry_run=False, changes=ChangeLog(dry_run=False))

    changes.undo = UndoStack(Clients(dns=fresh))
    client = DNS(root.section("dns"), dry_run=False, changes=changes)
    token = f"jb-{secrets.token_hex(3)}"
    network = ipaddress.IPv6Network(f"2001:2:0:c{secrets.token_hex(2)[1:]}::/64")
    scope = Scope(DNSSyncSettings(names=(f"*.{token}.{topology.DOMAIN}",), networks=(str(network),)), client.zones)
    entries = [(f"h{index}.{token}.{topology.DOMAIN}", str(network[index + 1])) for index in range(HOSTS)]
    owns = Accounted.of(client.zones, ({"dns_name": name, "address": address} for name, address in entries)).owns
    try:
        diff = netbox_dns.difference(client, netbox_dns.wanted(client, entries, scope).records, scope, owns, ZONES)
        assert len(diff) == 2 * HOSTS
        calls = {"write": 0, "fsync": 0}
        real_write, real_fsync = os.write, os.fsync

        def write(fd: int, data: bytes) -> int:
            calls["write"] += 1
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            calls["fsync"] += 1
            real_fsync(fd)

        with monkeypatch.context() as patch:
            patch.setattr(os, "write", write)
            patch.setattr(os, "fsync", fsync)
            sent = client.messages_sent
            client.apply(diff)
        messages = client.messages_sent - sent
        assert messages == 2
        assert calls == {"write": 2 * messages, "fsync": 2 * messages}

        written = [json.loads(line) for line in path.read_text().splitlines()]
        assert sorted(line["seq"] for line in written if line["event"] == "intent") == list(range(1, 2 * HOSTS + 1))
        assert {line["status"] for line in written if line["event"] == "result"} == {"done"}
        assert [line["event"] for line in written] == (["intent"] * HOSTS + ["result"] * HOSTS) * messages
        assert [json.loads(text) for text in mirror.runs(run_id)[run_id]] == written  # read back from the real etcd
        assert fresh().resolve(entries[0][0], "AAAA") == [entries[0][1]]

        assert changes.undo.rollback() == []
        assert fresh().resolve(entries[0][0], "AAAA") == []
        assert len(netbox_dns.difference(fresh(), {}, scope, owns, ZONES)) == 0  # every rrset taken back
    finally:
        cleaner = fresh()
        cleaner.apply(netbox_dns.difference(cleaner, {}, scope, owns, ZONES))
        mirror.delete(run_id)
    assert mirror.runs(run_id) == {}
