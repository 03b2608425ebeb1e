"""Server admin log on IRC: START/END reach the channel, nothing in dry-run, and an outage costs a run little."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.unit.runner.runner_env import Env

from libcluster import redact
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.sal import CLOSE_TIMEOUT, SAL


class FakeIRC:
    """A minimal IRC server on 127.0.0.1 that records what clients send; silent mode never answers."""

    def __init__(self, *, silent: bool = False, nick_taken: bool = False) -> None:
        """Listen on a free port in a background thread."""
        self.silent = silent
        self.nick_taken = nick_taken
        self.lines: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n" in buffer:
                    raw, buffer = buffer.split(b"\r\n", 1)
                    line = raw.decode()
                    self.lines.append(line)
                    if line.startswith("QUIT") and not self.silent:
                        conn.sendall(b"ERROR :Closing link\r\n")
                        return
                    if not self.silent:
                        self._answer(conn, line)

    def _answer(self, conn: socket.socket, line: str) -> None:
        reply = b""
        if line.startswith("NICK ") and self.nick_taken and len(self.nicks()) == 1:
            reply = b":irc.test 433 * taken :Nickname is already in use\r\n"
        elif line.startswith("USER ") or (line.startswith("NICK ") and len(self.nicks()) > 1):
            reply = b":irc.test PING :check\r\n:irc.test 001 nick :Welcome\r\n"
        try:
            conn.sendall(reply)
        except OSError:  # the client may already have quit; keep recording what it sent
            pass

    def nicks(self) -> list[str]:
        """Nicks the client asked for."""
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("NICK ")]

    def privmsgs(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until count PRIVMSG lines arrived and return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if line.startswith("PRIVMSG ")]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return [line for line in self.lines if line.startswith("PRIVMSG ")]

    def close(self) -> None:
        """Stop listening and drop the connections (shutdown wakes the threads blocked in accept and recv)."""
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@pytest.fixture
def irc() -> Iterator[Callable[..., FakeIRC]]:
    """Start fake IRC servers, closed at the end of the test."""
    servers: list[FakeIRC] = []

    def start(**kwargs: bool) -> FakeIRC:
        servers.append(FakeIRC(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _sal_config(port: int) -> dict[str, object]:
    return {"irc_host": "127.0.0.1", "irc_port": port, "channel": "#sre-sal", "nick": "cookbook-sal", "tls": False}


def test_sal_registers_joins_answers_ping_and_sends(irc: Callable[..., FakeIRC]) -> None:
    server = irc()
    sal = SAL("127.0.0.1", server.port, "#sre-sal", "cookbook-sal", prefix="alice@cumin1")
    sal.send("START - Cookbook sre.x")
    sal.send("END (PASS) - Cookbook sre.x (exit_code=0)")
    sal.close()
    assert server.privmsgs(2) == ["PRIVMSG #sre-sal :alice@cumin1 START - Cookbook sre.x",
                                  "PRIVMSG #sre-sal :alice@cumin1 END (PASS) - Cookbook sre.x (exit_code=0)"]
    assert server.lines[:2] == ["NICK cookbook-sal", "USER cookbook-sal 0 * :cookbook server admin log"]
    assert "PONG :check" in server.lines
    assert server.lines.index("JOIN #sre-sal") < server.lines.index("PRIVMSG #sre-sal :alice@cumin1 START - Cookbook "
                                                                     "sre.x")


def test_sal_picks_another_nick_when_taken(irc: Callable[..., FakeIRC]) -> None:
    server = irc(nick_taken=True)
    sal = SAL("127.0.0.1", server.port, "#sre-sal", "cookbook-sal")
    sal.send("hello")
    sal.close()
    assert server.privmsgs(1) == ["PRIVMSG #sre-sal :hello"]
    first, second = server.nicks()
    assert first == "cookbook-sal" and second.startswith("cookbook-sal-")


def test_sal_masks_secrets(irc: Callable[..., FakeIRC]) -> None:
    redact.register("sal-secret-value")
    server = irc()
    sal = SAL("127.0.0.1", server.port, "#sre-sal", "cookbook-sal")
    sal.send("password is sal-secret-value")
    sal.close()
    assert server.privmsgs(1) == ["PRIVMSG #sre-sal :password is *****"]


def test_real_run_announces_start_and_end_with_the_user(cookbook: Callable[..., int], env: Env,
                                                        irc: Callable[..., FakeIRC],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server = irc()
    env.write(sal=_sal_config(server.port))
    monkeypatch.setenv("SUDO_USER", "alice")
    assert cookbook("demo.hello", "world", "--exit-code", "3") == 3
    host = socket.gethostname()
    assert server.privmsgs(2) == [
        f"PRIVMSG #sre-sal :alice@{host} START - Cookbook demo.hello for world",
        f"PRIVMSG #sre-sal :alice@{host} END (FAIL) - Cookbook demo.hello (exit_code=3) for world",
    ]


def test_dry_run_announces_nothing(cookbook: Callable[..., int], env: Env, irc: Callable[..., FakeIRC]) -> None:
    server = irc()
    env.write(sal=_sal_config(server.port))
    assert cookbook("-d", "demo.hello", "world") == 0
    time.sleep(0.3)
    assert server.connections == []


@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_an_irc_outage_does_not_fail_or_slow_a_run(cookbook: Callable[..., int], env: Env,
                                                   irc: Callable[..., FakeIRC], outage: str) -> None:
    if outage == "refused":
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
    else:
        port = irc(silent=True).port
    env.write(sal=_sal_config(port))
    assert cookbook("top") == 0  # warm the imports so that the timing below measures the run
    started = time.monotonic()
    assert cookbook("top") == 0
    elapsed = time.monotonic() - started
    assert elapsed < CLOSE_TIMEOUT + 2.0, f"a run with SAL {outage} took {elapsed:.2f}s"
    assert env.log("top").rstrip().endswith("END (PASS) - Cookbook top (exit_code=0)")


def test_sal_speaks_tls_unless_plain_is_asked_for(tmp_path: Path) -> None:
    section = {"irc_host": "irc.example.org", "channel": "#sre-sal"}
    sal = SAL.from_config(Section({"sal": section}, "", "config.yaml"), prefix="")
    assert sal is not None and sal.tls is not None and sal.port == 6697 and sal.tls.check_hostname
    plain = SAL.from_config(Section({"sal": {**section, "tls": False}}, "", "config.yaml"), prefix="")
    assert plain is not None and plain.tls is None and plain.port == 6667
    with pytest.raises(ConfigError, match=f"key 'sal.ca_file': cannot load {tmp_path}/none.crt"):
        SAL.from_config(Section({"sal": {**section, "ca_file": f"{tmp_path}/none.crt"}}, "", "config.yaml"), prefix="")


def test_sal_over_tls_sends_nothing_to_a_server_it_cannot_verify(irc: Callable[..., FakeIRC]) -> None:
    server = irc()  # speaks plain IRC: the TLS handshake fails, nothing is sent in clear
    sal = SAL("127.0.0.1", server.port, "#sre-sal", "cookbook-sal", tls=ssl.create_default_context())
    sal.send("hello")
    sal.close()
    time.sleep(0.2)
    assert not any(line.startswith(("NICK", "PRIVMSG")) for line in server.lines)
