"""libcluster.hooks.install: the install and removal programs, run with sh on a temporary hooks directory."""

from __future__ import annotations

import shlex
import stat
import subprocess
from pathlib import Path

from libcluster.hooks import install
from libcluster.hooks.events import HookSettings

SCRIPT = (Path(__file__).resolve().parents[3] / "hooks" / install.SCRIPT_NAME).read_text()


def settings(tmp_path: Path) -> HookSettings:
    return HookSettings(etcd_url="http://127.0.0.1:2379", node_etcd_url="http://198.18.0.1:12379",
                        hooks_dir=str(tmp_path / "etc ganeti" / "hooks"), log_file="/var/log/x y.log")


def run(program: str) -> list[str]:
    done = subprocess.run(["sh", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    assert done.stderr == ""
    return install.changed(done.stdout)


def test_the_conf_is_shell_assignments_that_sh_reads_back(tmp_path: Path) -> None:
    conf = install.render_conf("lab", settings(tmp_path))
    path = tmp_path / "conf"
    path.write_text(conf)
    shown = subprocess.run(["sh", "-c", f'. {shlex.quote(str(path))}; printf "%s|" "$CLUSTER" "$ETCD_URL" "$PREFIX" '
                            '"$TTL" "$LOG" "$SPOOL"'], capture_output=True, text=True, check=True).stdout
    assert shown == "lab|http://198.18.0.1:12379|/ganeti-cookbooks/hooks/|86400|/var/log/x y.log|" \
                    "/var/spool/cookbook-event|"


def test_check_writes_nothing_install_writes_everything_once(tmp_path: Path) -> None:
    conf = install.render_conf("lab", settings(tmp_path))
    base = Path(settings(tmp_path).hooks_dir)
    expected = {str(base / "cookbook-event"), str(base / "cookbook-event.conf")} | {
        str(base / f"{hook}-post.d" / install.LINK_NAME) for hook in install.HOOKS}
    assert set(run(install.program(SCRIPT, conf, settings(tmp_path), check=True))) == expected
    assert not base.exists()
    assert set(run(install.program(SCRIPT, conf, settings(tmp_path), check=False))) == expected
    assert (base / "cookbook-event").read_text() == SCRIPT
    assert stat.S_IMODE((base / "cookbook-event").stat().st_mode) == 0o755
    assert stat.S_IMODE((base / "cookbook-event.conf").stat().st_mode) == 0o600
    for hook in install.HOOKS:
        link = base / f"{hook}-post.d" / install.LINK_NAME
        assert link.is_symlink() and str(link.readlink()) == "../cookbook-event" and link.resolve().is_file()
    assert run(install.program(SCRIPT, conf, settings(tmp_path), check=False)) == []
    assert run(install.program(SCRIPT, conf, settings(tmp_path), check=True)) == []


def test_a_changed_setting_or_mode_rewrites_only_that_file(tmp_path: Path) -> None:
    base = Path(settings(tmp_path).hooks_dir)
    run(install.program(SCRIPT, install.render_conf("lab", settings(tmp_path)), settings(tmp_path), check=False))
    (base / "cookbook-event").chmod(0o644)
    other = install.render_conf("prod", settings(tmp_path))
    assert run(install.program(SCRIPT, other, settings(tmp_path), check=False)) == [
        str(base / "cookbook-event"), str(base / "cookbook-event.conf")]
    assert "CLUSTER=prod" in (base / "cookbook-event.conf").read_text()
    assert not list(base.glob("*.tmp.*"))


def test_removal_takes_everything_away_once(tmp_path: Path) -> None:
    base = Path(settings(tmp_path).hooks_dir)
    run(install.program(SCRIPT, install.render_conf("lab", settings(tmp_path)), settings(tmp_path), check=False))
    (base / "instance-add-post.d" / "10-other").write_text("#!/bin/sh\n")
    assert len(run(install.removal(settings(tmp_path), check=True))) == len(install.HOOKS) + 2
    assert (base / "cookbook-event").exists()
    assert len(run(install.removal(settings(tmp_path), check=False))) == len(install.HOOKS) + 2
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) == ["instance-add-post.d/10-other"]
    assert run(install.removal(settings(tmp_path), check=False)) == []
