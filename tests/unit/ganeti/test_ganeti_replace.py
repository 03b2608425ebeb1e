"""GanetiCluster.replace_secondary (hbal's r:NODE, DRBD) and its undo against Ganeti 3.0.2's documented RAPI.

The lab has no DRBD: the exchanges are built from Ganeti's documentation and code (fixtures/README.md says how).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import pytest

from libcluster.ganeti import inverse
from libcluster.ganeti.jobs import Job
from libcluster.undo import UndoStack
from libcluster.writes import NotOursError
from tests.unit.ganeti.ganeti_replay import FIXTURES, load_jsonl

NAME, OLD, NEW = "drbd1.lab.example", "node2.lab.example", "node3.lab.example"
PATH = f"/2/instances/{NAME}/replace-disks"
MARKER = inverse.MARKER_PREFIX + uuid.UUID(int=1).hex


def _step(step: str) -> list[dict[str, Any]]:
    return [exchange for exchange in load_jsonl(FIXTURES / "rapi-replace-disks-3.0.2.jsonl")
            if exchange["step"] == step]


def test_the_write_sends_ganetis_replace_new_secondary_and_journals_it(make_cluster: Any) -> None:
    cluster, adapter, changes = make_cluster(_step("write"))
    job = cluster.replace_secondary(NAME, NEW)
    assert isinstance(job, Job) and job.id == 501
    [seen] = adapter.seen
    assert (seen.method, seen.path, seen.params, seen.user) == ("POST", PATH, {}, "cookbooks")
    assert seen.body == {"mode": "replace_new_secondary", "remote_node": NEW}
    [change] = changes.changes
    assert (change.action, change.target, change.detail["job_id"]) == ("instance-replace-disks", NAME, 501)
    assert job.wait().summary == (f"INSTANCE_REPLACE_DISKS({NAME})",)


def test_the_dry_run_is_ganetis_check_in_the_body(make_cluster: Any) -> None:
    cluster, adapter, changes = make_cluster(_step("check"), dry_run=True)
    job = cluster.replace_secondary(NAME, NEW)
    assert isinstance(job, Job) and job.id == 502
    [seen] = adapter.seen
    assert seen.params == {} and seen.body == {"mode": "replace_new_secondary", "remote_node": NEW, "dry_run": True}
    [change] = changes.changes
    assert change.dry_run and change.detail["checked"] is True


def test_the_undo_is_declared_with_the_old_secondary_read_before_and_marks_the_job(
        make_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inverse.uuid, "uuid4", lambda: uuid.UUID(int=1))
    cluster, adapter, changes = make_cluster(_step("write"))
    changes.undo = UndoStack(cast(Any, None))
    cluster.replace_secondary(NAME, NEW)
    assert [(seen.method, seen.user) for seen in adapter.seen] == [("GET", "cookbooks-ro"), ("POST", "cookbooks")]
    assert adapter.seen[1].params == {"reason": [MARKER]}
    [(_, undo)] = changes.undo.steps
    assert undo.action == "instance-replace-disks"
    assert {key: undo.args[key] for key in ("name", "node", "new_node", "marker", "job_id")} == {
        "name": NAME, "node": OLD, "new_node": NEW, "marker": MARKER, "job_id": 501}


def test_the_undo_replaces_the_secondary_back_with_the_old_one(make_cluster: Any) -> None:
    cluster, adapter, _ = make_cluster(_step("undo"))
    args = {"cluster": "lab", "marker": MARKER, "since": 1795400190.0, "name": NAME, "node": OLD, "new_node": NEW,
            "job_id": 501}
    assert cluster.undo("instance-replace-disks", args) == "undone"
    sent = [seen for seen in adapter.seen if seen.method == "POST"]
    assert [(seen.path, seen.body) for seen in sent] == [(PATH, {"mode": "replace_new_secondary",
                                                                 "remote_node": OLD})]


def test_the_undo_leaves_alone_a_secondary_changed_since(make_cluster: Any) -> None:
    exchanges = _step("undo")
    moved = next(e for e in exchanges if e["path"] == f"/2/instances/{NAME}")
    moved["response"] = {**moved["response"], "snodes": ["node4.lab.example"]}
    cluster, adapter, _ = make_cluster(exchanges)
    args = {"cluster": "lab", "name": NAME, "node": OLD, "new_node": NEW, "job_id": 501}
    with pytest.raises(NotOursError, match=re.escape("secondary node4.lab.example now, not node3.lab.example")):
        cluster.undo("instance-replace-disks", args)
    assert [seen.method for seen in adapter.seen] == ["GET", "GET"]
