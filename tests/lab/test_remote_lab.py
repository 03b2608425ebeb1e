"""Remote against the lab nodes over real SSH through cumin: every node, batches, unreachable, dry-run."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.remote import HostStatus, Remote

Part = Callable[[str], dict[str, Any]]

UNUSED_ADDRESS = "198.18.0.99"
"""An address on the lab bridge's network that no namespace holds: SSH gets no answer."""


def _remote(ssh: dict[str, Any], *, dry_run: bool = False) -> tuple[Remote, ChangeLog]:
    changes = ChangeLog(dry_run=dry_run)
    section = Section({"cumin_config": ssh["cumin_config"], "ssh_user": "root"}, "remote", "lab")
    return Remote(section, dry_run=dry_run, changes=changes), changes


@pytest.fixture
def nodes(lab_part: Part) -> list[str]:
    """The cluster's nodes (the ssh part must be up as well)."""
    lab_part("ssh")
    return list(lab_part("ganeti")["nodes"])


def test_command_on_every_node(lab_part: Part, nodes: list[str]) -> None:
    remote, changes = _remote(lab_part("ssh"))
    hosts = remote.query(",".join(nodes))
    assert sorted(hosts) == sorted(nodes)
    result = hosts.run_sync("hostname --fqdn", is_safe=True, timeout=30)
    assert result.ok
    assert {name: result[name].output.strip() for name in nodes} == {name: name for name in nodes}
    assert changes.changes == []


def test_async_in_batches_with_per_host_exit_codes(lab_part: Part, nodes: list[str]) -> None:
    remote, _ = _remote(lab_part("ssh"))
    first = nodes[0]
    result = remote.query(",".join(nodes)).run_async(
        f'[ "$(hostname --fqdn)" != {first} ]', "echo second", is_safe=True, batch_size=2, timeout=30,
        success_threshold=0.5)
    assert result[first].status is HostStatus.FAILED and result[first].rc == 1
    assert all(result[name].status is HostStatus.OK for name in nodes[1:])
    assert all(result[name].output.strip() == "second" for name in nodes[1:])
    assert result.ok


def test_unreachable_node_is_not_a_command_failure(lab_part: Part, nodes: list[str]) -> None:
    remote, _ = _remote(lab_part("ssh"))
    result = remote.hosts([nodes[0], UNUSED_ADDRESS]).run_sync("exit 255", is_safe=True, timeout=60)
    assert result[nodes[0]].status is HostStatus.FAILED and result[nodes[0]].rc == 255
    assert result[UNUSED_ADDRESS].status is HostStatus.UNREACHABLE
    assert not result.ok


def test_command_timeout(lab_part: Part, nodes: list[str]) -> None:
    remote, _ = _remote(lab_part("ssh"))
    result = remote.hosts([nodes[0]]).run_sync("sleep 30", is_safe=True, timeout=2)
    assert result[nodes[0]].status is HostStatus.TIMEOUT


def test_dry_run_runs_only_safe_commands(lab_part: Part, nodes: list[str]) -> None:
    ssh = lab_part("ssh")
    marker = f"/tmp/cbt-dry-run-{secrets.token_hex(4)}"
    dry, changes = _remote(ssh, dry_run=True)
    hosts = dry.query(",".join(nodes))
    planned = hosts.run_sync(["touch", marker])
    assert planned.skipped and all(planned[name].output == "skipped (dry-run)" for name in nodes)
    [change] = changes.changes
    assert change.dry_run and change.detail["commands"] == [f"touch {marker}"]
    check = hosts.run_sync(["test", "-e", marker], is_safe=True, ok_codes=[0, 1], timeout=30)
    assert {check[name].rc for name in nodes} == {1}
