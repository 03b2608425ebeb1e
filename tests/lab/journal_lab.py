"""What the journal lab tests share: a config on the lab whose cookbook tree is tests/lab/journal_tree, its
own etcd prefix, and probes of the run's real Ganeti tags, audit lines and etcd journal; tags and etcd keys
of the test are removed at the end."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.etcd import EtcdAccess, Gateway
from libcluster.ganeti import GanetiCluster, connect
from libcluster.ganeti.jobs import Job
from libcluster.journal import EtcdMirror, JournalError
from tests.lab.cookbook_lab import COOKBOOK

TREE = Path(__file__).resolve().parent / "journal_tree"
CLUSTER = "lab"


@dataclass
class JournalEnv:
    """One test's configuration, Ganeti client and etcd mirror."""

    tmp: Path
    config: Path
    audit: Path
    token: str
    ganeti: GanetiCluster
    mirror: EtcdMirror

    def cookbook(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`cookbook -c CONFIG ARGS...`, output printed for the test log."""
        result = subprocess.run([str(COOKBOOK), "-c", str(self.config), *args], capture_output=True, text=True,
                                timeout=timeout)
        print(f"$ cookbook {' '.join(args)}\n[exit {result.returncode}]\n{result.stdout}{result.stderr}")
        return result

    def start_tags(self, *args: str) -> subprocess.Popen[str]:
        """journaltest.tags with this test's tag prefix, in the background."""
        return subprocess.Popen([str(COOKBOOK), "-c", str(self.config), "-y", "journaltest.tags", "--cluster", CLUSTER,
                                 "--prefix", self.token, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def lines(self) -> list[dict[str, Any]]:
        """Every journal line of the local audit file."""
        return [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []

    def wait_for_intent(self, number: int, process: subprocess.Popen[str], timeout: float = 300) -> str:
        """Wait until the run of process wrote its number-th intent line; return its run id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [line for line in self.lines() if line.get("pid") == process.pid and line["event"] == "start"]
            if mine:
                intents = [line for line in self.lines() if line["id"] == mine[0]["id"] and line["event"] == "intent"]
                if len(intents) >= number:
                    return str(mine[0]["id"])
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.05)
        raise AssertionError(f"no intent #{number} within {timeout}s")

    def tags(self) -> set[str]:
        """This test's cluster tags, as Ganeti has them now."""
        return {tag for tag in self.ganeti.tags("cluster") if tag.startswith(self.token)}

    def tag(self, method: str, tag: str) -> None:
        """Add (PUT) or remove (DELETE) a cluster tag as someone else would, straight through RAPI."""
        job_id = self.ganeti.rapi.submit(method, "/2/tags", params={"tag": [tag]})
        Job(self.ganeti.rapi, job_id, description=f"test tag {tag}", default_timeout=300).wait()

    def settle(self, timeout: float = 300) -> None:
        """Wait until no Ganeti job about this test's tags is unfinished (a killed run's write may still run)."""
        deadline = time.monotonic() + timeout
        while any(job.get("status") in ("queued", "waiting", "running")
                  and self.token in json.dumps(job.get("ops")) for job in self.ganeti.rapi.get("/2/jobs",
                                                                                         params={"bulk": 1})):
            assert time.monotonic() < deadline, "jobs about the test's tags still unfinished"
            time.sleep(0.5)

    def etcd_journal(self, run_id: str) -> list[dict[str, Any]]:
        """The lines of run_id in this test's etcd journal."""
        return [json.loads(text) for text in self.mirror.runs(run_id).get(run_id, [])]


@pytest.fixture(name="journal_env")
def journal_env_fixture(lab_config: Path, tmp_path: Path) -> Iterator[JournalEnv]:
    """The lab config with the journal test tree, logs under tmp_path, no SAL, and an etcd prefix of its own."""
    token = f"jt-{secrets.token_hex(3)}"
    data = yaml.safe_load(lab_config.read_text())
    data.update(cookbooks_base_dirs=[str(TREE)], logs_base_dir=str(tmp_path / "logs"),
                audit_log=str(tmp_path / "logs" / "audit.jsonl"))
    data.pop("sal", None)
    data["locks"]["etcd_prefix"] = f"/ganeti-cookbooks/locks/test-{token}/"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)
    root = config_module.load(config)
    section = root.section("locks")
    mirror = EtcdMirror(Gateway(EtcdAccess.from_section(section), 5, JournalError), section.str("etcd_prefix"))
    ganeti = connect(root, CLUSTER, dry_run=False, changes=ChangeLog(dry_run=False), remote=None)
    env = JournalEnv(tmp_path, config, tmp_path / "logs" / "audit.jsonl", token, ganeti, mirror)
    try:
        yield env
    finally:
        env.settle()  # a killed run's tag job may still be queued
        for tag in env.tags():
            env.tag("DELETE", tag)
        for run_id in mirror.runs():
            mirror.delete(run_id)
