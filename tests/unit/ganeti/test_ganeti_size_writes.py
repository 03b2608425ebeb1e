"""GanetiCluster's size writes (resize-vm, disk) on replayed RAPI exchanges: the request each sends, and the
refusals made before anything is sent. The instance records are the recorded transcript's; the write answers are
the recorded grow/modify answers (a job id) matched against the body the client must send.

DRBD: the grow asks Ganeti to wait for the mirror to sync (wait_for_sync) and the add relies on Ganeti's default
(wait for sync); the lab has no DRBD, so this is checked only on the request, not on a DRBD sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.ganeti.ganeti_replay import RecordedRapi


def _instance(transcript: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The recorded GET of inst2.gl.test whose disks have the given sizes."""
    return next(entry for entry in transcript if entry.get("method") == "GET"
                and entry.get("path") == "/2/instances/inst2.gl.test" and entry.get("status") == 200
                and entry["response"].get("disk.sizes") == sizes)


def _answer(transcript: list[dict[str, Any]], method: str, path: str, body: Any) -> dict[str, Any]:
    """The recorded answer (a job id) of a write to path, expected with body."""
    recorded = next(entry for entry in transcript if entry.get("method") == method and entry.get("path") == path
                    and entry.get("status") == 200)
    return {**recorded, "params": None, "body": body}


def test_grow_disk_to_sends_an_absolute_size_and_waits_for_sync(
        transcript: list[dict[str, Any]], make_cluster: Callable[..., Any]) -> None:
    grow = _answer(transcript, "POST", "/2/instances/inst2.gl.test/disk/0/grow",
                   {"amount": 2048, "absolute": True, "wait_for_sync": True})
    cluster, adapter, _ = make_cluster([_instance(transcript, [1088, 1024]), grow])
    assert cluster.grow_disk_to("inst2.gl.test", 0, 2048).id == grow["response"]
    assert isinstance(adapter, RecordedRapi) and adapter.exchanges == []


@pytest.mark.parametrize(("index", "size", "message"), [
    (0, 1024, "is smaller; a disk only grows"),
    (1, 1024, "is its size now"),
    (2, 4096, "has no disk 2"),
])
def test_grow_disk_to_refuses_before_sending(transcript: list[dict[str, Any]], make_cluster: Callable[..., Any],
                                             index: int, size: int, message: str) -> None:
    cluster, adapter, _ = make_cluster([_instance(transcript, [1088, 1024])])
    with pytest.raises(ValueError, match=message):
        cluster.grow_disk_to("inst2.gl.test", index, size)
    assert [seen.method for seen in adapter.seen] == ["GET"]


def test_add_disk_sends_a_named_disk(transcript: list[dict[str, Any]],
                                                  make_cluster: Callable[..., Any]) -> None:
    cluster, adapter, _ = make_cluster([])
    adapter.exchanges.append(_answer(transcript, "PUT", "/2/instances/inst2.gl.test/modify", None))
    sent: list[Any] = []
    real_submit = cluster.rapi.submit

    def submit(method: str, path: str, *, params: Any = None, body: Any = None) -> int:
        sent.append(body)
        adapter.exchanges[-1]["body"] = body  # the disk's name is random: answer the body the client built
        return int(real_submit(method, path, params=params, body=body))

    cluster.rapi.submit = submit
    cluster.add_disk("inst2.gl.test", 1024)
    [[op, index, params]] = sent[0]["disks"]
    assert (op, index, params["size"]) == ("add", -1, 1024) and params["name"].startswith("cookbooks-")
    assert adapter.seen[-1].body == {"disks": [["add", -1, {"size": 1024, "name": params["name"]}]]}


def test_remove_disk_refuses_a_running_instance_before_sending(
        transcript: list[dict[str, Any]], make_cluster: Callable[..., Any]) -> None:
    cluster, adapter, _ = make_cluster([_instance(transcript, [1088, 1024])])
    with pytest.raises(ValueError, match="is up in Ganeti: a disk is removed only from a stopped instance"):
        cluster.remove_disk("inst2.gl.test", 1)
    assert [seen.method for seen in adapter.seen] == ["GET"]
