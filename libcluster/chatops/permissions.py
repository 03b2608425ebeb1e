"""Who may run, dry-run and approve which cookbooks: chat identities -> people -> roles -> name patterns.

Every refusal comes with a sentence saying why, shown to the person in chat. IRC masks match as
IRC masks: ``*`` and ``?`` are the only wildcards (``[``, ``]`` are literal), case-insensitive by
the server's CASEMAPPING. Approving needs an identity proving an account (see settings.weakness).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from libcluster.chatops.settings import ChatopsSettings, Person, weakness

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
CASEMAPPINGS = {
    "ascii": str.maketrans(_UPPER, _LOWER),
    "rfc1459": str.maketrans(_UPPER + "[]\\^", _LOWER + "{}|~"),
    "strict-rfc1459": str.maketrans(_UPPER + "[]\\", _LOWER + "{}|"),
}
"""How IRC servers fold case (ISUPPORT CASEMAPPING); an unknown mapping folds like rfc1459, the widest."""


def irc_fold(text: str, casemapping: str) -> str:
    """text in lower case as the server's casemapping defines it."""
    return text.translate(CASEMAPPINGS.get(casemapping, CASEMAPPINGS["rfc1459"]))


@functools.lru_cache(maxsize=256)
def _mask_regex(mask: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in mask),
                      re.DOTALL)


def irc_mask_matches(mask: str, name: str, casemapping: str = "rfc1459") -> bool:
    """Whether nick!user@host name matches an IRC mask: ``*`` any run, ``?`` one character, the rest literal."""
    return _mask_regex(irc_fold(mask, casemapping)).fullmatch(irc_fold(name, casemapping)) is not None


@dataclass(frozen=True)
class Identity:
    """Who sent a chat message, as the front door saw it."""

    kind: str
    """``irc``, ``slack`` or ``mattermost``."""
    name: str
    """IRC ``nick!user@host``, or the Slack/Mattermost user id."""
    account: str = ""
    """IRC services account, when the server tags messages with it (IRCv3 account-tag)."""
    display: str = ""
    """Short name to address the person with (IRC nick, Slack user name)."""
    casemapping: str = "rfc1459"
    """The IRC server's CASEMAPPING, for matching masks."""

    def __str__(self) -> str:
        """``kind:name`` (with the account when known), as shown in refusals and logs."""
        return f"{self.kind}:{self.name}" + (f" (account {self.account})" if self.account else "")

    def matches(self, pattern: str) -> bool:
        """Whether a configured identity (``irc:MASK``, ``irc-account:NAME``, ``slack:ID``...) is this one."""
        kind, _, value = pattern.partition(":")
        if kind == "irc-account":
            return self.kind == "irc" and bool(self.account) and self.account.casefold() == value.casefold()
        if kind == "irc":
            return self.kind == "irc" and irc_mask_matches(value, self.name, self.casemapping)
        return kind == self.kind and value == self.name


def _any(patterns: Iterable[str], cookbook: str) -> bool:
    return any(fnmatchcase(cookbook, pattern) for pattern in patterns)


class Policy:
    """Answers permission questions from the ``chatops`` settings."""

    def __init__(self, settings: ChatopsSettings) -> None:
        """Use the people, roles and need_approval patterns of settings."""
        self.people = settings.people
        self.need_approval = settings.need_approval
        self.settings = settings

    def person(self, identity: Identity) -> Person | str:
        """The one person an identity belongs to, or why there is none (unknown, or matching several people)."""
        found = [person for person in self.people if any(identity.matches(item) for item in person.identities)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(person.name for person in found)
            return f"{identity} matches several people in chatops.people ({names}): ask an admin to fix the config"
        return f"{identity} is not a known user (chatops.people): ask an admin to add you"

    def refusal_to_run(self, person: Person, cookbook: str, *, dry_run: bool) -> str:
        """Why person may not run cookbook (in dry-run or for real); "" when allowed."""
        real = _any((pattern for role in person.roles for pattern in role.run), cookbook)
        if real or (dry_run and _any((pattern for role in person.roles for pattern in role.dry_run), cookbook)):
            return ""
        roles = ", ".join(role.name for role in person.roles) or "none"
        if dry_run:
            return f"{person.name} may not run {cookbook}, not even in dry-run (roles: {roles})"
        hint = "; dry-run is allowed: add -d" if self.refusal_to_run(person, cookbook, dry_run=True) == "" else ""
        return f"{person.name} may not run {cookbook} for real (roles: {roles}){hint}"

    def needs_approval(self, cookbook: str, *, dry_run: bool) -> bool:
        """Whether a run must wait for an approval: real runs of cookbooks matching need_approval."""
        return not dry_run and _any(self.need_approval, cookbook)

    def may_approve(self, person: Person, cookbook: str) -> bool:
        """Whether person holds the approve right for cookbook."""
        return _any((pattern for role in person.roles for pattern in role.approve), cookbook)

    def proves_account(self, person: Person, identity: Identity) -> bool:
        """Whether identity is person's by an account (not a nick mask alone): what approving requires."""
        return any(identity.matches(item) and not weakness(item, self.settings) for item in person.identities)
