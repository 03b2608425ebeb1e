"""The lab ngircd's PAM login file holds password hashes: root:nogroup 0640, read by ngircd's pam_exec helper
(ngircd runs as nobody:nogroup) and by no other user, and a PAM login still works through it."""

from __future__ import annotations

import grp
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cookbook_lab import ircd
from cookbook_lab.common import Lab, read_pidfile
from tests.lab.chatops_lab import irc_part, pam_logins
from tests.lab.test_lab_ircd import register


def _ngircd_ids() -> tuple[int, int]:
    """Real uid and gid of the running lab ngircd."""
    pid = read_pidfile(Lab().state_dir / "ircd" / "ngircd.pid")
    assert pid is not None, "the lab's ngircd is not running"
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_the_login_file_is_readable_by_ngircd_only_and_logins_still_work(lab: dict[str, Any]) -> None:
    irc = irc_part(lab)
    uid, gid = _ngircd_ids()
    tag = secrets.token_hex(3)
    login = f"lf{tag}"
    with pam_logins([login]) as passwords:
        logins = Lab().state_dir / "ircd" / "logins"
        info = logins.stat()
        assert oct(info.st_mode & 0o777) == oct(0o640) and (info.st_uid, info.st_gid) == (0, gid), \
            f"{logins}: mode {oct(info.st_mode & 0o777)}, owner {info.st_uid}:{info.st_gid}"
        assert login in logins.read_text()
        reader = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "cat",
                                 str(logins)], capture_output=True, text=True, check=False)
        assert reader.returncode == 0 and login in reader.stdout, "ngircd's user reads it"
        other = subprocess.run(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "cat", str(logins)],
                               capture_output=True, text=True, check=False)
        assert other.returncode != 0 and "Permission denied" in other.stderr, "another user does not"
        assert register(irc, f"in{tag}", login, passwords[login]).endswith(f"in{tag}!{login}@127.0.0.1")
        assert register(irc, f"bad{tag}", login, "not-the-password").startswith("ERROR :Access denied")
    assert not [name for name in os.listdir(logins.parent) if name.endswith(".tmp")], "no temporary file left"


def test_the_lab_group_is_the_one_ngircd_runs_as(lab: dict[str, Any]) -> None:
    irc_part(lab)
    assert _ngircd_ids()[1] == grp.getgrnam(ircd.RUN_GROUP).gr_gid
