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
        alice: {roles: [sre], identities: ["irc:alice!*@198.51.100.7", "irc-account:alice", "slack:U0123ABC"]}
      irc: {host: irc.example.org, port: 6667, nick: cookbook-bot, channels: ["#sre-ops"], lines_per_second: 5}
      http: {listen: 127.0.0.1, port: 8087, path: /cookbook, slack_signing_secret: ..., mattermost_token: ...}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from libcluster.config import Section
from libcluster.errors import ConfigError

IDENTITY_KINDS = ("irc", "irc-account", "slack", "mattermost")
"""Prefixes of an identity: an IRC nick!user@host mask, an IRC services account, a Slack or Mattermost user id."""
_PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    """``kind:value`` strings, kind one of IDENTITY_KINDS; ``irc:`` values are glob masks."""
    roles: tuple[Role, ...]


@dataclass(frozen=True)
class IrcSettings:
    """The IRC front door."""

    host: str
    port: int
    nick: str
    channels: tuple[str, ...]
    password: str = ""
    lines_per_second: int = 5
    """Output lines of one run sent per second at most; more are queued, then collapsed."""


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
        missing = [role for role in _patterns(person, "roles") if role not in roles]
        if missing:
            raise ConfigError(f"{where}.roles': unknown role {missing[0]!r} (not in chatops.roles)")
        people.append(Person(name, identities, tuple(roles[role] for role in _patterns(person, "roles"))))
    return tuple(people)


def _irc(section: Section) -> IrcSettings:
    channels = _patterns(section, "channels")
    if not channels or not all(channel.startswith(("#", "&")) for channel in channels):
        raise ConfigError(f"{section.source}: key '{section.where}.channels' must list channels like '#sre-ops'")
    return IrcSettings(section.str("host"), section.int("port", 6667), section.str("nick", "cookbook-bot"), channels,
                       section.str("password", ""), _positive(section, "lines_per_second", 5))


def _http(section: Section) -> HttpSettings:
    settings = HttpSettings(
        section.str("listen", "127.0.0.1"), section.int("port"), section.str("path", "/cookbook"),
        section.str("slack_signing_secret", ""), section.str("mattermost_token", ""),
        _patterns(section, "response_url_prefixes"), section.float("post_interval", 10.0),
        _positive(section, "max_posts", 5))
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
    return settings
