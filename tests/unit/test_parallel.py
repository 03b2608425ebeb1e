"""libcluster.parallel: calls made at the same time, results named or in order, failures together."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from libcluster import parallel


@dataclass(frozen=True)
class Found:
    """What gather builds in the test."""

    left: int
    right: str


def test_gather_names_the_results_and_runs_the_calls_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=5)  # each call waits for the other: sequential calls would time out

    def left() -> int:
        barrier.wait()
        return 1

    def right() -> str:
        barrier.wait()
        return "r"

    assert parallel.gather(Found, left=left, right=right) == Found(left=1, right="r")


def test_map_all_keeps_the_order_of_the_items() -> None:
    def slow_first(value: int) -> int:
        time.sleep(0.05 if value == 0 else 0)
        return value * 10

    assert parallel.map_all(slow_first, [0, 1, 2]) == [0, 10, 20]
    assert parallel.map_all(slow_first, []) == []


def test_every_failure_is_raised_together_after_every_call_ended() -> None:
    ended: list[str] = []

    def fails(name: str) -> None:
        raise ValueError(name)

    def slow() -> str:
        time.sleep(0.1)
        ended.append("slow")
        return "done"

    with pytest.raises(ExceptionGroup) as caught:
        parallel.gather(dict, a=lambda: fails("a"), slow=slow, b=lambda: fails("b"))
    assert [str(error) for error in caught.value.exceptions] == ["a", "b"]
    assert ended == ["slow"]
