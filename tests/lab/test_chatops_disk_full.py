"""A chat run whose log cannot be written (disk full) still runs and ends, on the lab: the bot's state_dir is a tiny
tmpfs filled to the last byte, the bot (real core and IRC bot on the lab's ngircd) runs the real resource-report
cookbook as a `cookbook` subprocess against the lab: its output still reaches the channel, its end is reported, and
the summary says the log is incomplete. The tmpfs is mounted at a temp path and unmounted afterwards."""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.chatops_lab import client, irc_part, irc_section, running_bot, write_config

TAG = secrets.token_hex(3)
CHANNEL = f"#chatfull-{TAG}"
BOT = f"fullbot-{TAG}"
WAIT = 60.0


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at a temp path with runs/ in it and no byte left (a filler took the rest); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", f"chatops-full-{TAG}", str(mount)], check=True)
    try:
        (mount / "runs").mkdir()
        with (mount / "filler").open("wb", buffering=0) as filler:
            with pytest.raises(OSError) as full:
                while True:
                    filler.write(b"x" * 4096)
            assert full.value.errno == errno.ENOSPC
        assert os.statvfs(mount).f_bavail == 0, "the tmpfs is full"
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_whose_log_fills_the_disk_still_ends_and_says_its_log_is_incomplete(
        lab: dict[str, Any], lab_config: Path, tmp_path: Path, full_dir: Path) -> None:
    irc = irc_part(lab)
    if not (isinstance(lab.get("ganeti"), dict) and lab["ganeti"].get("up")):
        pytest.skip("lab part ganeti is not up")
    section = {
        "state_dir": str(full_dir),
        "roles": {"reader": {"run": ["sre.ganeti.resource-report"]}},
        "people": {"alice": {"identities": [f"irc:alice{TAG}!*@*"], "roles": ["reader"]}},
        "irc": irc_section(irc, BOT, CHANNEL, flood_burst=20, flood_interval=0.05),
    }
    path = write_config(lab_config, tmp_path, section)
    with running_bot(path) as (core, bot):
        assert bot.joined.wait(WAIT), "the bot did not join"
        alice = client(irc, f"alice{TAG}", CHANNEL)
        try:
            mark = alice.say(CHANNEL, "!cookbook sre.ganeti.resource-report lab")
            accepted = alice.expect(r"\[[0-9a-f]{6}\] accepted", after=mark, nick=BOT, timeout=WAIT).text
            run_id = accepted.split("[")[1][:6]
            end = alice.expect(rf"^\[{run_id}\] (PASS|FAIL|failed)", after=mark, nick=BOT, timeout=120).text
            shown = [message.text for message in alice.messages[mark:] if message.nick == BOT]
        finally:
            alice.close()
        assert end.startswith(f"[{run_id}] PASS: sre.ganeti.resource-report lab"), shown
        assert f"its log {full_dir / 'runs' / f'{run_id}.log'} is incomplete (No space left on device)" in end, end
        assert any(line.startswith(f"[{run_id}] lab") and "TOTAL" in line for line in shown), \
            f"the cookbook's table reached the channel: {shown}"
        run = core.runs[run_id]
        assert run.exit_code == 0 and run.state == "passed"
    assert os.statvfs(full_dir).f_bavail == 0
