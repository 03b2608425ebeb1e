"""File locks on one host with real `cookbook` processes on a copy of the lab configuration (no etcd, locks.file_dir
in a temp dir under a world-writable sticky parent like /run/lock): holder files planted by another user and
symbolic links are ignored (they neither block a run nor get anything written through them), a lock directory
another user owns or anyone may write is refused at start with exit 1 naming locks.file_dir, and two runs still
exclude each other."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from libcluster import audit
from libcluster.locks import Holder

COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
"""Base dir of the fixture cookbook tree (locking.exclusive holds its lock --seconds)."""
NOBODY = 65534
"""Another user: the owner of what is planted."""
KEY_DIR = "cookbooks%2Flocking.exclusive"
"""The lock directory of locking.exclusive's per-run lock."""


@dataclass(frozen=True)
class Host:
    """A copy of the lab configuration with file locks in DIRECTORY, and the paths of its logs."""

    config: Path
    directory: Path
    logs: Path

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`cookbook -c CONFIG ARGV...`."""
        return subprocess.run([str(COOKBOOK), "-c", str(self.config), *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """`cookbook -c CONFIG ARGV...` in the background."""
        return subprocess.Popen([str(COOKBOOK), "-c", str(self.config), *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def records(self) -> list[dict[str, object]]:
        """The audit records written so far."""
        return audit.read_records(self.logs / "audit.jsonl")


@pytest.fixture
def host(lab_config: Path, tmp_path: Path) -> Host:
    """The lab config without locks.etcd_* and with locks.file_dir = TMP/run-lock/cookbooks (run-lock 1777)."""
    if os.geteuid() != 0:
        pytest.skip("planting files of another user needs root")
    data = yaml.safe_load(lab_config.read_text())
    parent = tmp_path / "run-lock"
    parent.mkdir()
    parent.chmod(0o1777)
    directory = parent / "cookbooks"
    data["cookbooks_base_dirs"] = [*data["cookbooks_base_dirs"], str(FIXTURES)]
    data["logs_base_dir"] = str(tmp_path / "logs")
    data["audit_log"] = str(tmp_path / "logs" / "audit.jsonl")
    data["locks"] = {key: value for key, value in data.get("locks", {}).items() if not key.startswith("etcd_")}
    data["locks"].update(file_dir=str(directory), wait_tries=3, wait_sleep=0.2)
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return Host(path, directory, tmp_path / "logs")


def live_holder(path: Path, owner: str) -> int:
    """Write a valid holder of locking.exclusive's lock to path and flock it like a live run; the open fd."""
    path.write_text(Holder(os.urandom(8).hex(), owner, 1, 30, time.time()).to_json())
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_holders_planted_by_another_user_or_as_links_neither_block_nor_redirect(host: Host, tmp_path: Path) -> None:
    first = host.run("locking.exclusive")
    assert first.returncode == 0, first.stderr
    key_dir = host.directory / KEY_DIR
    planted = key_dir / "planted.json"
    held = [live_holder(planted, "mallory@host [666]")]
    os.chown(planted, NOBODY, NOBODY)
    elsewhere = tmp_path / "elsewhere.json"  # a live-looking holder outside, reached through a link
    held.append(live_holder(elsewhere, "mallory@host [667]"))
    before = elsewhere.read_text()
    (key_dir / "link.json").symlink_to(elsewhere)
    os.lchown(key_dir / "link.json", NOBODY, NOBODY)
    victim = tmp_path / "victim"
    try:
        done = host.run("locking.exclusive")
        assert done.returncode == 0, done.stderr
        assert "Unable to acquire lock" not in done.stderr and "mallory" not in done.stderr
        assert not (key_dir / "link.json").is_symlink() and elsewhere.read_text() == before, \
            "the link is dropped, its target untouched"
        assert "Ignoring lock file link.json" in done.stderr or "Ignoring lock file link.json" in \
            (host.logs / "locking" / "exclusive-extended.log").read_text()
        dry = host.run("-d", "locking.exclusive")
        assert dry.returncode == 0 and "is busy" not in dry.stderr, dry.stderr
        (key_dir / ".mutex").unlink()
        (key_dir / ".mutex").symlink_to(victim)  # a mutex that would create a file elsewhere
        refused = host.run("locking.exclusive")
        assert refused.returncode == 99, refused.stderr
        assert ".mutex is a symbolic link: not followed" in refused.stderr and "START" not in refused.stderr
        assert not victim.exists(), "nothing was created through the link"
    finally:
        for fd in held:
            os.close(fd)
    assert [record["exit_code"] for record in host.records()] == [0, 0, 0, 99]  # the dry-run is recorded too
    assert [oct(path.stat().st_mode & 0o7777) for path in (host.directory, key_dir)] == ["0o700", "0o700"]


@pytest.mark.parametrize(("plant", "problem"), [
    ("owner", f"is owned by uid {NOBODY}, not by uid 0 that runs this: refused"),
    ("mode", r"is writable by group or others (mode 0777): refused"),
])
def test_a_lock_directory_others_control_is_refused_at_start(host: Host, plant: str, problem: str) -> None:
    host.directory.mkdir(mode=0o700)
    if plant == "owner":
        os.chown(host.directory, NOBODY, NOBODY)
    else:
        host.directory.chmod(0o777)
    done = host.run("locking.exclusive")
    assert done.returncode == 1, done.stderr
    assert f"key 'locks.file_dir': lock directory {host.directory} {problem}" in done.stderr
    assert "START" not in done.stderr and host.records() == []
    assert list(host.directory.iterdir()) == [], "nothing was created in it"


def run_intervals(log: str) -> list[tuple[datetime, datetime]]:
    """(START, END) times of each pid in a cookbook's INFO log, in order."""
    times: dict[str, dict[str, datetime]] = {}
    for match in re.finditer(r"^(\S+ \S+) \S+ (\d+) \[INFO\] (START|END)", log, re.M):
        stamp, pid, what = match.groups()
        times.setdefault(pid, {})[what] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    return sorted((seen["START"], seen["END"]) for seen in times.values())


def test_two_runs_exclude_each_other(host: Host) -> None:
    config = yaml.safe_load(host.config.read_text())
    config["locks"].update(wait_tries=40, wait_sleep=0.1)
    host.config.write_text(yaml.safe_dump(config))
    processes = [host.start("locking.exclusive", "--seconds", "2") for _ in range(2)]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    first, second = run_intervals((host.logs / "locking" / "exclusive.log").read_text())
    assert first[1] <= second[0], f"the runs overlapped: {first} {second}"
    assert any("Unable to acquire lock cookbooks/locking.exclusive" in err for _, err in outputs)
    assert oct(host.directory.stat().st_mode & 0o7777) == "0o700"
