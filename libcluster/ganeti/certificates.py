"""Certificates of a Ganeti cluster: the files on the nodes and RAPI as a TLS client sees it.

Library API (renew-crypto reports and checks with it). Files are read with `openssl x509 -enddate
-fingerprint` over SSH (a read-only command; private keys never leave the node), the nodes' root SSH
keys with `ssh-keygen -l` on their public halves. RAPI is checked with a real TLS handshake, verified
against the CA the cookbooks' own RAPI client uses, so the report says what clients will see.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from libcluster.remote import HostStatus, Remote

logger = logging.getLogger(__name__)

CLUSTER_CERT = "/var/lib/ganeti/server.pem"
"""The cluster certificate (noded's server certificate), the same on every node."""
NODE_CERT = "/var/lib/ganeti/client.pem"
"""Each node's own client certificate (Ganeti >= 2.16)."""
RAPI_CERT = "/var/lib/ganeti/rapi.pem"
SPICE_CERT = "/var/lib/ganeti/spice.pem"
FILES = (CLUSTER_CERT, NODE_CERT, RAPI_CERT, SPICE_CERT)
SSH_KEY_DIR = "/root/.ssh/"
"""Where Ganeti keeps each node's root SSH key pair (id_<type>, the cluster's ssh_key_type)."""
TLS_NAME = "RAPI over TLS"
"""Name of the row of RAPI as a TLS client sees it."""
SSH_KEY_NAME = "root SSH key"

READ_SCRIPT = ('for f in "$@"; do if [ -e "$f" ]; then printf "%s " "$f"; '
               'openssl x509 -noout -enddate -fingerprint -sha256 -in "$f" | tr "\\n" " "; echo; '
               'else echo "$f absent"; fi; done; '
               f'for k in {SSH_KEY_DIR}id_*.pub; do if [ -e "$k" ]; then '
               'printf "%s key=%s\\n" "$k" "$(ssh-keygen -lf "$k" | cut -d" " -f2)"; fi; done')
"""Prints one line per file (`PATH notAfter=DATE sha256 Fingerprint=FP` or `PATH absent`), then one line
per root public key (`PATH key=SHA256:FP`)."""
_VERIFY_ERROR = re.compile(r"^error \d+ at \d+ depth lookup: (.+)$", re.MULTILINE)
_LINE = re.compile(r"^(?P<path>\S+) (?:notAfter=(?P<date>.+? GMT)\s+\S+ Fingerprint=(?P<fp>[0-9A-F:]+)"
                   r"|(?P<absent>absent)|key=(?P<key>SHA256:\S+))")


@dataclass(frozen=True)
class Cert:
    """One certificate as seen from one place: expiry, SHA-256 fingerprint, and what is wrong with it."""

    name: str
    where: str
    not_after: datetime | None = None
    fingerprint: str | None = None
    problem: str = ""

    def days_left(self, now: datetime) -> float | None:
        """Days until expiry (negative once expired), None when unknown."""
        return None if self.not_after is None else (self.not_after - now).total_seconds() / 86400


def read_command(paths: Iterable[str] = FILES) -> list[str]:
    """The argv that prints the expiry and fingerprint of each file (see READ_SCRIPT)."""
    return ["sh", "-c", READ_SCRIPT, "sh", *paths]


def parse_read(output: str) -> dict[str, tuple[datetime | None, str | None]]:
    """{path: (notAfter, fingerprint)} from READ_SCRIPT's output; absent files map to (None, None), SSH keys
    to (None, their SHA256 fingerprint)."""
    found: dict[str, tuple[datetime | None, str | None]] = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        if match["absent"]:
            found[match["path"]] = (None, None)
        elif match["key"]:
            found[match["path"]] = (None, match["key"])
        else:
            stamp = datetime.fromtimestamp(ssl.cert_time_to_seconds(match["date"]), UTC)
            found[match["path"]] = (stamp, match["fp"])
    return found


def file_certs(master: str, per_node: Mapping[str, Mapping[str, tuple[datetime | None, str | None]]]) -> list[Cert]:
    """The report's file rows: cluster, RAPI and SPICE certificates of the master, each node's own certificate
    and root SSH key (no expiry: listed so that a renewal can be checked).

    A node whose cluster certificate differs from the master's, and a missing required file, are problems.
    """
    certs = []

    def cert(name: str, node: str, path: str, optional: bool = False) -> Cert:
        not_after, fingerprint = per_node.get(node, {}).get(path, (None, None))
        if node not in per_node:
            problem = "not read (node unreachable)"
        elif fingerprint is None:
            problem = "" if optional else "absent"
        else:
            problem = ""
        return Cert(name, f"{node}:{path}", not_after, fingerprint, problem)

    cluster = cert("cluster certificate", master, CLUSTER_CERT)
    certs.append(cluster)
    for node in sorted(per_node):
        if node != master:
            copy = cert("cluster certificate", node, CLUSTER_CERT)
            if copy.fingerprint and cluster.fingerprint and copy.fingerprint != cluster.fingerprint:
                certs.append(Cert(copy.name, copy.where, copy.not_after, copy.fingerprint, "differs from the master's"))
    certs += [cert("node certificate", node, NODE_CERT) for node in sorted(per_node)]
    certs += [cert(SSH_KEY_NAME, node, path) for node in sorted(per_node)
              for path in sorted(per_node[node]) if path.startswith(SSH_KEY_DIR)]
    certs.append(cert("RAPI certificate", master, RAPI_CERT))
    spice = cert("SPICE certificate", master, SPICE_CERT, optional=True)
    if spice.fingerprint:
        certs.append(spice)
    return certs


def der_fingerprint(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate, in openssl's form (AB:CD:...)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return str(parts.hostname), parts.port or 443


def tls_peer(url: str, ca_file: str | None, timeout: float = 10.0) -> Cert:
    """RAPI's certificate as a client verifying against ca_file (the system CAs if None) sees it.

    problem is "" when the handshake verified; it names the verification failure (fingerprint still
    given) or the connection failure (starting with "unreachable").
    """
    host, port = _address(url)
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with (socket.create_connection((host, port), timeout=timeout) as sock,
              context.wrap_socket(sock, server_hostname=host) as tls):
            peer = tls.getpeercert() or {}
            der = tls.getpeercert(binary_form=True) or b""
    except ssl.SSLCertVerificationError as exc:
        return Cert(TLS_NAME, url, None, _unverified_fingerprint(host, port, timeout),
                    f"TLS verification FAILED against {ca_file or 'the system CAs'}: {exc.verify_message}")
    except (OSError, ssl.SSLError) as exc:
        return Cert(TLS_NAME, url, problem=f"unreachable: {exc}")
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(peer["notAfter"])), UTC)
    return Cert(TLS_NAME, url, not_after, der_fingerprint(der))


def _unverified_fingerprint(host: str, port: int, timeout: float) -> str | None:
    """Fingerprint of the certificate served, without verifying it (to tell which certificate it is)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (socket.create_connection((host, port), timeout=timeout) as sock,
              context.wrap_socket(sock, server_hostname=host) as tls):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return der_fingerprint(der) if der else None


def verify_pem(pem: str, ca_file: str, url: str) -> str:
    """Why a client verifying against ca_file would refuse this certificate for url ("" if it would not).

    Runs the local `openssl verify` (the chain to ca_file, server purpose, and the URL's IP or name).
    """
    host, _ = _address(url)
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        check = ["-verify_ip", host]
    except OSError:
        check = ["-verify_hostname", host]
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        result = subprocess.run(["openssl", "verify", "-CAfile", ca_file, "-purpose", "sslserver", *check,
                                 handle.name], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode == 0:
        return ""
    output = (result.stdout + result.stderr).replace(handle.name, "certificate")
    reasons = _VERIFY_ERROR.findall(output)
    return "; ".join(reasons) if reasons else output.strip().splitlines()[-1]


# Checks shared by renew-crypto --check-only and sre.ganeti.health.

def status(cert: Cert, now: datetime, warning_days: int) -> str:
    """OK, the problem, EXPIRED, or how soon it expires."""
    if cert.problem:
        return cert.problem
    days = cert.days_left(now)
    if days is None:
        return "OK"
    if days < 0:
        return "EXPIRED"
    if days < warning_days:
        return f"WARNING: expires within {warning_days} days"
    return "OK"


def problems(certs: list[Cert], now: datetime, warning_days: int) -> list[Cert]:
    """Certificates that are not OK."""
    return [cert for cert in certs if status(cert, now, warning_days) != "OK"]


def survey(remote: Remote, master: str, nodes: list[str], rapi_url: str, ca_file: str | None) -> list[Cert]:
    """Every certificate and SSH key of the cluster: files on the nodes (one SSH run), then RAPI over TLS.

    Needs no RAPI call, so that it also works while RAPI serves a certificate our client refuses.
    """
    result = remote.hosts(nodes).run_sync(read_command(), is_safe=True, timeout=60)
    per_node = {name: parse_read(host.output) for name, host in result.hosts.items()
                if host.status is HostStatus.OK}
    for name, host in result.hosts.items():
        if host.status is not HostStatus.OK:
            logger.warning("Cannot read the certificates of %s: %s", name, host.describe())
    return [*file_certs(master, per_node), tls_peer(rapi_url, ca_file)]
