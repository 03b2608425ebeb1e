"""migrate_instance against the lab cluster: the job answers the node the instance went to (in a dry-run check, the
node the iallocator chose, read from the job log), and its undo, rebuilt from the journal as `cookbook --recover`
does, migrates it back to the node it was on (idempotent: "absent" once it is there).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster import config as config_module
from libcluster import undo as undo_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import GanetiCluster, connect
from tests.lab.undo_lab import Clients, Journaled


@pytest.fixture(scope="module")
def root_config(lab: dict[str, Any]) -> Section:
    """The generated configuration of the lab (skips when its Ganeti part is not up)."""
    path = Path(lab.get("config", ""))
    if not (lab.get("ganeti") or {}).get("up") or not path.is_file():
        pytest.skip("lab Ganeti part or its generated configuration is not available")
    return config_module.load(path)


def _client(config: Section, changes: ChangeLog | None = None, *, dry_run: bool = False) -> GanetiCluster:
    return connect(config, "lab", dry_run=dry_run, changes=changes or ChangeLog(dry_run=dry_run), remote=None)


@pytest.fixture
def instance(root_config: Section) -> Iterator[str]:
    """A running diskless instance on the first node of group A, removed at the end."""
    cluster = _client(root_config)
    name = f"cbm-{secrets.token_hex(4)}.lab.example"
    node = sorted(cluster.group("A").nodes)[0]
    cluster.create_instance(name, disk_template="diskless", disks=[], os_type="noop", memory=128, vcpus=1,
                            pnode=node, name_check=False).wait()
    yield name
    if name in cluster.instance_names():
        cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def test_migrate_answers_the_node_and_is_undone_from_the_journal(root_config: Section, tmp_path: Path,
                                                                 instance: str) -> None:
    check = _client(root_config, dry_run=True)
    old = check.instance(instance).primary_node
    (other,) = [node for node in check.group("A").nodes if node != old]
    assert check.migrate_instance(instance, mode="live").wait().value == other, "the iallocator's choice, from the log"
    assert check.instance(instance).primary_node == old
    run = Journaled(tmp_path, Clients(ganeti=lambda name: _client(root_config)))
    cluster = _client(root_config, run.changes)
    assert cluster.migrate_instance(instance, mode="live").wait().value == other
    assert cluster.instance(instance).primary_node == other
    [intent] = run.lines("intent")
    assert intent["undo"]["action"] == "instance-migrate" and intent["undo"]["args"]["node"] == old
    [undo] = run.from_journal()
    assert undo_module.run(undo, Clients(ganeti=lambda _: _client(root_config))) == "undone"
    state = cluster.instance(instance)
    assert state.primary_node == old and state.running
    assert undo_module.run(undo, Clients(ganeti=lambda _: _client(root_config))) == "absent"
