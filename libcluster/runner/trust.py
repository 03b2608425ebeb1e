"""Whether the files a run loads can be trusted with the runner's rights: changed only by root or their owner.

Under sudo a member of the operators' group runs ``cookbook`` as root; if that member could pick a
configuration or a cookbook tree they can write (``sudo cookbook -c ~/my.yaml``), their code would run as
root. So a run elevated by sudo refuses a configuration or cookbook tree that anyone but root may change.
``cookbook --doctor`` reports the same problems.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from libcluster.errors import ConfigError


def mode_problems(path: Path, *, secret: bool = False) -> list[str]:
    """What lets someone other than root or the runner's user change path (or, secret, read it); [] when none.

    A symbolic link is judged by its target, and by its own owner (who could point it elsewhere).
    """
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    trusted = (0, os.geteuid())
    problems = []
    if info.st_uid not in trusted:
        problems.append(f"owned by uid {info.st_uid}")
    if path.is_symlink() and path.lstat().st_uid not in trusted:
        problems.append(f"a symbolic link owned by uid {path.lstat().st_uid}")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append(f"writable by group or others (mode {mode:04o})")
    if secret and mode & stat.S_IROTH:
        problems.append(f"readable by everyone (mode {mode:04o})")
    return problems


def tree_paths(base: Path) -> Iterator[Path]:
    """base, its cookbooks/ folder and everything under it: the code a run may import from that base."""
    tree = base / "cookbooks"
    yield base
    yield tree
    for folder, dirs, files in os.walk(tree, followlinks=True):
        for name in (*dirs, *files):
            yield Path(folder) / name


def _ancestors(path: Path) -> Iterator[Path]:
    """The folders above path, whose owners could swap it; a sticky folder (/tmp) protects others' entries."""
    for parent in path.resolve().parents:
        info = parent.stat()
        if not info.st_mode & stat.S_ISVTX:
            yield parent


def elevated() -> bool:
    """Whether this run is root acting for another user through sudo."""
    return os.geteuid() == 0 and os.environ.get("SUDO_UID", "0") not in ("", "0")


def check_elevated_run(config_path: Path, base_dirs: list[Path]) -> None:
    """Under sudo: ConfigError naming the first configuration or cookbook path not changed by root only."""
    if not elevated():
        return
    checks = [(config_path, "configuration"),
              *((parent, "configuration's folder") for parent in _ancestors(config_path))]
    for base in base_dirs:
        if base.is_dir():  # a missing one is reported when the cookbook is looked up
            checks += [(parent, "cookbooks_base_dirs folder") for parent in _ancestors(base)]
            checks += [(path, "cookbook tree") for path in tree_paths(base)]
    for path, what in checks:
        problems = mode_problems(path)
        if problems:
            raise ConfigError(f"refusing to run as root for {os.environ.get('SUDO_USER', 'a sudo user')}: {what} "
                              f"{path} is {'; '.join(problems)}, so its code or settings could come from someone "
                              f"else (fix: chown root:root {path} && chmod go-w {path})")
