"""Benchmark of the `cookbook` runner on a generated tree of 1,000 cookbooks (both APIs, in groups).

Prints and writes to bench/results/runner.txt: the median time of `cookbook -c CFG -l` (cold
catalog cache, then warm), and the start-up overhead of running a trivial cookbook over a bare
`python -c pass`. Goals: listing < 0.5 s, overhead < 0.3 s. Commands run with bytecode caching on
(as after a normal install), after one unmeasured warm-up run each, the commands taking turns. Each
figure is the median wall time; the CPU time (user + system) is shown too, since other work on the
machine inflates wall times (the load average is recorded) far more than CPU times.

With --spicerack the same tree (importing spicerack.cookbook) is listed and run by Spicerack's own
`cookbook`, timed in the same run, and both figures are printed side by side with their ratio. Goals
then: a trivial run and the listing (warm cache; Spicerack has no cache) in at most 1/10 of Spicerack's
time. Spicerack is installed from PyPI, at the pinned version, into its own venv (its `cookbook`
command would clash with ours): --spicerack-venv, created on first use.

Usage: .venv/bin/python bench/bench_runner.py [--runs N] [--spicerack [--spicerack-venv DIR]]
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
from collections.abc import Callable, Sequence
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
RATIO_GOAL = 10
"""With --spicerack: our trivial run and listing take at most 1/RATIO_GOAL of Spicerack's time."""
SPICERACK = "wikimedia-spicerack==14.0.0"
"""The Spicerack compared with (PyPI requirement)."""
RESULTS = Path(__file__).resolve().parent / "results" / "runner.txt"
"""Where the figures are written."""

CLASS_API = '''"""Cookbook {name} (class API)

Generated for the runner benchmark.
"""

import argparse

from {api} import CookbookBase, CookbookRunnerBase


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


def generate(base: Path, api: str = "libcluster.cookbook") -> list[str]:
    """Write the tree under base/cookbooks, class API cookbooks importing api, and return the cookbook names."""
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
                (sub_dir / f"{leaf}.py").write_text(template.format(name=name, index=index, api=api))
                names.append(name)
    return names


def timed(command: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of command, which must succeed.

    The CPU time hardly depends on other work on the machine, the wall time does: both are reported.
    """
    start = time.perf_counter()
    process = subprocess.Popen(list(command), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, list(command))
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def medians(commands: dict[str, tuple[Sequence[str], Callable[[], object] | None]], env: dict[str, str],
            runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU times of each command over runs rounds, the commands taking turns in each round (so
    that load from other work falls on all of them alike); the callable, if any, runs untimed before each run."""
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, (command, before) in commands.items():
            if before is not None:
                before()
            times[label].append(timed(command, env))
    wall = {label: statistics.median(value[0] for value in values) for label, values in times.items()}
    cpu = {label: statistics.median(value[1] for value in values) for label, values in times.items()}
    return wall, cpu


def spicerack_cookbook(venv: Path) -> Path:
    """Spicerack's `cookbook` command in venv, installing SPICERACK there first when it is not."""
    command, marker = venv / "bin" / "cookbook", venv / "bench-requirement.txt"
    if not command.exists() or not marker.exists() or marker.read_text().strip() != SPICERACK:
        print(f"Installing {SPICERACK} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", SPICERACK],
                       check=True)
        marker.write_text(SPICERACK + "\n")
    return command


def code_version() -> str:
    """The commit of the checkout this benchmark runs in, and whether libcluster/ has uncommitted changes."""
    top = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(top), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--", "libcluster"], check=True,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (", with uncommitted changes in libcluster/" if dirty else "")


def write_configs(tmp: Path) -> tuple[Path, Path]:
    """Our configuration and Spicerack's, for the trees under tmp/tree and tmp/spicerack-tree."""
    ours, theirs = tmp / "config.yaml", tmp / "spicerack-config.yaml"
    ours.write_text(yaml.safe_dump({
        "cookbooks_base_dirs": [str(tmp / "tree")],
        "logs_base_dir": str(tmp / "logs"),
        "audit_log": str(tmp / "logs" / "audit.jsonl"),
        "locks": {"file_dir": str(tmp / "locks")},
    }))
    (tmp / "spicerack-etc").mkdir()
    theirs.write_text(yaml.safe_dump({
        "cookbooks_base_dirs": [str(tmp / "spicerack-tree")],
        "logs_base_dir": str(tmp / "spicerack-logs"),
        "instance_params": {"spicerack_config_dir": str(tmp / "spicerack-etc")},
    }))
    return ours, theirs


def ratio_line(what: str, ours: tuple[float, float], theirs: tuple[float, float]) -> str:
    """One side-by-side line: our (wall, CPU) times, Spicerack's, and the fraction ours is of theirs."""
    return (f"{what}: ours {ours[0]:.3f} s, Spicerack {theirs[0]:.3f} s: 1/{theirs[0] / ours[0]:.1f}"
            f"  (goal 1/{RATIO_GOAL} or better); CPU time: ours {ours[1]:.3f} s, Spicerack {theirs[1]:.3f} s:"
            f" 1/{theirs[1] / ours[1]:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the tree(s), time listing and start-up, print and write the figures; 1 if a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs per measured command (median)")
    parser.add_argument("--spicerack", action="store_true",
                        help=f"also time Spicerack ({SPICERACK}) on the same tree, side by side")
    parser.add_argument("--spicerack-venv", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                        / "ganeti-cookbooks" / f"bench-{SPICERACK.replace('==', '-')}",
                        help="venv holding Spicerack, created on first use (default: %(default)s)")
    args = parser.parse_args(argv)
    cookbook = str(Path(sys.executable).with_name("cookbook"))
    theirs = str(spicerack_cookbook(args.spicerack_venv)) if args.spicerack else None
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp_name:
        tmp = Path(tmp_name)
        names = generate(tmp / "tree")
        generate(tmp / "spicerack-tree", api="spicerack.cookbook")
        config, spicerack_config = write_configs(tmp)
        # As installed for real: bytecode caching on (the environment may turn it off for development).
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["XDG_CACHE_HOME"] = str(tmp / "cache")

        def clear_cache() -> None:
            shutil.rmtree(tmp / "cache", ignore_errors=True)

        commands: dict[str, tuple[Sequence[str], Callable[[], object] | None]] = {
            "list cold": ([cookbook, "-c", str(config), "-l"], clear_cache),
            "list warm": ([cookbook, "-c", str(config), "-l"], None),
            "run": ([cookbook, "-c", str(config), names[0]], None),
            "bare": ([sys.executable, "-c", "pass"], None),
        }
        if theirs is not None:
            commands["spicerack list"] = ([theirs, "-c", str(spicerack_config), "-l"], None)
            commands["spicerack run"] = ([theirs, "-c", str(spicerack_config), names[0]], None)
        for command, _ in commands.values():  # writes the bytecode caches of runners and trees
            timed(command, env)
        listed = subprocess.run(commands["list warm"][0], check=True, env=env, capture_output=True, text=True).stdout
        figures, cpu = medians(commands, env, args.runs)
    overhead = figures["run"] - figures["bare"]
    runs = f"median of {args.runs}"
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()} ({platform.processor() or platform.machine()},"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}), Python {platform.python_version()}",
        f"# command: {shlex.join([sys.executable, *sys.argv])}",
        f"# code: {code_version()}",
        f"tree: {len(names)} cookbooks ({GROUPS} groups x {SUBGROUPS} subgroups x {PER_SUBGROUP}; "
        "class and module API alternating)",
        f"listed lines: {len(listed.splitlines())}",
        f"cookbook -l, cold cache ({runs}): {figures['list cold']:.3f} s  (goal < {LISTING_GOAL} s)",
        f"cookbook -l, warm cache ({runs}): {figures['list warm']:.3f} s  (goal < {LISTING_GOAL} s)",
        f"cookbook {names[0]} ({runs}): {figures['run']:.3f} s (CPU time {cpu['run']:.3f} s)",
        f"python -c pass ({runs}): {figures['bare']:.3f} s",
        f"start-up overhead: {overhead:.3f} s  (goal < {OVERHEAD_GOAL} s)",
    ]
    met = max(figures["list cold"], figures["list warm"]) < LISTING_GOAL and overhead < OVERHEAD_GOAL
    if theirs is not None:
        lines += [
            f"Spicerack: {SPICERACK} in {args.spicerack_venv}, same tree importing spicerack.cookbook",
            f"spicerack cookbook -l ({runs}): {figures['spicerack list']:.3f} s",
            f"spicerack cookbook {names[0]} ({runs}): {figures['spicerack run']:.3f} s",
            *(ratio_line(what, (figures[ours], cpu[ours]), (figures[theirs], cpu[theirs])) for what, ours, theirs in (
                ("trivial run", "run", "spicerack run"), ("listing, warm cache", "list warm", "spicerack list"),
                ("listing, cold cache", "list cold", "spicerack list"))),
        ]
        met = met and all(RATIO_GOAL * figures[ours] <= figures[f"spicerack {what}"]
                          for ours, what in (("run", "run"), ("list warm", "list")))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
