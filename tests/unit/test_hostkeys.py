"""libcluster.hostkeys: fingerprints as OpenSSH prints them, ssh-keyscan parsing, and pin/unpin programs run by sh."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from libcluster import hostkeys

HOST = "node9.lab.example"


@pytest.fixture
def key(tmp_path: Path) -> tuple[hostkeys.HostKey, str]:
    """A fresh ed25519 key as parsed from its .pub file, and its fingerprint as ssh-keygen -l prints it."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    public = (tmp_path / "k.pub").read_text()
    printed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], check=True, capture_output=True,
                             text=True).stdout.split()[1]
    (parsed,) = hostkeys.parse_public_keys(public)
    return parsed, printed


def test_the_fingerprint_is_the_one_ssh_keygen_prints(key: tuple[hostkeys.HostKey, str]) -> None:
    parsed, printed = key
    assert parsed.fingerprint == printed and hostkeys.check_fingerprint(f" {printed} ") == printed
    with pytest.raises(argparse.ArgumentTypeError, match="not an SSH SHA256 fingerprint"):
        hostkeys.fingerprint_argument("MD5:aa:bb")


def test_keyscan_output_keeps_this_hosts_valid_keys_once(key: tuple[hostkeys.HostKey, str]) -> None:
    parsed, _ = key
    output = "\n".join([f"# {HOST}:22 SSH-2.0-OpenSSH_9.2", parsed.line(HOST), parsed.line(HOST),
                        parsed.line("other.lab.example"), f"{HOST} ssh-ed25519 not-base64!", f"{HOST} x-bad AAAA"])
    assert hostkeys.parse_keyscan(output, HOST) == [parsed]


def test_pin_then_unpin_leaves_the_file_as_it_was(tmp_path: Path, key: tuple[hostkeys.HostKey, str]) -> None:
    parsed, _ = key
    known = tmp_path / "ssh" / "known_hosts"
    new = tmp_path / "new" / "known_hosts"
    known.parent.mkdir()
    known.write_text("other.lab.example ssh-ed25519 AAAA\n")
    lines = {str(known): [parsed.line(HOST)], str(new): [parsed.line(HOST)]}
    subprocess.run(["sh", "-c", hostkeys.pin_program(lines)], check=True)
    assert known.read_text() == f"other.lab.example ssh-ed25519 AAAA\n{parsed.line(HOST)}\n"
    assert new.read_text() == f"{parsed.line(HOST)}\n" and oct(new.stat().st_mode)[-3:] == "600"
    subprocess.run(["sh", "-c", hostkeys.unpin_program(lines)], check=True)
    assert known.read_text() == "other.lab.example ssh-ed25519 AAAA\n" and new.read_text() == ""
