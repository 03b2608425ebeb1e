"""What the lab tests of the Ganeti cookbooks share: running `cookbook` as a user types it, the lab's clients,
test instances that are always removed, and the "nothing changed" probes (Ganeti jobs, NetBox change log,
the run's audit record).

Other helpers use the same cluster and NetBox at the same time, so probes look at this test's own objects:
jobs about the test's instance or node that are not Ganeti dry-run checks, NetBox changes of one object,
never cluster-wide counts.
"""

from __future__ import annotations

import os
import pty
import secrets
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libcluster import audit
from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.ganeti import GanetiCluster, RapiNotFoundError, connect
from libcluster.netbox import NetBox
from libcluster.remote import Remote

COOKBOOK = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "cookbook"


@dataclass
class Run:
    """One `cookbook` run: exit code, output, and the audit record it wrote (None if it wrote none)."""

    returncode: int
    stdout: str
    stderr: str
    audit: dict[str, Any] | None


def run_cookbook(config: Path, *args: str, dry_run: bool = False, timeout: float = 900) -> Run:
    """`cookbook -c CONFIG [-d] -y NAME ARGS...` as a subprocess; output printed for the test log."""
    argv = [str(COOKBOOK), "-c", str(config), *(["-d"] if dry_run else []), "-y", *args]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        stdout, stderr = process.communicate(timeout=timeout)
    print(f"$ {' '.join(argv[3:])}\n[exit {process.returncode}]\n{stdout}{stderr}")
    audit_log = Path(config_module.load(config).str("audit_log"))
    records = audit.read_records(audit_log)
    mine = [record for record in records if record.get("pid") == process.pid and record.get("cookbook") == args[0]
            and record.get("argv") == list(args[1:])]
    return Run(process.returncode, stdout, stderr, mine[-1] if mine else None)


def typed_at_a_terminal(config: Path, args: Sequence[str], answer: str) -> tuple[int, str]:
    """`cookbook -c CONFIG -y ARGS...` on a pseudo-terminal: answer is typed at the prompt that asks to type
    something "to confirm" (e.g. the VM's FQDN); (exit code, what it showed)."""
    controller, terminal = pty.openpty()
    argv = [str(COOKBOOK), "-c", str(config), "-y", *args]
    with subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal) as process:
        os.close(terminal)
        shown, typed, deadline = b"", False, time.monotonic() + 300
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the process ended
                    break
                shown += chunk
            if not typed and b"to confirm" in shown:
                os.write(controller, answer.encode() + b"\n")
                typed = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=60)
    os.close(controller)
    print(shown.decode(errors="replace"))
    return code, shown.decode(errors="replace")


def planned_only(run: Run) -> bool:
    """Whether the run's audit record lists only changes planned in dry-run (nothing written anywhere)."""
    return run.audit is not None and run.audit["dry_run"] and all(change["dry_run"] for change in run.audit["changes"])


def remote(config: Path) -> Remote:
    """Commands on the lab nodes over SSH (not dry-run)."""
    return Remote(config_module.load(config).section("remote"), dry_run=False, changes=ChangeLog(dry_run=False))


def ganeti(config: Path) -> GanetiCluster:
    """A read-write client of the lab cluster (with gnt-* commands over SSH)."""
    return connect(config_module.load(config), "lab", dry_run=False, changes=ChangeLog(dry_run=False),
                   remote=remote(config))


def netbox(config: Path) -> NetBox:
    """A read-write NetBox client of the lab."""
    return NetBox(config_module.load(config).section("netbox"), read_write=True, dry_run=False,
                  changes=ChangeLog(dry_run=False))


def netbox_changes(config: Path, object_type: str, object_id: int) -> int:
    """How many entries NetBox's change log (/api/core/object-changes/) holds about one object."""
    return netbox(config).count("object-change", changed_object_type=object_type, changed_object_id=object_id)


def last_job_id(cluster: GanetiCluster) -> int:
    """The newest job id, a marker for jobs_since()."""
    return max((int(job["id"]) for job in cluster.jobs()), default=0)


def jobs_since(cluster: GanetiCluster, marker: int, about: str) -> list[dict[str, Any]]:
    """Jobs after marker whose summary names `about`, with a `dry_run` flag (every opcode was a check)."""
    found = []
    for job in cluster.jobs(bulk=True):
        if int(job["id"]) > marker and any(about in str(summary) for summary in job.get("summary") or []):
            found.append({**job, "dry_run": all(op.get("dry_run") for op in job.get("ops") or [])})
    return found


def real_jobs_since(cluster: GanetiCluster, marker: int, about: str) -> list[dict[str, Any]]:
    """Jobs after marker about `about` that were not Ganeti dry-run checks: a dry run must leave none."""
    return [job for job in jobs_since(cluster, marker, about) if not job["dry_run"]]


@pytest.fixture
def cluster(lab_part: Callable[[str], dict[str, Any]], lab_config: Path) -> GanetiCluster:
    """The lab cluster (skips when the Ganeti part, NetBox or etcd, which locks need, are down)."""
    for part in ("ganeti", "netbox", "etcd"):
        lab_part(part)
    return ganeti(lab_config)


@pytest.fixture
def new_instance(cluster: GanetiCluster) -> Iterator[Callable[..., str]]:
    """Creates `<prefix>-<random>.lab.example` instances (prefix t, os noop, 128 MiB, group A) and removes them at
    the end."""
    names: list[str] = []

    def create(template: str = "file", group: str = "A", prefix: str = "t") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}.lab.example"
        names.append(name)
        pnode = sorted(cluster.group(group)["node_list"])[0]
        cluster.create_instance(name, disk_template=template, disks=[] if template == "diskless" else [1024],
                                os_type="noop", memory=128, vcpus=1, pnode=pnode, name_check=False).wait()
        return name

    yield create
    existing = set(cluster.instance_names())
    for name in names:
        if name in existing:
            cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def remove_test_instance(cluster: GanetiCluster, nb: NetBox, name: str) -> None:
    """Whatever exists of a test's instance goes (cleanup): the Ganeti instance, then the addresses NetBox names
    after it and its NetBox VMs."""
    try:
        cluster.instance(name)
        cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)
    except RapiNotFoundError:
        pass
    vms = nb.objects("vm", name=name)
    ips = nb.objects("ip-address", dns_name=name)
    if ips:
        nb.release_ips(ips)
    if vms:
        nb.delete("vm", vms)
