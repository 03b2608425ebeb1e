"""The ``chatops`` section of the configuration file, read into typed settings that name the wrong key on error.

Example (the lab test writes one like it)::

    chatops:
      state_dir: /var/lib/ganeti-cookbooks/chatops   # full output of every run: runs/ID.log
      max_running: 4            # runs at once, over all users
      max_queued: 20            # runs checking, waiting for approval or queued, over all users
      max_per_user: 3           # runs not finished yet, per person
      approval_timeout: 3600    # seconds a request waits for !approve before it expires
      need_approval: ["sre.ganeti.makevm", "sre.ganeti.drain-*"]   # real runs of these wait for !approve
      roles:
        sre: {run: ["sre.*"], dry_run: ["*"], approve: ["sre.*"]}
        viewer: {dry_run: ["sre.ganeti.resource-report"]}
      people:
        alice: {roles: [sre], identities: ["irc:*!alice@*", "slack:U0123ABC"]}
        dave: {roles: [viewer], identities: ["irc:dave!*@*"]}
      irc: {host: irc.example.org, port: 6697, ca_file: /etc/ssl/certs/ca-certificates.crt, nick: cookbook-bot,
            channels: ["#sre-ops"], authentication: pam, flood_burst: 5, flood_interval: 2}
      http: {listen: 127.0.0.1, port: 8087, path: /cookbook, slack_signing_secret: ..., mattermost_token: ...,
             mattermost_approvers: false}

Who may approve must be known by an account, never by a nick mask alone: a Slack user id (the
endpoint verifies the request's signature and age), a Mattermost user id only with
``http.mattermost_approvers: true`` (its static token has no replay guard), an ``irc-account:`` name
(services, with ``authentication: services``), or on a server without services an ``irc:`` mask whose
user part is a login the server checked (``authentication: pam``: ngircd's PAM shows it without ``~``),
and IRC identities only over TLS (``irc.tls`` on: in clear the PASS and the prefixes can be read and
forged on the path). A person with the approve right and a weaker identity stops the service at start,
naming the setting.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.sal import PLAIN_PORT, TLS_PORT, tls_context

IDENTITY_KINDS = ("irc", "irc-account", "slack", "mattermost")
"""Prefixes of an identity: an IRC nick!user@host mask, an IRC services account, a Slack or Mattermost user id."""
AUTHENTICATIONS = ("none", "pam", "services")
"""What an IRC network proves about who sent a line: nothing (nick masks only), the user part of
nick!user@host (ngircd's PAM login, shown without ``~``), or a services account (IRCv3 account-tag)."""
_PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MASK = re.compile(r"^[^!@\s]+![^!@\s]+@[^!@\s]+$")


@dataclass(frozen=True)
class Role:
    """What the holders of a role may do, as fnmatch patterns of cookbook names."""

    name: str
    run: tuple[str, ...] = ()
    """Cookbooks they may run for real (and in dry-run)."""
    dry_run: tuple[str, ...] = ()
    """Cookbooks they may run in dry-run only."""
    approve: tuple[str, ...] = ()
    """Cookbooks whose real runs they may approve (for someone else)."""


@dataclass(frozen=True)
class Person:
    """Someone who may use the service: a name for logs and audit, chat identities, roles."""

    name: str
    identities: tuple[str, ...]
    """``kind:value`` strings, kind one of IDENTITY_KINDS; ``irc:`` values are IRC masks (``*``, ``?``)."""
    roles: tuple[Role, ...]


@dataclass(frozen=True)
class IrcSettings:
    """The IRC front door."""

    host: str
    port: int
    nick: str
    channels: tuple[str, ...]
    password: str = ""
    tls: ssl.SSLContext | None = None
    """How to verify the server (key ``tls``, default true, and ``ca_file``); None: plain IRC (``tls: false``)."""
    authentication: str = "none"
    """One of AUTHENTICATIONS: what the network proves about a sender, so which IRC identities may approve."""
    flood_burst: int = 5
    flood_interval: float = 2.0
    """The bot sends flood_burst lines at once, then one line every flood_interval seconds (all replies and
    runs together): ngircd processes about 2 lines a second of a client and queues the rest."""


@dataclass(frozen=True)
class HttpSettings:
    """The slash-command front door (Slack signatures and/or a Mattermost token)."""

    listen: str
    port: int
    path: str
    slack_signing_secret: str = ""
    mattermost_token: str = ""
    response_url_prefixes: tuple[str, ...] = ()
    """Allowed starts of response URLs (e.g. https://hooks.slack.com/); empty allows any http(s) URL."""
    post_interval: float = 10.0
    """Seconds between two progress posts of one run (Slack accepts 5 posts per response URL)."""
    max_posts: int = 5
    """Posts per response URL, the last one kept for the result."""
    timeout: float = 10.0
    """Seconds a client connection may stay silent (reading a request) before it is closed."""
    request_deadline: float = 30.0
    """Seconds one connection may take in all (a client trickling bytes within ``timeout`` is cut off too)."""
    max_connections: int = 16
    """Connections served at once; more are answered 503 and closed (each holds a thread)."""
    mattermost_approvers: bool = False
    """Whether ``mattermost:`` ids may approve: Mattermost proves a request by a static token, no replay guard."""


@dataclass(frozen=True)
class ChatopsSettings:
    """Everything the service reads from the ``chatops`` section."""

    state_dir: Path
    people: tuple[Person, ...]
    need_approval: tuple[str, ...] = ()
    max_running: int = 4
    max_queued: int = 20
    max_per_user: int = 3
    approval_timeout: float = 3600.0
    max_pending_lines: int = 50
    """Output lines of one run waiting to be sent; beyond it lines are skipped (and counted)."""
    irc: IrcSettings | None = None
    http: HttpSettings | None = None


def _patterns(section: Section, key: str) -> tuple[str, ...]:
    values = section.list(key, [])
    if not all(isinstance(value, str) and value for value in values):
        raise ConfigError(f"{section.source}: key '{section.where}.{key}' must be a list of non-empty strings")
    return tuple(values)


def _positive(section: Section, key: str, default: int) -> int:
    value: int = section.int(key, default)
    if value < 1:
        raise ConfigError(f"{section.source}: key '{section.where}.{key}' must be at least 1, got {value}")
    return value


def _roles(section: Section) -> dict[str, Role]:
    roles = {}
    for name in section:
        role = section.section(name)
        unknown = set(role) - {"run", "dry_run", "approve"}
        if unknown:
            raise ConfigError(f"{section.source}: unknown key '{role.where}.{sorted(unknown)[0]}' "
                              "(expected run, dry_run, approve)")
        roles[name] = Role(name, _patterns(role, "run"), _patterns(role, "dry_run"), _patterns(role, "approve"))
    return roles


def _people(section: Section, roles: dict[str, Role]) -> tuple[Person, ...]:
    people = []
    for name in section:
        person = section.section(name)
        where = f"{person.source}: key '{person.where}"
        if not _PERSON.match(name):
            raise ConfigError(f"{where}': a person's name is letters, digits, '.', '_' and '-'")
        identities = _patterns(person, "identities")
        for identity in identities:
            kind, sep, value = identity.partition(":")
            if not sep or not value or kind not in IDENTITY_KINDS:
                raise ConfigError(f"{where}.identities': {identity!r} is not KIND:VALUE with KIND one of "
                                  f"{', '.join(IDENTITY_KINDS)}")
            if kind == "irc" and not _MASK.match(value):
                raise ConfigError(f"{where}.identities': {identity!r} is not an IRC mask NICK!USER@HOST "
                                  "(wildcards * and ?)")
        missing = [role for role in _patterns(person, "roles") if role not in roles]
        if missing:
            raise ConfigError(f"{where}.roles': unknown role {missing[0]!r} (not in chatops.roles)")
        people.append(Person(name, identities, tuple(roles[role] for role in _patterns(person, "roles"))))
    return tuple(people)


def _irc(section: Section) -> IrcSettings:
    channels = _patterns(section, "channels")
    if not channels or not all(channel.startswith(("#", "&")) for channel in channels):
        raise ConfigError(f"{section.source}: key '{section.where}.channels' must list channels like '#sre-ops'")
    if section.has("lines_per_second"):
        raise ConfigError(f"{section.source}: key '{section.where}.lines_per_second' is gone: the bot's pace is "
                          "flood_burst lines, then one every flood_interval seconds")
    authentication = section.str("authentication", "none")
    if authentication not in AUTHENTICATIONS:
        raise ConfigError(f"{section.source}: key '{section.where}.authentication' must be one of "
                          f"{', '.join(AUTHENTICATIONS)}, got {authentication!r}")
    interval = section.float("flood_interval", 2.0)
    if interval <= 0:
        raise ConfigError(f"{section.source}: key '{section.where}.flood_interval' must be more than 0")
    tls = tls_context(section)
    return IrcSettings(section.str("host"), section.int("port", TLS_PORT if tls else PLAIN_PORT),
                       section.str("nick", "cookbook-bot"), channels, section.str("password", ""), tls,
                       authentication, _positive(section, "flood_burst", 5), interval)


def weakness(identity: str, settings: ChatopsSettings) -> str:
    """Why identity cannot prove an account with these front doors; "" when it can.

    Slack user ids come from signed, fresh requests; Mattermost ids only with the explicit
    ``http.mattermost_approvers`` opt-in (a static token); IRC identities only over TLS, then
    ``irc-account:`` from services, and an ``irc:`` mask only when the network checks the user part
    (``pam``) and the mask names one such login: no wildcard, no ``~`` (unauthenticated) in the user part.
    """
    kind, _, value = identity.partition(":")
    if kind == "mattermost":
        if settings.http is not None and settings.http.mattermost_approvers:
            return ""
        return ("Mattermost proves a request by a static token with no replay guard: set "
                "chatops.http.mattermost_approvers: true to let mattermost: ids approve anyway")
    if kind not in ("irc", "irc-account"):
        return ""
    if settings.irc is not None and settings.irc.tls is None:
        return ("chatops.irc.tls is false: the PASS and the nick!user@host prefixes travel in clear and can be read "
                "and forged on the path (turn chatops.irc.tls on, or drop the IRC identity)")
    if kind == "irc-account":
        return ""
    authentication = settings.irc.authentication if settings.irc else "none"
    if authentication != "pam":
        return (f"an IRC mask is a nick mask alone with chatops.irc.authentication: {authentication} "
                "(use irc-account:NAME with services, or authentication: pam on ngircd)")
    user = value.split("!", 1)[1].split("@", 1)[0]
    if any(char in user for char in "*?") or user.startswith("~"):
        return (f"its user part {user!r} is not one PAM login (a wildcard or '~' matches unauthenticated users): "
                "write NICK!LOGIN@HOST, e.g. *!alice@*")
    return ""


def _check_approvers(settings: ChatopsSettings, source: str) -> None:
    """Refuse a person with the approve right and an identity that proves no account."""
    for person in settings.people:
        if not any(role.approve for role in person.roles):
            continue
        for identity in person.identities:
            reason = weakness(identity, settings)
            if reason:
                raise ConfigError(f"{source}: key 'chatops.people.{person.name}.identities': {identity!r} is too "
                                  f"weak for {person.name}, who has the approve right: {reason}")


def _http(section: Section) -> HttpSettings:
    settings = HttpSettings(
        section.str("listen", "127.0.0.1"), section.int("port"), section.str("path", "/cookbook"),
        section.str("slack_signing_secret", ""), section.str("mattermost_token", ""),
        _patterns(section, "response_url_prefixes"), section.float("post_interval", 10.0),
        _positive(section, "max_posts", 5), section.float("timeout", 10.0), section.float("request_deadline", 30.0),
        _positive(section, "max_connections", 16), section.bool("mattermost_approvers", False))
    for key in ("timeout", "request_deadline"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{section.source}: key '{section.where}.{key}' must be more than 0")
    if not settings.slack_signing_secret and not settings.mattermost_token:
        raise ConfigError(f"{section.source}: section '{section.where}' needs slack_signing_secret or "
                          "mattermost_token: unsigned requests are never accepted")
    if settings.max_posts < 2:
        raise ConfigError(f"{section.source}: key '{section.where}.max_posts' must be at least 2 (one for the result)")
    return settings


def load(root: Section) -> ChatopsSettings:
    """The settings of the ``chatops`` section of root; ConfigError names the wrong key."""
    section = root.section("chatops")
    roles = _roles(section.section("roles", {}))
    default_state = Path(root.str("logs_base_dir")) / "chatops"
    settings = ChatopsSettings(
        state_dir=Path(section.str("state_dir", str(default_state))),
        people=_people(section.section("people", {}), roles),
        need_approval=_patterns(section, "need_approval"),
        max_running=_positive(section, "max_running", 4),
        max_queued=_positive(section, "max_queued", 20),
        max_per_user=_positive(section, "max_per_user", 3),
        approval_timeout=section.float("approval_timeout", 3600.0),
        max_pending_lines=_positive(section, "max_pending_lines", 50),
        irc=_irc(section.section("irc")) if section.has("irc") else None,
        http=_http(section.section("http")) if section.has("http") else None,
    )
    if settings.irc is None and settings.http is None:
        raise ConfigError(f"{root.source}: section 'chatops' needs 'irc' or 'http' (no front door configured)")
    _check_approvers(settings, root.source)
    return settings
