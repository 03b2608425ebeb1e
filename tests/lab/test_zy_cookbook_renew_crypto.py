"""renew-crypto on the lab. Named to run near the end: the real renewal restarts the daemons of every node.

Read-only and refused runs first (check-only, bad input, a RAPI certificate our client would reject, dry-run),
then one real run renewing the cluster certificate (hence the node certificates) and installing a RAPI
certificate freshly signed by the lab CA, so TLS keeps verifying for every client of the lab. The new RAPI
certificate then becomes the lab's own (tls.rapi_pem), so `cookbook-lab up` sees nothing to repair.
Last, the other parts in one run: SPICE certificate, root SSH keys and a self-signed RAPI certificate, which
must fail loudly; then the recovery an operator would run without a usable RAPI (--master, a CA-signed
certificate).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from libcluster.ganeti import GanetiCluster
from cookbook_lab import cli, tls
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from tests.lab.cookbook_lab import Run, cluster, planned_only, remote, run_cookbook  # noqa: F401 - cluster: fixture

RENEW = "sre.ganeti.renew-crypto"
FILES = ("/var/lib/ganeti/server.pem", "/var/lib/ganeti/client.pem", "/var/lib/ganeti/rapi.pem",
         "/var/lib/ganeti/spice.pem")
SSH_KEY = "/root/.ssh/id_rsa.pub"
BUSY_TRIES = 10
"""Runs refused because other tests' jobs were running are tried again this often (10 s apart)."""


def _nodes(cluster: GanetiCluster) -> list[str]:
    """The cluster's nodes, sorted."""
    return sorted(node["name"] for node in cluster.nodes())


def _fingerprints(lab_config: Path, nodes: list[str]) -> dict[tuple[str, str], str]:
    """SHA-256 fingerprint of each certificate file and of the root SSH key on each node (over SSH only)."""
    found = {}
    for path in FILES:
        result = remote(lab_config).hosts(nodes).run_sync(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path], is_safe=True)
        for node in nodes:
            found[(node, path)] = result[node].output.strip().split("=", 1)[-1]
    keys = remote(lab_config).hosts(nodes).run_sync(["ssh-keygen", "-lf", SSH_KEY], is_safe=True)
    for node in nodes:
        found[(node, SSH_KEY)] = keys[node].output.split()[1]
    return found


def _served_certificate(url: str, ca_file: str) -> str:
    """The PEM certificate RAPI serves, after a handshake verified against ca_file."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as sock:
            der = sock.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).strip()


def _renew(lab_config: Path, *args: str, dry_run: bool = False) -> Run:
    """Run renew-crypto, again while other tests' jobs keep the cluster busy (the cookbook refuses then)."""
    for _ in range(BUSY_TRIES):
        done = run_cookbook(lab_config, RENEW, "--cluster", "lab", *args, dry_run=dry_run)
        if "are queued or running on cluster lab" not in done.stderr:
            return done
        time.sleep(10)
    pytest.fail("the cluster stayed busy with other jobs")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory every node sees (under the lab's Ganeti state dir, not a per-node one), removed afterwards."""
    path = ClusterPaths.of(Lab()).root / f"test-renew-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    yield path
    for item in path.iterdir():
        item.unlink()
    path.rmdir()


def test_check_only_reports_every_certificate(cluster: GanetiCluster, lab_config: Path, tmp_path: Path) -> None:
    done = run_cookbook(lab_config, RENEW, "--cluster", "lab", "--check-only")
    assert done.returncode == 0
    for node in cluster.nodes():
        assert f"{node['name']}:/var/lib/ganeti/client.pem" in done.stdout
    tls_row = next(line for line in done.stdout.splitlines() if line.startswith("RAPI over TLS"))
    assert tls_row.endswith("OK") and cluster.rapi.url in tls_row
    strict = yaml.safe_load(lab_config.read_text())
    strict["ganeti"]["clusters"]["lab"]["cert_warning_days"] = 100000
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(strict))
    warned = run_cookbook(config, RENEW, "--cluster", "lab", "--check-only")
    assert warned.returncode == 94 and "need attention" in warned.stderr
    assert "expires within 100000 days" in warned.stderr


def test_bad_input_and_dry_run_change_nothing(cluster: GanetiCluster, lab_config: Path, scratch: Path) -> None:
    before = _fingerprints(lab_config, _nodes(cluster))
    self_signed = scratch / "self-signed.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(self_signed), "-out", str(self_signed), "-days", "30", "-subj", "/CN=rogue",
                    "-addext", "subjectAltName=IP:198.18.0.10"], check=True, capture_output=True)
    for argv, message in [
        ([], "nothing to renew"),
        (["--check-only", "--cluster-certificate"], "--check-only renews nothing"),
        (["--rapi-certificate", str(self_signed)], "every RAPI client pinning that CA would break"),
        (["--rapi-certificate", "/nonexistent.pem"], "holds no readable certificate"),
    ]:
        done = run_cookbook(lab_config, RENEW, "--cluster", "lab", *argv)
        assert done.returncode == 94 and message in done.stderr, argv
    dry = _renew(lab_config, "--cluster-certificate", dry_run=True)
    assert dry.returncode == 0
    assert "gnt-cluster renew-crypto --force --new-cluster-certificate" in dry.stderr
    assert planned_only(dry) and [change["action"] for change in dry.audit["changes"]] == ["command"]
    assert _fingerprints(lab_config, _nodes(cluster)) == before


def test_renew_cluster_and_rapi_certificates_keeps_tls_verifiable(cluster: GanetiCluster, lab_config: Path,
                                                                  scratch: Path) -> None:
    lab, paths = Lab(), ClusterPaths.of(Lab())
    fresh = scratch / "rapi.pem"
    tls.issue_rapi_certificate(lab, paths, fresh)
    before = _fingerprints(lab_config, _nodes(cluster))
    done = _renew(lab_config, "--cluster-certificate", "--rapi-certificate", str(fresh))
    assert done.returncode == 0
    after = _fingerprints(lab_config, _nodes(cluster))
    master = cluster.master()
    assert after[(master, FILES[0])] != before[(master, FILES[0])]
    assert len({after[(node["name"], FILES[0])] for node in cluster.nodes()}) == 1  # one cluster certificate
    assert all(after[(node["name"], FILES[1])] != before[(node["name"], FILES[1])] for node in cluster.nodes())
    assert _served_certificate(cluster.rapi.url, str(tls.ca_file(paths))) == tls.certificate_of(fresh)
    assert cluster.info()["master"] == master
    # The lab's own RAPI certificate is now the installed one.
    fresh.replace(tls.rapi_pem(paths))


def test_spice_ssh_keys_and_a_self_signed_rapi_certificate(cluster: GanetiCluster, lab_config: Path,
                                                          scratch: Path) -> None:
    nodes, master = _nodes(cluster), cluster.master()
    before = _fingerprints(lab_config, nodes)
    lab, paths = Lab(), ClusterPaths.of(Lab())
    try:
        done = _renew(lab_config, "--spice-certificate", "--ssh-keys", "--new-rapi-certificate")
        assert done.returncode == 1
        assert "--new-rapi-certificate --new-spice-certificate --new-ssh-keys --no-ssh-key-check" in done.stderr
        assert "OUR RAPI CLIENT NO LONGER VERIFIES" in done.stderr and "self-signed certificate" in done.stderr
        assert "not renewed" not in done.stderr
        assert "gnt-cluster verify after the renewal: exit code 0, 0 error(s)" in done.stderr  # SSH between nodes
        after = _fingerprints(lab_config, nodes)  # our own SSH still reaches every node
        for path in (FILES[2], FILES[3], SSH_KEY):
            assert all(after[(node, path)] != before[(node, path)] for node in nodes), path
        for path in FILES[2:]:
            assert len({after[(node, path)] for node in nodes}) == 1, path  # the master copied it everywhere
        assert len({after[(node, SSH_KEY)] for node in nodes}) == len(nodes)  # one key per node
        assert [after[(node, FILES[0])] for node in nodes] == [before[(node, FILES[0])] for node in nodes]
        assert "self-signed" in _served_problem(cluster.rapi.url)

        # Recovery without RAPI: the master named on the command line, a CA-signed certificate installed.
        fresh = scratch / "rapi.pem"
        tls.issue_rapi_certificate(lab, paths, fresh)
        without = run_cookbook(lab_config, RENEW, "--cluster", "lab", "--rapi-certificate", str(fresh))
        assert without.returncode == 94
        assert "To work without RAPI, name the master node: --master NODE" in without.stderr
        recovered = _renew(lab_config, "--master", master, "--rapi-certificate", str(fresh))
        assert recovered.returncode == 0
        assert _served_certificate(cluster.rapi.url, str(tls.ca_file(paths))) == tls.certificate_of(fresh)
        fresh.replace(tls.rapi_pem(paths))  # the lab's own RAPI certificate is now the installed one
    finally:
        cli.up(lab)  # authorizes the new keys on the spare node (and repairs RAPI if the recovery failed)


def _served_problem(url: str) -> str:
    """Why a client verifying against the lab CA refuses RAPI's certificate ("" if it accepts it)."""
    try:
        _served_certificate(url, str(tls.ca_file(ClusterPaths.of(Lab()))))
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message)
    return ""
