"""--recover waits, before looking up a dead run's changes, until their requests can no longer be acted on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from libcluster import audit, recover, undo
from libcluster.config import Section

CONFIG = Section({"netbox": {"timeout": 20}, "dns": {"timeout": 5},
                  "ganeti": {"clusters": {"lab": {"timeout": 40}}}}, "", "test.yaml")


def step(system: str, result: str | None, seconds_ago: float, cluster: str = "lab") -> recover.Step:
    """A change of a dead run whose intent was written seconds_ago."""
    written = audit.iso(audit.utc_now() - timedelta(seconds=seconds_ago))
    undo = {"system": system, "action": "x", "target": "t", "args": {"cluster": cluster}}
    return recover.Step(1, system, "x", "t", undo, result=result, time=written)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds recover.settle sleeps (nothing is slept for real)."""
    seconds: list[float] = []
    monkeypatch.setattr(recover.time, "sleep", seconds.append)
    return seconds


@pytest.mark.parametrize(("system", "timeout"), [("netbox", 20), ("dns", 5), ("ganeti", 40)])
def test_a_change_without_result_is_looked_up_after_its_request_timeout(slept: list[float], system: str,
                                                                        timeout: float) -> None:
    recover.settle(CONFIG, [step(system, None, seconds_ago=2)])
    assert len(slept) == 1 and timeout - 2.5 < slept[0] <= timeout - 2


def test_the_longest_wait_of_several_maybe_changes_is_slept_once(slept: list[float]) -> None:
    recover.settle(CONFIG, [step("dns", "maybe", 1), step("ganeti", "maybe", 10), step("netbox", None, 0)])
    assert len(slept) == 1 and 29 < slept[0] <= 30


@pytest.mark.parametrize("steps", [
    pytest.param([step("ganeti", "done", 1), step("netbox", "failed", 1)], id="done-or-failed"),
    pytest.param([step("ganeti", None, 60)], id="timeout-passed"),
    pytest.param([step("remote", None, 0), step("cookbook", "maybe", 0)], id="no-server-acts-later"),
])
def test_no_wait_when_no_request_can_still_land(slept: list[float], steps: list[Any]) -> None:
    recover.settle(CONFIG, steps)
    assert slept == []


def test_an_unknown_cluster_waits_the_default(slept: list[float]) -> None:
    recover.settle(CONFIG, [step("ganeti", None, 0, cluster="other")])
    assert undo.REQUEST_TIMEOUT_DEFAULT - 1 < slept[0] <= undo.REQUEST_TIMEOUT_DEFAULT
