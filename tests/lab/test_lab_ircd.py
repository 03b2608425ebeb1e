"""The lab's ngircd as `cookbook-lab up` leaves it: TLS only with a lab-CA certificate, PASS checked by PAM.

A plain-text client gets no welcome; a TLS client verifying the lab CA does; a client giving the
right PASS for a lab login shows as nick!login@host, one giving none as nick!~login@host, and one
giving a wrong PASS is turned away. Logins carry a random tag and are removed afterwards.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from typing import Any

import pytest

from tests.lab.chatops_lab import irc_part, pam_logins

TIMEOUT = 10.0


def register(irc: dict[str, Any], nick: str, user: str, password: str = "", *, tls: bool = True) -> str:
    """Register and return the server's first 001 (welcome) or ERROR line, "" when it closed or said nothing."""
    sock = socket.create_connection((irc["host"], irc["port"]), timeout=TIMEOUT)
    if tls:
        sock = ssl.create_default_context(cafile=irc["ca_file"]).wrap_socket(sock, server_hostname=irc["host"])
    with sock:
        sock.sendall((f"PASS {password}\r\n" if password else "").encode()
                     + f"NICK {nick}\r\nUSER {user} 0 * :lab test\r\n".encode())
        data, deadline = b"", time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in data.decode(errors="replace").split("\r\n")[:-1]:
                if " 001 " in line or line.startswith("ERROR"):
                    sock.sendall(b"QUIT :done\r\n")
                    return line
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, ConnectionResetError, ssl.SSLError):
                return ""
            if not chunk:
                return ""
            data += chunk
    return ""


@pytest.fixture
def irc(lab: dict[str, Any]) -> dict[str, Any]:
    """The lab's irc part."""
    return irc_part(lab)


def test_plain_text_gets_no_welcome_and_tls_verified_by_the_lab_ca_does(irc: dict[str, Any]) -> None:
    tag = secrets.token_hex(3)
    assert irc["tls"] is True
    assert register(irc, f"plain{tag}", f"plain{tag}", tls=False) == ""
    assert register(irc, f"tls{tag}", f"tls{tag}").endswith(f"001 tls{tag} :Welcome to the Internet Relay Network "
                                                            f"tls{tag}!~tls{tag}@127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(socket.create_connection((irc["host"], irc["port"]), timeout=TIMEOUT),
                                                 server_hostname=irc["host"])


def test_pam_login_shows_the_user_without_tilde_and_a_wrong_password_is_refused(irc: dict[str, Any]) -> None:
    tag = secrets.token_hex(3)
    login = f"lg{tag}"
    with pam_logins([login]) as passwords:
        assert register(irc, f"in{tag}", login, passwords[login]).endswith(f"in{tag}!{login}@127.0.0.1")
        assert register(irc, f"no{tag}", login).endswith(f"no{tag}!~{login}@127.0.0.1")
        assert register(irc, f"bad{tag}", login, "not-the-password").startswith("ERROR :Access denied")
    assert register(irc, f"gone{tag}", login, passwords[login]).startswith("ERROR :Access denied"), \
        "a removed login no longer logs in"
