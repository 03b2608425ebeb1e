"""The token bucket behind the IRC bot's pace: a burst, then one line per interval, callers served in turn."""

from __future__ import annotations

from libcluster.chatops.flood import TokenBucket


class Clock:
    """A clock that moves only when told (or when the bucket makes a caller sleep)."""

    def __init__(self) -> None:
        """At 0."""
        self.now = 0.0

    def __call__(self) -> float:
        """Now."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Move on by seconds."""
        self.now += seconds


def test_a_burst_then_one_line_per_interval() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 2.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(6):
        bucket.take()
        sent.append(clock.now)
    assert sent == [0.0, 0.0, 0.0, 2.0, 4.0, 6.0]


def test_the_bucket_refills_while_quiet_but_never_beyond_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 1.0, clock=clock, sleep=clock.sleep)
    assert [bucket.delay(), bucket.delay(), bucket.delay()] == [0.0, 0.0, 1.0]
    clock.now = 100.0
    assert [bucket.delay(), bucket.delay(), bucket.delay()] == [0.0, 0.0, 1.0]


def test_waiting_callers_get_successive_turns() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 0.5, clock=clock, sleep=clock.sleep)
    assert [bucket.delay() for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]  # reserved in turn, nobody sent twice at once
