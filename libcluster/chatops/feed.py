"""The output of one run on its way to one chat destination: paced, bounded, and always ending with the result.

A chat channel must not be flooded (IRC servers disconnect flooding clients; Slack takes five
posts per response URL). A feed sends at most ``max_lines`` lines in any ``interval`` seconds
(a line goes out at once while the window has room), batches at least ``batch_gap`` apart, keeps
at most ``max_pending`` lines waiting (more are counted and summarized as "N lines skipped"),
never skips an important line (START/END, approvals, notes), and sends the final result right
after the last lines, in the same batch when they fit.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pace:
    """How fast a destination takes messages."""

    interval: float
    """Length of the sliding window, in seconds."""
    max_lines: int
    """Lines sent in any window (and per batch)."""
    max_batches: int | None = None
    """Batches in all (Slack's response URL takes 5), the last one kept for the result; None: unlimited."""
    batch_gap: float = 0.0
    """Seconds between two batches (lets lines gather into one post)."""


class Sink(Protocol):
    """A chat destination: sends one batch of lines as one message (or one line each, on IRC)."""

    pace: Pace

    def send(self, lines: list[str]) -> None:
        """Deliver the lines; may raise (the feed logs and goes on)."""


class Feed:
    """Lines of one run to one sink, sent by a background thread at the sink's pace."""

    def __init__(self, sink: Sink, *, max_pending: int, skipped_note: Callable[[int], str]) -> None:
        """Start the sender thread; skipped_note(n) words the line replacing n skipped lines."""
        self.sink = sink
        self.max_pending = max_pending
        self.skipped_note = skipped_note
        self._pending: collections.deque[str] = collections.deque()
        self._skipped = 0
        self._final: list[str] | None = None
        self._batches = 0
        self._sent: collections.deque[float] = collections.deque()
        """When each line of the current window went out."""
        self._last_batch = float("-inf")
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="chatops-feed", daemon=True)
        self._thread.start()

    def add(self, line: str, *, important: bool = False) -> None:
        """Queue one line; an unimportant line is skipped (and counted) while max_pending lines wait."""
        with self._cond:
            if self._final is not None:
                return
            if len(self._pending) >= self.max_pending and not important:
                self._skipped += 1
                return
            self._flush_skipped()
            self._pending.append(line)
            self._cond.notify()

    def close(self, final: list[str]) -> None:
        """Send what waits (at the pace) and then the final lines; later add() calls are ignored."""
        with self._cond:
            if self._final is not None:
                return
            self._flush_skipped()
            self._final = final
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the final lines are sent."""
        self._thread.join(timeout)

    def _flush_skipped(self) -> None:
        if self._skipped:
            self._pending.append(self.skipped_note(self._skipped))
            self._skipped = 0

    def _budget(self) -> float:
        limit = self.sink.pace.max_batches
        return float("inf") if limit is None else limit - self._batches

    def _next_batch(self) -> tuple[list[str], bool]:
        """Wait for the next batch to send; True with the last one (the result)."""
        pace = self.sink.pace
        with self._cond:
            while True:
                if self._final is not None and (len(self._pending) <= pace.max_lines or self._budget() <= 1):
                    lines = list(self._pending)
                    if len(lines) > pace.max_lines:
                        lines = [self.skipped_note(len(lines) - pace.max_lines), *lines[-pace.max_lines:]]
                    return lines + self._final, True
                now = time.monotonic()
                while self._sent and self._sent[0] <= now - pace.interval:
                    self._sent.popleft()
                room = pace.max_lines - len(self._sent)
                ready_at = max(self._last_batch + pace.batch_gap, now if room > 0 else self._sent[0] + pace.interval)
                if self._pending and self._budget() > 1 and now >= ready_at:
                    batch = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
                    self._sent.extend([now] * len(batch))
                    self._last_batch = now
                    return batch, False
                waiting = self._pending and self._budget() > 1
                self._cond.wait(max(0.0, ready_at - now) if waiting else None)

    def _work(self) -> None:
        while True:
            lines, last = self._next_batch()
            self._batches += 1
            try:
                self.sink.send(lines)
            except Exception as exc:  # noqa: BLE001 - a chat outage must not stop the run or its other messages
                logger.warning("Chat message not delivered (%d lines): %s: %s", len(lines), type(exc).__name__, exc)
            if last:
                return
