"""What the lab tests of the Ganeti hooks share: a module's environment (a copy of the lab config with hook
events under a prefix of its own, its clients and event store) and the removal of a test instance everywhere.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.lab.cookbook_lab import remove_test_instance

from libcluster import audit
from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.dns import DNS
from libcluster.dns.protection import owns_everything
from libcluster.ganeti import GanetiCluster, connect
from libcluster.hooks.events import DEFAULT_PREFIX, EventStore, HookSettings
from cookbook_lab import topology
from libcluster.netbox import NetBox
from libcluster.remote import Remote


@dataclass
class Env:
    """A test module's configuration, clients, token and event store."""

    config: Path
    raw: dict[str, Any]
    token: str
    ganeti: GanetiCluster
    remote: Remote
    netbox: NetBox
    dns: DNS
    store: EventStore
    agent_log: Path

    def gnt(self, command: str, timeout: float = 300) -> tuple[int, str, float]:
        """A gnt-* command line on the master over SSH: exit code, output, seconds."""
        started = time.monotonic()
        result = self.remote.hosts([self.ganeti.master()]).run_sync(command, timeout=timeout)
        host = next(iter(result.hosts.values()))
        return host.rc if host.rc is not None else -1, host.output, time.monotonic() - started

    def audit(self) -> list[dict[str, Any]]:
        """Audit records written by the agent's runs (their end lines)."""
        return audit.read_records(self.raw["audit_log"])


AGENT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "cookbook-hooks-agent"


@contextmanager
def running_agent(config: Path, token: str, log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """cookbook-hooks-agent on config, limited to the token's instances, logging to log_file (emptied first);
    stopped with SIGTERM (killed after 30 s) at the end, its log printed for the test output."""
    with log_file.open("w") as log:
        process = subprocess.Popen([str(AGENT), "-c", str(config), "--instances", f"{token}*"], stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log_file.read_text())


def hooks_env(lab: dict[str, Any], lab_config: Path, tmp: Path, token: str, **hooks: Any) -> Env:
    """Env of a module (skips unless Ganeti, NetBox, DNS, etcd and SSH are up): the lab config copied to tmp
    (mode 600) with logs, audit file and agent log under tmp, hook events under DEFAULT_PREFIX + token, and
    hooks: more keys of its hooks section."""
    for part in ("ganeti", "netbox", "dns", "etcd", "ssh"):
        if not (isinstance(lab.get(part), dict) and lab[part].get("up")):
            pytest.skip(f"lab part {part} is not up")
    raw = yaml.safe_load(lab_config.read_text())
    raw.update(logs_base_dir=str(tmp / "logs"), audit_log=str(tmp / "audit.jsonl"))
    raw["hooks"] = {**raw.get("hooks", {}), "etcd_prefix": f"{DEFAULT_PREFIX}{token}/", **hooks}
    config = tmp / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(raw))
    root = config_module.load(config)
    settings = HookSettings.from_config(root)
    changes = ChangeLog(dry_run=False)
    remote = Remote(root.section("remote"), dry_run=False, changes=changes)
    return Env(
        config=config, raw=raw, token=token,
        ganeti=connect(root, topology.CLUSTER, dry_run=False, changes=changes, remote=remote), remote=remote,
        netbox=NetBox(root.section("netbox"), read_write=True, dry_run=False, changes=changes),
        dns=DNS(root.section("dns"), dry_run=False, changes=changes),
        store=EventStore(settings.etcd, settings.prefix), agent_log=tmp / "agent.log",
    )


def remove_everything(env: Env, name: str) -> None:
    """Whatever exists of name in Ganeti, NetBox and DNS goes (cleanup)."""
    remove_test_instance(env.ganeti, env.netbox, name)
    env.dns.remove_host(name, owns=owns_everything)
