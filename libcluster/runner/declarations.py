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


TUNABLES = {"argument_task_required": ["-t", "--task-id"], "argument_reason_required": ["-r", "--reason"]}
"""Options the runner adds to a cookbook's parser when the cookbook sets the attribute (to anything but None)."""


def _options(node: ast.AST) -> list[str]:
    """The option strings (``-x``, ``--name``) of every ``add_argument`` call below node, for shell completion."""
    found: set[str] = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument":
            found.update(arg.value for arg in call.args
                         if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"))
        elif isinstance(call, ast.Assign) and not (isinstance(call.value, ast.Constant) and call.value.value is None):
            for target in call.targets:
                if isinstance(target, ast.Name) and target.id in TUNABLES:
                    found.update(TUNABLES[target.id])
    return sorted(found)


def _helper(function: ast.FunctionDef) -> dict[str, Any]:
    """A group helper's options: those always added, those added under ``if PARAM:``, and the parameters' defaults."""
    params = [arg.arg for arg in (*function.args.args, *function.args.kwonlyargs)]
    # the last len(defaults) positional parameters have one
    defaults = dict(zip([arg.arg for arg in function.args.args][::-1], function.args.defaults[::-1], strict=False))
    keyword_defaults = zip(function.args.kwonlyargs, function.args.kw_defaults, strict=True)
    defaults.update((arg.arg, value) for arg, value in keyword_defaults if value is not None)
    when: dict[str, list[str]] = {}
    always: list[str] = []
    for stmt in function.body:
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id in params and not stmt.orelse:
            when.setdefault(stmt.test.id, []).extend(_options(stmt))
        else:
            always.extend(_options(stmt))
    return {"options": sorted(set(always)), "when": when,
            "defaults": {name: value.value for name, value in defaults.items() if isinstance(value, ast.Constant)}}


def _helpers(tree: ast.Module) -> dict[str, dict[str, Any]]:
    """The top-level functions of a module that add options (what each adds always, under ``if PARAM:``)."""
    helpers = {stmt.name: _helper(stmt) for stmt in tree.body if isinstance(stmt, ast.FunctionDef)}
    return {name: helper for name, helper in helpers.items() if helper["options"] or helper["when"]}


def read_helpers(path: Path) -> dict[str, dict[str, Any]]:
    """The option-adding functions of a library module cookbooks call (libcluster.arguments), by name."""
    return _helpers(ast.parse(path.read_bytes(), str(path)))


def helper_options(helper: dict[str, Any], keywords: dict[str, Any]) -> list[str]:
    """The options a helper adds when called with these constant keyword arguments."""
    chosen = {**helper.get("defaults", {}), **keywords}
    return sorted({*helper["options"], *(option for param, options in helper["when"].items() if chosen.get(param, True)
                                         for option in options)})


def read_file(path: Path) -> dict[str, Any]:
    """What a file declares: title, owner and, for modules, its cookbooks as ``{suffix: [title, owner]}``.

    Also, for completion: a module's option strings and the plain functions it calls with their constant
    keyword arguments (``options``, ``calls``); an ``__init__.py``'s top-level functions that add options
    (``helpers``, see :func:`helper_options`).
    """
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
        info["helpers"] = _helpers(tree)
        return info
    info["options"] = _options(tree)
    info["calls"] = {call.func.id: {kw.arg: kw.value.value for kw in call.keywords
                                    if kw.arg and isinstance(kw.value, ast.Constant)}
                     for call in ast.walk(tree) if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)}
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
