"""What a cookbook file declares, read from its source with ast (without importing it).

A class-API cookbook is a top-level class that defines ``get_runner`` (itself or through a base
class of the same module); a module-API cookbook defines a top-level ``run``. Titles come from the
class docstring, or ``__title__``/the module docstring; owners from ``owner_team``/``__owner_team__``.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from libcluster.cookbook import first_line


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
