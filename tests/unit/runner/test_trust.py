"""Under sudo the runner refuses a configuration or cookbook tree that someone other than root may change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libcluster.errors import ConfigError
from libcluster.runner import trust


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "base"
    (base / "cookbooks" / "sre").mkdir(parents=True)
    (base / "cookbooks" / "sre" / "hello.py").write_text("")
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir()
    config.write_text("{}\n")
    for path in (tmp_path, base, base / "cookbooks", base / "cookbooks" / "sre", config.parent):
        path.chmod(0o755)
    return config, base


@pytest.fixture
def under_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("the check applies to root only")
    monkeypatch.setenv("SUDO_UID", "1000")
    monkeypatch.setenv("SUDO_USER", "alice")


def test_a_root_only_tree_and_configuration_run(tmp_path: Path, under_sudo: None) -> None:
    config, base = _tree(tmp_path)
    trust.check_elevated_run(config, [base])


@pytest.mark.parametrize("target", ["config", "cookbook", "folder", "base-parent"])
def test_anything_another_user_may_change_is_refused(tmp_path: Path, under_sudo: None, target: str) -> None:
    config, base = _tree(tmp_path)
    path = {"config": config, "cookbook": base / "cookbooks" / "sre" / "hello.py",
            "folder": base / "cookbooks" / "sre", "base-parent": tmp_path}[target]
    os.chown(path, 1000, -1)
    with pytest.raises(ConfigError, match=f"refusing to run as root for alice: .* {path} is owned by uid 1000"):
        trust.check_elevated_run(config, [base])


def test_group_writable_and_a_link_to_a_writable_file_are_refused(tmp_path: Path, under_sudo: None) -> None:
    config, base = _tree(tmp_path)
    cookbook = base / "cookbooks" / "sre" / "hello.py"
    cookbook.chmod(0o664)
    with pytest.raises(ConfigError, match=r"hello.py is writable by group or others \(mode 0664\)"):
        trust.check_elevated_run(config, [base])
    cookbook.chmod(0o644)
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("")
    elsewhere.chmod(0o666)
    (base / "cookbooks" / "sre" / "linked.py").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="linked.py is writable by group or others"):
        trust.check_elevated_run(config, [base])


def test_root_itself_and_unprivileged_users_are_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, base = _tree(tmp_path)
    config.chmod(0o666)
    monkeypatch.delenv("SUDO_UID", raising=False)
    trust.check_elevated_run(config, [base])  # root's own choice, or a user running with their own rights
