"""The IRC front door: a bot (PyPI ``irc``) in the configured channels, translating chat lines to core commands.

``!cookbook ...``, ``!approve ID``, ``!deny ID`` and ``!help`` in a configured channel become
:meth:`Chatops.handle` calls (in a worker thread, so the IRC connection never waits for a command);
replies address the sender by nick. Who sent a line is its ``nick!user@host`` and, when the server
acknowledged the IRCv3 account-tag capability (requested after registration), the services account.
The bot connects over TLS and verifies the server's certificate unless ``tls: false`` says otherwise.
Everything it says goes through one token bucket (flood_burst lines, then one every flood_interval
seconds), so replies and run output together stay under the server's flood limit; long replies are
cut to a few lines with a count of the rest. The bot reconnects by itself; while it is away, run
output is dropped (the log file keeps it).
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import irc.bot
import irc.client
import irc.connection
from jaraco.stream import buffer

from libcluster.chatops.core import Chatops
from libcluster.chatops.feed import Pace
from libcluster.chatops.flood import TokenBucket
from libcluster.chatops.permissions import Identity
from libcluster.chatops.runs import Door
from libcluster.chatops.settings import IrcSettings

logger = logging.getLogger(__name__)

DOOR = Door(cookbook="!cookbook", approve="!approve", deny="!deny", help="!help", max_lines=6)
"""Command syntax on IRC, and lines per list or log reply (a line then says how many more there are)."""
MAX_REPLY = DOOR.max_lines + 2
"""Lines of any one reply; the rest are counted in a last line."""
SHORTCUTS = {"!approve": "approve", "!deny": "deny", "!help": "help"}
"""Top-level IRC commands and the core command each one is."""
MAX_BYTES = 400
"""Bytes of text per PRIVMSG: the server adds our prefix and the line must stay under 512 bytes."""
REJOIN_AFTER = 10
"""Seconds before joining a channel again after a kick."""
CUT_MARK = "[CUT]"
"""What ngircd puts at the end of a line it truncated to 512 bytes: such a command is refused, not run cut."""


def command_of(text: str) -> str | None:
    """The core command in a channel line (``!cookbook -d x`` -> ``-d x``), None if the line is not for the bot."""
    first, _, rest = text.strip().partition(" ")
    if first == DOOR.cookbook:
        return rest.strip()
    if first in SHORTCUTS:
        return f"{SHORTCUTS[first]} {rest.strip()}".strip()
    return None


def chunks(text: str, limit: int = MAX_BYTES) -> list[str]:
    """Text cut into pieces of at most limit UTF-8 bytes, never inside a character; no CR, LF or NUL."""
    text = text.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    pieces: list[str] = []
    data = text.encode("utf-8")
    while data:
        piece = data[:limit].decode("utf-8", errors="ignore")
        pieces.append(piece)
        data = data[len(piece.encode("utf-8")):]
    return pieces or [""]


def connect_factory(host: str, tls: ssl.SSLContext | None) -> irc.connection.Factory:
    """Plain sockets when tls is None, else sockets wrapped by the context (certificate and host name verified)."""
    if tls is None:
        return irc.connection.Factory()
    return irc.connection.Factory(wrapper=functools.partial(tls.wrap_socket, server_hostname=host))


def shorten(lines: list[str], limit: int = MAX_REPLY) -> list[str]:
    """At most limit lines: the first limit - 1 and a count of the others."""
    if len(lines) <= limit:
        return lines
    return [*lines[:limit - 1], f"... {len(lines) - limit + 1} more lines not shown (IRC flood limit)"]


class IrcSink:
    """A channel as a feed destination: each line one PRIVMSG, a run's lines paced like the bot's token bucket."""

    def __init__(self, bot: ChatopsBot, channel: str) -> None:
        """Send to channel through bot."""
        self.bot = bot
        self.channel = channel
        burst, interval = bot.settings.flood_burst, bot.settings.flood_interval
        self.pace = Pace(interval=burst * interval, max_lines=burst)

    def send(self, lines: list[str]) -> None:
        """PRIVMSG every line to the channel."""
        for line in lines:
            self.bot.say(self.channel, line)


class ChatopsBot(irc.bot.SingleServerIRCBot):
    """Joins the configured channels and answers commands there through the core."""

    def __init__(self, core: Chatops, settings: IrcSettings) -> None:
        """Connect to settings.host:port as settings.nick once serve() runs."""
        server = irc.bot.ServerSpec(settings.host, settings.port, settings.password or None)
        super().__init__([server], settings.nick, "cookbook chatops",
                         recon=irc.bot.ExponentialBackoff(min_interval=5, max_interval=60),
                         connect_factory=self._open)
        self._factory = connect_factory(settings.host, settings.tls)
        self.connection.buffer_class = buffer.LenientDecodingLineBuffer
        self.core = core
        self.settings = settings
        self.bucket = TokenBucket(settings.flood_burst, settings.flood_interval)
        self.account_tags = False
        """Whether the server acknowledged account-tag: only then is an account tag the server's word."""
        self.joined = threading.Event()
        """Set once every configured channel is joined (tests and the bench wait for it)."""
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chatops-irc")
        self._stop = threading.Event()

    def _open(self, address: tuple[str, int]) -> Any:
        """A connected socket to address; why it failed (refused, certificate not verified...) goes to the log."""
        try:
            return self._factory(address)
        except OSError as exc:
            logger.warning("Cannot connect to IRC %s:%s: %s", address[0], address[1], exc)
            raise

    def serve(self) -> None:
        """Connect and process IRC events until stop() is called."""
        self._connect()
        while not self._stop.is_set():
            self.reactor.process_once(timeout=0.2)
        self.connection.disconnect("cookbook chatops stopping")
        self._workers.shutdown(wait=False)

    def stop(self) -> None:
        """End serve() (from another thread)."""
        self._stop.set()

    def say(self, target: str, text: str) -> None:
        """PRIVMSG text to target in pieces that fit an IRC line, each when the bucket allows; dropped while away.

        Blocks while the bucket is empty: never call it from the reactor's thread.
        """
        for piece in chunks(text):
            self.bucket.take()
            with self.reactor.mutex:
                try:
                    self.connection.privmsg(target, piece)
                except irc.client.ServerNotConnectedError:
                    logger.debug("Not connected to IRC, message to %s dropped", target)
                    return

    def on_welcome(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Ask for account tags and join the channels."""
        logger.info("Connected to IRC %s:%s as %s", self.settings.host, self.settings.port,
                    connection.get_nickname())
        self.account_tags = False
        connection.cap("REQ", "account-tag")
        for channel in self.settings.channels:
            connection.join(channel)

    def on_cap(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Note whether the server acknowledged account-tag (CAP * ACK :account-tag)."""
        if "ACK" in event.arguments and "account-tag" in str(event.arguments[-1]).split():
            self.account_tags = True

    def on_join(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Note when every configured channel is joined."""
        ours = irc.client.NickMask(event.source).nick == connection.get_nickname()
        if ours and all(channel in self.channels for channel in self.settings.channels):
            self.joined.set()

    def on_disconnect(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Forget the joined state (the base class reconnects)."""
        self.joined.clear()
        logger.warning("Disconnected from IRC %s:%s; reconnecting", self.settings.host, self.settings.port)

    def on_nicknameinuse(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Take another nick when ours is taken."""
        connection.nick(connection.get_nickname() + "_")

    def on_kick(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Join again a little after being kicked."""
        if event.arguments and event.arguments[0] == connection.get_nickname():
            self.reactor.scheduler.execute_after(REJOIN_AFTER, lambda: connection.join(event.target))

    def on_pubmsg(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        """Hand a command in a configured channel to a worker thread."""
        channel = event.target
        if channel.casefold() not in (name.casefold() for name in self.settings.channels):
            return
        command = command_of(event.arguments[0])
        if command is None:
            return
        source = irc.client.NickMask(event.source)
        if event.arguments[0].endswith(CUT_MARK):
            self._workers.submit(self.say, channel, f"{source.nick}: refused: the server truncated your line (IRC "
                                 "lines are at most 512 bytes); shorten the command")
            return
        tags = event.tags or []
        account = next((tag["value"] for tag in tags if tag["key"] == "account" and tag["value"]), "")
        identity = Identity("irc", str(source), account=account if self.account_tags else "", display=source.nick,
                            casemapping=str(getattr(connection.features, "casemapping", "rfc1459")))
        self._workers.submit(self._answer, command, identity, channel)

    def _answer(self, command: str, identity: Identity, channel: str) -> None:
        try:
            reply = self.core.handle(command, identity, f"irc:{channel}", DOOR, IrcSink(self, channel))
        except Exception:  # the bot keeps serving; the traceback goes to the log
            logger.exception("Command %r from %s failed", command, identity)
            self.say(channel, f"{identity.display}: internal error, see the service's log")
            return
        for line in shorten(reply.lines):
            self.say(channel, f"{identity.display}: {line}")

    def _on_disconnect(self, connection: Any, event: Any) -> None:
        """The base class reconnects; it does not while stopping."""
        if not self._stop.is_set():
            super()._on_disconnect(connection, event)
