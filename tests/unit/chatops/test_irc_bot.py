"""The IRC front door without a server: which lines are commands, line splitting, and who a sender is."""

from __future__ import annotations

import threading
import time

import irc.client
import pytest

from libcluster.chatops.irc_bot import MAX_REPLY, ChatopsBot, chunks, command_of, shorten
from libcluster.chatops.settings import IrcSettings, Person
from tests.unit.chatops.conftest import Chat


@pytest.mark.parametrize(("text", "command"), [
    ("!cookbook list sre", "list sre"),
    ("  !cookbook   -d sre.x a b ", "-d sre.x a b"),
    ("!cookbook", ""),
    ("!approve abc123", "approve abc123"),
    ("!deny abc123", "deny abc123"),
    ("!help", "help"),
    ("!cookbooks list", None),
    ("hello !cookbook list", None),
    ("!approveabc", None),
])
def test_command_of(text: str, command: str | None) -> None:
    assert command_of(text) == command


def test_chunks_fit_an_irc_line_and_never_cut_a_character() -> None:
    text = "é" * 300 + "\r\nx\x00"
    pieces = chunks(text, limit=101)
    assert all(len(piece.encode()) <= 101 for piece in pieces)
    assert "".join(pieces) == "é" * 300 + "  x "
    assert chunks("") == [""]


class RecordingBot(ChatopsBot):
    """A bot that records what it would say instead of sending it."""

    def __init__(self, chat: Chat) -> None:
        """Bot on the chat core, channel #test."""
        super().__init__(chat.core, IrcSettings("127.0.0.1", 1, "bot", ("#test",)))
        self.said: list[tuple[str, str]] = []
        self.said_something = threading.Event()

    def say(self, target: str, text: str) -> None:
        """Record."""
        self.said.append((target, text))
        self.said_something.set()


def event(text: str, target: str = "#test", source: str = "alice!alice@test.example",
          tags: list[dict[str, str]] | None = None) -> irc.client.Event:
    """A pubmsg event."""
    return irc.client.Event("pubmsg", irc.client.NickMask(source), target, [text], tags)


def test_commands_in_configured_channels_are_answered_by_nick(chat: Chat) -> None:
    bot = RecordingBot(chat)
    bot.on_pubmsg(bot.connection, event("!cookbook list chatops.echo"))
    assert bot.said_something.wait(10)
    assert bot.said == [("#test", "alice: chatops.echo [run]: Record the arguments exactly as they arrived.")]


def test_other_channels_and_ordinary_lines_are_ignored(chat: Chat) -> None:
    bot = RecordingBot(chat)
    bot.on_pubmsg(bot.connection, event("!cookbook list", target="#elsewhere"))
    bot.on_pubmsg(bot.connection, event("cookbook list"))
    assert not bot.said_something.wait(0.3)


def test_a_line_truncated_by_the_server_is_refused(chat: Chat) -> None:
    bot = RecordingBot(chat)
    bot.on_pubmsg(bot.connection, event("!cookbook demo.hello --exit-code 10[CUT]"))
    assert bot.said_something.wait(10)
    assert bot.said == [("#test", "alice: refused: the server truncated your line (IRC lines are at most 512 bytes); "
                                  "shorten the command")]
    assert chat.core.runs == {}


def said_after(bot: RecordingBot, count: int) -> list[str]:
    """What bot said, once it said count things (or 10 s passed)."""
    deadline = time.monotonic() + 10
    while len(bot.said) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [text for _, text in bot.said]


def test_services_account_tag_identifies_the_sender_once_the_server_acknowledged_it(chat: Chat) -> None:
    alice = next(person for person in chat.core.policy.people if person.name == "alice")
    chat.core.policy.people = (*chat.core.policy.people, Person("dave", ("irc-account:dave",), alice.roles))
    bot = RecordingBot(chat)
    tagged = event("!cookbook log abc123", source="d!d@anywhere", tags=[{"key": "account", "value": "dave"}])
    bot.on_pubmsg(bot.connection, tagged)  # no CAP ACK: a tag the server never promised is anyone's word
    unknown = "d: refused: irc:d!d@anywhere is not a known user (chatops.people): ask an admin to add you"
    assert said_after(bot, 1) == [unknown]
    bot.on_cap(bot.connection, irc.client.Event("cap", "irc.test", "*", ["ACK", "account-tag"]))
    bot.on_pubmsg(bot.connection, event("!cookbook log abc123", source="d!d@anywhere"))
    bot.on_pubmsg(bot.connection, tagged)
    assert sorted(said_after(bot, 3)[1:]) == [
        "d: no run abc123 you may see (`!cookbook status` lists the active ones)", unknown]


def test_long_replies_are_cut_with_a_count() -> None:
    lines = [f"line {number}" for number in range(20)]
    assert shorten(lines[:MAX_REPLY]) == lines[:MAX_REPLY]
    assert shorten(lines) == [*lines[:MAX_REPLY - 1], f"... {20 - MAX_REPLY + 1} more lines not shown (IRC flood "
                                                       "limit)"]


def test_the_bot_says_through_its_token_bucket(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = ChatopsBot(chat.core, IrcSettings("127.0.0.1", 1, "bot", ("#test",), flood_burst=2, flood_interval=0.2))
    sent: list[float] = []
    monkeypatch.setattr(bot.connection, "privmsg", lambda target, text: sent.append(time.monotonic()))
    started = time.monotonic()
    for number in range(5):
        bot.say("#test", f"line {number}")
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:])]
    assert len(sent) == 5 and sent[1] - started < 0.1, "the burst goes out at once"
    assert all(gap >= 0.18 for gap in gaps[1:]), gaps
