"""Defaults of the configuration, on the lab: a configuration without ``audit_log`` runs a real cookbook.

A dry-run sync reads the lab's Ganeti and NetBox, changes nothing, and writes its audit record.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from libcluster import audit
from tests.lab.cookbook_lab import COOKBOOK


def test_audit_log_defaults_to_audit_jsonl_under_logs_base_dir(lab_config: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(lab_config.read_text())
    data.pop("audit_log")
    data["logs_base_dir"] = str(tmp_path / "logs")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)

    argv = [str(COOKBOOK), "-c", str(config), "-d", "-y", "sre.ganeti.sync-netbox", "--cluster", "lab"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    records = audit.read_records(tmp_path / "logs" / "audit.jsonl")
    assert [(r["cookbook"], r["argv"], r["dry_run"], r["exit_code"]) for r in records] == [
        ("sre.ganeti.sync-netbox", ["--cluster", "lab"], True, 0)]
