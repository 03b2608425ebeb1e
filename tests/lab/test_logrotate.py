"""packaging/logrotate, run by the real logrotate on a real audit log, then a real run of the runner; and
packaging/tmpfiles, run by the real systemd-tmpfiles on the chat bot's run logs.

The runner reopens the audit log by its path for every record, so after logrotate moved it (no
copytruncate) the next record starts the new file and the rotated one gets nothing more. The hooks agent
(in-process runs) and the chat bot (`cookbook` subprocesses) write the audit through the same code.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import yaml

from libcluster import audit
from tests.lab.cookbook_lab import COOKBOOK

REPO = Path(__file__).resolve().parents[2]


def test_a_run_after_rotation_writes_a_new_audit_file(lab_config: Path, tmp_path: Path) -> None:
    if shutil.which("logrotate") is None:
        from cookbook_lab.common import Lab

        Lab().apt_install("packaging", ["logrotate"])
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o750)
    audit_log = logs / "audit.jsonl"
    audit_log.write_text('{"id": "before-rotation"}\n')
    rotate_conf = tmp_path / "logrotate.conf"
    shipped = (REPO / "packaging" / "logrotate").read_text()
    rotate_conf.write_text(shipped.replace("/var/log/ganeti-cookbooks", str(logs)))
    rotated = subprocess.run(["logrotate", "-v", "-f", "-s", str(tmp_path / "state"), str(rotate_conf)],
                             capture_output=True, text=True, timeout=60)
    print(rotated.stdout, rotated.stderr)
    assert rotated.returncode == 0
    moved = [path for path in logs.iterdir() if path.name.startswith("audit.jsonl-")]
    assert len(moved) == 1 and moved[0].read_text() == '{"id": "before-rotation"}\n'
    assert audit_log.read_text() == "" and stat.S_IMODE(audit_log.stat().st_mode) == 0o640  # create 0640 root root

    data = yaml.safe_load(lab_config.read_text())
    data.pop("audit_log")
    data["logs_base_dir"] = str(logs)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    argv = [str(COOKBOOK), "-c", str(config), "-d", "-y", "sre.ganeti.sync-netbox", "--cluster", "lab"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = audit.read_records(audit_log)
    assert [record["cookbook"] for record in records] == ["sre.ganeti.sync-netbox"]
    assert moved[0].read_text() == '{"id": "before-rotation"}\n'


def test_chat_run_logs_older_than_90_days_are_cleaned(tmp_path: Path) -> None:
    runs = tmp_path / "var/log/ganeti-cookbooks/chatops/runs"
    runs.mkdir(parents=True)
    (tmp_path / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(REPO / "packaging" / "tmpfiles", tmp_path / "etc/tmpfiles.d/ganeti-cookbooks.conf")
    old, recent = runs / "0001.log", runs / "0002.log"
    for path, days in ((old, 91), (recent, 89)):
        path.write_text("output\n")
        stamp = time.time() - days * 86400
        os.utime(path, (stamp, stamp))
    cleaned = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--clean", "ganeti-cookbooks.conf"],
                             capture_output=True, text=True, timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    assert sorted(path.name for path in runs.iterdir()) == ["0002.log"]
    assert not (tmp_path / "var/lib").exists()  # the other state_dir is cleaned when it exists, never created
