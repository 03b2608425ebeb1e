"""Remote through the real cumin and ClusterShell, with a stand-in `ssh` that runs commands locally.

The stand-in (ClusterShell's `ssh_path`) logs its argv, answers "No route to host" with exit
code 255 for hosts named unreachable*, and otherwise runs the remote command with `sh -c`,
as sshd would. So quoting, per-host results, the 255 ambiguity, timeouts and dry-run are
tested without a network.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.remote import (
    HostStatus,
    InvalidHostError,
    Remote,
    RemoteError,
    RemoteExecutionError,
    command_line,
    validate_host,
)

FAKE_SSH = """#!/bin/sh
# argv: [options...] HOST COMMAND (ClusterShell's ssh worker layout)
for last; do :; done
command="$last"
host=""
previous=""
for arg; do
    if [ "$arg" = "$command" ]; then host="$previous"; fi
    previous="$arg"
done
python3 -c 'import json, os, sys
fd = os.open(os.environ["FAKE_SSH_LOG"], os.O_WRONLY | os.O_APPEND)
os.write(fd, (json.dumps(sys.argv[1:]) + "\\n").encode())  # one O_APPEND write: parallel calls never interleave
' "$@"
case "$host" in
    unreachable*) echo "ssh: connect to host $host port 22: No route to host" >&2; exit 255 ;;
esac
export FAKE_SSH_HOST="$host"
exec sh -c "$command"
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the stand-in ssh and return the file its argv are logged to (one JSON list per call)."""
    script = tmp_path / "fake-ssh"
    script.write_text(FAKE_SSH)
    script.chmod(0o755)
    log = tmp_path / "ssh-argv.jsonl"
    log.touch()
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return log


def _remote(tmp_path: Path, *, dry_run: bool = False, extra: dict[str, Any] | None = None) -> tuple[Remote, ChangeLog]:
    cumin_config = tmp_path / f"cumin-{len(list(tmp_path.glob('cumin-*')))}.yaml"
    settings = {
        "transport": "clustershell",
        "default_backend": "direct",
        "clustershell": {"ssh_path": str(tmp_path / "fake-ssh"), "connect_timeout": 2, "fanout": 8},
        **(extra or {}),
    }
    cumin_config.write_text(yaml.safe_dump(settings))
    changes = ChangeLog(dry_run=dry_run)
    section = Section({"cumin_config": str(cumin_config), "ssh_user": "root"}, "remote", "test.yaml")
    return Remote(section, dry_run=dry_run, changes=changes), changes


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_query_expands_direct_backend_syntax(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    hosts = remote.query("node[1-3].lab.example")
    assert list(hosts) == ["node1.lab.example", "node2.lab.example", "node3.lab.example"]
    assert str(hosts) == "node[1-3].lab.example"


def test_run_gives_per_host_exit_codes_and_outputs(tmp_path: Path, fake_ssh: Path) -> None:
    remote, changes = _remote(tmp_path)
    hosts = remote.hosts(["node1.lab.example", "node2.lab.example"])
    result = hosts.run_sync('echo "on $FAKE_SSH_HOST"; [ "$FAKE_SSH_HOST" = node1.lab.example ]', is_safe=True)
    assert result["node1.lab.example"].status is HostStatus.OK
    assert result["node1.lab.example"].output.strip() == "on node1.lab.example"
    assert result["node2.lab.example"].status is HostStatus.FAILED
    assert result["node2.lab.example"].rc == 1
    assert result["node2.lab.example"].output.strip() == "on node2.lab.example"
    assert not result.ok
    assert changes.changes == []
    with pytest.raises(RemoteExecutionError, match=r"node2\.lab\.example \(exit code 1\)"):
        result.raise_on_failure()


def test_success_threshold_decides_ok(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    hosts = remote.query("node[1-4].lab.example")
    result = hosts.run_async('[ "$FAKE_SSH_HOST" != node4.lab.example ]', is_safe=True, success_threshold=0.75)
    assert result.with_status(HostStatus.FAILED) == ["node4.lab.example"]
    assert result.ok
    strict = hosts.run_async('[ "$FAKE_SSH_HOST" != node4.lab.example ]', is_safe=True)
    assert not strict.ok


def test_unreachable_host_is_told_apart_from_exit_code_255(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    hosts = remote.hosts(["node1.lab.example", "unreachable1.lab.example"])
    result = hosts.run_sync("exit 255", is_safe=True)
    assert result["node1.lab.example"].status is HostStatus.FAILED
    assert result["node1.lab.example"].rc == 255
    assert result["unreachable1.lab.example"].status is HostStatus.UNREACHABLE
    assert "No route to host" in result["unreachable1.lab.example"].output
    probes = [call for call in _calls(fake_ssh) if call[-1] == "true"]
    assert sorted(call[-2] for call in probes) == ["node1.lab.example", "unreachable1.lab.example"]


def test_timeout_is_reported_per_host(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    result = remote.hosts(["node1.lab.example"]).run_sync("sleep 5", is_safe=True, timeout=0.5)
    assert result["node1.lab.example"].status is HostStatus.TIMEOUT


def test_argv_values_reach_the_remote_shell_quoted(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    marker = tmp_path / "pwned"
    hostile = f"x; touch {marker}; $(touch {marker}) `touch {marker}` 'quote"
    result = remote.hosts(["node1.lab.example"]).run_sync(["printf", "%s", hostile], is_safe=True)
    assert result["node1.lab.example"].output == hostile
    assert not marker.exists()
    [call] = _calls(fake_ssh)
    assert call[-1] == command_line(["printf", "%s", hostile])
    assert call[-2] == "node1.lab.example"
    assert call[call.index("-l") + 1] == "root"


@pytest.mark.parametrize(
    "name",
    ["node1;reboot", "-oProxyCommand=touch /tmp/x", "node1 node2", "$(id).lab.example", "node`id`", "a|b", "", "-x"],
)
def test_hostnames_with_shell_or_option_syntax_are_refused(tmp_path: Path, fake_ssh: Path, name: str) -> None:
    remote, changes = _remote(tmp_path)
    with pytest.raises(InvalidHostError):
        remote.hosts([name])
    assert _calls(fake_ssh) == [] and changes.changes == []


def test_query_results_are_validated_too(tmp_path: Path, fake_ssh: Path) -> None:
    remote, _ = _remote(tmp_path)
    with pytest.raises(RemoteError):
        remote.query("node1;reboot")
    assert _calls(fake_ssh) == []


def test_valid_names_and_addresses_pass() -> None:
    assert validate_host("node1.lab.example") == "node1.lab.example"
    assert validate_host("198.18.0.99") == "198.18.0.99"
    assert validate_host("2001:db8::1") == "2001:db8::1"


def test_dry_run_runs_safe_commands_and_records_the_others(tmp_path: Path, fake_ssh: Path) -> None:
    remote, changes = _remote(tmp_path, dry_run=True)
    hosts = remote.query("node[1-2].lab.example")
    marker = tmp_path / "changed"
    skipped = hosts.run_sync(["touch", str(marker)])
    assert not marker.exists()
    assert _calls(fake_ssh) == []
    assert skipped.skipped and skipped.ok
    assert [skipped[name].status for name in hosts] == [HostStatus.SKIPPED, HostStatus.SKIPPED]
    assert skipped["node1.lab.example"].output == "skipped (dry-run)"
    assert skipped["node1.lab.example"].rc is None
    [change] = changes.changes
    assert change.dry_run and change.system == "remote" and change.target == "node[1-2].lab.example"
    assert change.detail["commands"] == [command_line(["touch", str(marker)])]
    read = hosts.run_sync("echo read-only", is_safe=True)
    assert read["node2.lab.example"].output.strip() == "read-only"
    assert len(changes.changes) == 1


def test_real_unsafe_commands_are_recorded_before_they_run(tmp_path: Path, fake_ssh: Path) -> None:
    remote, changes = _remote(tmp_path)
    marker = tmp_path / "changed"
    result = remote.hosts(["node1.lab.example"]).run_sync(["touch", str(marker)])
    assert result.ok and marker.exists()
    [change] = changes.changes
    assert not change.dry_run and change.detail["commands"] == [command_line(["touch", str(marker)])]


def test_settings_do_not_leak_between_remotes(tmp_path: Path, fake_ssh: Path) -> None:
    first, _ = _remote(tmp_path)
    first.hosts(["node1.lab.example"]).run_sync("true", is_safe=True)
    second, _ = _remote(tmp_path, extra={"clustershell": {"ssh_path": str(tmp_path / "fake-ssh"),
                                                          "ssh_options": ["-oMarker=second"]}})
    second.hosts(["node1.lab.example"]).run_sync("true", is_safe=True)
    first.hosts(["node1.lab.example"]).run_sync("true", is_safe=True)
    calls = _calls(fake_ssh)
    assert ["-oMarker=second" in call for call in calls] == [False, True, False]
    assert threading.active_count() < 5


def test_cumin_environment_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment"):
        _remote(tmp_path, extra={"environment": {"SSH_AUTH_SOCK": "/tmp/agent"}})


def test_missing_cumin_config_names_the_key(tmp_path: Path) -> None:
    section = Section({"cumin_config": str(tmp_path / "missing.yaml")}, "remote", "test.yaml")
    with pytest.raises(ConfigError, match=r"remote\.cumin_config"):
        Remote(section, dry_run=False, changes=ChangeLog(dry_run=False))
