"""renew-crypto: reading certificate files, TLS as a client sees it (real handshakes), check-only, the renewal flow."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libcluster.cookbook import CookbookInitSuccess
from libcluster.errors import LibclusterError
from libcluster.ganeti import certificates
from libcluster.ganeti.commands import GntCommands
from libcluster.ganeti.errors import RapiConnectionError
from libcluster.testing import FakeCluster, FakeCtx, FakeRemote, load_config, load_cookbook, ok, run_runner

TREE = Path(__file__).resolve().parents[2]
"""This checkout: the folder holding cookbooks/."""

NOW = datetime(2026, 11, 22, tzinfo=UTC)
# Real output of certificates.READ_SCRIPT on a lab node (Ganeti 3.0.2, OpenSSL 3.0), plus a missing file.
READ_OUTPUT = """\
/var/lib/ganeti/server.pem notAfter=Nov 21 04:04:45 2031 GMT sha256 Fingerprint=65:CD:B5:00 \n\
/var/lib/ganeti/client.pem notAfter=Nov 21 04:04:46 2031 GMT sha256 Fingerprint=2C:3B:73:6E \n\
/var/lib/ganeti/rapi.pem notAfter=Feb 24 04:04:50 2029 GMT sha256 Fingerprint=3C:01:4F:5D \n\
/var/lib/ganeti/spice.pem absent
/root/.ssh/id_rsa.pub key=SHA256:XTeatWdEJEiV6iBo86dH6p7ztMlq64d4xoFmN8s2ZbY
"""


@pytest.fixture
def certs() -> Any:
    """The certificate module of the library."""
    return certificates


@pytest.fixture
def renew() -> Any:
    """The cookbook module."""
    return load_cookbook(TREE, "sre.ganeti.renew-crypto")


def test_read_output_is_parsed_into_dates_and_fingerprints(certs: Any) -> None:
    found = certs.parse_read(READ_OUTPUT)
    assert found["/var/lib/ganeti/server.pem"] == (datetime(2031, 11, 21, 4, 4, 45, tzinfo=UTC), "65:CD:B5:00")
    assert found["/var/lib/ganeti/rapi.pem"][0] == datetime(2029, 2, 24, 4, 4, 50, tzinfo=UTC)
    assert found["/var/lib/ganeti/spice.pem"] == (None, None)
    assert found["/root/.ssh/id_rsa.pub"] == (None, "SHA256:XTeatWdEJEiV6iBo86dH6p7ztMlq64d4xoFmN8s2ZbY")
    assert certs.read_command(["/a b"])[-1] == "/a b"


def test_file_rows_flag_a_differing_cluster_certificate_and_missing_files(certs: Any) -> None:
    master = certs.parse_read(READ_OUTPUT)
    other = dict(master, **{certs.CLUSTER_CERT: (master[certs.CLUSTER_CERT][0], "FF:FF"),
                            certs.NODE_CERT: (None, None)})
    rows = certs.file_certs("n1", {"n1": master, "n2": other})
    problems = {(row.name, row.where): row.problem for row in rows if row.problem}
    assert problems == {("cluster certificate", f"n2:{certs.CLUSTER_CERT}"): "differs from the master's",
                        ("node certificate", f"n2:{certs.NODE_CERT}"): "absent"}
    assert not any(row.name == "SPICE certificate" for row in rows)  # absent SPICE is fine
    assert [row.where for row in rows if row.name == "root SSH key"] == ["n1:/root/.ssh/id_rsa.pub",
                                                                         "n2:/root/.ssh/id_rsa.pub"]
    unread = certs.file_certs("n1", {})
    assert unread[0].problem == "not read (node unreachable)"


def test_status_warns_within_the_configured_days(certs: Any) -> None:
    def cert(days: float) -> Any:
        return certs.Cert("x", "y", NOW + timedelta(days=days), "AA")

    assert certs.status(cert(31), NOW, 30) == "OK"
    assert certs.status(cert(29), NOW, 30) == "WARNING: expires within 30 days"
    assert certs.status(cert(-1), NOW, 30) == "EXPIRED"
    assert certs.status(certs.Cert("x", "y", problem="absent"), NOW, 30) == "absent"
    assert [c.not_after for c in certs.problems([cert(100), cert(3)], NOW, 30)] == [NOW + timedelta(days=3)]


# Real TLS handshakes against a local server ------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate it signed for IP 127.0.0.1, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other"):
        _openssl("req", "-x509", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"),
                 "-days", "30", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE")
    _openssl("req", "-new", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=rapi")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-set_serial", "7", "-days", "20", "-extfile", str(d / "ext"), "-out", str(d / "server.crt"))
    return {"ca": d / "ca.crt", "other": d / "other.crt", "cert": d / "server.crt", "key": d / "server.key"}


@pytest.fixture
def tls_server(pki: dict[str, Path]) -> Iterator[str]:
    """An https URL on 127.0.0.1 serving the server certificate (handshakes only)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_tls_peer_verifies_against_the_ca_and_gives_the_expiry(certs: Any, pki: dict[str, Path],
                                                               tls_server: str) -> None:
    seen = certs.tls_peer(tls_server, str(pki["ca"]))
    der = ssl.PEM_cert_to_DER_cert(pki["cert"].read_text())
    assert seen.problem == "" and seen.fingerprint == certs.der_fingerprint(der)
    assert 19 < seen.days_left(datetime.now(UTC)) <= 20


def test_tls_peer_reports_an_unverifiable_certificate_and_a_dead_port(certs: Any, pki: dict[str, Path],
                                                                      tls_server: str) -> None:
    seen = certs.tls_peer(tls_server, str(pki["other"]))
    assert seen.problem.startswith(f"TLS verification FAILED against {pki['other']}: unable to get local issuer")
    assert seen.fingerprint == certs.der_fingerprint(ssl.PEM_cert_to_DER_cert(pki["cert"].read_text()))
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert certs.tls_peer(f"https://127.0.0.1:{port}", str(pki["ca"]), timeout=2).problem.startswith("unreachable")


def test_verify_pem_checks_chain_and_address(certs: Any, pki: dict[str, Path]) -> None:
    pem = pki["cert"].read_text()
    assert certs.verify_pem(pem, str(pki["ca"]), "https://127.0.0.1:5080") == ""
    assert "IP address mismatch" in certs.verify_pem(pem, str(pki["ca"]), "https://127.0.0.2:5080")
    assert "unable to get local issuer" in certs.verify_pem(pem, str(pki["other"]), "https://127.0.0.1:5080")


# The cookbook ------------------------------------------------------------------------------------

def _read_all(host: str, line: str) -> Any:
    """Every node answers the certificate read with READ_OUTPUT."""
    return ok(READ_OUTPUT) if line.startswith("sh -c") else ok("-----BEGIN CERTIFICATE-----\n")


def _make(renew: Any, tmp_path: Path, monkeypatch: Any, *argv: str, tls: list[Any] | None = None,
          dry_run: bool = False, **config: Any) -> tuple[Any, FakeCtx, FakeCluster]:
    """Build the runner (or raise from get_runner) with a fake cluster and a scripted TLS view."""
    cluster = FakeCluster(dry_run=dry_run)
    ctx = FakeCtx(load_config(tmp_path, **config), clusters={"lab": cluster}, dry_run=dry_run,
                  remote=FakeRemote(_read_all, dry_run=dry_run))
    views = tls if tls is not None else []
    certs = renew.certificates
    default = certs.Cert(certs.TLS_NAME, cluster.rapi.url, datetime(2029, 2, 24, tzinfo=UTC), "3C:01:4F:5D")
    monkeypatch.setattr(certs, "tls_peer", lambda url, ca, timeout=10.0: views.pop(0) if views else default)
    cookbook = renew.RenewCrypto(ctx)
    return cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", *argv])), ctx, cluster


def test_flags_must_choose_something_or_check_only(renew: Any, tmp_path: Path, monkeypatch: Any) -> None:
    with pytest.raises(ValueError, match="nothing to renew"):
        _make(renew, tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="--check-only renews nothing"):
        _make(renew, tmp_path, monkeypatch, "--check-only", "--ssh-keys")
    with pytest.raises(SystemExit):
        _make(renew, tmp_path, monkeypatch, "--rapi-certificate", "/x.pem", "--new-rapi-certificate")


def test_check_only_exits_zero_when_all_is_fine_and_fails_within_the_warning_days(
        renew: Any, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    with pytest.raises(CookbookInitSuccess):
        _make(renew, tmp_path, monkeypatch, "--check-only")
    assert "node1.example:/var/lib/ganeti/server.pem" in capsys.readouterr().out
    with pytest.raises(LibclusterError, match=r"2 certificate.s. of cluster lab need attention: node1.example:/var/lib/"
                                              r"ganeti/rapi.pem: WARNING: expires within 1000 days; https://"):
        _make(renew, tmp_path, monkeypatch, "--check-only", cert_warning_days=1000)


def test_a_rapi_file_our_client_would_not_verify_is_refused(renew: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(renew.certificates, "verify_pem", lambda pem, ca, url: "self-signed certificate")
    with pytest.raises(LibclusterError, match="would not verify for https://198.51.100.10:5080 against "
                                              "/nonexistent/ca.pem .self-signed certificate."):
        _make(renew, tmp_path, monkeypatch, "--rapi-certificate", "/root/rapi.pem")


def test_running_jobs_stop_the_renewal(renew: Any, tmp_path: Path, monkeypatch: Any) -> None:
    runner, ctx, cluster = _make(renew, tmp_path, monkeypatch, "--cluster-certificate")
    cluster.job_list = [{"id": 41, "status": "success"}, {"id": 42, "status": "running"}]
    assert runner.run() == 1
    assert not any(call[0] == "renew_crypto" for call in cluster.calls) and ctx.confirmations == []


def test_an_interrupt_during_the_renewal_says_what_may_be_left(renew: Any, tmp_path: Path, monkeypatch: Any,
                                                               caplog: Any) -> None:
    from libcluster.cookbook import EXIT_ROLLBACK_FAILED

    runner, _, cluster = _make(renew, tmp_path, monkeypatch, "--cluster-certificate")

    def interrupted() -> None:
        raise KeyboardInterrupt

    cluster.on_renew = interrupted
    assert run_runner(runner, runner.ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert "gnt-cluster renew-crypto on node1.example did not report its end" in caplog.text
    assert "`/usr/lib/ganeti/daemon-util start-all` on every node (the master last)" in caplog.text
    runner, _, cluster = _make(renew, tmp_path, monkeypatch, "--cluster-certificate")
    cluster.job_list = [{"id": 42, "status": "running"}]
    assert run_runner(runner, runner.ctx).exit_code == 1, "nothing renewed: nothing left"


def test_renewal_passes_the_quirk_flags_and_checks_the_result(renew: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(renew.certificates, "verify_pem", lambda pem, ca, url: "")
    runner, ctx, cluster = _make(renew, tmp_path, monkeypatch, "--rapi-certificate", "/root/rapi.pem", "--ssh-keys")
    after = renew.certificates.Cert(renew.certificates.TLS_NAME, cluster.rapi.url, datetime(2029, 3, 1, tzinfo=UTC), "33:33")

    def renewed() -> None:
        ctx.remote().respond = lambda host, line: ok(READ_OUTPUT.replace("3C:01:4F:5D", "33:33")
                                                     .replace("SHA256:XTea", f"SHA256:{host}"))
        monkeypatch.setattr(renew.certificates, "tls_peer", lambda url, ca, timeout=10.0: after)

    cluster.on_renew = renewed
    assert runner.run() == 0
    (options,) = [call[1] for call in cluster.calls if call[0] == "renew_crypto"]
    assert options["rapi_certificate"] == "/root/rapi.pem" and options["confd_hmac_key"] is True
    assert options["ssh_keys"] is True and options["ssh_key_check"] is False
    assert ("commands_on", "node1.example") in cluster.calls  # verify after the renewal asks RAPI nothing
    assert runner.lock_args.concurrency == 1 and runner.lock_args.suffix == "lab"


def test_an_unchanged_certificate_or_an_unverifiable_rapi_fail_the_run(renew: Any, tmp_path: Path, monkeypatch: Any,
                                                                       caplog: Any) -> None:
    certs = renew.certificates
    broken = certs.Cert(certs.TLS_NAME, "https://198.51.100.10:5080", None, "44:44",
                        "TLS verification FAILED against /nonexistent/ca.pem: self-signed certificate")
    runner, ctx, cluster = _make(renew, tmp_path, monkeypatch, "--cluster-certificate", "--new-rapi-certificate",
                                 "--ssh-keys")

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RapiConnectionError("RAPI GET /2/info: TLS failed: self-signed certificate")

    def renewed() -> None:  # RAPI now serves a certificate our client refuses
        monkeypatch.setattr(certs, "tls_peer", lambda url, ca, timeout=10.0: broken)
        for method in ("master", "nodes", "info"):
            monkeypatch.setattr(cluster, method, refused)

    cluster.on_renew = renewed
    assert runner.run() == 1
    assert f"cluster certificate at node1.example:{certs.CLUSTER_CERT} was not renewed" in caplog.text
    assert "root SSH key at node1.example:/root/.ssh/id_rsa.pub was not renewed" in caplog.text
    assert "OUR RAPI CLIENT NO LONGER VERIFIES https://198.51.100.10:5080" in caplog.text
    assert "SELF-SIGNED" in caplog.text


def test_with_master_given_nodes_and_jobs_are_read_over_ssh_not_from_rapi(renew: Any, tmp_path: Path,
                                                                           monkeypatch: Any) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RapiConnectionError("RAPI GET /2/info: TLS failed: self-signed certificate")

    original = FakeCluster.__init__

    def without_rapi(cluster: FakeCluster, *args: Any, **kwargs: Any) -> None:
        original(cluster, *args, **kwargs)
        for method in ("master", "nodes", "info", "jobs"):
            setattr(cluster, method, refused)
        cluster.commands.outputs = {"gnt-cluster getmaster": "node1.example\n",
                                    "gnt-node list": "node1.example|N\nnode2.example|N\nnode3.example|Y\n",
                                    "gnt-job list": "41|success\n42|running\n"}

    monkeypatch.setattr(FakeCluster, "__init__", without_rapi)
    runner, ctx, cluster = _make(renew, tmp_path, monkeypatch, "--master", "node1.example", "--cluster-certificate")
    assert (runner.master, runner.nodes) == ("node1.example", ["node1.example", "node2.example"])
    assert runner.run() == 1  # job 42 runs
    assert ("run", "gnt-job list --no-headers '--separator=|' -o id,status", True) in cluster.calls
    assert not any(call[0] == "renew_crypto" for call in cluster.calls)
    with pytest.raises(LibclusterError, match="--master node2.example: the master of cluster lab is node1.example"):
        _make(renew, tmp_path, monkeypatch, "--master", "node2.example", "--cluster-certificate")
    with pytest.raises(LibclusterError, match="TLS failed: self-signed certificate\nTo work without RAPI, name the "
                                              "master node: --master NODE"):
        _make(renew, tmp_path, monkeypatch, "--cluster-certificate")


def test_dry_run_reports_and_renews_nothing(renew: Any, tmp_path: Path, monkeypatch: Any) -> None:
    runner, ctx, cluster = _make(renew, tmp_path, monkeypatch, "--cluster-certificate", dry_run=True)
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["commands_on", "renew_crypto"]
    assert ctx.remote().calls and all(is_safe for _, _, is_safe in ctx.remote().calls)


def test_the_library_sends_the_spice_flag() -> None:
    remote = FakeRemote(lambda host, line: ok())
    GntCommands(remote, lambda: "m", verify_ignore=(), timeout=5).renew_crypto(spice_certificate=True)  # type: ignore
    assert remote.calls == [("m", "gnt-cluster renew-crypto --force --new-spice-certificate", False)]
