"""`./dev install` for production on a host, and `./dev uninstall`, tried for real.

One run installs at the real paths (/opt, /usr/local, /etc, /var/log) inside a private mount namespace whose
overlays catch every write, so the machine's own /etc and /usr never change; `cookbook -l` is then found and
run the way sudo runs it (an empty environment, Debian's secure_path). The other installs with --root into a
temporary directory, next to a configuration that must survive.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERLAID = ("opt", "usr/local", "etc", "var/log")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")


def _sh(script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=timeout)
    print(f"[exit {result.returncode}]\n{result.stdout}{result.stderr}")
    return result


def _mode(path: Path) -> str:
    info = path.stat()
    return f"{stat.S_IMODE(info.st_mode):04o} {info.st_uid}:{info.st_gid}"


def test_install_on_the_real_paths_then_uninstall_leaves_only_the_configuration(tmp_path: Path) -> None:
    mounts = "\n".join(
        f"mkdir -p {tmp_path}/up/{d} {tmp_path}/work/{d}\n"
        f"mount -t overlay overlay -o lowerdir=/{d},upperdir={tmp_path}/up/{d},workdir={tmp_path}/work/{d} /{d}"
        for d in OVERLAID)
    sudo_like = f"env -i HOME={tmp_path}/home PATH={SECURE_PATH}"
    inside = f"""{mounts}
cd {REPO}
./dev install
echo "which: $({sudo_like} sh -c 'command -v cookbook')"
{sudo_like} cookbook -l sre.ganeti
stat -c 'mode %n %a %u:%g' /etc/ganeti-cookbooks /etc/ganeti-cookbooks/config.yaml /var/log/ganeti-cookbooks
grep -A1 '^cookbooks_base_dirs:' /etc/ganeti-cookbooks/config.yaml
test ! -e /usr/local/bin/cookbook-lab && echo "no cookbook-lab"
./dev uninstall
"""
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-euc", inside],
                            capture_output=True, text=True, timeout=600)
    print(f"[exit {result.returncode}]\n{result.stdout}{result.stderr}")
    assert result.returncode == 0
    assert "which: /usr/local/bin/cookbook\n" in result.stdout
    assert "sre.ganeti.makevm" in result.stdout and "sre.ganeti.reboot-vm" in result.stdout
    assert "mode /etc/ganeti-cookbooks 750 0:0" in result.stdout
    assert "mode /etc/ganeti-cookbooks/config.yaml 640 0:0" in result.stdout
    assert "mode /var/log/ganeti-cookbooks 750 0:0" in result.stdout
    assert "  - /usr/local/share/ganeti-cookbooks\n" in result.stdout
    assert "no cookbook-lab" in result.stdout
    assert "configuration in /etc/ganeti-cookbooks is kept" in result.stdout

    # What is left in the overlays' upper layers is everything the two commands changed on the machine:
    # only the configuration. Directories copied up from below (e.g. /etc/systemd/system) are not changes;
    # a whiteout (character device) would be a host file deleted.
    left, whiteouts = [], []
    for top in OVERLAID:
        for path in (tmp_path / "up" / top).rglob("*"):
            relative = "/" + str(path.relative_to(tmp_path / "up"))
            if path.is_char_device():
                whiteouts.append(relative)
            elif not (path.is_dir() and Path(relative).is_dir()):
                left.append(relative)
    assert whiteouts == []
    assert sorted(left) == ["/etc/ganeti-cookbooks", "/etc/ganeti-cookbooks/config.yaml"]
    assert not Path("/etc/ganeti-cookbooks").exists() and not Path("/opt/ganeti-cookbooks").exists()


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
    listed = _sh(f"env -i HOME={tmp_path} PATH={root}/usr/local/bin:{SECURE_PATH} cookbook -c {config} -l")
    assert listed.returncode == 0 and "sre.dns.netbox" in listed.stdout

    assert _sh(f"cd {REPO} && ./dev uninstall --root {root}").returncode == 0
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*")) == [
        "etc", "etc/ganeti-cookbooks", "etc/ganeti-cookbooks/config.yaml"]
    assert config.read_text() == mine
