"""`./dev install` for production on a host, and `./dev uninstall`, tried for real.

One run installs at the real paths (/opt, /usr/local, /etc, /var/log) inside a private mount namespace whose
overlays catch every write, so the machine's own /etc and /usr never change; `cookbook -l` is then found and
run the way sudo runs it (an empty environment, Debian's secure_path). The other installs with --root into a
temporary directory, next to a configuration that must survive.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERLAID = ("opt", "usr/local", "etc", "var", "run")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")


def _sh(script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=timeout)
    print(f"[exit {result.returncode}]\n{result.stdout}{result.stderr}")
    return result


def _mode(path: Path) -> str:
    info = path.stat()
    return f"{stat.S_IMODE(info.st_mode):04o} {info.st_uid}:{info.st_gid}"


def _unit(path: Path) -> dict[str, str]:
    """The key=value settings of a unit file (last one wins)."""
    lines = [line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] not in "#;"]
    return {key: value for key, value in lines}


@pytest.fixture(scope="module")
def visudo() -> None:
    """sudo (visudo, and sudo itself for the rule's test), installed through the lab's apt when missing."""
    if shutil.which("visudo") is None:
        from cookbook_lab.common import Lab

        Lab().apt_install("packaging", ["sudo"])


def test_install_on_the_real_paths_then_uninstall_leaves_only_the_configuration(tmp_path: Path, visudo: None) -> None:
    up = tmp_path / "up"
    mounts = "\n".join(
        f"mkdir -p {up}/{d} {tmp_path}/work/{d}\n"
        f"mount -t overlay overlay -o lowerdir=/{d},upperdir={up}/{d},workdir={tmp_path}/work/{d} /{d}"
        for d in OVERLAID)
    sudo_like = f"env -i HOME={tmp_path}/home PATH={SECURE_PATH}"
    units = "/etc/systemd/system/cookbook-hooks-agent.service /etc/systemd/system/cookbook-chatops.service"
    inside = f"""{mounts}
# A member of the operators' group, and the sudoers example in place (the test lets her skip the password).
groupadd cookbook-operators
useradd -M -N -g cookbook-operators -s /bin/sh cookbook-test-alice
install -m 0440 {REPO}/packaging/sudoers /etc/sudoers.d/ganeti-cookbooks
echo 'Defaults:cookbook-test-alice !authenticate' >/etc/sudoers.d/zz-test
find {up} >{tmp_path}/baseline
cd {REPO}
./dev install
cmp /usr/local/share/ganeti-cookbooks/examples/sudoers /etc/sudoers.d/ganeti-cookbooks
echo "which: $({sudo_like} sh -c 'command -v cookbook')"
{sudo_like} cookbook -l sre.ganeti
stat -c 'mode %n %a %u:%g' /etc/ganeti-cookbooks /etc/ganeti-cookbooks/config.yaml /var/log/ganeti-cookbooks
grep -A1 '^cookbooks_base_dirs:' /etc/ganeti-cookbooks/config.yaml
test ! -e /usr/local/bin/cookbook-lab && echo "no cookbook-lab"
{sudo_like} cookbook-hooks-agent --help | head -1
{sudo_like} cookbook-chatops --help | head -1
echo "visudo: $(visudo -cf /usr/local/share/ganeti-cookbooks/examples/sudoers 2>&1)"
rc=0; out=$(systemd-analyze verify {units} 2>&1) || rc=$?
echo "verify rc=$rc [$out]"
cd /
echo "sudo-list: $(runuser -u cookbook-test-alice -- sudo -n cookbook -l sre.dns 2>&1)"
completion='. /usr/local/share/bash-completion/completions/cookbook
COMP_WORDS=(cookbook sre.dns.n); COMP_CWORD=1; _cookbook; echo "${{COMPREPLY[*]}}"'
alice="runuser -u cookbook-test-alice -- env -i HOME=/nonexistent PATH={SECURE_PATH}"
echo "completion: $($alice bash -c "$completion")"
rc=0; runuser -u cookbook-test-alice -- sudo -n /bin/true 2>/dev/null || rc=$?
echo "sudo-other rc=$rc"
rc=0; runuser -u cookbook-test-alice -- sudo -n cookbook -d -y sre.ganeti.reboot-vm vm1.example.org 2>/dev/null || rc=$?
echo "sudo-run rc=$rc audit: $(cat /var/log/ganeti-cookbooks/audit.jsonl)"
# Her own configuration (cookbooks from a tree she writes) would run her code as root: refused.
rm -rf /tmp/alice-cookbooks /tmp/alice.yaml; mkdir -m 0755 -p /tmp/alice-cookbooks/cookbooks && chown -R cookbook-test-alice /tmp/alice-cookbooks
printf 'cookbooks_base_dirs: [/tmp/alice-cookbooks]\nlogs_base_dir: /tmp/alice-cookbooks\n' >/tmp/alice.yaml
chown cookbook-test-alice /tmp/alice.yaml
rc=0; own=$(runuser -u cookbook-test-alice -- sudo -n cookbook -c /tmp/alice.yaml -l 2>&1) || rc=$?
echo "sudo-own-config rc=$rc $own"
rm -r /tmp/alice-cookbooks /tmp/alice.yaml
rm -r /var/log/ganeti-cookbooks/*   # this test's own run: its logs and audit record
cd {REPO}
./dev uninstall
"""
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-euc", inside],
                            capture_output=True, text=True, timeout=600)
    print(f"[exit {result.returncode}]\n{result.stdout}{result.stderr}")
    assert result.returncode == 0
    out = result.stdout
    assert "which: /usr/local/bin/cookbook\n" in out
    assert "sre.ganeti.makevm" in out and "sre.ganeti.reboot-vm" in out
    assert "mode /etc/ganeti-cookbooks 750 0:0" in out
    assert "mode /etc/ganeti-cookbooks/config.yaml 640 0:0" in out
    assert "mode /var/log/ganeti-cookbooks 750 0:0" in out
    assert "  - /usr/local/share/ganeti-cookbooks\n" in out
    assert "no cookbook-lab" in out
    assert "usage: cookbook-hooks-agent " in out and "usage: cookbook-chatops " in out
    assert "visudo: /usr/local/share/ganeti-cookbooks/examples/sudoers: parsed OK\n" in out
    assert "verify rc=0 []\n" in out
    # The sudoers rule: cookbook (found on sudo's secure_path) and nothing else; the audit names the member.
    assert "sudo-list: cookbooks\n" in out and "sre.dns.netbox" in out
    assert "sudo-other rc=1\n" in out
    # alice cannot read the configuration: completion reads the installed tree.
    assert "completion: sre.dns.netbox\n" in out
    run_line = next(line for line in out.splitlines() if line.startswith("sudo-run"))
    assert run_line.startswith("sudo-run rc=94 audit: {")
    record = json.loads(run_line.split("audit: ", 1)[1])
    assert (record["user"], record["cookbook"], record["exit_code"]) == (
        "cookbook-test-alice", "sre.ganeti.reboot-vm", 94)
    assert "configuration in /etc/ganeti-cookbooks is kept" in out
    assert "sudo-own-config rc=1 ERROR: refusing to run as root for cookbook-test-alice: configuration /tmp/alice.yaml " \
        "is owned by uid" in out

    # What is new in the overlays' upper layers since the test's own setup is everything install and
    # uninstall changed on the machine: only the configuration. Directories copied up from below (e.g.
    # /etc/systemd/system) are not changes; a whiteout (character device) would be a host file deleted.
    baseline = set((tmp_path / "baseline").read_text().splitlines())
    left, whiteouts = [], []
    for path in up.rglob("*"):
        relative = "/" + str(path.relative_to(up))
        if path.is_char_device():
            whiteouts.append(relative)
        elif relative == "/run/systemd/systemd-units-load":
            continue  # systemd-analyze's own stamp, from the test's verify
        elif str(path) not in baseline and not (path.is_dir() and Path(relative).is_dir()):
            left.append(relative)
    assert whiteouts == []
    assert sorted(left) == ["/etc/ganeti-cookbooks", "/etc/ganeti-cookbooks/config.yaml"]
    assert not Path("/etc/ganeti-cookbooks").exists() and not Path("/opt/ganeti-cookbooks").exists()


def test_units_restart_on_failure_and_are_hardened() -> None:
    for name in ("cookbook-hooks-agent", "cookbook-chatops"):
        unit = _unit(REPO / "packaging" / "systemd" / f"{name}.service")
        assert unit["ExecStart"].startswith(f"/usr/local/bin/{name} -c /etc/ganeti-cookbooks/config.yaml")
        assert unit["Restart"] == "on-failure"
        for key, value in (("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "read-only")):
            assert unit[key] == value, (name, key)
        assert unit["ReadWritePaths"].split() == ["/var/log/ganeti-cookbooks", "/run/lock"]


def test_install_into_a_root_keeps_an_existing_configuration_and_uninstall_removes_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    etc = root / "etc" / "ganeti-cookbooks"
    etc.mkdir(parents=True, mode=0o750)
    config = etc / "config.yaml"
    mine = (f"# mine\ncookbooks_base_dirs: [{root}/usr/local/share/ganeti-cookbooks]\n"
            f"logs_base_dir: {root}/var/log/ganeti-cookbooks\n")
    config.write_text(mine)
    config.chmod(0o600)

    assert _sh(f"cd {REPO} && ./dev install --root {root}").returncode == 0
    assert config.read_text() == mine and _mode(config) == "0600 0:0"
    assert _mode(root / "var/log/ganeti-cookbooks") == "0750 0:0"
    assert _mode(root / "etc/systemd/system/cookbook-hooks-agent.service") == "0644 0:0"
    link = root / "usr/local/bin/cookbook"
    assert os.readlink(link) == f"{root}/opt/ganeti-cookbooks/bin/cookbook"
    # Installed as a copy (not editable): the package's files live in the venv, not in the checkout.
    site = next((root / "opt/ganeti-cookbooks/lib").glob("python3*/site-packages"))
    assert (site / "libcluster" / "runner" / "cli.py").is_file()
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert (site / "libcluster" / "py.typed").is_file()  # PEP 561: cookbook trees type-check against it
    # The lab is a development tool: neither its package nor its command is in the production venv.
    assert not (site / "cookbook_lab").exists() and not (site / "libcluster" / "lab").exists()
    assert not (root / "opt/ganeti-cookbooks/bin/cookbook-lab").exists()
    listed = _sh(f"env -i HOME={tmp_path} PATH={root}/usr/local/bin:{SECURE_PATH} cookbook -c {config} -l")
    assert listed.returncode == 0 and "sre.dns.netbox" in listed.stdout

    # An admin replaced one link by a script of their own: uninstall leaves it (and the directories holding it).
    admins = root / "usr/local/bin/cookbook-chatops"
    admins.unlink()
    admins.write_text("#!/bin/sh\n")
    removed = _sh(f"cd {REPO} && ./dev uninstall --root {root}")
    assert removed.returncode == 0
    assert f"kept {admins} (no longer our link into {root}/opt/ganeti-cookbooks)" in removed.stdout
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*")) == [
        "etc", "etc/ganeti-cookbooks", "etc/ganeti-cookbooks/config.yaml",
        "usr", "usr/local", "usr/local/bin", "usr/local/bin/cookbook-chatops"]
    assert config.read_text() == mine and admins.read_text() == "#!/bin/sh\n"


def test_an_install_that_stops_half_way_is_still_removed_by_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/local").mkdir(parents=True)
    (root / "usr/local/share").write_text("a file where install wants a directory\n")
    failed = _sh(f"cd {REPO} && ./dev install --root {root}")
    assert failed.returncode != 0 and "usr/local/share" in failed.stderr
    assert (root / "opt/ganeti-cookbooks/bin/cookbook").exists()  # the venv and links were made before the stop
    assert _sh(f"cd {REPO} && ./dev uninstall --root {root}").returncode == 0
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*")) == ["usr", "usr/local", "usr/local/share"]
