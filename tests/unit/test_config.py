"""The configuration file: a YAML syntax error says where and what kind, never the file's text (a secret may sit
on the bad line); a plain http:// NetBox URL needs netbox.allow_insecure_http."""

from __future__ import annotations

from pathlib import Path

import pytest

from libcluster import config
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.netbox import NetBox
from libcluster.runner import cli

SECRET = "nbt_Zq81s3cr3tT0k3nValue"


@pytest.mark.parametrize(("text", "expected"), [
    (f"netbox:\n  url: https://netbox.example.org\n  token: {SECRET}: x\n",
     "not valid YAML at line 3, column 34: mapping values are not allowed here"),
    (f'netbox:\n  token: "{SECRET}\n',
     "not valid YAML at line 3, column 1: found unexpected end of stream; while scanning a quoted scalar"),
    (f"netbox:\n  token: !{SECRET} x\n",
     "not valid YAML at line 2, column 10: could not determine a constructor for the tag '...'"),
    (f'netbox:\n  token: "\\q{SECRET}"\n', "found unknown escape character '...'; while scanning a double-quoted"),
    (f"netbox:\n  token: *{SECRET}\n", "not valid YAML at line 2, column 10: found undefined alias '...'"),
    (f"netbox:\n  token: [{SECRET}\n", "expected ',' or ']', but got '<stream end>'; while parsing a flow sequence"),
    (f"netbox:\n  token: \x07{SECRET}\n", "not valid YAML at character 17: unacceptable character #x0007"),
])
def test_a_yaml_error_names_the_place_and_kind_but_no_value(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert not any(part in message for part in (SECRET, SECRET[:8], SECRET[-8:], "token"))


def test_the_cookbook_command_prints_the_place_not_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"logs_base_dir: {tmp_path}\nnetbox:\n  token: {SECRET}: x\n")
    assert cli.main(["-c", str(path), "-l"]) == 1
    out = capsys.readouterr()
    assert f"{path}: not valid YAML at line 3, column 34: mapping values are not allowed here" in out.err
    assert SECRET not in out.out + out.err


def _netbox(**keys: object) -> NetBox:
    return NetBox(Section({"token": SECRET, "ro_token": SECRET, **keys}, "netbox", "/etc/cookbooks.yaml"),
                  read_write=False, dry_run=True, changes=ChangeLog(dry_run=True))


def test_plain_http_netbox_needs_the_opt_in() -> None:
    with pytest.raises(ConfigError) as caught:
        _netbox(url="http://netbox.example.org")
    assert str(caught.value).startswith(
        "/etc/cookbooks.yaml: key 'netbox.url' is a plain http:// URL (http://netbox.example.org): the NetBox tokens "
        "would cross the network unencrypted; use https://, or set 'netbox.allow_insecure_http: true'")
    with pytest.raises(ConfigError, match="'netbox.allow_insecure_http' must be true or false"):
        _netbox(url="http://netbox.example.org", allow_insecure_http="yes")
    with pytest.raises(ConfigError, match="key 'netbox.url' must be an https:// URL, got 'netbox.example.org'"):
        _netbox(url="netbox.example.org")
    assert _netbox(url="http://127.0.0.1:8001/", allow_insecure_http=True).url == "http://127.0.0.1:8001"
    assert _netbox(url="https://netbox.example.org").url == "https://netbox.example.org"
