"""The tree of cookbooks with titles and owners, read statically so that listing imports no cookbook.

Each file is read by :mod:`libcluster.runner.declarations`; groups take their title and owner from
``__init__.py``. Results are cached per file (keyed on mtime and size), so a listing of a
thousand cookbooks re-reads only what changed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libcluster.runner.discovery import UNOWNED, tree_roots

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bumped when the cached per-file record changes shape."""
LIBRARY_HELPERS = Path(__file__).resolve().parents[1] / "arguments.py"
"""libcluster.arguments: its option-adding functions (add_location_args) are helpers of every tree."""


@dataclass
class Node:
    """A group or a cookbook of the tree."""

    name: str
    """Dotted name; "" for the root."""
    title: str = ""
    owner: str = UNOWNED
    group: bool = False
    error: str = ""
    """Why the file could not be read (syntax error); the cookbook is still listed."""
    options: list[str] = field(default_factory=list)
    """Option strings of a cookbook's parser, read statically (with those of its group's helpers), for completion."""
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str, *, group: bool) -> Node:
        """The child called name, created if missing."""
        if name not in self.children:
            self.children[name] = Node(name, group=group)
        return self.children[name]

    def walk(self) -> Iterator[Node]:
        """Every node from this one down, depth first in name order."""
        yield self
        for name in sorted(self.children):
            yield from self.children[name].walk()

    def find(self, name: str) -> Node | None:
        """The node called name below this one."""
        return next((node for node in self.walk() if node.name == name), None)

    def cookbooks(self) -> list[Node]:
        """Every cookbook below this node."""
        return [node for node in self.walk() if not node.group]


class FileCache:
    """Per-file results of ``declarations.read_file``, kept in a JSON file and reused while mtime and size match."""

    def __init__(self, path: Path | None) -> None:
        """Load the cache at path (None: no caching); a broken cache is ignored."""
        self.path = path
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if data.get("version") == CACHE_VERSION:
                    self.entries = data["files"]
            except FileNotFoundError:
                logger.debug("Catalog cache %s not there yet", path)
            except (OSError, ValueError, KeyError, AttributeError):
                logger.debug("Catalog cache %s unreadable, rebuilding it", path)

    def read(self, entry: os.DirEntry[str], seen: set[str]) -> dict[str, Any]:
        """The declarations of a file, from the cache when its mtime and size are unchanged; marks it seen."""
        stat = entry.stat()
        stamp = [stat.st_mtime_ns, stat.st_size]
        seen.add(entry.path)
        cached = self.entries.get(entry.path)
        if cached is not None and cached[0] == stamp:
            known: dict[str, Any] = cached[1]
            return known
        from libcluster.runner import declarations  # ast is only needed for files not in the cache

        info = declarations.read_file(Path(entry.path))
        self.entries[entry.path] = [stamp, info]
        self.dirty = True
        return info

    def library_helpers(self, seen: set[str]) -> dict[str, Any]:
        """The option-adding functions of libcluster.arguments (helpers in every tree), cached as files are."""
        path = str(LIBRARY_HELPERS)
        stat = os.stat(path)
        stamp = [stat.st_mtime_ns, stat.st_size]
        seen.add(path)
        cached = self.entries.get(path)
        if cached is not None and cached[0] == stamp:
            known: dict[str, Any] = cached[1]
            return known
        from libcluster.runner import declarations  # ast is only needed when the cache is stale

        helpers = declarations.read_helpers(LIBRARY_HELPERS)
        self.entries[path] = [stamp, helpers]
        self.dirty = True
        return helpers

    def save(self, seen: set[str]) -> None:
        """Write the cache back (best effort), keeping only the files seen in this scan."""
        if self.path is None or not (self.dirty or set(self.entries) - seen):
            return
        files = {key: value for key, value in self.entries.items() if key in seen}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": files}))
            tmp.replace(self.path)
        except OSError as exc:
            logger.debug("Catalog cache %s not written: %s", self.path, exc)


def default_cache_path(base_dirs: Sequence[str | Path]) -> Path:
    """Cache file of these base dirs under ``$XDG_CACHE_HOME`` (or ``~/.cache``)."""
    import hashlib  # not needed to run a cookbook

    digest = hashlib.sha1("\0".join(str(Path(base).resolve()) for base in base_dirs).encode()).hexdigest()[:16]
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "ganeti-cookbooks" / f"catalog-{digest}.json"


def _visible(name: str) -> bool:
    return not name.startswith(("_", "."))


def scan(base_dirs: Sequence[str | Path], cache_path: Path | None = None) -> Node:
    """The merged tree of all base dirs' ``cookbooks/`` folders."""
    root = Node("", title="cookbooks", group=True)
    cache = FileCache(cache_path)
    seen: set[str] = set()
    for tree_root in tree_roots(base_dirs):
        _scan_folder(str(tree_root), (), root, cache, seen, cache.library_helpers(seen))
    cache.save(seen)
    _inherit_owners(root)
    return root


def _scan_folder(folder: str, rel: tuple[str, ...], group: Node, cache: FileCache, seen: set[str],
                 helpers: dict[str, Any]) -> None:
    """Add folder's cookbooks and sub-groups; helpers: option-adding functions of the enclosing ``__init__.py``s."""
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    files = {entry.name: entry for entry in entries if entry.name.endswith(".py") and entry.is_file()}
    if rel and "__init__.py" in files:
        info = cache.read(files["__init__.py"], seen)
        group.title = group.title or info.get("title", "")
        group.owner = info.get("owner") or group.owner
        helpers = {**helpers, **info.get("helpers", {})}
    for name, entry in files.items():
        if _visible(name):
            _add_module(group, ".".join([*rel, name[:-3]]), cache.read(entry, seen), helpers)
    for entry in entries:
        if _visible(entry.name) and entry.name != "__pycache__" and entry.is_dir():
            sub = (*rel, entry.name)
            _scan_folder(entry.path, sub, group.child(".".join(sub), group=True), cache, seen, helpers)


def _add_module(group: Node, name: str, info: dict[str, Any], helpers: dict[str, Any]) -> None:
    if "error" in info:
        group.children[name] = Node(name, title="(cannot be read)", error=info["error"])
        return
    options = set(info.get("options", []))
    for called, keywords in info.get("calls", {}).items():
        if called in helpers:
            from libcluster.runner.declarations import helper_options

            options.update(helper_options(helpers[called], keywords))
    for suffix, (title, owner) in info.get("cookbooks", {}).items():
        group.children[name + suffix] = Node(name + suffix, title=title,
                                                 owner=owner or info["owner"] or UNOWNED, options=sorted(options))


def _inherit_owners(node: Node, inherited: str = UNOWNED) -> None:
    own = node.owner if node.owner != UNOWNED else inherited
    node.owner = own
    for child in node.children.values():
        _inherit_owners(child, own)
