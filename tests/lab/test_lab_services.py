"""Lab service parts checked for real: NetBox (tokens, seeded objects), Knot (TSIG updates), etcd and IRC."""

from __future__ import annotations

import base64
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pynetbox
import pytest
import requests
from etcd3gw.client import Etcd3Client

from cookbook_lab import topology
from libcluster.locks import DEFAULT_ETCD_PREFIX

Part = Callable[[str], dict[str, Any]]
TIMEOUT = 10


# --- NetBox ---------------------------------------------------------------------------------------------------


def test_netbox_answers_status_with_rw_token(lab_part: Part) -> None:
    """/api/status/ answers the read-write token with NetBox 4.7."""
    netbox = lab_part("netbox")
    response = requests.get(f"{netbox['url']}/api/status/", headers={"Authorization": f"Bearer {netbox['token']}"},
                            timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["netbox-version"].startswith("4.7.")


def test_netbox_refuses_write_with_ro_token(lab_part: Part) -> None:
    """The read-only token reads but gets 403 on a write, and the object is not created."""
    netbox = lab_part("netbox")
    slug = f"ro-test-{uuid.uuid4().hex[:8]}"
    ro = {"Authorization": f"Bearer {netbox['ro_token']}"}
    assert requests.get(f"{netbox['url']}/api/dcim/sites/", headers=ro, timeout=TIMEOUT).status_code == 200
    response = requests.post(f"{netbox['url']}/api/dcim/sites/", headers=ro, json={"name": slug, "slug": slug},
                             timeout=TIMEOUT)
    assert response.status_code == 403
    api = pynetbox.api(netbox["url"], token=netbox["token"])
    assert api.dcim.sites.get(slug=slug) is None


def test_netbox_refuses_bad_token(lab_part: Part) -> None:
    """A made-up token gets 403 (NetBox answers 403, not 401, for a bad token)."""
    netbox = lab_part("netbox")
    response = requests.get(f"{netbox['url']}/api/dcim/sites/", headers={"Authorization": "Bearer nbt_bogus.bogus"},
                            timeout=TIMEOUT)
    assert response.status_code == 403


def test_netbox_seeded_clusters_prefixes_and_devices(lab_part: Part) -> None:
    """Clusters A and B of type ganeti in group lab scoped to the site, VM prefixes per group, node devices."""
    netbox = lab_part("netbox")
    api = pynetbox.api(netbox["url"], token=netbox["ro_token"])
    site = api.dcim.sites.get(slug=topology.SITE)
    assert site is not None
    group = api.virtualization.cluster_groups.get(slug=topology.CLUSTER)
    assert group is not None
    clusters = {cluster.name: cluster for cluster in api.virtualization.clusters.filter(group_id=group.id)}
    assert set(clusters) == set(topology.GROUPS)
    for cluster in clusters.values():
        assert cluster.type.slug == "ganeti"
        assert cluster.scope_type == "dcim.site"
        assert cluster.scope_id == site.id
    for group_name, prefixes in topology.VM_PREFIXES.items():
        for prefix in prefixes:
            found = api.ipam.prefixes.get(prefix=prefix)
            assert found is not None, prefix
            assert found.status.value == "active"
            assert found.description == f"ganeti lab {group_name} VMs"
    for node in topology.NODES:
        device = api.dcim.devices.get(name=node.fqdn, site_id=site.id)
        assert device is not None, node.fqdn
        assert device.role.slug == "ganeti-node"
        if node.group is not None:
            assert device.cluster is not None and device.cluster.id == clusters[node.group].id


# --- DNS (Knot) -----------------------------------------------------------------------------------------------


def _key(dns_part: dict[str, Any], secret: str | None = None) -> dns.tsig.Key:
    return dns.tsig.Key(dns_part["tsig_name"], secret or dns_part["tsig_secret"], dns_part["tsig_algorithm"])


def _query(dns_part: dict[str, Any], name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), dns_part["server"], port=dns_part["port"],
                         timeout=TIMEOUT)


def _serial(dns_part: dict[str, Any], zone: str) -> int:
    return int(_query(dns_part, zone, "SOA").answer[0][0].serial)


def _send(dns_part: dict[str, Any], update: dns.update.UpdateMessage) -> dns.message.Message:
    return dns.query.tcp(update, dns_part["server"], port=dns_part["port"], timeout=TIMEOUT)


def test_dns_serves_every_zone(lab_part: Part) -> None:
    """Every lab zone answers SOA and NS authoritatively."""
    dns_part = lab_part("dns")
    assert dns_part["zones"] == list(topology.DNS_ZONES)
    for zone in dns_part["zones"]:
        for rdtype in ("SOA", "NS"):
            response = _query(dns_part, zone, rdtype)
            assert response.rcode() == dns.rcode.NOERROR
            assert response.flags & dns.flags.AA
            assert response.answer, (zone, rdtype)


def test_dns_tsig_update_lands_and_serial_moves(lab_part: Part) -> None:
    """A TSIG-signed add lands (queried back), bumps the serial, and the delete removes it again."""
    dns_part = lab_part("dns")
    zone = topology.DOMAIN
    name = f"lab-test-{uuid.uuid4().hex[:8]}.{zone}."
    before = _serial(dns_part, zone)
    add = dns.update.UpdateMessage(zone, keyring=_key(dns_part))
    add.absent(name)
    add.add(name, 60, "A", "198.18.16.250")
    assert _send(dns_part, add).rcode() == dns.rcode.NOERROR
    answer = _query(dns_part, name, "A")
    assert [rdata.to_text() for rdata in answer.answer[0]] == ["198.18.16.250"]
    after = _serial(dns_part, zone)
    assert after > before
    delete = dns.update.UpdateMessage(zone, keyring=_key(dns_part))
    delete.delete(name)
    assert _send(dns_part, delete).rcode() == dns.rcode.NOERROR
    assert _query(dns_part, name, "A").rcode() == dns.rcode.NXDOMAIN
    assert _serial(dns_part, zone) > after


def test_dns_unsigned_update_refused(lab_part: Part) -> None:
    """An update without TSIG gets NOTAUTH or REFUSED, never reaches the zone, and leaves the serial alone."""
    dns_part = lab_part("dns")
    zone = topology.DOMAIN
    name = f"lab-unsigned-{uuid.uuid4().hex[:8]}.{zone}."
    before = _serial(dns_part, zone)
    update = dns.update.UpdateMessage(zone)
    update.add(name, 60, "A", "198.18.16.251")
    assert _send(dns_part, update).rcode() in (dns.rcode.NOTAUTH, dns.rcode.REFUSED)
    assert _query(dns_part, name, "A").rcode() == dns.rcode.NXDOMAIN
    assert _serial(dns_part, zone) == before


def test_dns_wrong_tsig_secret_refused(lab_part: Part) -> None:
    """An update signed with the right key name but a wrong secret is refused and does not land."""
    dns_part = lab_part("dns")
    zone = topology.DOMAIN
    name = f"lab-badkey-{uuid.uuid4().hex[:8]}.{zone}."
    wrong = base64.b64encode(b"not the lab secret, 32 bytes....").decode()
    update = dns.update.UpdateMessage(zone, keyring=_key(dns_part, wrong))
    update.add(name, 60, "A", "198.18.16.252")
    with pytest.raises(dns.tsig.PeerBadSignature):
        _send(dns_part, update)
    assert _query(dns_part, name, "A").rcode() == dns.rcode.NXDOMAIN


# --- etcd -----------------------------------------------------------------------------------------------------


def test_etcd_put_get_through_json_gateway(lab_part: Part) -> None:
    """A key written through the v3 JSON gateway (TLS, as the runner's etcd user) reads back, and is gone after
    delete."""
    etcd = lab_part("etcd")
    url = requests.utils.urlparse(etcd["url"])
    client = Etcd3Client(host=url.hostname, port=url.port, protocol="https", ca_cert=etcd["ca_file"], timeout=TIMEOUT)
    client.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the lab CA
    login = client.post(client.get_url("/auth/authenticate"),
                        json={"name": etcd["runner_user"], "password": etcd["runner_password"]})
    client.session.headers["Authorization"] = login["token"]
    key, value = f"{DEFAULT_ETCD_PREFIX}lab-test/{uuid.uuid4().hex}", uuid.uuid4().hex
    assert client.put(key, value)
    assert client.get(key) == [value.encode()]
    assert client.delete(key)
    assert client.get(key) == []


# --- IRC ------------------------------------------------------------------------------------------------------


class IrcClient:
    """A minimal line-based IRC client over TLS (verified by ca_file), every read bounded by a deadline."""

    def __init__(self, host: str, port: int, nick: str, ca_file: str) -> None:
        """Connect and register as nick; wait for the welcome (001)."""
        self.nick = nick
        tls = ssl.create_default_context(cafile=ca_file)
        self.sock = tls.wrap_socket(socket.create_connection((host, port), timeout=TIMEOUT), server_hostname=host)
        self.buffer = b""
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :cookbook-lab test")
        self.wait_for(lambda line: line.split()[1:2] == ["001"])

    def send(self, line: str) -> None:
        """Send one IRC line."""
        self.sock.sendall(line.encode() + b"\r\n")

    def wait_for(self, match: Callable[[str], bool]) -> str:
        """Read lines (answering PINGs) until one matches; fail after TIMEOUT seconds."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                elif match(line):
                    return line
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        raise AssertionError(f"{self.nick}: no matching IRC line within {TIMEOUT}s")

    def join(self, channel: str) -> None:
        """Join channel and wait for the end of its names list (366)."""
        self.send(f"JOIN {channel}")
        self.wait_for(lambda line: line.split()[1:2] == ["366"])

    def close(self) -> None:
        """Quit and close the socket."""
        try:
            self.send("QUIT :done")
        finally:
            self.sock.close()


def test_irc_privmsg_reaches_other_client(lab_part: Part) -> None:
    """Two clients register and join a channel; the second receives the first one's PRIVMSG."""
    irc = lab_part("irc")
    tag = uuid.uuid4().hex[:6]
    channel = f"#lab-test-{tag}"
    sender = IrcClient(irc["host"], irc["port"], f"sender{tag}", irc["ca_file"])
    receiver = IrcClient(irc["host"], irc["port"], f"receiver{tag}", irc["ca_file"])
    try:
        sender.join(channel)
        receiver.join(channel)
        sender.send(f"PRIVMSG {channel} :hello {tag}")
        line = receiver.wait_for(lambda line: " PRIVMSG " in line)
        assert line.startswith(f":sender{tag}!")
        assert line.endswith(f"PRIVMSG {channel} :hello {tag}")
    finally:
        sender.close()
        receiver.close()


def test_irc_predefined_channels_exist(lab_part: Part) -> None:
    """The SAL and chatops channels are predefined on the server."""
    irc = lab_part("irc")
    client = IrcClient(irc["host"], irc["port"], f"lister{uuid.uuid4().hex[:6]}", irc["ca_file"])
    try:
        for channel in (topology.SAL_CHANNEL, topology.CHATOPS_CHANNEL):
            client.send(f"LIST {channel}")
            line = client.wait_for(lambda line: line.split()[1:2] in (["322"], ["323"]))
            assert line.split()[1] == "322" and line.split()[3] == channel
            client.wait_for(lambda line: line.split()[1:2] == ["323"])
    finally:
        client.close()
