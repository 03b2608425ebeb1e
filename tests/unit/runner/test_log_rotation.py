"""The per-cookbook log files rotate by size as RotatingFileHandler does (NAME.1, NAME.2 ..., LOG_BACKUP_COUNT
kept), and a run that rotates nothing does not import logging.handlers (pickle, socket, queue) at start-up."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from libcluster.runner import logs


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_a_full_log_is_rotated_before_the_next_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "LOG_MAX_BYTES", 100)
    monkeypatch.setattr(logs, "LOG_BACKUP_COUNT", 2)
    files = logs.RunLogFiles(tmp_path, "team.drain-node", user="alice", dry_run=False)
    log = logging.getLogger("test.rotation")
    log.setLevel(logging.INFO)
    try:
        for number in range(1, 7):
            log.info("line %d %s", number, "x" * 60)  # each line is over 100 bytes: one line per file
    finally:
        files.close()
    info = tmp_path / "team" / "drain-node.log"
    assert [line.split("] ", 1)[1] for line in _lines(info)] == [f"line 6 {'x' * 60}"]
    assert [line.split("] ", 1)[1] for line in _lines(info.with_name("drain-node.log.1"))] == [f"line 5 {'x' * 60}"]
    assert [line.split("] ", 1)[1] for line in _lines(info.with_name("drain-node.log.2"))] == [f"line 4 {'x' * 60}"]
    assert not info.with_name("drain-node.log.3").exists()  # LOG_BACKUP_COUNT: older lines dropped


def test_a_run_that_rotates_nothing_does_not_import_logging_handlers(tmp_path: Path) -> None:
    code = (
        "import logging, sys\n"
        "from libcluster.runner.logs import RunLogFiles\n"
        f"files = RunLogFiles({str(tmp_path)!r}, 'team.drain-node', user='alice', dry_run=False)\n"
        "logging.getLogger('x').warning('one line')\n"
        "files.close()\n"
        "print('logging.handlers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert "one line" in (tmp_path / "team" / "drain-node.log").read_text()
