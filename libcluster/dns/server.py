"""The authoritative server: direct queries, SOA serial, TSIG-signed AXFR and TSIG-signed update messages.

Every dnspython failure is turned into a typed error naming the server and the key name,
never the secret.
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr

from libcluster.dns.errors import DNSAuthError, DNSError, DNSRefused, DNSUnavailable, DNSZoneError
from libcluster.errors import ConfigError


class Server:
    """One authoritative server reached on host:port, with the TSIG key updates and transfers are signed with."""

    def __init__(self, host: str, port: int, *, keyname: str, algorithm: str, secret: str, timeout: float) -> None:
        """Build the keyring; a secret that is not base64 or an unknown algorithm is a ConfigError (secret unshown)."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.keyname = dns.name.from_text(keyname)
        self.algorithm = dns.name.from_text(algorithm)
        try:
            base64.b64decode(secret, validate=True)
            self.keyring = dns.tsigkeyring.from_text({keyname: (algorithm, secret)})
            probe = dns.message.make_query(".", dns.rdatatype.SOA)
            probe.use_tsig(self.keyring, self.keyname, algorithm=self.algorithm)
            probe.to_wire()
        except (binascii.Error, ValueError):
            raise ConfigError("dns.tsig_secret is not valid base64") from None
        except (NotImplementedError, KeyError):
            raise ConfigError(f"dns.tsig_algorithm {algorithm!r} is not a TSIG algorithm dnspython supports") from None

    @property
    def where(self) -> str:
        """host@port, as in messages."""
        return f"{self.host}@{self.port}"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        key = f"TSIG key '{self.keyname.to_text(omit_final_dot=True)}' ({self.algorithm.to_text(omit_final_dot=True)})"
        try:
            yield
        except dns.exception.TooBig:
            raise
        except dns.tsig.PeerBadKey:
            raise DNSAuthError(f"{action}: {self.where} does not know {key}") from None
        except dns.tsig.PeerBadSignature:
            raise DNSAuthError(f"{action}: {self.where} rejected the signature of {key}: wrong secret") from None
        except dns.tsig.PeerBadTime:
            raise DNSAuthError(f"{action}: {self.where} rejected the time of {key}: clocks differ") from None
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadKey,
                dns.message.UnknownTSIGKey) as exc:
            raise DNSAuthError(f"{action}: TSIG with {self.where} failed ({type(exc).__name__}) for {key}") from None
        except dns.xfr.TransferError as exc:
            rcode = dns.rcode.to_text(exc.rcode)
            kind = DNSAuthError if exc.rcode == dns.rcode.NOTAUTH else DNSRefused
            raise kind(f"{action}: {self.where} refused the transfer ({rcode}) for {key}") from None
        except (dns.exception.Timeout, TimeoutError):
            raise DNSUnavailable(f"{action}: {self.where} did not answer within {self.timeout}s") from None
        except EOFError:
            raise DNSUnavailable(f"{action}: {self.where} closed the connection") from None
        except OSError as exc:
            raise DNSUnavailable(f"{action}: cannot reach {self.where}: {exc.strerror or type(exc).__name__}") from None
        except dns.exception.DNSException as exc:
            raise DNSError(f"{action}: {self.where}: {type(exc).__name__}: {exc}") from None

    def query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
        """The rrset the server answers for name/type (unsigned query, UDP then TCP), None when it has none."""
        action = f"query {name} {dns.rdatatype.to_text(rdtype)}"
        with self._errors(action):
            response, _ = dns.query.udp_with_fallback(dns.message.make_query(name, rdtype), self.host,
                                                      timeout=self.timeout, port=self.port)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise DNSRefused(f"{action}: {self.where} answered {dns.rcode.to_text(rcode)}")
        return response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)

    def serial(self, zone: dns.name.Name) -> int:
        """The SOA serial the server has for zone."""
        soa = self.query(zone, dns.rdatatype.SOA)
        if soa is None:
            raise DNSZoneError(f"SOA {zone}: {self.where} is not authoritative for this zone")
        return int(soa[0].serial)

    def transfer(self, zone: dns.name.Name) -> Iterator[Record]:
        """Every record of zone as (owner, type, TTL, rdata), read by a TSIG-signed AXFR, absolute names.

        dnspython parses and checks each message (TSIG included); the AXFR framing is checked here as
        dnspython's xfr.Inbound does (first and last message signed, an SOA of the zone first and again
        last), without building a zone: that costs more than the transfer. The socket is drained before
        each message is parsed: the server gives up on a client that leaves one message unread for long
        (Knot: tcp-io-timeout, 500 ms). The closing SOA is not repeated.
        """
        query = dns.message.make_query(zone, dns.rdatatype.AXFR)
        query.use_tsig(self.keyring, self.keyname, algorithm=self.algorithm)
        with self._errors(f"AXFR {zone}"), socket.create_connection((self.host, self.port), self.timeout) as sock:
            dns.query.send_tcp(sock, query)
            frames = _Frames(sock)
            tsig_ctx, soa = None, None
            while True:
                reader = _AnswerReader(frames.next(), query, tsig_ctx)
                response = reader.read()  # type: ignore[no-untyped-call]  # dnspython's _WireReader
                if not query.is_response(response, xfr_continuation=soa is not None):
                    raise dns.query.BadResponse
                if response.rcode() != dns.rcode.NOERROR:
                    raise dns.xfr.TransferError(response.rcode())
                tsig_ctx = response.tsig_ctx
                records, first = reader.records, 0
                if soa is None:
                    if not response.had_tsig:
                        raise dns.exception.FormError("first AXFR message without TSIG")
                    if not records or records[0][1] != dns.rdatatype.SOA or records[0][0] != zone:
                        raise dns.exception.FormError("AXFR does not start with the zone's SOA")
                    soa, first = records[0][3], 1
                for index in range(first, len(records)):
                    record = records[index]
                    if record[1] == dns.rdatatype.SOA and record[0] == zone:
                        if record[3] != soa or index != len(records) - 1:
                            raise dns.exception.FormError("unexpected SOA in the AXFR")
                        if not response.had_tsig:
                            raise dns.exception.FormError("last AXFR message without TSIG")
                        return
                    yield record

    def authority(self, name: dns.name.Name) -> tuple[set[dns.name.Name], set[dns.name.Name]]:
        """Where name stands among the zone's NS rrsets: the owners of those at or above it, and their targets.

        One NS query: an answer means name is a zone apex or a delegation point, a referral means it is
        below a delegation; either way the NS owners and targets are returned (both empty otherwise).
        """
        with self._errors(f"query {name} NS"):
            response, _ = dns.query.udp_with_fallback(dns.message.make_query(name, dns.rdatatype.NS), self.host,
                                                      timeout=self.timeout, port=self.port)
        owners, targets = set(), set()
        for rrset in (*response.answer, *response.authority):
            if rrset.rdtype == dns.rdatatype.NS:
                owners.add(rrset.name)
                targets |= {rdata.target for rdata in rrset}
        return owners, targets

    @contextmanager
    def connection(self) -> Iterator[socket.socket]:
        """One TCP connection for several update messages (the server spends its time per message, not per record)."""
        with self._errors("connect"):
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setblocking(False)
        try:
            yield sock
        finally:
            sock.close()

    def send(self, message: dns.update.UpdateMessage, sock: socket.socket) -> dns.rcode.Rcode:
        """Sign message with the TSIG key, send it on sock and return the server's rcode (TSIG checked).

        A message larger than 64 KiB raises dns.exception.TooBig before anything is sent.
        """
        message.use_tsig(self.keyring, self.keyname, algorithm=self.algorithm)
        with self._errors(f"UPDATE {message.origin}"):
            response = dns.query.tcp(message, self.host, timeout=self.timeout, port=self.port, sock=sock)
        return response.rcode()


Record = tuple[dns.name.Name, dns.rdatatype.RdataType, int, dns.rdata.Rdata]
"""One record of a transfer: owner, type, TTL, rdata."""


class _AnswerReader(dns.message._WireReader):  # pylint: disable=protected-access
    """dnspython's reader of one AXFR message (header, question, TSIG verification: all its own), except that the
    answer records go to a plain list instead of being merged into rrsets: that merge hashes every name and
    record, and cost more than the rest of a 20,000-record transfer. Relies on dnspython's _WireReader
    (dnspython is pinned in setup.cfg; its unit and lab tests run this path)."""

    def __init__(self, wire: bytes, query: dns.message.Message, tsig_ctx: object) -> None:
        """Read wire as dns.message.from_wire(wire, keyring=query.keyring, request_mac=query.mac, xfr=True,
        tsig_ctx=tsig_ctx, multi=True) does."""
        def initialize(message: dns.message.Message) -> None:
            message.request_mac = query.mac or b""  # from_wire's default when the query has no MAC
            message.xfr = True
            message.origin = None
            message.tsig_ctx = tsig_ctx

        super().__init__(  # type: ignore[no-untyped-call]
            wire, initialize, False, True, False, query.keyring, True, False)
        self.records: list[Record] = []
        self._names: dict[int, tuple[dns.name.Name, int]] = {}

    def _name(self) -> dns.name.Name:
        """parser.get_name(), keeping every name read by the offsets of its labels: a compression pointer to one
        of them costs a lookup instead of reading every label again (an ip6.arpa owner has 34). Anything else (a
        pointer to a name not kept, an unknown label type) is read by dnspython, with its checks."""
        start = self.parser.current
        found = self._known(start)
        if found is None:
            name = self.parser.get_name(decompress=True)
            self._keep(start, name)
            return name
        name, offsets, end = found
        self.parser.seek(end)
        for index, offset in enumerate(offsets):
            self._names[offset] = (name, index)
        return name

    def _keep(self, start: int, name: dns.name.Name) -> None:
        """Keep a name dnspython read at start, by the offsets of the labels written there (before any pointer)."""
        wire, position = self.parser.wire, start
        for index in range(len(name.labels) - 1):
            count = wire[position]
            if not 0 < count < 0x40:
                return
            self._names[position] = (name, index)
            position += 1 + count

    def _suffix(self, offset: int) -> dns.name.Name | None:
        """The name kept at offset (built from the longer name it ends, the first time)."""
        kept = self._names.get(offset)
        if kept is None:
            return None
        name, index = kept
        if index:
            name = dns.name.Name(name.labels[index:])
            self._names[offset] = (name, 0)
        return name

    def _known(self, start: int) -> tuple[dns.name.Name, list[int], int] | None:
        """The name at start, its labels' offsets and where it ends, when it is labels then the root or a pointer
        back to a name kept; None otherwise."""
        wire, end, position = self.parser.wire, self.parser.end, start
        labels: list[bytes] = []
        offsets: list[int] = []
        while position < end:
            count = wire[position]
            if count == 0:
                return dns.name.Name([*labels, b""]), offsets, position + 1
            if count >= 0xC0:
                pointer = (count & 0x3F) << 8 | wire[position + 1] if position + 1 < end else start
                known = self._suffix(pointer) if pointer < start else None
                if known is None:
                    return None
                return dns.name.Name([*labels, *known.labels]), offsets, position + 2
            if count >= 0x40:
                return None
            offsets.append(position)
            labels.append(wire[position + 1:position + 1 + count])
            position += 1 + count
        return None

    def _get_question(self, section_number: int, qcount: int) -> None:
        start = self.parser.current
        super()._get_question(section_number, qcount)  # type: ignore[no-untyped-call]
        if qcount == 1 and self.message is not None:
            self._keep(start, self.message.question[0].name)

    def _get_section(self, section_number: int, count: int) -> None:
        if section_number != dns.message.MessageSection.ANSWER:
            super()._get_section(section_number, count)  # type: ignore[no-untyped-call]
            return
        parser = self.parser
        for _ in range(count):
            name = self._name()
            rdtype, rdclass, ttl, rdlen = parser.get_struct("!HHIH")
            if rdtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG) or rdclass != dns.rdataclass.IN:
                raise dns.exception.FormError(f"AXFR answer holds a record of type {rdtype}, class {rdclass}")
            with parser.restrict_to(rdlen):
                rdata = dns.rdata.from_wire_parser(rdclass, rdtype, parser)
            self.records.append((name, rdata.rdtype, ttl, rdata))


class _Frames:
    """Length-prefixed DNS messages read from a TCP socket, draining what has arrived before handing one out."""

    def __init__(self, sock: socket.socket) -> None:
        """Read from sock (blocking, with its timeout)."""
        self._sock = sock
        self._buffer = bytearray()

    def _drain(self) -> None:
        timeout = self._sock.gettimeout()
        self._sock.settimeout(0)
        try:
            while True:
                try:
                    chunk = self._sock.recv(1 << 20)
                except BlockingIOError:
                    return
                if not chunk:
                    return
                self._buffer += chunk
        finally:
            self._sock.settimeout(timeout)

    def next(self) -> bytes:
        """The next message's wire bytes; EOFError when the server closes the connection first."""
        self._drain()
        while True:
            if len(self._buffer) >= 2:
                end = 2 + int.from_bytes(self._buffer[:2], "big")
                if len(self._buffer) >= end:
                    wire = bytes(self._buffer[2:end])
                    del self._buffer[:end]
                    return wire
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
