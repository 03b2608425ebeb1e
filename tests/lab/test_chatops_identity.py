"""Who the chatops bot believes, on the lab's ngircd: TLS, PAM logins, IRC masks, status/log, pacing, timeouts.

The bot and the users speak TLS to the lab's ngircd, verified by the lab CA; approvers are known
by their PAM login (the user part without ``~``), so a nick alone approves nothing. Every nick,
login and channel carries a random tag so that parallel runs on the shared lab do not meet.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster.chatops.probe import IrcProbe
from tests.lab.chatops_lab import REPO, client, irc_part, irc_section, pam_logins, running_bot, write_config

TAG = secrets.token_hex(3)
CHANNEL = f"#chatid-{TAG}"
BOT = f"idbot-{TAG}"
WAIT = 30.0
SERVICE = REPO / ".venv" / "bin" / "cookbook-chatops"


def section(tmp: Path, irc: dict[str, Any], **irc_extra: Any) -> dict[str, Any]:
    """bob approves by PAM login; alice runs by PAM login; "[ops]TAG" may dry-run by a mask with brackets."""
    return {
        "state_dir": str(tmp / "chatops"),
        "need_approval": ["chatops.slow"],
        "roles": {"sre": {"run": ["chatops.*", "demo.*"], "approve": ["chatops.*"]},
                  "viewer": {"dry_run": ["demo.*"]}},
        "people": {"alice": {"identities": [f"irc:*!al{TAG}@*"], "roles": ["sre"]},
                   "bob": {"identities": [f"irc:*!bo{TAG}@*"], "roles": ["sre"]},
                   "ops": {"identities": [f"irc:[ops]{TAG}!*@*"], "roles": ["viewer"]}},
        "irc": irc_section(irc, BOT, CHANNEL, **({"flood_burst": 20, "flood_interval": 0.05} | irc_extra)),
    }


def bot_says(user: IrcProbe, pattern: str, after: int) -> str:
    """The text of the bot's first message matching pattern since mark after."""
    return user.expect(pattern, after=after, nick=BOT, timeout=WAIT).text


@pytest.fixture(scope="module")
def chat(lab: dict[str, Any], lab_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The bot on the lab's ngircd and users: alice and bob logged in with PAM, the rest not."""
    irc = irc_part(lab)
    tmp = tmp_path_factory.mktemp("chatops-identity")
    path = write_config(lab_config, tmp, section(tmp, irc))
    users: dict[str, IrcProbe] = {}
    with pam_logins([f"al{TAG}", f"bo{TAG}"]) as passwords, running_bot(path) as (core, bot):
        try:
            assert bot.joined.wait(WAIT), "the bot did not join over TLS"
            users["alice"] = client(irc, f"alice{TAG}", CHANNEL, username=f"al{TAG}", password=passwords[f"al{TAG}"])
            users["bob"] = client(irc, f"bob{TAG}", CHANNEL, username=f"bo{TAG}", password=passwords[f"bo{TAG}"])
            users["impostor"] = client(irc, f"bobby{TAG}", CHANNEL, username=f"bo{TAG}")  # no PASS: ~bo...
            users["ops"] = client(irc, f"[ops]{TAG}", CHANNEL, username=f"ops{TAG}")
            users["o"] = client(irc, f"o{TAG}", CHANNEL)  # what fnmatch's class [ops] would let in
            users["mallory"] = client(irc, f"mallory{TAG}", CHANNEL)
            yield {"core": core, "bot": bot, "users": users, "irc": irc, "tmp": tmp, "lab_config": lab_config}
        finally:
            for user in users.values():
                user.close()


def test_the_bot_and_users_speak_tls_verified_by_the_lab_ca_and_pam_users_show_without_tilde(
        chat: dict[str, Any]) -> None:
    alice, impostor = chat["users"]["alice"], chat["users"]["impostor"]
    mark = len(alice.messages)
    impostor.say(CHANNEL, "!cookbook status")
    assert bot_says(alice, rf"^bobby{TAG}: ", mark) == (
        f"bobby{TAG}: refused: irc:bobby{TAG}!~bo{TAG}@127.0.0.1 is not a known user (chatops.people): ask an admin "
        "to add you")
    mark = len(alice.messages)
    alice.say(CHANNEL, "!cookbook status")
    assert bot_says(alice, rf"^alice{TAG}: ", mark) == f"alice{TAG}: no active runs you may see"


def test_a_pam_user_approves_and_a_nick_or_unauthenticated_user_part_cannot(chat: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    alice, bob, impostor = (chat["users"][name] for name in ("alice", "bob", "impostor"))
    mark = len(alice.messages)
    alice.say(CHANNEL, f"!cookbook chatops.slow --state {tmp_path} --steps 1")
    run_id = re.search(r"\[([0-9a-f]{6})\] accepted", bot_says(alice, rf"^alice{TAG}: \[", mark)).group(1)  # type: ignore[union-attr]
    bot_says(alice, rf"^\[{run_id}\] chatops.slow needs an approval", mark)
    impostor.say(CHANNEL, f"!approve {run_id}")  # same user name as bob, not logged in: ~bo...
    assert "is not a known user" in bot_says(alice, rf"^bobby{TAG}: ", mark)
    assert chat["core"].runs[run_id].state == "awaiting-approval" and not (tmp_path / "change").exists()
    bob.say(CHANNEL, f"!approve {run_id}")
    bot_says(alice, rf"^bob{TAG}: \[{run_id}\] approved", mark)
    bot_says(alice, rf"^\[{run_id}\] PASS: chatops.slow .* requested by alice, approved by bob", mark)
    assert (tmp_path / "change").exists()


def test_brackets_in_a_mask_are_literal(chat: dict[str, Any]) -> None:
    alice, ops, o = (chat["users"][name] for name in ("alice", "ops", "o"))
    mark = len(alice.messages)
    o.say(CHANNEL, "!cookbook -d demo.hello world")
    assert bot_says(alice, rf"^o{TAG}: ", mark).startswith(f"o{TAG}: refused: irc:o{TAG}!~o{TAG}@127.0.0.1 is not a "
                                                           "known user")
    ops.say(CHANNEL, "!cookbook -d demo.hello world")
    assert re.match(rf"^\[ops\]{TAG}: \[[0-9a-f]{{6}}\] accepted \(dry-run\): -d demo.hello world, requested by ops",
                    bot_says(alice, rf"^\[ops\]{TAG}: ", mark))


def test_status_and_log_are_refused_to_unknown_identities(chat: dict[str, Any], tmp_path: Path) -> None:
    alice, mallory = chat["users"]["alice"], chat["users"]["mallory"]
    mark = len(alice.messages)
    alice.say(CHANNEL, "!cookbook demo.hello world")
    run_id = re.search(r"\[([0-9a-f]{6})\] accepted", bot_says(alice, rf"^alice{TAG}: \[", mark)).group(1)  # type: ignore[union-attr]
    bot_says(alice, rf"^\[{run_id}\] PASS", mark)
    for command in ("!cookbook status", f"!cookbook status {run_id}", f"!cookbook log {run_id}"):
        mark = len(alice.messages)
        mallory.say(CHANNEL, command)
        assert bot_says(alice, rf"^mallory{TAG}: ", mark).startswith(
            f"mallory{TAG}: refused: irc:mallory{TAG}!~mallory{TAG}@127.0.0.1 is not a known user"), command


def test_a_weak_mask_for_an_approver_stops_the_service_at_start(chat: dict[str, Any], tmp_path: Path) -> None:
    weak = section(tmp_path, chat["irc"])
    weak["people"]["bob"]["identities"] = [f"irc:bob{TAG}!*@*"]  # a nick mask: anyone can take the nick
    path = write_config(chat["lab_config"], tmp_path, weak)
    for command in ("check", "serve"):
        done = subprocess.run([str(SERVICE), "-c", str(path), command], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 1, (command, done.stderr)
        assert (f"key 'chatops.people.bob.identities': 'irc:bob{TAG}!*@*' is too weak for bob, who has the approve "
                "right: its user part '*' is not one PAM login") in done.stderr


def test_a_server_whose_certificate_does_not_verify_is_refused(chat: dict[str, Any], tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "ca.key"),
                    "-out", str(other_ca), "-days", "1", "-subj", "/CN=not the lab CA"], check=True,
                   capture_output=True)
    config = section(tmp_path, chat["irc"])
    config["irc"].update(ca_file=str(other_ca), nick=f"badca-{TAG}")
    caplog.set_level(logging.WARNING, logger="libcluster.chatops.irc_bot")
    with running_bot(write_config(chat["lab_config"], tmp_path, config)) as (_, bot):
        assert not bot.joined.wait(3), "the bot joined a server it could not verify"
    assert "certificate verify failed" in caplog.text
    alice = chat["users"]["alice"]
    alice.connection.names([CHANNEL])
    alice.drain(quiet=0.3)
    assert not any(message.nick == f"badca-{TAG}" for message in alice.messages)


def test_replies_are_paced_by_the_token_bucket(chat: dict[str, Any], tmp_path: Path) -> None:
    irc = chat["irc"]
    channel = f"#chatflood-{TAG}"
    config = section(tmp_path, irc, flood_burst=3, flood_interval=0.5)
    config["irc"].update(nick=f"flood-{TAG}", channels=[channel])
    with running_bot(write_config(chat["lab_config"], tmp_path, config)) as (_, bot):
        assert bot.joined.wait(WAIT)
        user = client(irc, f"fl{TAG}", channel)
        try:
            user.say(channel, "!help")  # six lines
            deadline = time.monotonic() + WAIT
            while len([m for m in user.messages if m.nick == f"flood-{TAG}"]) < 6 and time.monotonic() < deadline:
                user.drain(quiet=0.05)
            arrived = [message.at for message in user.messages if message.nick == f"flood-{TAG}"]
        finally:
            user.close()
    assert len(arrived) == 6
    gaps = [later - earlier for earlier, later in zip(arrived, arrived[1:])]
    assert arrived[2] - arrived[0] < 0.3, f"the burst of 3 goes out at once: {gaps}"
    assert all(gap >= 0.4 for gap in gaps[2:]), f"then one line every 0.5 s: {gaps}"


def test_an_idle_slash_connection_is_closed_after_the_timeout(chat: dict[str, Any], tmp_path: Path) -> None:
    config = section(tmp_path, chat["irc"])
    del config["irc"]
    config["people"] = {"bob": {"identities": ["slack:UBOB"], "roles": ["sre"]}}
    config["http"] = {"port": 0, "slack_signing_secret": secrets.token_hex(16), "timeout": 1}
    service = subprocess.Popen([str(SERVICE), "-c", str(write_config(chat["lab_config"], tmp_path, config)), "serve"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert service.stderr is not None
        for line in service.stderr:
            lines.append(line)
            if "Slash commands on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(WAIT), lines
        host, port = re.search(r"Slash commands on http://([\d.]+):(\d+)/", "".join(lines)).groups()  # type: ignore[union-attr]
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            started = time.monotonic()
            assert idle.recv(4096) == b"", "the server closes without answering"
            waited = time.monotonic() - started
    finally:
        service.terminate()
        service.wait(WAIT)
    assert 0.9 <= waited < 5, f"closed after {waited:.2f}s"
