"""Identities to people, and what roles allow: running, dry-running, approving, with the reason of a refusal."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from libcluster.chatops.permissions import Identity, Policy, irc_mask_matches
from libcluster.chatops.settings import ChatopsSettings, IrcSettings, Person, Role

SRE = Role("sre", run=("sre.ganeti.*",), dry_run=("*",), approve=("sre.ganeti.makevm",))
VIEWER = Role("viewer", dry_run=("sre.ganeti.resource-report",))


def policy(*people: Person, authentication: str = "none") -> Policy:
    """A policy over people, makevm needing approval, on an IRC network with that authentication."""
    irc = IrcSettings("irc.test", 6697, "bot", ("#ops",), tls=ssl.create_default_context(),
                      authentication=authentication)
    return Policy(ChatopsSettings(state_dir=Path("unused"), people=people, need_approval=("sre.ganeti.makevm",),
                                  irc=irc))


@pytest.mark.parametrize(("mask", "name", "casemapping", "matches"), [
    ("[alice]!*@*", "[alice]!a@h", "ascii", True),
    ("[alice]!*@*", "a!a@h", "ascii", False),  # fnmatch would read [alice] as one of a, l, i, c, e
    ("[alice]!*@*", "e!a@h", "ascii", False),
    ("[ab]*!*@*", "[ab]x!u@h", "ascii", True),
    ("[alice]!*@*", "{ALICE}!a@h", "rfc1459", True),  # {} are the lower case of [] in rfc1459
    ("[alice]!*@*", "{alice}!a@h", "ascii", False),
    ("a?c!*@*", "abc!u@h", "ascii", True),
    ("a?c!*@*", "ac!u@h", "ascii", False),
    ("*!alice@*", "n!~alice@h", "ascii", False),
    ("*!alice@*", "N!ALICE@h", "ascii", True),
])
def test_irc_masks_have_only_star_and_question_mark_as_wildcards(mask: str, name: str, casemapping: str,
                                                                  matches: bool) -> None:
    assert irc_mask_matches(mask, name, casemapping) is matches


def test_only_an_account_identity_proves_an_account() -> None:
    alice = Person("alice", ("irc:*!alice@*", "irc:alice!*@*", "slack:UA"), (SRE,))
    pam = policy(alice, authentication="pam")
    assert pam.proves_account(alice, Identity("irc", "x!alice@h"))
    assert not pam.proves_account(alice, Identity("irc", "alice!~alice@h")), "a nick mask alone proves nothing"
    assert pam.proves_account(alice, Identity("slack", "UA"))
    assert not policy(alice).proves_account(alice, Identity("irc", "x!alice@h")), "no PAM: the user part is a claim"


def test_irc_masks_match_case_insensitively_and_accounts_need_the_tag() -> None:
    alice = Person("alice", ("irc:alice!*@*.example.org", "irc-account:Alice"), (SRE,))
    rules = policy(alice)
    assert rules.person(Identity("irc", "ALICE!~a@host.example.org")) is alice
    assert isinstance(rules.person(Identity("irc", "alice!~a@evil.example.com")), str)
    assert rules.person(Identity("irc", "al!~a@evil.example.com", account="alice")) is alice
    assert isinstance(rules.person(Identity("irc", "alice!~a@evil.example.com", account="")), str)
    assert isinstance(rules.person(Identity("slack", "alice")), str)


def test_slack_and_mattermost_ids_match_exactly_and_only_their_kind() -> None:
    bob = Person("bob", ("slack:U123", "mattermost:abc"), (SRE,))
    rules = policy(bob)
    assert rules.person(Identity("slack", "U123")) is bob and rules.person(Identity("mattermost", "abc")) is bob
    assert isinstance(rules.person(Identity("slack", "u123")), str)
    assert isinstance(rules.person(Identity("mattermost", "U123")), str)


def test_an_identity_matching_two_people_is_refused() -> None:
    rules = policy(Person("a", ("irc:*!*@shared.host",), (SRE,)), Person("b", ("irc:b!*@*",), (SRE,)))
    assert rules.person(Identity("irc", "b!x@shared.host")) == (
        "irc:b!x@shared.host matches several people in chatops.people (a, b): ask an admin to fix the config")


def test_run_dry_run_and_approve_rights() -> None:
    alice, carol = Person("alice", (), (SRE,)), Person("carol", (), (VIEWER,))
    rules = policy(alice, carol)
    assert rules.refusal_to_run(alice, "sre.ganeti.makevm", dry_run=False) == ""
    assert rules.refusal_to_run(alice, "sre.dns.netbox", dry_run=True) == ""
    assert rules.refusal_to_run(alice, "sre.dns.netbox", dry_run=False) == (
        "alice may not run sre.dns.netbox for real (roles: sre); dry-run is allowed: add -d")
    assert rules.refusal_to_run(carol, "sre.ganeti.resource-report", dry_run=True) == ""
    assert rules.refusal_to_run(carol, "sre.ganeti.makevm", dry_run=True) == (
        "carol may not run sre.ganeti.makevm, not even in dry-run (roles: viewer)")
    assert rules.may_approve(alice, "sre.ganeti.makevm") and not rules.may_approve(alice, "sre.ganeti.reboot-vm")
    assert not rules.may_approve(carol, "sre.ganeti.makevm")


def test_only_real_runs_of_matching_cookbooks_need_approval() -> None:
    rules = policy()
    assert rules.needs_approval("sre.ganeti.makevm", dry_run=False)
    assert not rules.needs_approval("sre.ganeti.makevm", dry_run=True)
    assert not rules.needs_approval("sre.ganeti.makevm-extra", dry_run=False)
