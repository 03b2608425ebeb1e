"""Benchmark: how long after a Ganeti job ends does the client notice, long-poll versus polling every 2 s.

Usage (root, lab up; adds and removes cluster tags `cbt-bench-*`, nothing else):
    .venv/bin/python bench/bench_job_wait.py                 # 20 jobs per mode, 2 s polling interval
    .venv/bin/python bench/bench_job_wait.py --jobs 40 --interval 2

Each job is a cluster tag add or remove (cheap, one opcode). Modes alternate job by job so both
see the same cluster load. Latency = the moment the client knows the job is finished minus the
job's `end_ts` (Ganeti's own timestamp); both clocks are this machine's, so they agree. Long-poll
is `Job.wait()` (`GET /2/jobs/ID/wait`); polling is `GET /2/jobs/ID` then sleeping the interval,
as the peer Ansible module does. Figures and the command go to bench/results/job_wait.txt.
Goal (issue 4): long-poll median under 100 ms.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, JobFailedError, connect
from libcluster.ganeti.jobs import FINALIZED, Job, timestamp
from cookbook_lab.common import Lab

RESULTS = Path(__file__).resolve().parent / "results" / "job_wait.txt"


def notice_long_poll(cluster: GanetiCluster, job: Job) -> tuple[float, float]:
    """Wait with the long-poll; return (when the client knew, the job's end_ts).

    A job can fail when another client changed the cluster configuration at the same moment
    (ConfigurationError); it still ended, so its end_ts is read and counted.
    """
    try:
        end_ts = job.wait(progress=lambda _entry: None).end_ts
        noticed = time.time()
    except JobFailedError:
        noticed = time.time()
        end_ts = timestamp(cluster.job(job.id)["end_ts"])
    return noticed, end_ts or noticed


def polling(interval: float) -> Callable[[GanetiCluster, Job], tuple[float, float]]:
    """The peer's way: read the job, and if unfinished sleep `interval` seconds and read again."""

    def notice(cluster: GanetiCluster, job: Job) -> tuple[float, float]:
        while True:
            info = cluster.job(job.id)
            if info["status"] in FINALIZED:
                noticed = time.time()
                return noticed, timestamp(info["end_ts"]) or noticed
            time.sleep(interval)

    return notice


def summary(values: list[float]) -> str:
    """Median, p90, mean, min and max of latencies in milliseconds."""
    ms = sorted(value * 1000 for value in values)
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[8]
    return (f"median {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  mean {statistics.fmean(ms):7.1f} ms  "
            f"min {ms[0]:7.1f} ms  max {ms[-1]:7.1f} ms  (n={len(ms)})")


def main() -> int:
    """Run both modes on the lab cluster, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Lab().config_file), help="cookbook configuration (lab's)")
    parser.add_argument("--cluster", default="lab", help="cluster name in the configuration")
    parser.add_argument("--jobs", type=int, default=20, help="rounds; each submits a tag add and a remove per mode")
    parser.add_argument("--interval", type=float, default=2.0, help="polling interval in seconds")
    parser.add_argument("--output", default=str(RESULTS), help="results file")
    args = parser.parse_args()

    cluster = connect(config_module.load(args.config), args.cluster, dry_run=False,
                      changes=ChangeLog(dry_run=False), remote=None)
    modes: dict[str, Callable[[GanetiCluster, Job], tuple[float, float]]] = {
        "long-poll (GET /2/jobs/ID/wait)": notice_long_poll,
        f"polling every {args.interval:g} s (GET /2/jobs/ID)": polling(args.interval),
    }
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    durations: list[float] = []
    prefix = f"cbt-bench-{secrets.token_hex(3)}"
    started = time.monotonic()
    for index in range(args.jobs):
        for mode, notice in modes.items():
            tag = f"{prefix}-{index}"
            for write in (cluster.add_tags, cluster.remove_tags):
                submitted = time.time()
                job = write("cluster", None, [tag])
                assert isinstance(job, Job)
                noticed, end_ts = notice(cluster, job)
                latencies[mode].append(noticed - end_ts)
                durations.append(end_ts - submitted)
        print(f"{index + 1}/{args.jobs} rounds", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    leftover = [tag for tag in cluster.tags("cluster") if tag.startswith(prefix)]
    if leftover:
        cluster.remove_tags("cluster", None, leftover).wait()

    version = cluster.info()["software_version"]
    lines = [
        "Ganeti job completion noticed: client time minus the job's end_ts",
        f"command: {shlex.join(['.venv/bin/python', 'bench/bench_job_wait.py', *sys.argv[1:]])}",
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; Ganeti {version} (lab, fake hypervisor); "
        f"jobs: cluster tag add/remove, {2 * args.jobs} per mode, modes alternating; run took {elapsed:.0f} s",
        f"job duration, submit to end_ts: {summary(durations)}",
        "",
        *(f"{mode:40} {summary(values)}" for mode, values in latencies.items()),
        "",
        "raw latencies (ms):",
        *(f"{mode}: {' '.join(f'{value * 1000:.1f}' for value in values)}" for mode, values in latencies.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
