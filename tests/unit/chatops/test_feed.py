"""Feeds: at most max_lines per interval, bounded backlog with a note, important lines kept, result always sent."""

from __future__ import annotations

import threading
import time

from libcluster.chatops.feed import Feed, Pace
from tests.unit.chatops.conftest import RecordingSink


def note(count: int) -> str:
    """The line replacing skipped lines."""
    return f"... {count} skipped"


def feed_of(sink: RecordingSink, max_pending: int = 1000) -> Feed:
    """A feed on sink."""
    return Feed(sink, max_pending=max_pending, skipped_note=note)


def test_no_more_than_max_lines_in_any_interval_and_the_result_last() -> None:
    sink = RecordingSink(Pace(interval=0.2, max_lines=3))
    feed = feed_of(sink)
    for index in range(10):
        feed.add(f"line {index}")
    feed.close(["RESULT"])
    feed.join(5)
    assert sink.lines == [*(f"line {index}" for index in range(10)), "RESULT"]
    paced = [(at, len(batch)) for at, batch in sink.batches[:-1]]
    for at, _ in paced:
        in_window = sum(count for other, count in paced if at - 0.19 <= other <= at)
        assert in_window <= 3, sink.batches
    assert len(sink.batches[-1][1]) <= 4


def test_a_line_goes_out_at_once_while_the_window_has_room() -> None:
    sink = RecordingSink(Pace(interval=5.0, max_lines=3))
    feed = feed_of(sink)
    for line in ("START", "work", "END"):
        added = time.monotonic()
        feed.add(line)
        sink.wait_for(f"^{line}$", timeout=1.0)
        assert sink.batches[-1][0] - added < 0.5
    feed.add("over the window")
    time.sleep(0.3)
    assert "over the window" not in sink.lines, "a fourth line within 5 s waits"
    feed.close(["RESULT"])
    feed.join(1.0)
    assert sink.lines[-2:] == ["over the window", "RESULT"], "the result does not wait for the window"


def test_batch_gap_gathers_lines_into_one_post() -> None:
    sink = RecordingSink(Pace(interval=0.3, max_lines=30, batch_gap=0.3))
    feed = feed_of(sink)
    feed.add("first")
    sink.wait_for("^first$")
    for index in range(5):
        feed.add(f"line {index}")
    sink.wait_for("^line 4$")
    feed.close(["RESULT"])
    feed.join(5)
    assert [batch for _, batch in sink.batches] == [["first"], [f"line {index}" for index in range(5)], ["RESULT"]]
    assert sink.batches[1][0] - sink.batches[0][0] >= 0.29


def test_backlog_is_bounded_with_a_note_and_important_lines_are_never_skipped() -> None:
    sink = RecordingSink(Pace(interval=0.05, max_lines=100))
    blocker = threading.Event()
    sent = sink.send

    def slow_send(lines: list[str]) -> None:
        blocker.wait(5)
        sent(lines)

    sink.send = slow_send  # type: ignore[method-assign]
    feed = feed_of(sink, max_pending=5)
    feed.add("first")  # taken by the sender, which then blocks
    time.sleep(0.1)
    for index in range(20):
        feed.add(f"noise {index}")
    feed.add("END (PASS)", important=True)
    feed.add("late noise")
    feed.close(["RESULT"])
    blocker.set()
    feed.join(5)
    assert sink.lines == ["first", "noise 0", "noise 1", "noise 2", "noise 3", "noise 4", "... 15 skipped",
                          "END (PASS)", "... 1 skipped", "RESULT"]


def test_a_batch_budget_keeps_the_last_post_for_the_result() -> None:
    sink = RecordingSink(Pace(interval=0.01, max_lines=2, max_batches=3))
    feed = feed_of(sink)
    for index in range(2):
        feed.add(f"line {index}")
        sink.wait_for(f"line {index}$")
    for index in range(2, 9):
        feed.add(f"line {index}")
    feed.close(["RESULT"])
    feed.join(5)
    batches = [batch for _, batch in sink.batches]
    assert batches == [["line 0"], ["line 1"], [note(5), "line 7", "line 8", "RESULT"]]


def test_a_failing_sink_does_not_stop_the_feed() -> None:
    sink = RecordingSink(Pace(interval=0.01, max_lines=1))
    calls = []
    sent = sink.send

    def flaky(lines: list[str]) -> None:
        calls.append(lines)
        if len(calls) == 1:
            raise ConnectionError("chat is down")
        sent(lines)

    sink.send = flaky  # type: ignore[method-assign]
    feed = feed_of(sink)
    feed.add("lost")
    feed.add("kept")
    feed.close(["RESULT"])
    feed.join(5)
    assert calls[0] == ["lost"] and sink.lines == ["kept", "RESULT"]


def test_lines_after_close_are_ignored() -> None:
    sink = RecordingSink()
    feed = feed_of(sink)
    feed.close(["RESULT"])
    feed.add("too late")
    feed.close(["again"])
    feed.join(5)
    assert sink.lines == ["RESULT"]
