"""Locks on one host (file backend) and the waiting logic shared with etcd: counts, strictest holder, staleness."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from tests.unit.runner.runner_env import Env

from libcluster.errors import ConfigError
from libcluster.locks import FileBackend, Holder, LockError, Locks, is_free, limit_of

COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""


def holder(concurrency: int, owner: str = "me@host [1]") -> Holder:
    """A fresh holder with this concurrency."""
    return Holder(os.urandom(8).hex(), owner, concurrency, 60, time.time())


@pytest.mark.parametrize(("existing", "newcomer", "limit", "free"), [
    ([], 1, 1, True),
    ([1], 5, 1, False),
    ([5, 5], 2, 2, False),
    ([5, 5], 3, 3, True),
    ([3, 3, 3], 0, 3, False),
    ([0, 0, 0], 0, None, True),
])
def test_strictest_holder_wins(existing: list[int], newcomer: int, limit: int | None, free: bool) -> None:
    holders = [holder(value) for value in existing]
    assert limit_of(holders, newcomer) == limit
    assert is_free(holders, newcomer) is free


def test_file_backend_allows_n_holders_and_refuses_the_next(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    taken = [holder(3) for _ in range(3)]
    assert [backend.try_acquire("custom/x", one) for one in taken] == [None, None, None]
    refused = backend.try_acquire("custom/x", holder(3))
    assert refused is not None and sorted(h.id for h in refused) == sorted(h.id for h in taken)
    assert backend.try_acquire("custom/other", holder(1)) is None
    backend.release("custom/x", taken[0])
    assert backend.try_acquire("custom/x", holder(3)) is None
    assert len(backend.holders("custom/x")) == 3


def test_an_exclusive_holder_blocks_a_permissive_newcomer(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    assert backend.try_acquire("cookbooks/a", holder(1)) is None
    assert backend.try_acquire("cookbooks/a", holder(20)) is not None


def test_a_killed_holder_frees_its_file_lock(tmp_path: Path) -> None:
    script = ("import sys, time; from libcluster.locks import FileBackend, Holder\n"
              "FileBackend(sys.argv[1]).try_acquire('custom/k', Holder('dead', 'x@h [9]', 1, 60, time.time()))\n"
              "print('held', flush=True); time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        backend = FileBackend(tmp_path)
        assert [h.owner for h in backend.holders("custom/k")] == ["x@h [9]"]
        assert backend.try_acquire("custom/k", holder(1)) is not None
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert backend.holders("custom/k") == []
    assert backend.try_acquire("custom/k", holder(1)) is None
    assert not list(tmp_path.rglob("dead.json"))


def _locks(backend: FileBackend | None, sleeps: list[float], *, dry_run: bool = False) -> Locks:
    return Locks(backend, owner="me@host [2]", dry_run=dry_run, ttl=60, tries=3, sleep=0.5,
                 sleeper=sleeps.append)


def test_busy_lock_is_retried_with_visible_messages_then_refused(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    backend = FileBackend(tmp_path)
    backend.try_acquire("custom/x", holder(1, "alice@cumin1 [4242]"))
    sleeps: list[float] = []
    caplog.set_level(logging.WARNING, "libcluster.locks")
    with pytest.raises(LockError, match=r"unable to acquire lock custom/x after 3 tries: 1 holder\(s\), at most 1"):
        with _locks(backend, sleeps).acquired("custom/x", concurrency=5):
            pytest.fail("the body must not run")
    assert sleeps == [0.5, 1.0]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("[1/3, retrying in 0.50s] Unable to acquire lock custom/x: 1 holder(s), "
                                  "at most 1 allowed: alice@cumin1 [4242] (concurrency 1, since ")
    assert messages[1].startswith("[2/3, retrying in 1.00s]")


def test_lock_is_released_when_the_body_raises(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    locks = _locks(backend, [])
    with pytest.raises(RuntimeError), locks.acquired("custom/x", concurrency=1):
        assert len(backend.holders("custom/x")) == 1
        raise RuntimeError("body failed")
    assert backend.holders("custom/x") == []


def test_dry_run_checks_but_takes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _locks(FileBackend(tmp_path / "locks"), [], dry_run=True).acquired("custom/x", concurrency=1):
        assert not (tmp_path / "locks").exists()
    backend = FileBackend(tmp_path / "locks")
    backend.try_acquire("custom/x", holder(1, "alice@cumin1 [1]"))
    sleeps: list[float] = []
    caplog.set_level(logging.WARNING, "libcluster.locks")
    with _locks(backend, sleeps, dry_run=True).acquired("custom/x", concurrency=1):
        assert len(backend.holders("custom/x")) == 1
    assert sleeps == []
    assert "DRY-RUN: lock custom/x is busy, a real run would wait: 1 holder(s)" in caplog.text


def test_disabled_locks_take_nothing(tmp_path: Path) -> None:
    with _locks(None, []).acquired("custom/x", concurrency=1):
        assert not tmp_path.joinpath("custom%2Fx").exists()


def test_cookbook_waits_for_a_busy_lock_and_fails_with_99(cookbook: Callable[..., int], env: Env,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    FileBackend(env.locks).try_acquire("cookbooks/locking.exclusive", holder(1, "alice@cumin1 [77]"))
    assert cookbook("locking.exclusive") == 99
    err = capsys.readouterr().err
    assert "WARNING: [1/3, retrying in 0.05s] Unable to acquire lock cookbooks/locking.exclusive" in err
    assert "alice@cumin1 [77]" in err
    assert "Cookbook locking.exclusive not run: unable to acquire lock" in err
    assert "START" not in err
    assert env.records()[-1]["exit_code"] == 99
    assert cookbook("-d", "locking.exclusive") == 0
    assert "DRY-RUN WARNING: DRY-RUN: lock cookbooks/locking.exclusive is busy" in capsys.readouterr().err
    assert cookbook("--no-locks", "locking.exclusive") == 0
    assert "Locks disabled with --no-locks" in capsys.readouterr().err


def test_lock_args_suffix_and_custom_locks(cookbook: Callable[..., int], env: Env) -> None:
    FileBackend(env.locks).try_acquire("cookbooks/demo.ganeti.makevm:prod1", holder(1))
    assert cookbook("demo.ganeti.makevm", "vm1", "-r", "x") == 99
    assert cookbook("demo.ganeti.makevm", "vm1", "-r", "x", "--cluster", "prod2") == 0
    FileBackend(env.locks).try_acquire("custom/instance:vm1", holder(1))
    assert cookbook("locking.custom", "instance:vm1") == 99
    assert "unable to acquire lock custom/instance:vm1" in env.log("locking.custom")
    assert cookbook("locking.custom", "instance:vm2") == 0


def run_intervals(log: str) -> dict[str, tuple[datetime, datetime]]:
    """(START, END) times of each pid in a cookbook's INFO log."""
    times: dict[str, dict[str, datetime]] = {}
    for match in re.finditer(r"^(\S+ \S+) \S+ (\d+) \[INFO\] (START|END)", log, re.M):
        stamp, pid, what = match.groups()
        times.setdefault(pid, {})[what] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    return {pid: (seen["START"], seen["END"]) for pid, seen in times.items()}


def two_exclusive_runs(env: Env, directory: Path, seconds: str) -> list[tuple[str, str]]:
    """Two `locking.exclusive` runs started together, file locks in directory: both succeed, one after the other;
    their (stdout, stderr)."""
    env.write(locks={"file_dir": str(directory), "wait_tries": 40, "wait_sleep": 0.05})
    command = [str(COOKBOOK), "-c", str(env.config), "locking.exclusive", "--seconds", seconds]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    first, second = sorted(run_intervals(env.log("locking.exclusive")).values())
    assert first[1] <= second[0]
    return outputs


def test_two_exclusive_runs_started_together_serialize(env: Env) -> None:
    outputs = two_exclusive_runs(env, env.locks, "2")
    assert any("Unable to acquire lock cookbooks/locking.exclusive" in err for _, err in outputs)


# --- the lock directory on one host: private to the running user, nothing followed through a symlink --------

NOBODY = 65534
"""A uid other than ours, for directories and files planted by someone else (chown needs root)."""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting files of another user needs root")


def sticky_parent(tmp_path: Path) -> Path:
    """A world-writable sticky directory like /run/lock, where anyone may create entries."""
    parent = tmp_path / "run-lock"
    parent.mkdir()
    parent.chmod(0o1777)
    return parent


def test_lock_directory_is_created_0700_on_the_first_lock_only(tmp_path: Path) -> None:
    directory = sticky_parent(tmp_path) / "cookbooks"
    backend = FileBackend(directory)
    assert backend.holders("custom/x") == [] and not directory.exists(), "reading creates nothing"
    mine = holder(1)
    assert backend.try_acquire("custom/x", mine) is None
    key_dir = directory / "custom%2Fx"
    assert [oct(path.stat().st_mode & 0o7777) for path in (directory, key_dir, key_dir / f"{mine.id}.json")] == [
        "0o700", "0o700", "0o600"]
    assert directory.stat().st_uid == os.geteuid()


@pytest.mark.parametrize(("mode", "problem"), [
    (0o777, r"is writable by group or others \(mode 0777\): refused"),
    (0o1777, r"is writable by group or others \(mode 1777\): refused"),
    (0o770, r"is writable by group or others \(mode 0770\): refused"),
])
def test_a_writable_lock_directory_is_refused_at_start(tmp_path: Path, mode: int, problem: str) -> None:
    directory = tmp_path / "locks"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(ConfigError, match=rf"key 'locks.file_dir': lock directory {directory} {problem}"):
        FileBackend(directory)


@needs_root
def test_a_lock_directory_owned_by_another_user_is_refused_at_start(tmp_path: Path) -> None:
    directory = sticky_parent(tmp_path) / "cookbooks"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=rf"lock directory {directory} is owned by uid {NOBODY}, not by uid 0 "
                                          r"that runs this: refused \(another user could plant or remove lock"):
        FileBackend(directory)


def test_a_symlinked_lock_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "locks").symlink_to(real)
    with pytest.raises(ConfigError, match="lock directory .*/locks is a symbolic link or not a directory: refused"):
        FileBackend(tmp_path / "locks")
    backend = FileBackend(tmp_path / "base")
    backend.try_acquire("custom/y", holder(1))
    (tmp_path / "base" / "custom%2Fx").symlink_to(real, target_is_directory=True)
    with pytest.raises(LockError, match=r"lock directory .*/base/custom%2Fx is a symbolic link"):
        backend.try_acquire("custom/x", holder(1))
    assert list(real.iterdir()) == [], "nothing was written through the link"


def released_once(tmp_path: Path) -> FileBackend:
    """A file backend in tmp_path/locks whose lock custom/x was taken and released (its directory and .mutex exist)."""
    backend = FileBackend(tmp_path / "locks")
    first = holder(1)
    backend.try_acquire("custom/x", first)
    backend.release("custom/x", first)
    return backend


def test_a_planted_symlink_holder_is_not_followed(tmp_path: Path) -> None:
    backend = released_once(tmp_path)
    # A file elsewhere that looks like a live holder: valid JSON, flocked by another open file.
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(holder(1, "mallory@host [666]").to_json())
    held = os.open(elsewhere, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        planted = tmp_path / "locks" / "custom%2Fx" / "planted.json"
        planted.symlink_to(elsewhere)
        assert backend.holders("custom/x") == []
        mine = holder(1)
        assert backend.try_acquire("custom/x", mine) is None, "a planted link must not block the lock"
        assert [h.id for h in backend.holders("custom/x")] == [mine.id]
        assert not planted.is_symlink() and elsewhere.exists(), "the link is dropped, its target untouched"
    finally:
        os.close(held)


def test_a_planted_mutex_symlink_is_refused_and_nothing_is_created_through_it(tmp_path: Path) -> None:
    backend = released_once(tmp_path)
    victim = tmp_path / "victim"
    mutex = tmp_path / "locks" / "custom%2Fx" / ".mutex"
    mutex.unlink()
    mutex.symlink_to(victim)
    with pytest.raises(LockError, match=r"\.mutex is a symbolic link: not followed"):
        backend.try_acquire("custom/x", holder(1))
    assert not victim.exists()


@needs_root
def test_a_holder_file_of_another_user_is_ignored(tmp_path: Path) -> None:
    backend = released_once(tmp_path)
    planted = tmp_path / "locks" / "custom%2Fx" / "planted.json"
    planted.write_text(holder(1, "mallory@host [666]").to_json())
    os.chown(planted, NOBODY, NOBODY)
    held = os.open(planted, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert backend.holders("custom/x") == []
        assert backend.try_acquire("custom/x", holder(1)) is None
    finally:
        os.close(held)


def test_two_runs_exclude_each_other_in_a_lock_directory_they_create(env: Env) -> None:
    directory = sticky_parent(env.tmp) / "cookbooks"
    two_exclusive_runs(env, directory, "1")
    assert oct(directory.stat().st_mode & 0o7777) == "0o700"


@needs_root
def test_a_run_refuses_a_lock_directory_planted_by_another_user(env: Env) -> None:
    directory = sticky_parent(env.tmp) / "cookbooks"
    directory.mkdir(mode=0o755)
    os.chown(directory, NOBODY, NOBODY)
    env.write(locks={"file_dir": str(directory)})
    done = subprocess.run([str(COOKBOOK), "-c", str(env.config), "locking.exclusive"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert f"key 'locks.file_dir': lock directory {directory} is owned by uid {NOBODY}" in done.stderr
    assert "START" not in done.stderr and env.records() == []
