"""The converging cookbooks keep no undo: sync-netbox's writes are journaled (intent and result) with no undo, so
neither a failed run's rollback nor `cookbook --recover` takes back what a sync recorded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.lab.test_makevm import (  # noqa: F401 - env and hostname are fixtures
    COOKBOOK,
    REPO,
    TIMEOUT,
    Env,
    env,
    hostname,
)


def test_sync_netbox_journals_its_writes_without_undo(env: Env, hostname: str, tmp_path: Path) -> None:
    """An instance made in Ganeti by hand: `sync-netbox --vm` records it in NetBox; every write is in the journal,
    none with an undo."""
    fqdn = env.fqdn(hostname)
    env.ganeti.create_instance(fqdn, disk_template="diskless", disks=[], os_type="noop", memory=128, vcpus=1,
                               pnode=env.group_nodes[0], name_check=False, no_install=True).wait(lambda entry: None)
    data = json.loads(json.dumps(env.raw))
    data["audit_log"] = str(tmp_path / "audit.jsonl")
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(json.dumps(data))
    result = subprocess.run([str(COOKBOOK), "-c", str(config), "-y", "sre.ganeti.sync-netbox", "--cluster", "lab",
                             "--vm", fqdn], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert env.netbox.objects("vm", name=fqdn), "the sync recorded no VM"
    lines = [json.loads(line) for line in Path(data["audit_log"]).read_text().splitlines()]
    intents = [line for line in lines if line["event"] == "intent"]
    assert "vm-create" in [line["action"] for line in intents], intents
    assert [line for line in intents if line.get("undo")] == [], "a converging cookbook kept an undo"
    results = {line["seq"]: line["status"] for line in lines if line["event"] == "result"}
    assert {results.get(line["seq"]) for line in intents} == {"done"}
