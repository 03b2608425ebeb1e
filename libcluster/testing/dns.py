"""DNS in memory: the real :class:`libcluster.dns.DNS` client talking to :class:`FakeDNSServer`.

:func:`fake_dns` builds the real client (so diffs, the scope guard and the change records are the
library's own) with its authoritative server replaced by an in-memory one that answers queries and
transfers from ``server.rrsets`` and applies update messages with their prerequisites, as Knot does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.dns import DNS
from libcluster.dns.server import Record, Server

RRsetKey = tuple[dns.name.Name, dns.rdatatype.RdataType]
NAMESERVER = "ns1.invalid."
"""Target of the NS rrset each zone apex gets (a name in no configured zone)."""
TSIG_SECRET = "dGVzdGluZyBrZXkgb25seQ=="
"""A base64 TSIG secret for the client's keyring; nothing is signed on the wire."""


class FakeDNSServer:
    """An authoritative server in memory for some zones: rrsets keyed by (name, type), an SOA serial per zone."""

    REAL = Server
    HELPERS = ("zones", "rrsets", "serials", "messages", "refuse")

    def __init__(self, zones: Iterable[str]) -> None:
        """Serve these zones, each with only an NS rrset at its apex."""
        self.host = "192.0.2.53"
        self.port = 53
        self.timeout = 1.0
        self.zones = [dns.name.from_text(zone) for zone in zones]
        self.rrsets: dict[RRsetKey, dns.rrset.RRset] = {}
        self.serials = dict.fromkeys(self.zones, 1)
        self.messages = 0
        """Update messages received."""
        self.refuse: dns.rcode.Rcode | None = None
        """When set, every update is answered with this rcode and changes nothing."""
        for zone in self.zones:
            self.rrsets[(zone, dns.rdatatype.NS)] = dns.rrset.from_text(zone, 3600, "IN", "NS", NAMESERVER)

    @property
    def where(self) -> str:
        """host@port, as in messages."""
        return f"{self.host}@{self.port}"

    def _zone(self, name: dns.name.Name) -> dns.name.Name | None:
        return max((zone for zone in self.zones if name.is_subdomain(zone)), key=lambda z: len(z.labels), default=None)

    def query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
        """The rrset held for name/type (the SOA of a zone apex), None when there is none."""
        if rdtype == dns.rdatatype.SOA and name in self.serials:
            return dns.rrset.from_text(name, 3600, "IN", "SOA", f"{NAMESERVER} hostmaster.invalid. "
                                       f"{self.serials[name]} 3600 600 86400 300")
        return self.rrsets.get((name, rdtype))

    def serial(self, zone: dns.name.Name) -> int:
        """The zone's SOA serial (one more per update message that changed it)."""
        return self.serials[zone]

    def transfer(self, zone: dns.name.Name) -> Iterator[Record]:
        """Every record of zone (apex SOA excluded, as the real transfer leaves it out)."""
        for (name, rdtype), rrset in list(self.rrsets.items()):
            if self._zone(name) == zone:
                for rdata in rrset:
                    yield name, rdtype, rrset.ttl, rdata

    def authority(self, name: dns.name.Name) -> tuple[set[dns.name.Name], set[dns.name.Name]]:
        """The owners of the NS rrsets at or above name, and their targets."""
        owners, targets = set(), set()
        for (owner, rdtype), rrset in self.rrsets.items():
            if rdtype == dns.rdatatype.NS and name.is_subdomain(owner):
                owners.add(owner)
                targets |= {rdata.target for rdata in rrset}
        return owners, targets

    @contextmanager
    def connection(self) -> Iterator[socket.socket]:
        """No connection is needed: yields a placeholder the fake send() ignores."""
        yield cast(socket.socket, None)

    def send(self, message: dns.update.UpdateMessage, sock: socket.socket) -> dns.rcode.Rcode:
        """Apply message if all its prerequisites hold (else NXRRSET/YXRRSET, nothing changed); NOERROR."""
        self.messages += 1
        if self.refuse is not None:
            return self.refuse
        for rrset in message.prerequisite:
            held = self.rrsets.get((rrset.name, rrset.rdtype))
            if rrset.rdclass == dns.rdataclass.NONE and held is not None:
                return dns.rcode.YXRRSET
            if rrset.rdclass == dns.rdataclass.IN and (held is None or set(held) != set(rrset)):
                return dns.rcode.NXRRSET
        for rrset in message.update:
            key = (rrset.name, rrset.rdtype)
            if rrset.deleting == dns.rdataclass.ANY:
                self.rrsets.pop(key, None)
            elif key in self.rrsets:
                self.rrsets[key].union_update(rrset)
            else:
                self.rrsets[key] = dns.rrset.from_rdata_list(rrset.name, rrset.ttl, list(rrset))
        zone = cast(dns.name.Name, message.origin)
        self.serials[zone] = self.serials.get(zone, 0) + 1
        return dns.rcode.NOERROR


def fake_dns(zones: Iterable[str], *, dry_run: bool = False, changes: ChangeLog | None = None,
             settings: Mapping[str, Any] | None = None) -> DNS:
    """The real DNS client for these zones (settings: more keys of the ``dns`` section, e.g. ttl or netbox)
    whose server is a :class:`FakeDNSServer` (``client.server``)."""
    zones = list(zones)
    data = {"server": "192.0.2.53", "tsig_name": "testing", "tsig_secret": TSIG_SECRET, "zones": zones,
            **(settings or {})}
    client = DNS(Section(data, "dns", "libcluster.testing"), dry_run=dry_run,
                 changes=changes or ChangeLog(dry_run=dry_run))
    client.server = cast(Server, FakeDNSServer(zones))
    return client
