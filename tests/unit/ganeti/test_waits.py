"""libcluster.ganeti.waits: waiting for an instance to run, and a verify tried again after a lost verify job."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from libcluster.errors import LibclusterError
from libcluster.ganeti import waits
from libcluster.testing import FakeCluster

VM = "vm1.lab.example"


def test_wait_running_polls_until_running_or_times_out() -> None:
    cluster = FakeCluster()
    cluster.add_instance(VM, up=False)
    clock = itertools.count()
    started = waits.wait_running(cluster, VM, 10, sleep=lambda s: cluster.startup_instance(VM).wait() and None,
                                 clock=lambda: next(clock))
    assert started.running and started.name == VM
    cluster.instances_by_name[VM].update(status="ERROR_down", oper_state=False)
    with pytest.raises(LibclusterError, match="not running 3s after the job ended .Ganeti status ERROR_down"):
        waits.wait_running(cluster, VM, 3, sleep=lambda s: None, clock=lambda: next(clock))


def test_a_verify_lost_to_a_race_is_tried_again_and_one_with_findings_is_not(monkeypatch: Any) -> None:
    monkeypatch.setattr(waits.time, "sleep", lambda seconds: None)
    cluster = FakeCluster()
    cluster.commands.verify_outputs = [(1, ""), (0, "")]  # a verify job failed without any finding, then clean
    assert waits.verify_cluster(cluster.commands, "before").ok and cluster.calls == [("verify",), ("verify",)]
    cluster = FakeCluster()
    cluster.commands.verify_outputs = [(1, "  - ERROR:ENODESSH:node:node2.example:ssh problem"), (0, "")]
    result = waits.verify_cluster(cluster.commands, "after")
    assert [issue.code for issue in result.errors] == ["ENODESSH"] and cluster.calls == [("verify",)]
