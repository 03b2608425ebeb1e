"""Sphinx configuration of the ganeti-cookbooks documentation: the guide and the API reference of libcluster.

Built by ``./dev docs`` (and ``./dev test``) in nitpicky mode with warnings as errors, so a docstring
or a signature that names a libcluster object that does not exist fails the build. Names outside
libcluster (the standard library, requests, pynetbox...) cannot be checked offline (there is no
intersphinx inventory to check them against) and are not reported.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

project = "ganeti-cookbooks"
author = "ganeti-cookbooks developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary"]
exclude_patterns = ["_build"]
autosummary_generate = True
autosummary_ignore_module_all = True  # packages' submodules too, each object documented where it is defined
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "both"
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!libcluster\b)[A-Za-z_][\w.]*\.[\w.\[\]]+")]  # not ours: not checkable
html_theme = "alabaster"


def _lookup(target: str) -> Any:
    """The object a dotted name stands for, or None when there is none."""
    module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None


def resolve(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement) -> Any:
    """Resolve a name as the module it is written in sees it (``DNSError`` in libcluster.dns, ``Path`` in a
    signature), and link it where its object is documented: a name a package re-exports (libcluster.dns.DNS)
    links to libcluster.dns.client.DNS. Type variables, private helpers and objects outside libcluster are
    shown as text; a name that stands for nothing stays unresolved, and fails the build."""
    if node.get("refdomain") != "py":
        return None
    target, module = node.get("reftarget", ""), node.get("py:module") or ""
    obj = _lookup(target) if "." in target else None
    if obj is None and module:
        obj = _lookup(f"{module}.{target}")
    if obj is None:
        return None
    if isinstance(obj, ModuleType):
        canonical, reftype = obj.__name__, "mod"
    else:
        canonical, reftype = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}", "obj"
    if isinstance(obj, TypeVar) or not canonical.startswith("libcluster.") or "._" in canonical:
        return contnode
    if canonical == target:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, reftype, canonical, node, contnode)


def signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, sig: str | None,
              annotation: str | None) -> tuple[str | None, str | None]:
    """A default shown by its repr in angle brackets (a dataclass field's ``<factory>``, ``<function f at 0x...>``)
    is no Python, and the signature would not parse: show it as ``...``."""
    return (re.sub(r"=\s*<[^<>]*>", "=...", sig) if sig else sig), annotation


def setup(app: Sphinx) -> None:
    """Register the two hooks above."""
    app.connect("missing-reference", resolve)
    app.connect("autodoc-process-signature", signature)
