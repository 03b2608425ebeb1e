"""libcluster.hooks.install: the install and removal programs, run with sh on a temporary hooks directory."""

from __future__ import annotations

import base64
import shlex
import stat
import subprocess
from pathlib import Path

from libcluster import redact
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.etcd import EtcdAccess
from libcluster.hooks import install
from libcluster.hooks.events import HookSettings
from libcluster.remote import Remote

SCRIPT = (Path(__file__).resolve().parents[3] / "hooks" / install.SCRIPT_NAME).read_text()
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


NODE_PASSWORD = "node pass'word"


def settings(tmp_path: Path) -> HookSettings:
    return HookSettings(etcd=EtcdAccess("https://127.0.0.1:2379", "/lab/ca.crt", "runner", "runner-secret"),
                        node_etcd=EtcdAccess("https://198.18.0.1:12379", "/lab/ca.crt", "cookbook-node", NODE_PASSWORD),
                        hooks_dir=str(tmp_path / "etc ganeti" / "hooks"), log_file="/var/log/x y.log",
                        cron_file=str(tmp_path / "cron.d" / "cookbook-event"))


def run(program: str, stdin: str | None = None) -> list[str]:
    done = subprocess.run(["sh", "-c", program], capture_output=True, text=True, check=True, timeout=30, input=stdin)
    assert done.stderr == ""
    return install.changed(done.stdout)


def wanted(tmp_path: Path, cluster: str = "lab", ca: str | None = CA) -> list[install.File]:
    return install.files(SCRIPT, install.render_conf(cluster, settings(tmp_path)), settings(tmp_path), ca=ca)


def install_here(files: list[install.File], hooks: HookSettings, programs: list[str] | None = None) -> list[str]:
    """What install-hooks does on a node, here: compare, send each differing file on stdin, make the links; the
    changed paths (programs: every command line run, appended)."""
    check = install.program(files, hooks, check=True)
    differ = run(check)
    writes = [(install.write_program(file), file.content) for file in files if file.path in differ]
    for program, content in writes:
        assert run(program, stdin=content)
    apply = install.program(files, hooks, check=False)
    links = run(apply)
    if programs is not None:
        programs += [check, apply, *(program for program, _ in writes)]
    return [path for path in differ if path not in links] + links


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
    hooks, files = settings(tmp_path), wanted(tmp_path)
    base = Path(hooks.hooks_dir)
    expected = {str(base / "cookbook-event"), str(base / "cookbook-event.conf"), str(base / install.CA_NAME),
                hooks.cron_file} | {str(base / f"{hook}-post.d" / install.LINK_NAME) for hook in install.HOOKS}
    assert set(run(install.program(files, hooks, check=True))) == expected
    assert not base.exists() and not Path(hooks.cron_file).exists()
    assert set(install_here(files, hooks)) == expected
    assert (base / "cookbook-event").read_text() == SCRIPT
    assert (base / install.CA_NAME).read_text() == CA
    for name, mode in (("cookbook-event", 0o755), ("cookbook-event.conf", 0o600), (install.CA_NAME, 0o600)):
        assert stat.S_IMODE((base / name).stat().st_mode) == mode
    assert stat.S_IMODE(Path(hooks.cron_file).stat().st_mode) == 0o644
    for hook in install.HOOKS:
        link = base / f"{hook}-post.d" / install.LINK_NAME
        assert link.is_symlink() and str(link.readlink()) == "../cookbook-event" and link.resolve().is_file()
    assert install_here(files, hooks) == []
    assert run(install.program(files, hooks, check=True)) == []


def test_the_cron_entry_flushes_the_spool_every_minute_as_root_when_the_script_is_there(tmp_path: Path) -> None:
    hooks = settings(tmp_path)
    script = shlex.quote(f"{hooks.hooks_dir}/cookbook-event")
    assert install.render_cron(hooks).splitlines()[-1] == (
        f"* * * * * root [ -x {script} ] && timeout 55 {script} --flush >/dev/null 2>&1")
    no_cron = HookSettings(etcd=hooks.etcd, node_etcd=hooks.node_etcd, hooks_dir=hooks.hooks_dir, cron_file="")
    assert [file.path for file in install.files(SCRIPT, "conf", no_cron)] == [
        f"{hooks.hooks_dir}/cookbook-event", f"{hooks.hooks_dir}/cookbook-event.conf"]


def test_a_changed_setting_or_mode_rewrites_only_that_file(tmp_path: Path) -> None:
    hooks = settings(tmp_path)
    base = Path(hooks.hooks_dir)
    install_here(wanted(tmp_path, ca=None), hooks)
    (base / "cookbook-event").chmod(0o644)
    assert install_here(wanted(tmp_path, "prod", ca=None), hooks) == [str(base / "cookbook-event"),
                                                                      str(base / "cookbook-event.conf")]
    assert "CLUSTER=prod" in (base / "cookbook-event.conf").read_text()
    assert not list(base.glob("*.tmp.*"))


def test_removal_takes_everything_away_once(tmp_path: Path) -> None:
    hooks = settings(tmp_path)
    base = Path(hooks.hooks_dir)
    install_here(wanted(tmp_path, ca=None), hooks)
    (base / "instance-add-post.d" / "10-other").write_text("#!/bin/sh\n")
    assert len(run(install.removal(hooks, check=True))) == len(install.HOOKS) + 3
    assert (base / "cookbook-event").exists()
    assert len(run(install.removal(hooks, check=False))) == len(install.HOOKS) + 3  # no CA was installed
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) == ["instance-add-post.d/10-other"]
    assert not Path(hooks.cron_file).exists()
    assert run(install.removal(hooks, check=False)) == []


def test_no_command_line_carries_the_password_in_any_form_and_the_conf_digest_is_masked(tmp_path: Path) -> None:
    hooks, files = settings(tmp_path), wanted(tmp_path)
    programs: list[str] = []
    install_here(files, hooks, programs)
    assert len(programs) == 2 + 4
    conf = files[1].content
    forms = [NODE_PASSWORD, base64.b64encode(conf.encode()).decode()[8:40]]
    forms += [base64.b64encode(b"\0" * shift + NODE_PASSWORD.encode()).decode()[4:-4] for shift in range(3)]
    for program in programs:
        assert not [form for form in forms if form in program]
    assert files[1].digest in programs[0] and files[1].digest not in redact.redact(programs[0])


def test_a_written_file_is_root_only_from_the_start(tmp_path: Path) -> None:
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "chmod").write_text(f'#!/bin/sh\nstat -c "%a %n" "$2" >> {tmp_path}/modes\nexec /bin/chmod "$@"\n')
    (spy / "chmod").chmod(0o755)
    for file in wanted(tmp_path):
        subprocess.run(["sh", "-c", install.write_program(file)], env={"PATH": f"{spy}:/usr/bin:/bin"}, check=True,
                       capture_output=True, input=file.content.encode())
    modes = dict(line.split(" ", 1)[::-1] for line in (tmp_path / "modes").read_text().splitlines())
    assert len(modes) == 4 and set(modes.values()) == {"600"}  # temporary copies are root-only before their chmod


def test_files_are_sent_with_the_ssh_options_of_the_cumin_config(tmp_path: Path) -> None:
    cumin = tmp_path / "cumin.yaml"
    cumin.write_text("transport: clustershell\ndefault_backend: direct\nclustershell:\n"
                     "  ssh_options: ['-F /lab/ssh_config', '-oPort=2222']\n  connect_timeout: 10\n")
    remote = Remote(Section({"cumin_config": str(cumin), "ssh_user": "root"}, "remote", "c.yaml"), dry_run=False,
                    changes=ChangeLog(dry_run=False))
    assert remote.ssh_command("node1.example.org", "cat > x") == [
        "ssh", "-F", "/lab/ssh_config", "-oPort=2222", "-oForwardAgent=no", "-oForwardX11=no", "-l", "root",
        "-oConnectTimeout=10", "-oBatchMode=yes", "node1.example.org", "cat > x"]
