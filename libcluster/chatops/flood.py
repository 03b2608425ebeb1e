"""A token bucket: what keeps the IRC bot under the server's flood limit, over all its replies and runs together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """burst lines at once, then one line every interval seconds; take() waits its turn (callers in order)."""

    def __init__(self, burst: int, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """A full bucket of burst tokens, refilled by one every interval seconds."""
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take one token now and return how long to wait before using it (0 while the burst lasts)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) / self.interval)
            self._updated = now
            self._tokens -= 1
            return max(0.0, -self._tokens * self.interval)

    def take(self) -> None:
        """Wait until one more line may be sent."""
        wait = self.delay()
        if wait:
            self._sleep(wait)
