"""Shell completion of ``cookbook``: global options, cookbook and group names, and a cookbook's options.

Everything comes from the static catalog (no cookbook is imported), so a completion costs one
cached scan. ``cookbook --complete CWORD WORD...`` prints the candidates, one per line; the bash
function in packaging/bash-completion calls it. The cookbook directories come from the
configuration (-c on the line, else COOKBOOK_CONFIG, else the default file); when the user cannot
read it (0640 root, completing ``sudo cookbook``), from COOKBOOK_COMPLETE_DIRS (colon-separated),
which the installed completion sets to the installed tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from libcluster import config
from libcluster.errors import ConfigError
from libcluster.runner import catalog, discovery

DIRS_ENV = "COOKBOOK_COMPLETE_DIRS"
"""Cookbook base directories to complete from when the configuration cannot be read."""


def _base_dirs(config_path: str) -> list[Path]:
    try:
        dirs = config.load(config_path).list("cookbooks_base_dirs")
    except ConfigError:
        dirs = [item for item in os.environ.get(DIRS_ENV, "").split(":") if item]
    return [Path(str(item)) for item in dirs]


def candidates(words: Sequence[str], cword: int, global_options: Sequence[str], default_config: str) -> list[str]:
    """What may stand at words[cword] (words[0] is the command), filtered by what is typed there already."""
    current = words[cword] if cword < len(words) else ""
    config_path, name, index = default_config, "", 1
    while index < cword:
        word = words[index]
        if word == "--config-file":
            if index + 1 == cword:
                return []  # a file name: the shell completes it
            config_path = words[index + 1]
            index += 2
            continue
        if word.startswith("--config-file="):
            config_path = word.split("=", 1)[1]
        elif word.startswith("-") and not word.startswith("--") and "c" in word:
            value = word[word.index("c") + 1:]  # -c FILE, -cFILE, -dc FILE
            if not value:
                if index + 1 == cword:
                    return []
                value = words[index + 1]
                index += 1
            config_path = value
        elif not word.startswith("-"):
            name = word
            break
        index += 1
    if not name and current.startswith("-"):
        found = list(global_options)
    else:
        base_dirs = _base_dirs(config_path)
        if not base_dirs:
            return []
        try:
            tree = catalog.scan(base_dirs, catalog.default_cache_path(base_dirs))
        except OSError:
            return []
        if not name:
            found = [node.name for node in tree.walk() if node.name]
        elif current.startswith("-"):
            node = tree.find(discovery.normalize(name))
            found = ["-h", "--help", *node.options] if node is not None and not node.group else []
        else:
            return []  # a cookbook's positional argument: the shell's own completion
    return sorted(word for word in found if word.startswith(current))


def main(argv: Sequence[str], global_options: Sequence[str], default_config: str) -> int:
    """``--complete CWORD WORD...``: print the candidates, one per line; 2 when CWORD is not a number."""
    if not argv or not argv[0].isdigit():
        return 2
    for word in candidates(list(argv[1:]), int(argv[0]), global_options, default_config):
        print(word)
    return 0
