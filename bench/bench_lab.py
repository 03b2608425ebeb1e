"""Benchmark of the lab: first `up`, `up` after `down` with caches, `down`, and the memory the lab uses.

Usage (root; TAKES THE LAB DOWN):
    .venv/bin/python bench/bench_lab.py            # down, up with caches, memory, down, up again
    .venv/bin/python bench/bench_lab.py --fresh    # also removes the caches first: a first up as on a new machine

--fresh removes the lab's cache dir (NetBox venv and migrated database), so NetBox is installed from PyPI
and migrated again; Debian packages already installed stay installed (their install time is in the
per-part logs). Figures are printed and written, with the command, to bench/results/lab.txt.
Goals (issue 3): first up < 12 min, up after down < 90 s, down < 40 s, memory < 2 GiB.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cookbook_lab import cli, inventory
from cookbook_lab.common import Lab

RESULTS = Path(__file__).resolve().parent / "results" / "lab.txt"


def timed(what: str, action: Callable[[], None]) -> float:
    """Run action() and return its wall time in seconds, printing it."""
    start = time.monotonic()
    action()
    elapsed = time.monotonic() - start
    print(f"{what}: {elapsed:.1f} s", flush=True)
    return elapsed


def main() -> int:
    """Run the measurements and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="remove the caches before the first up")
    args = parser.parse_args()
    lab = Lab()
    lines = []
    lines.append(f"down (from a running lab): {timed('down', lambda: cli.down(lab)):.1f} s")
    if args.fresh:
        shutil.rmtree(lab.cache_dir, ignore_errors=True)
        lines.append(f"first up, caches removed: {timed('first up', lambda: cli.up(lab)):.1f} s")
        lines.append(f"down: {timed('down', lambda: cli.down(lab)):.1f} s")
    lines.append(f"up after down, with caches: {timed('up after down', lambda: cli.up(lab)):.1f} s")
    rss, pss = inventory.memory(inventory.lab_pids(lab.state_dir, lab.cache_dir))
    lines.append(f"memory of the lab's processes right after up: PSS {pss / 1024:.0f} MiB, RSS {rss / 1024:.0f} MiB")
    print(lines[-1])
    lines.append(f"up again (nothing to do): {timed('second up', lambda: cli.up(lab)):.1f} s")
    command = shlex.join([".venv/bin/python", "bench/bench_lab.py", *sys.argv[1:]])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        f"# {command}\n# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
        f"2 cores, goals: first up < 12 min, up after down < 90 s, down < 40 s, memory < 2 GiB\n"
        + "\n".join(lines) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
