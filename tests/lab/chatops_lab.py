"""Helpers of the chatops lab tests: the lab's ngircd over TLS, PAM logins for test users, a bot on a config copy."""

from __future__ import annotations

import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.argcheck import cookbook_dirs
from libcluster.chatops.core import Chatops
from libcluster.chatops.irc_bot import ChatopsBot
from libcluster.chatops.probe import IrcProbe
from cookbook_lab import ircd
from cookbook_lab.common import Lab

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
JOIN_TIMEOUT = 30.0


def irc_part(lab: dict[str, Any]) -> dict[str, Any]:
    """The lab's irc status, or skip when it is not up."""
    if not (isinstance(lab.get("irc"), dict) and lab["irc"].get("up")):
        pytest.skip("lab part irc is not up")
    return lab["irc"]


def lab_tls(irc: dict[str, Any]) -> ssl.SSLContext:
    """A client TLS context verifying the lab's ngircd against the lab CA."""
    return ssl.create_default_context(cafile=irc["ca_file"])


def irc_section(irc: dict[str, Any], nick: str, channel: str, **extra: Any) -> dict[str, Any]:
    """chatops.irc for the lab's ngircd: TLS verified by the lab CA, PAM logins."""
    return {"host": irc["host"], "port": irc["port"], "ca_file": irc["ca_file"], "nick": nick, "channels": [channel],
            "authentication": "pam", **extra}


@contextmanager
def pam_logins(users: list[str]) -> Iterator[dict[str, str]]:
    """Lab ngircd logins for users (random passwords), removed afterwards; yields user -> password."""
    lab = Lab()
    passwords = {user: secrets.token_urlsafe(12) for user in users}
    try:
        for user, password in passwords.items():
            ircd.add_login(lab, user, password)
        yield passwords
    finally:
        for user in users:
            ircd.remove_login(lab, user)


def write_config(lab_config: Path, tmp: Path, chatops: dict[str, Any]) -> Path:
    """A copy of the lab configuration with the fixture cookbooks, logs under tmp and this chatops section."""
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [*data["cookbooks_base_dirs"], str(FIXTURES)]
    data["logs_base_dir"] = str(tmp / "logs")
    data["audit_log"] = str(tmp / "logs" / "audit.jsonl")
    data["chatops"] = chatops
    path = tmp / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def running_bot(path: Path, grace: float = 30.0) -> Iterator[tuple[Chatops, ChatopsBot]]:
    """The core and IRC bot of the configuration at path, serving in a thread; stopped afterwards."""
    root = config.load(path)
    settings = chatops_settings.load(root)
    assert settings.irc is not None
    core = Chatops(settings, path, cookbook_dirs(root))
    bot = ChatopsBot(core, settings.irc)
    thread = threading.Thread(target=bot.serve, daemon=True)
    thread.start()
    try:
        yield core, bot
    finally:
        core.close(grace=grace)
        bot.stop()
        thread.join(10)


def client(irc: dict[str, Any], nick: str, channel: str, *, username: str = "", password: str = "") -> IrcProbe:
    """A user on the lab's ngircd over verified TLS, joined to channel."""
    probe = IrcProbe(irc["host"], irc["port"], nick, username=username, password=password, tls=lab_tls(irc))
    probe.join(channel)
    return probe
