"""Server admin log: announce real runs (START/END lines, notifications) on an IRC channel, best effort.

A tiny IRC client (NICK/USER/JOIN/PRIVMSG/QUIT) runs in a daemon thread fed by a bounded queue:
sending never blocks, a full queue drops the message, and closing waits at most a fraction of a
second, so an IRC outage can neither fail nor noticeably slow a run. It speaks TLS and verifies the
server's certificate (against ``sal.ca_file`` or the system CAs); plain IRC only with ``tls: false``.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
import uuid
from typing import TYPE_CHECKING

from libcluster import redact
from libcluster.errors import ConfigError

if TYPE_CHECKING:
    from libcluster.config import Section

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
"""Seconds to open the TCP connection."""
REGISTER_TIMEOUT = 10.0
"""Seconds to wait for the server's welcome after NICK/USER."""
CLOSE_TIMEOUT = 0.5
"""Most seconds a run waits at its end for pending messages to go out."""
IDLE_POLL = 1.0
"""Seconds between checks for server PINGs while no message is pending."""
RECONNECT_AFTER = 30.0
"""Seconds to wait after a failed connection before trying again (messages meanwhile are dropped)."""
QUEUE_SIZE = 100
"""Messages kept while the connection is being set up; more are dropped."""
MAX_TEXT = 400
"""Characters of one message; IRC lines are at most 512 bytes."""

TLS_PORT = 6697
PLAIN_PORT = 6667
"""Default ports of IRC over TLS and of plain IRC."""

_STOP = object()


def tls_context(section: Section) -> ssl.SSLContext | None:
    """The TLS context of an IRC client section: key ``tls`` (default true) and ``ca_file`` (default: system CAs).

    None means plain IRC, which only an explicit ``tls: false`` asks for. The context verifies the
    server's certificate and host name; a CA file that cannot be read is a ConfigError naming the key.
    """
    if not section.bool("tls", True):
        return None
    ca_file = section.str("ca_file", "")
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{section.source}: key '{section.where}.ca_file': cannot load {ca_file}: {reason}") from None


class SAL:
    """One IRC connection per invocation, opened on the first message, in the background."""

    def __init__(self, host: str, port: int, channel: str, nick: str, *, prefix: str = "",
                 tls: ssl.SSLContext | None = None) -> None:
        """Announce in channel on host:port as nick; prefix (e.g. ``user@host``) starts every message.

        tls: the context to connect with (see tls_context); None connects in plain text.
        """
        self.tls = tls
        self.host = host
        self.port = port
        self.channel = channel
        self.nick = nick
        self.prefix = prefix
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_connect = 0.0
        self._abandoned = threading.Event()

    @classmethod
    def from_config(cls, config: Section, *, prefix: str) -> SAL | None:
        """The SAL of the ``sal`` section, or None when the section is absent (SAL disabled)."""
        if not config.has("sal"):
            return None
        section = config.section("sal")
        tls = tls_context(section)
        return cls(section.str("irc_host"), section.int("irc_port", TLS_PORT if tls else PLAIN_PORT),
                   section.str("channel"), section.str("nick", "cookbook-sal"), prefix=prefix, tls=tls)

    def send(self, text: str) -> None:
        """Queue one message (secrets masked); never blocks, drops it if the queue is full."""
        message = redact.redact(f"{self.prefix} {text}".strip() if self.prefix else text)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sal-irc", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(message[:MAX_TEXT])
        except queue.Full:
            logger.debug("SAL queue full, message dropped: %s", message)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Let pending messages go out for at most timeout seconds, then leave (the thread is a daemon)."""
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            logger.debug("SAL queue full at close")
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck on a slow server: wake it up so that it ends now
            self._abandoned.set()
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    logger.debug("SAL: socket already closed")

    def _work(self) -> None:
        while True:
            try:
                message = self._queue.get(timeout=IDLE_POLL)
            except queue.Empty:
                self._answer_pings()
                continue
            if message is _STOP:
                break
            self._deliver(str(message))
        if self._sock is not None:
            self._quit()

    def _quit(self) -> None:
        """Say QUIT and read until the server closes (it does after a QUIT).

        Closing with unread input would reset the connection and could lose the last messages.
        """
        assert self._sock is not None
        try:
            self._line("QUIT :done")
            self._sock.settimeout(CLOSE_TIMEOUT)
            while self._sock.recv(4096):
                pass
        except OSError as exc:
            logger.debug("SAL: error while quitting: %s", exc)
        self._drop()

    def _deliver(self, message: str) -> None:
        for _ in range(2):  # a connection lost while idle gets one reconnection
            if self._sock is None and (time.monotonic() < self._next_connect or self._abandoned.is_set()):
                break
            try:
                if self._sock is None:
                    self._connect()
                else:
                    self._sock.settimeout(CONNECT_TIMEOUT)
                self._line(f"PRIVMSG {self.channel} :{message}")
                return
            except ssl.SSLCertVerificationError as exc:
                logger.warning("SAL: the certificate of IRC server %s:%s does not verify: %s", self.host, self.port,
                               exc.verify_message)
                self._drop()
                self._next_connect = time.monotonic() + RECONNECT_AFTER
                break
            except OSError as exc:
                logger.debug("SAL: no connection to %s:%s: %s", self.host, self.port, exc)
                self._drop()
                self._next_connect = time.monotonic() + RECONNECT_AFTER
        logger.debug("SAL unavailable, not announced: %s", message)

    def _answer_pings(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.settimeout(0)
            while True:
                parts = self._read_line().split(" ")
                if parts[0] == "PING":
                    self._line("PONG " + " ".join(parts[1:]))
        except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            logger.debug("SAL: connection lost while idle: %s", exc)
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def _connect(self) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        if self.tls is not None:
            self._sock = self.tls.wrap_socket(self._sock, server_hostname=self.host)
        if self._abandoned.is_set():
            raise OSError("closed while connecting")
        nick = self.nick
        self._line(f"NICK {nick}")
        self._line(f"USER {self.nick} 0 * :cookbook server admin log")
        deadline = time.monotonic() + REGISTER_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(f"no welcome from the IRC server in {REGISTER_TIMEOUT:.0f}s")
            self._sock.settimeout(remaining)
            parts = self._read_line().split(" ")
            if parts[0] == "PING":
                self._line("PONG " + " ".join(parts[1:]))
            elif parts[0] == "001":
                break
            elif parts[0] in ("432", "433", "436"):
                nick = f"{self.nick[:20]}-{uuid.uuid4().hex[:4]}"
                self._line(f"NICK {nick}")
            elif parts[0] == "ERROR":
                raise OSError(" ".join(parts))
        self._sock.settimeout(CONNECT_TIMEOUT)
        self._line(f"JOIN {self.channel}")
        logger.debug("SAL: joined %s on %s:%s as %s", self.channel, self.host, self.port, nick)

    def _read_line(self) -> str:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            data = self._sock.recv(4096)
            if not data:
                raise OSError("the IRC server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        return text[text.index(" ") + 1:] if text.startswith(":") and " " in text else text

    def _line(self, text: str) -> None:
        assert self._sock is not None
        self._sock.sendall(text.replace("\r", " ").replace("\n", " ").encode("utf-8") + b"\r\n")
