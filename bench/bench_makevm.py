"""Benchmark: wall time of `cookbook sre.ganeti.makevm` on the lab, split into Ganeti job time and our overhead.

Usage (root, lab up; creates and then removes VMs named mkv-bench-*, nothing else):
    .venv/bin/python bench/bench_makevm.py                  # 5 runs in group A
    .venv/bin/python bench/bench_makevm.py --runs 10 --group B

Each run is the command an operator types (`cookbook -c LAB_CONFIG -y sre.ganeti.makevm --cluster lab
--group A NAME`) in a fresh process, timed from outside; the cookbook keeps no timer of its own. Its
Ganeti jobs (the capacity check in dry-run mode and the create; their ids from its summary line) are
counted two ways:
  - waited: from the start of the request that submitted the job to the end of the last wait on it,
    read from the RAPI lines of the run's DEBUG log (makevm-extended.log, lines of the run's pid);
  - in Ganeti: end_ts - received_ts as Ganeti recorded them (queue and execution only; the RAPI's own
    time to accept the job and to tell us it ended counts as ours then).
makevm records the VM in NetBox (VM, interface with the MAC it picked, IPs, primary) after submitting the create
job and before waiting for it: those writes run while Ganeti creates the instance, inside the "waited" time as
long as the job outlasts them (in the lab the job takes about 3 s, the writes about 0.4 s; the run's log shows
both; "NetBox writes outlasting the create job" reports, and the goal adds, the part of them that ended after
the job). Our overhead is wall time minus the job time; "start-up" is the part before the runner started (from
the duration of the run's end record in the audit file): interpreter, imports, configuration, lock.
The rest is mostly waiting for NetBox, DNS and RAPI reads and writes, so the CPU time of the cookbook
process is reported as well: the work that is ours whatever the load of the servers. After each run
the VM is removed (instance, NetBox VM with its IPs, DNS records) and that time is reported too.
Figures and the command go to bench/results/makevm.txt. Goal (issue 5): our overhead under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runlog import log_time, run_log

from cookbook_lab import topology
from cookbook_lab.common import Lab
from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.dns.protection import owns_everything
from libcluster.ganeti import GanetiCluster, RapiNotFoundError, connect
from libcluster.ganeti.jobs import timestamp
from libcluster.netbox import NetBox
from libcluster.runner.logs import log_paths

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "makevm.txt"
JOB = re.compile(r"(\d+) \(")
"""A job id of the summary line, e.g. "Ganeti jobs: 9 (capacity check, dry-run), 10 (create)"."""
SUBMIT = re.compile(r"RAPI POST /2/instances -> 200 in ([\d.]+)s")


@dataclass
class Run:
    """Timings of one makevm run, in seconds."""

    wall: float
    waited: float
    in_ganeti: float
    in_process: float
    jobs: int
    removal: float
    cpu: float
    """CPU time (user + system) of the cookbook process: our own work, whatever the load of the servers."""
    uncovered: float
    """Seconds the NetBox writes made while the create job ran ended after it: time "waited" that was ours."""

    @property
    def overhead(self) -> float:
        """Everything but waiting for the Ganeti jobs."""
        return self.wall - self.waited

    @property
    def overhead_strict(self) -> float:
        """Everything but the jobs' own time inside Ganeti."""
        return self.wall - self.in_ganeti

    @property
    def startup(self) -> float:
        """Interpreter start, imports, configuration and lock, before the runner's START."""
        return self.wall - self.in_process

    def figures(self) -> dict[str, float]:
        """Every reported figure of the run, derived ones included (medians are taken per figure)."""
        return {"wall": self.wall, "waited": self.waited, "jobs": self.jobs, "in_ganeti": self.in_ganeti,
                "overhead": self.overhead, "startup": self.startup, "rest": self.overhead - self.startup,
                "strict": self.overhead_strict, "cpu": self.cpu, "removal": self.removal,
                "uncovered": self.uncovered}


def waited_for(lines: list[str], job_id: int) -> float:
    """Seconds from the start of the POST that submitted job_id to the end of the last wait on it, per the log."""
    waits = [index for index, line in enumerate(lines) if f"RAPI GET /2/jobs/{job_id}/wait -> " in line]
    if not waits:
        raise RuntimeError(f"no wait on Ganeti job {job_id} in the run's log")
    submits = [(index, match) for index in range(waits[0]) if (match := SUBMIT.search(lines[index]))]
    if not submits:
        raise RuntimeError(f"no RAPI POST before the first wait on Ganeti job {job_id} in the run's log")
    index, match = submits[-1]
    return log_time(lines[waits[-1]]) - (log_time(lines[index]) - float(match.group(1)))


def run_job_ids(output: str) -> list[int]:
    """The ids of the run's Ganeti jobs, from its summary line (the capacity check's, then the create's)."""
    summary = next((line for line in output.splitlines() if "Ganeti jobs: " in line), "")
    job_ids = [int(job_id) for job_id in JOB.findall(summary)]
    if not job_ids:
        raise RuntimeError(f"no 'Ganeti jobs:' line with job ids in the output:\n{output}")
    return job_ids


def job_times(cluster: GanetiCluster, output: str, lines: list[str]) -> tuple[float, float, int]:
    """Seconds waited for the run's jobs (from its log), their end_ts - received_ts, and how many."""
    job_ids = run_job_ids(output)
    in_ganeti = 0.0
    for job_id in job_ids:
        info = cluster.job(job_id)
        in_ganeti += (timestamp(info["end_ts"]) or 0.0) - (timestamp(info["received_ts"]) or 0.0)
    return sum(waited_for(lines, job_id) for job_id in job_ids), in_ganeti, len(job_ids)


def uncovered(cluster: GanetiCluster, output: str, lines: list[str]) -> float:
    """Seconds the NetBox writes logged before the first wait on the create job ended after that job ended (0 when
    the job outlasted them): the part of them that the "waited" time counts as Ganeti's but was ours."""
    job_id = run_job_ids(output)[-1]
    first_wait = next(index for index, line in enumerate(lines) if f"RAPI GET /2/jobs/{job_id}/wait -> " in line)
    writes = [log_time(line) for line in lines[:first_wait] if "Did netbox " in line]
    end = timestamp(cluster.job(job_id)["end_ts"]) or 0.0
    return max(0.0, max(writes) - end) if writes else 0.0


def audit_duration(audit_log: Path, hostname: str) -> float:
    """Duration the runner recorded for the makevm run of hostname (its end record)."""
    for line in reversed(audit_log.read_text().splitlines()):
        record = json.loads(line)
        if (record.get("cookbook") == "sre.ganeti.makevm" and hostname in record.get("argv", [])
                and record.get("event", "end") == "end"):
            return float(record["duration"])
    raise RuntimeError(f"no audit record for {hostname}")


def remove(cluster: GanetiCluster, netbox: NetBox, dns: DNS, fqdn: str) -> float:
    """Remove the VM everywhere (the NetBox VM takes its interface and IPs along); return the seconds it took."""
    started = time.monotonic()
    try:
        cluster.instance(fqdn)
        cluster.remove_instance(fqdn).wait(progress=lambda _entry: None)
    except RapiNotFoundError:
        pass
    netbox.delete("vm", netbox.objects("vm", name=fqdn))
    leftover = netbox.objects("ip-address", dns_name=fqdn)
    if leftover:
        netbox.release_ips(leftover)
    dns.remove_host(fqdn, owns=owns_everything)
    return time.monotonic() - started


def main() -> int:
    """Run the benchmark and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="makevm runs")
    parser.add_argument("--group", default="A", help="node group of the lab")
    args = parser.parse_args()
    config_path = Lab().config_file
    root = config_module.load(config_path)
    changes = ChangeLog(dry_run=False)
    cluster = connect(root, topology.CLUSTER, dry_run=False, changes=changes, remote=None)
    netbox = NetBox(root.section("netbox"), read_write=True, dry_run=False, changes=changes)
    dns = DNS(root.section("dns"), dry_run=False, changes=changes)
    audit_log = Path(root.str("audit_log"))
    debug_log = log_paths(root.str("logs_base_dir"), "sre.ganeti.makevm")[1]
    runs: list[Run] = []
    load = os.getloadavg()[0]
    for number in range(1, args.runs + 1):
        hostname = f"mkv-bench-{secrets.token_hex(3)}"
        fqdn = f"{hostname}.{topology.DOMAIN}"
        command = [str(REPO / ".venv" / "bin" / "cookbook"), "-c", str(config_path), "-y", "sre.ganeti.makevm",
                   "--cluster", topology.CLUSTER, "--group", args.group, hostname]
        try:
            offset = debug_log.stat().st_size if debug_log.exists() else 0
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, stderr = process.communicate(timeout=900)
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if process.returncode != 0:
                print(stderr, file=sys.stderr)
                raise RuntimeError(f"makevm {hostname} exited {process.returncode}")
            lines = run_log(debug_log, offset, process.pid)
            waited, in_ganeti, jobs = job_times(cluster, stderr, lines)
            late = uncovered(cluster, stderr, lines)
            in_process = audit_duration(audit_log, hostname)
        finally:
            removal = remove(cluster, netbox, dns, fqdn)
        runs.append(Run(wall, waited, in_ganeti, in_process, jobs, removal, cpu, late))
        print(describe(f"run {number}", runs[-1].figures()), flush=True)
    median = {name: statistics.median(run.figures()[name] for run in runs) for name in runs[0].figures()}
    lines = [
        f"command: {shlex.join([sys.executable, *sys.argv])}",
        f"each run: {shlex.join(command[:-1])} <mkv-bench-NAME>",
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load:.2f} (2 cores; the lab is shared)",
        f"runs: {len(runs)} (group {args.group}; lab defaults: 1 vCPU, 1 GiB, 1 GiB file disk, OS noop installed)",
        *(describe(f"run {index}", run.figures()) for index, run in enumerate(runs, 1)),
        describe("median (per figure)", median),
        f"goal: our overhead under 1 s: {'met' if median['overhead'] + median['uncovered'] < 1.0 else 'NOT met'} "
        f"(median {median['overhead']:.2f} s, of which start-up {median['startup']:.2f} s; plus NetBox writes "
        f"outlasting the job {median['uncovered']:.2f} s)",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))
    return 0


def describe(label: str, figures: dict[str, float]) -> str:
    """One line of figures (of one run, or the medians)."""
    return (f"{label}: wall {figures['wall']:.2f} s = Ganeti jobs waited {figures['waited']:.2f} s "
            f"({figures['jobs']:g} jobs; {figures['in_ganeti']:.2f} s inside Ganeti) + our overhead "
            f"{figures['overhead']:.2f} s (start-up {figures['startup']:.2f} s, in-process {figures['rest']:.2f} s; "
            f"counting the RAPI's accept/notify time as ours: {figures['strict']:.2f} s); CPU time of the cookbook "
            f"process {figures['cpu']:.2f} s; NetBox writes outlasting the create job "
            f"{figures['uncovered']:.2f} s; removal {figures['removal']:.2f} s")

if __name__ == "__main__":
    sys.exit(main())
