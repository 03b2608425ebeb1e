"""Benchmark of the `cookbook` runner on a generated tree of 1,000 cookbooks (both APIs, in groups).

Prints and writes to bench/results/runner.txt: the median time of `cookbook -c CFG -l` (cold
catalog cache, then warm), and the start-up overhead of running a trivial cookbook over a bare
`python -c pass`. Goals: listing < 0.5 s, overhead < 0.3 s. Commands run with bytecode caching on
(as after a normal install), after one unmeasured warm-up run each; the load average is recorded
because other work on the machine inflates every figure.

Usage: .venv/bin/python bench/bench_runner.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

GROUPS = 20
"""Top-level groups."""
SUBGROUPS = 5
"""Subgroups per group."""
PER_SUBGROUP = 10
"""Cookbooks per subgroup: GROUPS * SUBGROUPS * PER_SUBGROUP = 1,000."""
LISTING_GOAL = 0.5
"""Seconds allowed for `cookbook -l`."""
OVERHEAD_GOAL = 0.3
"""Seconds allowed over `python -c pass` to run a trivial cookbook."""
RESULTS = Path(__file__).resolve().parent / "results" / "runner.txt"
"""Where the figures are written."""

CLASS_API = '''"""Cookbook {name} (class API)

Generated for the runner benchmark.
"""

import argparse

from libcluster.cookbook import CookbookBase, CookbookRunnerBase


class Bench{index}(CookbookBase):
    """Benchmark cookbook number {index}"""

    def argument_parser(self) -> argparse.ArgumentParser:
        """No arguments."""
        return argparse.ArgumentParser(description=self.__doc__)

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """A runner doing nothing."""
        return Runner{index}()


class Runner{index}(CookbookRunnerBase):
    """Does nothing."""

    def run(self) -> int:
        """Succeed."""
        return 0
'''

MODULE_API = '''"""Cookbook {name} (module API)"""

import argparse

__title__ = "Benchmark cookbook number {index}"


def argument_parser() -> argparse.ArgumentParser:
    """No arguments."""
    return argparse.ArgumentParser(description=__doc__)


def run(args, ctx) -> int:
    """Succeed."""
    return 0
'''


def generate(base: Path) -> list[str]:
    """Write the tree under base/cookbooks and return the cookbook names."""
    names: list[str] = []
    for group in range(GROUPS):
        group_dir = base / "cookbooks" / f"grp{group:02d}"
        group_dir.mkdir(parents=True)
        (group_dir / "__init__.py").write_text(f'"""Benchmark group {group}"""\n\n__owner_team__ = "Team {group}"\n')
        for sub in range(SUBGROUPS):
            sub_dir = group_dir / f"sub{sub}"
            sub_dir.mkdir()
            (sub_dir / "__init__.py").write_text(f'"""Benchmark subgroup {group}.{sub}"""\n')
            for _ in range(PER_SUBGROUP):
                index = len(names)
                leaf = f"cb-{index:04d}"
                name = f"grp{group:02d}.sub{sub}.{leaf}"
                template = CLASS_API if index % 2 else MODULE_API
                (sub_dir / f"{leaf}.py").write_text(template.format(name=name, index=index))
                names.append(name)
    return names


def timed(command: Sequence[str], env: dict[str, str]) -> float:
    """Wall time of one run of command, which must succeed."""
    start = time.perf_counter()
    subprocess.run(list(command), check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(command: Sequence[str], env: dict[str, str], runs: int) -> float:
    """Median wall time of runs runs of command."""
    return statistics.median(timed(command, env) for _ in range(runs))


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the tree, time listing and start-up, print and write the figures; 1 if a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs per measured command (median)")
    args = parser.parse_args(argv)
    cookbook = str(Path(sys.executable).with_name("cookbook"))
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp_name:
        tmp = Path(tmp_name)
        names = generate(tmp / "tree")
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump({
            "cookbooks_base_dirs": [str(tmp / "tree")],
            "logs_base_dir": str(tmp / "logs"),
            "audit_log": str(tmp / "logs" / "audit.jsonl"),
            "locks": {"file_dir": str(tmp / "locks")},
        }))
        # As installed for real: bytecode caching on (the environment may turn it off for development).
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
        listing = [cookbook, "-c", str(config), "-l"]
        trivial = [cookbook, "-c", str(config), names[0]]
        bare = [sys.executable, "-c", "pass"]
        for warm_up in (listing, trivial, bare):  # writes the bytecode caches of runner and tree
            timed(warm_up, env)
        cold = []
        for _ in range(args.runs):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            cold.append(timed(listing, env))
        list_cold = statistics.median(cold)
        list_warm = median(listing, env, args.runs)
        listed = subprocess.run(listing, check=True, env=env, capture_output=True, text=True).stdout
        run_time = median(trivial, env, args.runs)
        bare_time = median(bare, env, args.runs)
    overhead = run_time - bare_time
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()} ({platform.processor() or platform.machine()},"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}), Python {platform.python_version()}",
        f"# command: {shlex.join([sys.executable, *sys.argv])}",
        f"tree: {len(names)} cookbooks ({GROUPS} groups x {SUBGROUPS} subgroups x {PER_SUBGROUP}; "
        "class and module API alternating)",
        f"listed lines: {len(listed.splitlines())}",
        f"cookbook -l, cold cache (median of {args.runs}): {list_cold:.3f} s  (goal < {LISTING_GOAL} s)",
        f"cookbook -l, warm cache (median of {args.runs}): {list_warm:.3f} s  (goal < {LISTING_GOAL} s)",
        f"cookbook {names[0]} (median of {args.runs}): {run_time:.3f} s",
        f"python -c pass (median of {args.runs}): {bare_time:.3f} s",
        f"start-up overhead: {overhead:.3f} s  (goal < {OVERHEAD_GOAL} s)",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    met = max(list_cold, list_warm) < LISTING_GOAL and overhead < OVERHEAD_GOAL
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
