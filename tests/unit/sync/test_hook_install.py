"""libcluster.hooks.install: the install and removal programs, run with sh on a temporary hooks directory."""

from __future__ import annotations

import base64
import shlex
import stat
import subprocess
from pathlib import Path

from libcluster import redact
from libcluster.etcd import EtcdAccess
from libcluster.hooks import install
from libcluster.hooks.events import HookSettings

SCRIPT = (Path(__file__).resolve().parents[3] / "hooks" / install.SCRIPT_NAME).read_text()
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


NODE_PASSWORD = "node pass'word"


def settings(tmp_path: Path) -> HookSettings:
    return HookSettings(etcd=EtcdAccess("https://127.0.0.1:2379", "/lab/ca.crt", "runner", "runner-secret"),
                        node_etcd=EtcdAccess("https://198.18.0.1:12379", "/lab/ca.crt", "cookbook-node", NODE_PASSWORD),
                        hooks_dir=str(tmp_path / "etc ganeti" / "hooks"), log_file="/var/log/x y.log")


def run(program: str) -> list[str]:
    done = subprocess.run(["sh", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    assert done.stderr == ""
    return install.changed(done.stdout)


def test_the_conf_is_shell_assignments_that_sh_reads_back(tmp_path: Path) -> None:
    conf = install.render_conf("lab", settings(tmp_path))
    path = tmp_path / "conf"
    path.write_text(conf)
    shown = subprocess.run(["sh", "-c", f'. {shlex.quote(str(path))}; printf "%s|" "$CLUSTER" "$ETCD_URL" "$ETCD_CA" '
                            '"$ETCD_USER" "$ETCD_PASSWORD" "$PREFIX" "$TTL" "$LOG" "$SPOOL"'],
                           capture_output=True, text=True, check=True).stdout
    assert shown == (f"lab|https://198.18.0.1:12379|{tmp_path}/etc ganeti/hooks/cookbook-event-ca.crt|cookbook-node|"
                     f"{NODE_PASSWORD}|/ganeti-cookbooks/hooks/|86400|/var/log/x y.log|/var/spool/cookbook-event|")
    assert "runner-secret" not in conf


def test_check_writes_nothing_install_writes_everything_once(tmp_path: Path) -> None:
    conf = install.render_conf("lab", settings(tmp_path))
    base = Path(settings(tmp_path).hooks_dir)
    expected = {str(base / "cookbook-event"), str(base / "cookbook-event.conf"), str(base / install.CA_NAME)} | {
        str(base / f"{hook}-post.d" / install.LINK_NAME) for hook in install.HOOKS}
    assert set(run(install.program(SCRIPT, conf, settings(tmp_path), check=True, ca=CA))) == expected
    assert not base.exists()
    assert set(run(install.program(SCRIPT, conf, settings(tmp_path), check=False, ca=CA))) == expected
    assert (base / "cookbook-event").read_text() == SCRIPT
    assert (base / install.CA_NAME).read_text() == CA
    assert stat.S_IMODE((base / "cookbook-event").stat().st_mode) == 0o755
    assert stat.S_IMODE((base / "cookbook-event.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((base / install.CA_NAME).stat().st_mode) == 0o600
    for hook in install.HOOKS:
        link = base / f"{hook}-post.d" / install.LINK_NAME
        assert link.is_symlink() and str(link.readlink()) == "../cookbook-event" and link.resolve().is_file()
    assert run(install.program(SCRIPT, conf, settings(tmp_path), check=False, ca=CA)) == []
    assert run(install.program(SCRIPT, conf, settings(tmp_path), check=True, ca=CA)) == []


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
    assert len(run(install.removal(settings(tmp_path), check=False))) == len(install.HOOKS) + 2  # no CA was installed
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) == ["instance-add-post.d/10-other"]
    assert run(install.removal(settings(tmp_path), check=False)) == []


def test_the_program_shows_the_conf_masked_and_writes_it_root_only_from_the_start(tmp_path: Path) -> None:
    conf = install.render_conf("lab", settings(tmp_path))
    program = install.program(SCRIPT, conf, settings(tmp_path), check=False, ca=CA)
    assert base64.b64encode(conf.encode()).decode() in program
    masked = redact.redact(program)
    assert base64.b64encode(conf.encode()).decode() not in masked and redact.MASK in masked
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "chmod").write_text(f'#!/bin/sh\nstat -c "%a %n" "$2" >> {tmp_path}/modes\nexec /bin/chmod "$@"\n')
    (spy / "chmod").chmod(0o755)
    subprocess.run(["sh", "-c", program], env={"PATH": f"{spy}:/usr/bin:/bin"}, check=True, capture_output=True)
    modes = dict(line.split(" ", 1)[::-1] for line in (tmp_path / "modes").read_text().splitlines())
    assert len(modes) == 3 and set(modes.values()) == {"600"}  # temporary copies are root-only before their chmod
