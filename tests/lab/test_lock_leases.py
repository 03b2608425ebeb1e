"""Locks on the lab's etcd (its TLS and users, the lab config's lease of 30 s): a SIGKILLed runner's own lock and
the instance lock it held are free within a minute (measured and printed), and runs taking overlapping node and
instance sets, named in different orders, all finish (resources.acquire takes them in one global order); while
a run holds an instance's lock, makevm (dry-run) says it would wait and sync-netbox --vm leaves the instance alone
(the hooks agent asks the same resources.instances_held, unit-tested with file locks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from libcluster import config as config_module
from libcluster import resources
from libcluster.locks import EtcdBackend, Holder, from_config

COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
"""Base dir of the fixture tree (locking.fenced, locking.resources)."""
FREE_WITHIN = 60.0
"""Seconds within which a killed runner's locks must be free (issue 12)."""


@dataclass(frozen=True)
class LabRunner:
    """A copy of the lab configuration with the fixture tree, logs in a temp dir, and the lab's etcd locks."""

    config: Path
    backend: EtcdBackend
    ttl: int

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """`cookbook -c CONFIG ARGV...` in the background."""
        return subprocess.Popen([str(COOKBOOK), "-c", str(self.config), *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def holders_of(self, key: str, pid: int) -> list[Holder]:
        """The holders of key that the process pid took."""
        return [holder for holder in self.backend.holders(key) if holder.owner.endswith(f" [{pid}]")]


@pytest.fixture
def runner(lab_config: Path, lab_part: Callable[[str], object], tmp_path: Path) -> LabRunner:
    """The lab config as it is generated (locks in the lab's etcd, its ttl), plus the fixture tree."""
    lab_part("etcd")
    data = yaml.safe_load(lab_config.read_text())
    if "etcd_url" not in data.get("locks", {}):
        pytest.skip("the lab config has no etcd locks")
    data["cookbooks_base_dirs"] = [*data["cookbooks_base_dirs"], str(FIXTURES)]
    data["logs_base_dir"] = str(tmp_path / "logs")
    data["audit_log"] = str(tmp_path / "logs" / "audit.jsonl")
    data["locks"].update(wait_tries=200, wait_sleep=0.02)
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    root = config_module.load(str(path))
    locks = from_config(root, owner="lab-test", dry_run=True)
    assert isinstance(locks.backend, EtcdBackend)
    return LabRunner(path, locks.backend, locks.ttl)


def test_a_sigkilled_runners_lock_and_instance_lock_are_free_within_a_minute(runner: LabRunner,
                                                                                tmp_path: Path) -> None:
    assert runner.ttl == 30, "the lab config's lease is the default, locks.ttl 30"
    fqdn = f"lease-{uuid.uuid4().hex[:8]}.lab.example"
    instance = resources.instance_lock("lab", fqdn)
    own = resources.runner_lock("locking.fenced")
    process = runner.start("locking.fenced", str(tmp_path), "--cluster", "lab", "--instance", fqdn, "--pause", "600")
    try:
        assert process.stdout is not None and process.stdout.readline() == "CHANGED\n", process.stderr
        for key in (own, instance):
            assert len(runner.holders_of(key, process.pid)) == 1, key
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
    killed = time.monotonic()
    freed: dict[str, float] = {}
    while len(freed) < 2 and time.monotonic() - killed < FREE_WITHIN + 10:
        for key in {own, instance} - set(freed):
            if not runner.holders_of(key, process.pid):
                freed[key] = time.monotonic() - killed
        time.sleep(0.2)
    print(f"\nSIGKILLed runner: its lock {own} free after {freed.get(own, float('inf')):.1f}s, the instance lock "
          f"{instance} after {freed.get(instance, float('inf')):.1f}s (locks.ttl {runner.ttl}s)")
    assert set(freed) == {own, instance}, "a lock of the killed runner was still held after 70 s"
    assert all(seconds < FREE_WITHIN for seconds in freed.values()), freed
    assert all(seconds > 1 for seconds in freed.values()), "held until the lease expired, not released"
    retaken = runner.start("locking.resources", "lab", "--instance", fqdn)
    out, err = retaken.communicate(timeout=60)
    assert retaken.returncode == 0, err
    assert out.split() == ["LOCKED", instance]


def test_overlapping_node_and_instance_sets_in_different_orders_never_deadlock(runner: LabRunner) -> None:
    cluster = f"order-{uuid.uuid4().hex[:8]}"
    nodes, vms = ["n1", "n2"], ["vm-a", "vm-b", "vm-c"]
    orders = [
        (nodes, vms), (nodes[::-1], vms[::-1]), ([nodes[1]], [vms[2], vms[0]]), ([nodes[0]], [vms[1], vms[2]]),
    ]
    processes = []
    for round_ in range(3):
        for node_order, vm_order in orders:
            argv = ["locking.resources", cluster, "--seconds", "0.3"]
            argv += [arg for node in node_order for arg in ("--node", node)]
            argv += [arg for vm in vm_order for arg in ("--instance", vm)]
            processes.append((round_, runner.start(*argv)))
    started = time.monotonic()
    results = [(process.communicate(timeout=120), process.returncode) for _, process in processes]
    elapsed = time.monotonic() - started
    print(f"\n{len(processes)} runs over overlapping node/instance sets in different orders: all done in "
          f"{elapsed:.1f}s")
    assert [code for _, code in results] == [0] * len(processes), [err[-500:] for (_, err), _ in results]
    for (out, _), _ in results:
        taken = [resources.Resource.from_key(key) for key in out.split()[1:]]
        assert taken == sorted(taken)  # type: ignore[type-var]
        assert taken[0] is not None and taken[0].kind == "node"
    for key in [resources.node_lock(cluster, node) for node in nodes] + [resources.instance_lock(cluster, vm)
                                                                          for vm in vms]:
        assert runner.backend.holders(key) == []


def test_makevm_and_the_sync_use_the_same_instance_lock(runner: LabRunner, lab_config: Path) -> None:
    hostname = f"lkd-{uuid.uuid4().hex[:6]}"
    fqdn = f"{hostname}.lab.example"
    holder = runner.start("locking.resources", "lab", "--instance", fqdn, "--seconds", "120")
    try:
        assert holder.stdout is not None and holder.stdout.readline().split() == [
            "LOCKED", resources.instance_lock("lab", fqdn)]
        planned = subprocess.run([str(COOKBOOK), "-c", str(runner.config), "-d", "sre.ganeti.makevm", "--cluster",
                                  "lab", "--group", "A", hostname], capture_output=True, text=True, timeout=120,
                                 check=False)
        assert f"DRY-RUN: lock ganeti/lab/instance/{fqdn} is busy, a real run would wait" in planned.stderr, \
            planned.stderr
        synced = subprocess.run([str(COOKBOOK), "-c", str(runner.config), "sre.ganeti.sync-netbox", "--cluster", "lab",
                                 "--vm", fqdn], capture_output=True, text=True, timeout=120, check=False)
        assert synced.returncode == 0, synced.stderr
        assert f"A cookbook holds the instance lock of {fqdn} (creating or changing it): left alone" in synced.stderr
    finally:
        holder.send_signal(signal.SIGINT)  # Ctrl+C: the run ends and releases its locks
        holder.communicate(timeout=60)
    freed = subprocess.run([str(COOKBOOK), "-c", str(runner.config), "sre.ganeti.sync-netbox", "--cluster", "lab",
                            "--vm", fqdn], capture_output=True, text=True, timeout=120, check=False)
    assert "left alone" not in freed.stderr, freed.stderr
