"""libcluster.etcd against a stand-in of etcd's JSON gateway with authentication: the Gateway logs in once, sends
its token, logs in again when etcd says the token expired, and no error shows the password or the token."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from libcluster import redact
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.etcd import EtcdAccess, Gateway
from libcluster.locks import EtcdBackend, LockError, from_config

PASSWORD = "runner-password-1"


class Etcd(ThreadingHTTPServer):
    """Over TLS, hands out token-N at /v3/auth/authenticate; answers 401 (code 16) to any token but the last one."""

    def __init__(self, cert: Path, key: Path) -> None:
        """Listen on a free loopback port with the certificate cert."""
        self.logins = 0
        self.seen: list[tuple[str, str | None]] = []
        self.ca_file = str(cert)
        super().__init__(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        """https://127.0.0.1:PORT"""
        return f"https://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Etcd

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(200, {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v3/auth/authenticate":
            if body != {"name": "runner", "password": PASSWORD}:
                self._answer(400, {"error": "etcdserver: authentication failed, invalid user ID or password",
                                   "code": 3})
                return
            self.server.logins += 1
            self._answer(200, {"header": {}, "token": f"token-{self.server.logins}"})
        elif self.headers.get("Authorization") != f"token-{self.server.logins}":
            self._answer(401, {"error": "etcdserver: invalid auth token", "code": 16})
        else:
            self._answer(200, {"header": {"revision": "5"}, "kvs": []})

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    crt, key = tmp_path / "etcd.crt", tmp_path / "etcd.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def etcd(cert: tuple[Path, Path]) -> Iterator[Etcd]:
    server = Etcd(*cert)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def gateway(etcd: Etcd, password: str = PASSWORD) -> Gateway:
    """A Gateway to the stand-in, checking its certificate (whatever REQUESTS_CA_BUNDLE says)."""
    return Gateway(EtcdAccess(etcd.url, etcd.ca_file, "runner", password), 5, LockError)


def test_the_gateway_logs_in_once_and_again_when_the_token_expired(etcd: Etcd) -> None:
    client = gateway(etcd)
    assert client.call("reading", "/kv/range", {"key": "eA=="})["header"]["revision"] == "5"
    assert client.call("reading", "/kv/range", {"key": "eA=="})["header"]["revision"] == "5"
    assert etcd.logins == 1
    etcd.logins += 1  # etcd forgot token-1 (it expires after --auth-token-ttl of disuse)
    assert client.call("reading", "/kv/range", {"key": "eA=="})["header"]["revision"] == "5"
    assert etcd.logins == 3
    assert [path for path, _ in etcd.seen] == ["/v3/auth/authenticate", "/v3/kv/range", "/v3/kv/range",
                                               "/v3/kv/range", "/v3/auth/authenticate", "/v3/kv/range"]
    assert [token for path, token in etcd.seen if path == "/v3/auth/authenticate"] == [None, None]


def test_a_wrong_password_fails_with_etcds_words_and_never_the_password_or_token(etcd: Etcd) -> None:
    with pytest.raises(LockError) as failed:
        gateway(etcd, "wrong-password-2").call("reading", "/kv/range", {"key": "eA=="})
    assert str(failed.value) == (f"etcd at {etcd.url}: logging in failed: etcdserver: authentication failed, "
                                 "invalid user ID or password")
    client = gateway(etcd)
    client.call("reading", "/kv/range", {"key": "eA=="})
    assert redact.redact("Authorization: token-1") == f"Authorization: {redact.MASK}"
    assert redact.redact(PASSWORD) == redact.MASK


@pytest.mark.parametrize(("locks", "message"), [
    ({"etcd_url": "http://etcd:2379", "etcd_user": "runner", "etcd_password": "pw-secret"}, "sent in clear"),
    ({"etcd_url": "https://etcd:2379", "etcd_password": "pw-secret"}, "both a user name and a password"),
    ({"etcd_url": "etcd:2379"}, "invalid etcd URL"),
])
def test_bad_locks_settings_are_refused_naming_the_key(locks: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        from_config(Section({"locks": locks}, "", "c.yaml"), owner="o", dry_run=False)
    assert "locks.etcd_url" in str(refused.value) and "pw-secret" not in str(refused.value)


def test_the_locks_use_the_configured_ca_and_user() -> None:
    locks = from_config(Section({"locks": {"etcd_url": "https://etcd:2379", "etcd_ca_file": "/etc/ca.crt",
                                           "etcd_user": "runner", "etcd_password": "pw-secret"}}, "", "c.yaml"),
                        owner="o", dry_run=False)
    assert isinstance(locks.backend, EtcdBackend)
    assert locks.backend.access == EtcdAccess("https://etcd:2379", "/etc/ca.crt", "runner", "pw-secret")
    assert "pw-secret" not in repr(locks.backend.access)


def test_a_certificate_the_ca_does_not_sign_is_refused_before_the_password_is_sent(etcd: Etcd) -> None:
    with pytest.raises(LockError, match="CERTIFICATE_VERIFY_FAILED"):
        Gateway(EtcdAccess(etcd.url, None, "runner", PASSWORD), 5, LockError).call("reading", "/kv/range", {})
    assert etcd.seen == []
