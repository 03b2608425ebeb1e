"""A cookbook run's own DEBUG log, read by the benchmarks: its lines (by pid) and their times.

The runner writes every line with its asctime (local time, milliseconds) and the process id, so a benchmark
that starts the run knows which lines are its and when each was written, without a timer in the cookbook.
"""

from __future__ import annotations

import time
from pathlib import Path

STAMP_LENGTH = len("2026-01-01 00:00:00,000")


def log_time(line: str) -> float:
    """Seconds since the epoch of a log file line (its asctime, local time, millisecond resolution)."""
    stamp, _, millis = line[:STAMP_LENGTH].partition(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def run_log(path: Path, offset: int, pid: int) -> list[str]:
    """The DEBUG log lines the process pid wrote to path after offset (from the start if the file rotated)."""
    with path.open(encoding="utf-8", errors="replace") as log:
        if path.stat().st_size >= offset:
            log.seek(offset)
        return [line for line in log if written_by(line, pid)]


def written_by(line: str, pid: int) -> bool:
    """Whether the DEBUG log line was written by process pid (the runner writes it after the asctime)."""
    return f" {pid} [" in line[:STAMP_LENGTH + 80]
