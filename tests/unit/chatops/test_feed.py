"""Feeds: at most max_lines per interval, bounded backlog with a note, important lines kept, result always sent."""

from __future__ import annotations

import threading
import time

from conftest import RecordingSink

from libcluster.chatops.feed import Feed, Pace


def note(count: int) -> str:
    """The line replacing skipped lines."""
    return f"... {count} skipped"


def feed_of(sink: RecordingSink, max_pending: int = 1000) -> Feed:
    """A feed on sink."""
    return Feed(sink, max_pending=max_pending, skipped_note=note)


def test_lines_go_out_at_most_max_lines_per_interval_and_the_result_last() -> None:
    sink = RecordingSink(Pace(interval=0.2, max_lines=3))
    feed = feed_of(sink)
    for index in range(10):
        feed.add(f"line {index}")
    feed.close(["RESULT"])
    feed.join(5)
    assert sink.lines == [*(f"line {index}" for index in range(10)), "RESULT"]
    sizes = [len(batch) for _, batch in sink.batches]
    assert all(size <= 3 for size in sizes[:-1]) and sizes[-1] <= 4
    times = [at for at, _ in sink.batches]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 2 and all(gap >= 0.19 for gap in gaps[:-1]), gaps  # the result may follow at once


def test_the_result_follows_the_last_lines_at_once_when_they_fit_a_batch() -> None:
    sink = RecordingSink(Pace(interval=5.0, max_lines=3))
    feed = feed_of(sink)
    feed.add("START")
    sink.wait_for("^START$")
    feed.add("END")
    feed.close(["RESULT"])
    feed.join(1.0)
    assert [batch for _, batch in sink.batches] == [["START"], ["END", "RESULT"]]
    assert sink.batches[1][0] - sink.batches[0][0] < 1.0, "the result did not wait for the interval"


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
