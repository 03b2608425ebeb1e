"""Commands on the lab nodes journaled with the undo the caller gives (none by default), run by rollback or recover.

Each test touches a file named after a random tag in the node's own /root and removes it at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster import undo as undo_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.remote import HostStatus, Remote, command_undo
from tests.lab.undo_lab import Clients, Journaled

Part = Callable[[str], dict[str, Any]]

UNUSED_ADDRESS = "198.18.0.99"
"""An address on the lab bridge's network that no namespace holds: SSH gets no answer."""


def _remote(ssh: dict[str, Any], changes: ChangeLog | None = None) -> Remote:
    section = Section({"cumin_config": ssh["cumin_config"], "ssh_user": "root"}, "remote", "lab")
    return Remote(section, dry_run=False, changes=changes or ChangeLog(dry_run=False))


@pytest.fixture
def ssh(lab_part: Part) -> dict[str, Any]:
    """The lab's SSH part (the Ganeti nodes must be up as well)."""
    lab_part("ganeti")
    return lab_part("ssh")


@pytest.fixture
def node(lab_part: Part) -> str:
    """One node of the lab cluster."""
    return str(lab_part("ganeti")["nodes"][-1])


@pytest.fixture
def path(ssh: dict[str, Any], node: str) -> Iterator[str]:
    """A file of this test on node, removed at the end."""
    name = f"/root/cbu-{secrets.token_hex(4)}"
    yield name
    _remote(ssh).hosts([node]).run_sync(f"rm -f {name}", timeout=30)


@pytest.fixture
def run(ssh: dict[str, Any], tmp_path: Path) -> Journaled:
    """A journaled run whose undo steps run on a fresh Remote."""
    return Journaled(tmp_path, Clients(remote=lambda: _remote(ssh)))


def _exists(ssh: dict[str, Any], node: str, path: str) -> bool:
    return _remote(ssh).hosts([node]).run_sync(f"test -e {path}", is_safe=True, timeout=30)[node].rc == 0


def test_a_command_with_the_callers_undo_is_journaled_and_undone(
        run: Journaled, ssh: dict[str, Any], node: str, path: str) -> None:
    remote = _remote(ssh, run.changes)
    undo = command_undo([node], [["rm", "-f", path]], check=["test", "-e", path])
    assert remote.hosts([node]).run_sync(["touch", path], undo=undo, timeout=30).ok
    remote.hosts([node]).run_sync(["true"], timeout=30)
    intents, results = run.lines("intent"), run.lines("result")
    assert [(line["action"], line["target"]) for line in intents] == [("command", node)] * 2
    assert intents[0]["undo"]["args"]["commands"] == [f"rm -f {path}"] and intents[1]["undo"] is None
    assert [line["status"] for line in results] == ["done", "done"]
    assert _exists(ssh, node, path)
    [from_journal] = run.from_journal()
    assert undo_module.run(from_journal, Clients(remote=lambda: _remote(ssh))) == "undone"
    assert not _exists(ssh, node, path)
    assert undo_module.run(from_journal, Clients(remote=lambda: _remote(ssh))) == "absent"


def test_a_command_that_timed_out_is_maybe_and_its_undo_runs(
        run: Journaled, ssh: dict[str, Any], node: str, path: str) -> None:
    remote = _remote(ssh, run.changes)
    undo = command_undo([node], [["rm", "-f", path]])
    result = remote.hosts([node]).run_sync(f"touch {path}; sleep 30", undo=undo, timeout=2)
    assert result[node].status is HostStatus.TIMEOUT
    [line] = run.lines("result")
    assert line["status"] == "maybe" and line["detail"]["hosts"] == {node: "timeout"}
    assert _exists(ssh, node, path), "the command that timed out had run"
    assert run.stack.rollback() == []
    assert not _exists(ssh, node, path)


def test_an_unreachable_host_is_maybe_and_a_failed_undo_names_it(run: Journaled, ssh: dict[str, Any]) -> None:
    remote = _remote(ssh, run.changes)
    undo = command_undo([UNUSED_ADDRESS], [["rm", "-f", "/root/never"]])
    result = remote.hosts([UNUSED_ADDRESS]).run_sync("true", undo=undo, timeout=30)
    assert result[UNUSED_ADDRESS].status is HostStatus.UNREACHABLE
    assert [line["status"] for line in run.lines("result")] == ["maybe"]
    [failure] = run.stack.rollback()
    assert (failure.kind, failure.name) == ("command", UNUSED_ADDRESS) and UNUSED_ADDRESS in failure.error
    assert [line["status"] for line in run.lines("undo")] == ["failed"]
