"""Run ``cookbook ARGS...`` and SIGKILL it the moment the journal line (EVENT, SEQ) is on disk: a crash at an exact
step, the same on a loaded CI machine as on a quiet one (a test polling the journal from outside can lose the race
against the run's next lines, e.g. the end line right after the last result).

Usage: python -m tests.lab.killed_runner EVENT SEQ COOKBOOK-ARGS...
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from libcluster import journal
from libcluster.runner import cli


def kill_after(event: str, seq: int) -> None:
    """Make every journal write SIGKILL this process right after it wrote the line (event, seq)."""
    write_many = journal.Journal.write_many

    def write_then_kill(self: journal.Journal, lines: Sequence[tuple[str, Mapping[str, Any]]], *,
                        mirrored: bool = True) -> None:
        write_many(self, lines, mirrored=mirrored)
        if any(name == event and fields.get("seq") == seq for name, fields in lines):
            os.kill(os.getpid(), signal.SIGKILL)

    journal.Journal.write_many = write_then_kill  # type: ignore[method-assign]


if __name__ == "__main__":
    kill_after(sys.argv[1], int(sys.argv[2]))
    sys.exit(cli.main(sys.argv[3:]))
