"""The chatops section: a full example loads, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libcluster import config
from libcluster.chatops import settings
from libcluster.errors import ConfigError
from tests.unit.chatops.conftest import chatops_section, write_config


def load(tmp_path: Path, chatops: dict[str, Any]) -> settings.ChatopsSettings:
    """Write a config with this chatops section and read it."""
    return settings.load(config.load(write_config(tmp_path, chatops)))


def test_full_section_loads(tmp_path: Path) -> None:
    section = chatops_section(tmp_path)
    section["http"] = {"port": 0, "slack_signing_secret": "slack-signing-secret-x",
                       "response_url_prefixes": ["https://hooks.slack.com/"]}
    loaded = load(tmp_path, section)
    assert loaded.state_dir == tmp_path / "chatops"
    assert (loaded.max_running, loaded.max_queued, loaded.max_per_user) == (2, 5, 3)
    assert loaded.need_approval == ("chatops.slow",)
    alice = next(person for person in loaded.people if person.name == "alice")
    assert [role.name for role in alice.roles] == ["sre"] and alice.roles[0].approve == ("chatops.*",)
    assert loaded.irc is not None and loaded.irc.channels == ("#test",) and loaded.irc.nick == "cookbook-bot"
    assert loaded.http is not None and loaded.http.path == "/cookbook" and loaded.http.max_posts == 5


def test_defaults_put_state_under_the_logs(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"irc": {"host": "h", "channels": ["#c"]}})
    assert loaded.state_dir == tmp_path / "logs" / "chatops" and loaded.people == ()


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("irc"), "section 'chatops' needs 'irc' or 'http'"),
    (lambda s: s["people"]["alice"].update(roles=["admin"]), "key 'chatops.people.alice.roles': unknown role 'admin'"),
    (lambda s: s["people"]["alice"].update(identities=["icq:123"]), "key 'chatops.people.alice.identities': "
     "'icq:123' is not KIND:VALUE"),
    (lambda s: s["people"].update({"bad name": {"identities": [], "roles": []}}), "key 'chatops.people.bad name'"),
    (lambda s: s["roles"]["sre"].update(runs=["x"]), "unknown key 'chatops.roles.sre.runs'"),
    (lambda s: s["irc"].update(channels=["ops"]), "key 'chatops.irc.channels' must list channels"),
    (lambda s: s.update(max_running=0), "key 'chatops.max_running' must be at least 1"),
    (lambda s: s.update(need_approval="chatops.*"), "key 'chatops.need_approval' must be a list"),
    (lambda s: s.update(http={"port": 1}), "section 'chatops.http' needs slack_signing_secret or mattermost_token"),
    (lambda s: s["people"]["bob"].update(identities=["irc:bob"]), "key 'chatops.people.bob.identities': 'irc:bob' is "
     "not an IRC mask NICK!USER@HOST"),
    (lambda s: s["irc"].update(authentication="ldap"), "key 'chatops.irc.authentication' must be one of none, pam, "
     "services"),
    (lambda s: s["irc"].update(lines_per_second=5), "key 'chatops.irc.lines_per_second' is gone"),
    (lambda s: s["irc"].update(tls=True, ca_file="/nonexistent/ca.crt"), "key 'chatops.irc.ca_file': cannot load "
     "/nonexistent/ca.crt"),
    (lambda s: s["http"].update(timeout=0) if "http" in s else s.update(http={"port": 1, "mattermost_token": "t",
                                                                                "timeout": 0}),
     "key 'chatops.http.timeout' must be more than 0"),
])
def test_mistakes_name_the_key(tmp_path: Path, change: Any, message: str) -> None:
    section = chatops_section(tmp_path)
    change(section)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, section)


def test_secrets_of_the_section_are_registered_for_masking(tmp_path: Path) -> None:
    from libcluster import redact

    section = chatops_section(tmp_path)
    section["http"] = {"port": 0, "mattermost_token": "mm-token-value-987"}
    section["irc"]["password"] = "irc-password-654"
    load(tmp_path, section)
    assert redact.redact("mm-token-value-987 irc-password-654") == "***** *****"


@pytest.mark.parametrize(("authentication", "identity", "why"), [
    ("pam", "irc:bob!*@*", "its user part '\\*' is not one PAM login"),
    ("pam", "irc:*!b*@*", "its user part 'b\\*' is not one PAM login"),
    ("pam", "irc:*!~bob@*", "its user part '~bob' is not one PAM login"),
    ("none", "irc:*!bob@*", "an IRC mask is a nick mask alone with chatops.irc.authentication: none"),
    ("services", "irc:*!bob@*", "an IRC mask is a nick mask alone with chatops.irc.authentication: services"),
])
def test_a_weak_identity_of_someone_who_may_approve_is_refused_at_start(tmp_path: Path, authentication: str,
                                                                         identity: str, why: str) -> None:
    section = chatops_section(tmp_path)
    section["irc"]["authentication"] = authentication
    section["people"]["bob"]["identities"] = [identity, "slack:UBOB"]
    if authentication != "pam":
        section["people"]["alice"]["identities"] = ["irc-account:alice"]
    with pytest.raises(ConfigError, match=f"key 'chatops.people.bob.identities': '{identity.replace('*', '[*]')}' is "
                                          f"too weak for bob, who has the approve right: {why}"):
        load(tmp_path, section)


def test_nick_masks_are_fine_without_the_approve_right_and_tls_is_the_default(tmp_path: Path) -> None:
    section = chatops_section(tmp_path)
    del section["irc"]["port"]
    section["irc"]["authentication"] = "services"
    section["people"] = {"alice": {"identities": ["irc-account:alice"], "roles": ["sre"]},
                         "carol": {"identities": ["irc:carol!*@*"], "roles": ["viewer"]}}
    loaded = load(tmp_path, section)
    assert loaded.irc is not None and loaded.irc.tls is not None and loaded.irc.port == 6697
    assert loaded.irc.tls.verify_mode.name == "CERT_REQUIRED" and loaded.irc.tls.check_hostname
    section["irc"]["tls"] = False
    del section["people"]["alice"]  # plain IRC proves no account: no IRC approver
    plain = load(tmp_path, section).irc
    assert plain is not None and plain.tls is None and plain.port == 6667


@pytest.mark.parametrize("identity", ["irc:*!bob@*", "irc-account:bob"])
def test_irc_approvers_are_refused_when_irc_tls_is_off(tmp_path: Path, identity: str) -> None:
    section = chatops_section(tmp_path)
    section["irc"].update(tls=False, authentication="pam" if identity.startswith("irc:") else "services")
    section["people"] = {"bob": {"identities": [identity], "roles": ["sre"]}}
    with pytest.raises(ConfigError, match=f"key 'chatops.people.bob.identities': '{identity.replace('*', '[*]')}' is "
                                          "too weak for bob, who has the approve right: chatops.irc.tls is false: "
                                          "the PASS and the nick!user@host prefixes travel in clear"):
        load(tmp_path, section)
    section["people"]["bob"]["roles"] = []  # without the approve right an IRC identity over plain IRC is fine
    assert load(tmp_path, section).people[0].identities == (identity,)


def test_mattermost_approvers_need_the_explicit_opt_in_and_slack_ids_do_not(tmp_path: Path) -> None:
    section = chatops_section(tmp_path)
    section["people"]["bob"]["identities"] = ["slack:UBOB", "mattermost:mmbob"]
    section["http"] = {"port": 0, "slack_signing_secret": "s", "mattermost_token": "t"}
    with pytest.raises(ConfigError, match="key 'chatops.people.bob.identities': 'mattermost:mmbob' is too weak for "
                                          "bob, who has the approve right: Mattermost proves a request by a static "
                                          "token with no replay guard: set chatops.http.mattermost_approvers: true"):
        load(tmp_path, section)
    section["http"]["mattermost_approvers"] = True
    assert load(tmp_path, section).http.mattermost_approvers  # type: ignore[union-attr]
    section["people"]["bob"]["identities"] = ["slack:UBOB"]
    del section["http"]["mattermost_approvers"]
    assert load(tmp_path, section).people[1].identities == ("slack:UBOB",)
