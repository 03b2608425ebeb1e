"""A throwaway IRC client that says something in a channel and waits for answers: the bot's health check.

``cookbook-chatops probe`` uses it to check that the bot answers (for monitoring); the lab tests
and the benchmark use it as the chat user.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import irc.client
from jaraco.stream import buffer

from libcluster.chatops.irc_bot import connect_factory


@dataclass(frozen=True)
class Message:
    """A PRIVMSG seen in a channel, with when it arrived (time.monotonic())."""

    at: float
    nick: str
    channel: str
    text: str


class IrcProbe:
    """One IRC connection driven synchronously: every wait processes events until a deadline."""

    def __init__(self, host: str, port: int, nick: str, *, timeout: float = 10.0, username: str = "",
                 password: str = "", tls: ssl.SSLContext | None = None) -> None:
        """Connect and register as nick (user name username, default the nick; PASS password when given).

        tls: verify the server with this context (None: plain IRC). Raises TimeoutError without a
        welcome, irc.client.ServerConnectionError when the connection or the TLS handshake fails.
        """
        self.timeout = timeout
        self.messages: list[Message] = []
        self.nick = nick
        self.reactor = irc.client.Reactor()
        self.reactor.add_global_handler("pubmsg", self._on_pubmsg)
        self.reactor.add_global_handler("welcome", self._on_event)
        self.reactor.add_global_handler("join", self._on_event)
        self._events: list[tuple[str, str, str]] = []
        self.connection = self.reactor.server()
        self.connection.buffer_class = buffer.LenientDecodingLineBuffer
        self.connection.connect(host, port, nick, password or None, username=username or nick,
                                ircname="cookbook chatops probe", connect_factory=connect_factory(host, tls))
        self._wait(lambda: any(kind == "welcome" for kind, _, _ in self._events), "the server's welcome")

    def _on_pubmsg(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        nick = irc.client.NickMask(event.source).nick
        self.messages.append(Message(time.monotonic(), nick, event.target, event.arguments[0]))

    def _on_event(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        self._events.append((event.type, irc.client.NickMask(event.source or "").nick, event.target or ""))

    def _wait(self, done: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.nick}: no {what} within {timeout or self.timeout:.1f}s")
            self.reactor.process_once(timeout=0.02)

    def join(self, channel: str) -> None:
        """Join channel and wait until the server confirms."""
        self.connection.join(channel)
        self._wait(lambda: ("join", self.nick, channel) in self._events, f"join of {channel}")

    def say(self, channel: str, text: str) -> int:
        """PRIVMSG text to channel; return the mark to pass to expect() for what follows."""
        mark = len(self.messages)
        self.connection.privmsg(channel, text)
        return mark

    def expect(self, pattern: str, *, after: int = 0, nick: str | None = None, timeout: float | None = None) -> Message:
        """The first message from index after on (from nick, if given) whose text matches pattern (re.search)."""
        regex = re.compile(pattern)

        def found() -> Message | None:
            return next((message for message in self.messages[after:]
                         if regex.search(message.text) and (nick is None or message.nick == nick)), None)

        self._wait(lambda: found() is not None, f"message matching {pattern!r}", timeout)
        return found()  # type: ignore[return-value]

    def drain(self, quiet: float = 0.2) -> None:
        """Process what arrives until nothing has for quiet seconds (messages other clients caused)."""
        count, until = len(self.messages), time.monotonic() + quiet
        while time.monotonic() < until:
            self.reactor.process_once(timeout=0.02)
            if len(self.messages) != count:
                count, until = len(self.messages), time.monotonic() + quiet

    def close(self) -> None:
        """Quit."""
        self.connection.disconnect("probe done")
