"""SSH host keys of a host about to be trusted: fingerprints, ssh-keyscan output, a strict probe, pinning.

Library API (addnode uses it before `gnt-node add`). Ganeti's `gnt-node add` sends the cluster's SSH
host keys to the new node over SSH, checking the node's host key against /var/lib/ganeti/known_hosts
(its GlobalKnownHostsFile; its UserKnownHostsFile is /dev/null). A caller therefore verifies the key
the master sees against a trusted fingerprint, proves the node holds it (a strict SSH login with only
that key known) and pins it in that file (and in root's known_hosts on the master) before the add.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GANETI_KNOWN_HOSTS = "/var/lib/ganeti/known_hosts"
"""The known_hosts `gnt-node add` checks the new node against (Ganeti's pathutils.SSH_KNOWN_HOSTS_FILE)."""
ROOT_KNOWN_HOSTS = "/root/.ssh/known_hosts"
"""root's known_hosts on the master (ssh by hand, scripts)."""
KNOWN_HOSTS_FILES = (GANETI_KNOWN_HOSTS, ROOT_KNOWN_HOSTS)
CLUSTER_HOST_KEYS = ("/etc/ssh/ssh_host_dsa_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub",
                     "/etc/ssh/ssh_host_rsa_key.pub")
"""The master's host keys that Ganeti 3.0 copies onto every node it adds (constants.SSH_DAEMON_KEYFILES)."""
NETBOX_FIELD = "ssh_host_key_fingerprint"
"""Custom field of a NetBox device holding the SHA256 fingerprint of one of its SSH host keys."""

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_KEY_TYPE = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+)$")
_ALGORITHMS = {"ssh-rsa": "rsa-sha2-512,rsa-sha2-256"}
"""Signature algorithms for a key type where they differ from its name (ssh-rsa's SHA-1 is off in OpenSSH 8.8+)."""


def check_fingerprint(value: str) -> str:
    """value if it is an OpenSSH SHA256 fingerprint (`SHA256:` and 43 base64 characters), else ValueError."""
    if not _FINGERPRINT.match(value.strip()):
        raise ValueError(f"{value!r} is not an SSH SHA256 fingerprint (SHA256: and 43 base64 characters, as "
                         "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it)")
    return value.strip()


def fingerprint_argument(value: str) -> str:
    """Argparse type of --ssh-host-key-fingerprint."""
    try:
        return check_fingerprint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class HostKey:
    """One SSH public key: its type (ssh-ed25519, ...) and base64 blob."""

    kind: str
    blob: str

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint as OpenSSH prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def describe(self) -> str:
        """Fingerprint and type, e.g. `SHA256:abc... (ssh-ed25519)`."""
        return f"{self.fingerprint} ({self.kind})"

    def line(self, host: str) -> str:
        """Its known_hosts line for host."""
        return f"{host} {self.kind} {self.blob}"


def _key(kind: str, blob: str) -> HostKey | None:
    if not _KEY_TYPE.match(kind):
        return None
    try:
        base64.b64decode(blob, validate=True)
    except ValueError:
        return None
    return HostKey(kind, blob)


def parse_keyscan(output: str, host: str) -> list[HostKey]:
    """The keys in `ssh-keyscan host` output (`host type blob` lines; comments and other hosts ignored)."""
    keys = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == host and (key := _key(fields[1], fields[2])):
            keys.append(key)
    return list(dict.fromkeys(keys))


def parse_public_keys(output: str) -> list[HostKey]:
    """The keys in the output of `cat` of .pub files (`type blob comment` lines)."""
    keys = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and (key := _key(fields[0], fields[1])):
            keys.append(key)
    return list(dict.fromkeys(keys))


def strict_probe(host: str, key: HostKey) -> list[str]:
    """argv logging in to root@host as root by key, accepting only key as the host key (no file read or written)."""
    return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"KnownHostsCommand=/bin/echo {key.line(host)}",
            "-o", f"HostKeyAlgorithms={_ALGORITHMS.get(key.kind, key.kind)}", "-o", "LogLevel=ERROR",
            f"root@{host}", "true"]


def pin_program(missing: Mapping[str, Sequence[str]]) -> str:
    """A sh command line appending the lines to each file (created 0600 with its directory when absent)."""
    parts = ["umask 077"]
    for path, lines in missing.items():
        if lines:
            quoted = shlex.quote(path)
            parts.append(f"mkdir -p $(dirname {quoted}) && printf '%s\\n' {' '.join(map(shlex.quote, lines))} "
                         f">> {quoted}")
    return " && ".join(parts)


def unpin_program(added: Mapping[str, Sequence[str]]) -> str:
    """A sh command line removing exactly these lines from each file again (its mode and owner kept)."""
    parts = []
    for path, lines in added.items():
        if lines:
            quoted = shlex.quote(path)
            patterns = " ".join(f"-e {shlex.quote(line)}" for line in lines)
            parts.append(f't=$(mktemp) && {{ grep -vxF {patterns} {quoted} > "$t"; cat "$t" > {quoted}; }}; '
                         f'rm -f "$t"')
    return "; ".join(parts) or "true"
