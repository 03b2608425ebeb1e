"""A run's subprocess and log: a log that cannot be written (disk full) never stops the output or the end report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from libcluster.chatops.runs import RunLog, RunProcess

LINES = 4000
"""Output lines of the child: about 200 kB, far more than a pipe holds, so an undrained pipe blocks it."""
CHILD = [sys.executable, "-c", f"for n in range({LINES}): print(f'line {{n:05d}} ' + 'x' * 40, flush=True)"]

SCRIPT = """
import json, subprocess, sys, threading
from pathlib import Path
from libcluster.chatops.runs import RunProcess
logs, child = Path(sys.argv[1]), json.loads(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(logs)], check=True)
lines, ended, codes = [], threading.Event(), []
process = RunProcess(child, {}, logs / "run.log", lines.append, lambda code: (codes.append(code), ended.set()))
print(json.dumps({"ended": ended.wait(30), "codes": codes, "lines": len(lines), "error": process.log.error,
                  "logged": (logs / "run.log").stat().st_size}))
"""


def test_log_errors_are_kept_and_never_raised(tmp_path: Path) -> None:
    log = RunLog(Path("/dev/full"))  # every write fails with ENOSPC, like a full disk
    log.write("first\n")
    log.write("second\n")
    log.close()
    assert log.error == os.strerror(28)  # ENOSPC: No space left on device
    (tmp_path / "file").write_text("")
    assert RunLog(tmp_path / "file" / "run.log").error == os.strerror(17)  # EEXIST: a file where its directory goes


def test_a_run_whose_log_cannot_be_written_still_drains_its_output_and_ends() -> None:
    lines: list[str] = []
    ended = threading.Event()
    codes: list[int] = []
    process = RunProcess(CHILD, dict(os.environ), Path("/dev/full"), lines.append,
                         lambda code: (codes.append(code), ended.set()))
    assert ended.wait(30), f"the run never ended ({len(lines)} lines read)"
    assert codes == [0] and len(lines) == LINES and process.log.error == os.strerror(28)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (mount ns)")
def test_a_run_log_on_a_filesystem_that_fills_up_mid_run_does_not_hang_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT, str(logs),
                           json.dumps(CHILD)], capture_output=True, text=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ended"], f"the run hung after {result['lines']} lines with its log full"
    assert result["codes"] == [0] and result["lines"] == LINES
    assert result["error"] == os.strerror(28) and 0 < result["logged"] <= 16 * 1024
