"""The tree of cookbooks with titles and owners, read statically (ast) so that listing imports no cookbook.

A class-API cookbook is a top-level class that defines ``get_runner`` (itself or through a base
class of the same module); a module-API cookbook defines a top-level ``run``. Titles come from
the class docstring, or ``__title__``/the module docstring; groups take theirs from
``__init__.py``. Results are cached per file (keyed on mtime and size), so a listing of a
thousand cookbooks re-reads only what changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libcluster.cookbook import first_line
from libcluster.runner.discovery import UNOWNED, tree_roots

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped when the cached per-file record changes shape."""


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
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str, *, group: bool) -> Node:
        """The child called name, created if missing."""
        if name not in self.children:
            self.children[name] = Node(name, group=group)
        return self.children[name]

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first in name order."""
        yield self
        for name in sorted(self.children):
            yield from self.children[name].walk()

    def find(self, name: str) -> Node | None:
        """The node called name below this one."""
        return next((node for node in self.walk() if node.name == name), None)

    def cookbooks(self) -> list[Node]:
        """Every cookbook below this node."""
        return [node for node in self.walk() if not node.group]


def _constant(tree: ast.Module, names: Sequence[str]) -> dict[str, str]:
    found = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Constant):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names and isinstance(stmt.value.value, str):
                    found[target.id] = stmt.value.value
    return found


def _class_owner(node: ast.ClassDef) -> str:
    for stmt in node.body:
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                and any(isinstance(target, ast.Name) and target.id == "owner_team" for target in stmt.targets)):
            return str(stmt.value.value)
    return ""


def _defines_runner(node: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: set[str]) -> bool:
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "get_runner":
            return not any(isinstance(dec, (ast.Name, ast.Attribute)) and ast.unparse(dec).endswith("abstractmethod")
                           for dec in stmt.decorator_list)
    seen.add(node.name)
    return any(isinstance(base, ast.Name) and base.id in classes and base.id not in seen
               and _defines_runner(classes[base.id], classes, seen) for base in node.bases)


def read_file(path: Path) -> dict[str, Any]:
    """What a file declares: title, owner and, for modules, its cookbooks as ``{suffix: [title, owner]}``."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    constants = _constant(tree, ("__title__", "__owner_team__"))
    info: dict[str, Any] = {
        "title": constants.get("__title__") or first_line(ast.get_docstring(tree)),
        "owner": constants.get("__owner_team__", ""),
    }
    if path.name == "__init__.py":
        return info
    classes = {stmt.name: stmt for stmt in tree.body if isinstance(stmt, ast.ClassDef)}
    runnable = [node for node in classes.values() if _defines_runner(node, classes, set())]
    if len(runnable) == 1:
        node = runnable[0]
        info["cookbooks"] = {"": [first_line(ast.get_docstring(node)), _class_owner(node)]}
    elif runnable:
        info["cookbooks"] = {f".{node.name}": [first_line(ast.get_docstring(node)), _class_owner(node)]
                             for node in runnable}
    elif any(isinstance(stmt, ast.FunctionDef) and stmt.name == "run" for stmt in tree.body):
        info["cookbooks"] = {"": [info["title"], ""]}
    return info


class FileCache:
    """Per-file results of :func:`read_file`, kept in a JSON file and reused while mtime and size match."""

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
            except (OSError, ValueError, KeyError, AttributeError):
                logger.debug("Catalog cache %s unreadable, rebuilding it", path)

    def read(self, path: Path) -> dict[str, Any]:
        """The declarations of path, from the cache when the file is unchanged."""
        stat = path.stat()
        key = str(path)
        stamp = [stat.st_mtime_ns, stat.st_size]
        entry = self.entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        info = read_file(path)
        self.entries[key] = [stamp, info]
        self.dirty = True
        return info

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
        for folder, dirs, files in os.walk(tree_root):
            dirs[:] = sorted(name for name in dirs if _visible(name) and name != "__pycache__")
            rel = Path(folder).relative_to(tree_root).parts
            group = root
            for depth in range(len(rel)):
                group = group.child(".".join(rel[:depth + 1]), group=True)
            if rel and "__init__.py" in files:
                path = Path(folder) / "__init__.py"
                seen.add(str(path))
                info = cache.read(path)
                group.title = group.title or info.get("title", "")
                group.owner = info.get("owner") or group.owner
            for filename in sorted(files):
                if filename.endswith(".py") and _visible(filename):
                    path = Path(folder) / filename
                    seen.add(str(path))
                    _add_module(group, ".".join([*rel, filename[:-3]]), cache.read(path))
    cache.save(seen)
    _inherit_owners(root)
    return root


def _add_module(group: Node, name: str, info: dict[str, Any]) -> None:
    if "error" in info:
        group.children[name] = Node(name, title="(cannot be read)", error=info["error"])
        return
    for suffix, (title, owner) in info.get("cookbooks", {}).items():
        group.children[name + suffix] = Node(name + suffix, title=title,
                                                 owner=owner or info["owner"] or UNOWNED)


def _inherit_owners(node: Node, inherited: str = UNOWNED) -> None:
    own = node.owner if node.owner != UNOWNED else inherited
    node.owner = own
    for child in node.children.values():
        _inherit_owners(child, own)
