"""`cookbook --doctor` on the lab: all green with the lab's configuration, and the exact red line, with its fix,
for a bad NetBox token, a DNS primary that does not answer (a port where nothing listens, and the lab's Knot
stopped for a moment), a wrong RAPI CA file, a wrong TSIG secret and a configuration others may read.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns.client import DNS
from tests.lab.cookbook_lab import COOKBOOK


def _doctor(config: Path) -> tuple[int, list[str]]:
    result = subprocess.run([str(COOKBOOK), "-c", str(config), "--doctor"], capture_output=True, text=True,
                            timeout=300)
    print(result.stdout, result.stderr)
    return result.returncode, result.stdout.splitlines()


def _copy(lab_config: Path, path: Path, mode: int = 0o600, **changes: Any) -> tuple[Path, dict[str, Any]]:
    data = yaml.safe_load(lab_config.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = data
        for key in parents:
            target = target[key]
        target[leaf] = value
    path.write_text(yaml.safe_dump(data))
    path.chmod(mode)
    return path, data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_doctor_is_green_on_the_lab_and_changes_no_zone(lab_config: Path) -> None:
    code, lines = _doctor(lab_config)
    assert code == 0
    assert lines[-1] == "all checks passed"
    assert [line for line in lines[:-1] if not line.startswith("OK    ")] == []
    for start in ("OK    ganeti lab RAPI: https://", "OK    ganeti lab RAPI read-write user: ",
                  "OK    cumin lab master: node1.lab.example runs commands over SSH", "OK    netbox: ",
                  "OK    netbox ro_token: accepted for reads, cannot write", "OK    netbox token: accepted, may write",
                  "OK    dns lab.example: ", "OK    etcd locks: ", "OK    etcd hook events: ", "OK    irc sal: "):
        assert any(line.startswith(start) for line in lines), start
    raw = yaml.safe_load(lab_config.read_text())
    for secret in (raw["netbox"]["token"], raw["netbox"]["ro_token"], raw["dns"]["tsig_secret"],
                   raw["ganeti"]["clusters"]["lab"]["rapi_password"]):
        assert secret not in "\n".join(lines)
    # The TSIG update probe's prerequisite failed: its name is in no zone.
    root = config_module.load(lab_config)
    server = DNS(root.section("dns"), dry_run=True, changes=ChangeLog(dry_run=True)).server
    import dns.name

    owners = {owner.to_text() for owner, *_ in server.transfer(dns.name.from_text("lab.example"))}
    assert not [owner for owner in owners if "_cookbook-doctor-" in owner]


def test_doctor_names_a_bad_token_a_silent_dns_server_and_a_wrong_rapi_ca(lab_config: Path, tmp_path: Path) -> None:
    port = _free_port()
    config, data = _copy(lab_config, tmp_path / "bad.yaml", netbox__token="nbt_doctorbad.0123456789abcdef0123456789ab",
                         dns__port=port, ganeti__clusters__lab__ca_file="/etc/ssl/certs/ca-certificates.crt")
    code, lines = _doctor(config)
    assert code == 1
    timeout = float(data["dns"].get("timeout", 10.0))
    url = data["ganeti"]["clusters"]["lab"]["rapi_url"]
    failed = [line for line in lines if not line.startswith("OK    ")]
    assert failed == [
        f"FAIL  ganeti lab RAPI: {url}: TLS certificate not verified against /etc/ssl/certs/ca-certificates.crt; "
        "fix: set ganeti.clusters.lab.ca_file to the CA that signed the RAPI certificate (self-signed: the master's "
        "/var/lib/ganeti/rapi.pem)",
        "FAIL  netbox token: GET virtualization/virtual-machines: NetBox refused the token (HTTP 403): Invalid v2 "
        "token; fix: set netbox.token to a valid token (NetBox: API tokens)",
        f"FAIL  dns server 127.0.0.1@{port}: query lab.example. SOA: 127.0.0.1@{port} did not answer within "
        f"{timeout}s; fix: check dns.server and dns.port and that the primary DNS server runs (zones not checked)",
        "3 check(s) failed",
    ]
    assert "OK    netbox ro_token: accepted for reads, cannot write" in lines


def test_doctor_names_a_wrong_tsig_secret_and_a_readable_config(lab_config: Path, tmp_path: Path) -> None:
    config, data = _copy(lab_config, tmp_path / "tsig.yaml", mode=0o644,
                         dns__tsig_secret="d3Jvbmctc2VjcmV0LWRvY3Rvcg==")
    code, lines = _doctor(config)
    assert code == 1
    key = f"TSIG key '{data['dns']['tsig_name']}' ({data['dns'].get('tsig_algorithm', 'hmac-sha256')})"
    where = f"{data['dns']['server']}@{data['dns']['port']}"
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed[0] == (f"FAIL  config {config}: readable by everyone (mode 0644); fix: chown root:root {config} && "
                         f"chmod 0640 {config} (directory 0750)")
    zones = data["dns"]["zones"]
    assert failed[1:] == [
        f"FAIL  dns {zone}: UPDATE {zone}.: {where} rejected the signature of {key}: wrong secret; fix: "
        f"dns.tsig_name/tsig_algorithm/tsig_secret must match the key {where} has" for zone in zones]
    assert "d3Jvbmctc2VjcmV0LWRvY3Rvcg==" not in "\n".join(lines)


def test_doctor_names_a_stopped_knot(lab_config: Path) -> None:
    """The lab's own Knot really stopped (for a second, then started again with its zones): one red line, the fix."""
    from cookbook_lab import knot
    from cookbook_lab.common import Lab

    data = yaml.safe_load(lab_config.read_text())
    where = f"{data['dns']['server']}@{data['dns']['port']}"
    lab = Lab()
    knot.down(lab)
    try:
        code, lines = _doctor(lab_config)
    finally:
        knot.up(lab)
    assert code == 1
    assert [line for line in lines if not line.startswith("OK    ")] == [
        f"FAIL  dns server {where}: query lab.example. SOA: {where} did not answer within "
        f"{float(data['dns'].get('timeout', 10.0))}s; fix: check dns.server and dns.port and that the primary DNS "
        "server runs (zones not checked)",
        "1 check(s) failed",
    ]
    assert knot.status(lab)["dns"]["up"]
