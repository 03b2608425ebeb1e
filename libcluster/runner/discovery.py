"""Find and load one cookbook by name from the configured trees, both APIs through one class.

Every base dir of ``cookbooks_base_dirs`` holds a ``cookbooks/`` tree without ``__init__.py`` (a
PEP 420 namespace, so several trees merge). ``cookbooks/sre/ganeti/makevm.py`` is the cookbook
``sre.ganeti.makevm``; a module holding several CookbookBase classes gives ``module.ClassName``
names. A module-API module (``run(args, ctx)``) is wrapped in :class:`ModuleCookbook`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from libcluster.cookbook import DEFAULT_MAX_CONCURRENCY, CookbookBase, CookbookRunnerBase, first_line
from libcluster.errors import ConfigError, LibclusterError

if TYPE_CHECKING:
    from libcluster.context import Context

logger = logging.getLogger(__name__)

PACKAGE = "cookbooks"
"""The namespace package every tree contributes to."""
UNOWNED = "unowned"
"""Owner of a cookbook whose module, class and groups name none."""
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class CookbookNotFound(LibclusterError):
    """No cookbook by that name, or the name is not a runnable cookbook."""


class CookbookLoadError(LibclusterError):
    """The cookbook exists but its module (or a group's ``__init__``) cannot be imported."""


@dataclass(frozen=True)
class Found:
    """Where a name points: a cookbook module, a class in a module, or a group directory."""

    name: str
    kind: str
    """``module``, ``class`` or ``group``."""
    path: Path


@dataclass(frozen=True)
class LoadedCookbook:
    """A cookbook ready to instantiate: canonical name, class (module API converted) and owner team."""

    name: str
    cls: type[CookbookBase]
    owner_team: str
    path: Path


def normalize(name: str) -> str:
    """Dotted name from dotted or path syntax: ``sre/ganeti/makevm.py`` -> ``sre.ganeti.makevm``."""
    if "/" in name or name.endswith(".py"):
        parts = [part for part in name.removesuffix(".py").split("/") if part]
        if PACKAGE in parts:
            parts = parts[len(parts) - parts[::-1].index(PACKAGE):]
        name = ".".join(parts)
    return name.strip(".")


def tree_roots(base_dirs: Sequence[str | Path]) -> list[Path]:
    """The ``cookbooks/`` folder of each base dir; refuse one that is a regular package."""
    roots = []
    for base in base_dirs:
        root = Path(base) / PACKAGE
        if (root / "__init__.py").exists():
            raise ConfigError(f"{root} must not contain __init__.py: it is a PEP 420 namespace shared by all trees")
        if root.is_dir():
            roots.append(root)
        else:
            logger.debug("cookbooks_base_dirs: %s has no %s/ folder", base, PACKAGE)
    return roots


def find(base_dirs: Sequence[str | Path], name: str) -> Found:
    """Locate a normalized name in the trees, without importing anything."""
    parts = name.split(".") if name else []
    if not parts or not all(_PART.match(part) for part in parts):
        raise CookbookNotFound(f"invalid cookbook name {name!r}")
    roots = tree_roots(base_dirs)
    for root in roots:
        path = root.joinpath(*parts[:-1], parts[-1] + ".py")
        if path.is_file():
            return Found(name, "module", path)
    for root in roots:
        if len(parts) > 1 and (path := root.joinpath(*parts[:-2], parts[-2] + ".py")).is_file():
            return Found(name, "class", path)
    for root in roots:
        if (path := root.joinpath(*parts)).is_dir():
            return Found(name, "group", path)
    raise CookbookNotFound(f"cookbook {name} not found in {', '.join(str(base) for base in base_dirs)}")


def import_cookbook_module(base_dirs: Sequence[str | Path], dotted: str) -> ModuleType:
    """Import ``cookbooks.<dotted>`` (dashes allowed), with the base dirs on sys.path."""
    for base in base_dirs:
        if str(base) not in sys.path:
            sys.path.append(str(base))
    module_name = f"{PACKAGE}.{dotted}" if dotted else PACKAGE
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        logger.debug("Traceback of the import of %s", module_name, exc_info=True)
        raise CookbookLoadError(f"cookbook {dotted} cannot be loaded: {type(exc).__name__}: {exc}") from None


def cookbook_classes(module: ModuleType) -> list[type[CookbookBase]]:
    """The concrete CookbookBase subclasses defined in module (imported ones do not count)."""
    import inspect

    return [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, CookbookBase) and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]


def group_owner(dotted_module: str) -> str:
    """The owner team inherited from the packages above a module (the closest ``__owner_team__`` wins)."""
    owner = UNOWNED
    parts = dotted_module.split(".")
    for depth in range(1, len(parts)):
        package = sys.modules.get(".".join([PACKAGE, *parts[:depth]]))
        owner = getattr(package, "__owner_team__", None) or owner
    return owner


def load(base_dirs: Sequence[str | Path], name: str) -> LoadedCookbook:
    """Import the cookbook called name (dotted or path syntax) and return its class; groups raise NotFound."""
    found = find(base_dirs, normalize(name))
    if found.kind == "group":
        raise CookbookNotFound(f"{found.name} is a group of cookbooks, not a cookbook")
    module_name = found.name if found.kind == "module" else found.name.rsplit(".", 1)[0]
    module = import_cookbook_module(base_dirs, module_name)
    classes = cookbook_classes(module)
    inherited = getattr(module, "__owner_team__", None) or group_owner(module_name)
    if found.kind == "class":
        wanted = found.name.rsplit(".", 1)[1]
        matching = [cls for cls in classes if cls.__name__ == wanted]
        if not matching:
            raise CookbookNotFound(f"cookbook {found.name} not found: {module_name} has no cookbook class {wanted}")
        cls = matching[0]
        canonical = module_name if len(classes) == 1 else found.name
    elif len(classes) == 1:
        cls, canonical = classes[0], module_name
    elif classes:
        names = ", ".join(f"{module_name}.{cls.__name__}" for cls in classes)
        raise CookbookNotFound(f"{module_name} holds several cookbooks, run one of: {names}")
    elif callable(getattr(module, "run", None)):
        return LoadedCookbook(module_name, module_cookbook(module), inherited, found.path)
    else:
        raise CookbookNotFound(f"{module_name} is not a cookbook: it defines neither a CookbookBase class nor run()")
    owner = cls.owner_team if cls.owner_team != UNOWNED else inherited
    return LoadedCookbook(canonical, cls, owner, found.path)


class ModuleCookbook(CookbookBase):
    """A module-API cookbook seen through the class API; subclassed per module by :func:`module_cookbook`."""

    module: ModuleType

    @property
    def title(self) -> str:
        """``__title__`` of the module, else the first line of its docstring."""
        return getattr(self.module, "__title__", None) or first_line(self.module.__doc__)

    def argument_parser(self) -> argparse.ArgumentParser:
        """The module's ``argument_parser()``, or the default parser."""
        if hasattr(self.module, "argument_parser"):
            parser: argparse.ArgumentParser = self.module.argument_parser()
            return parser
        return super().argument_parser()

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """A runner calling the module's ``run(args, ctx)``."""
        return ModuleRunner(self.module, args, self.ctx)


class ModuleRunner(CookbookRunnerBase):
    """Runs ``module.run(args, ctx)`` with the module's MAX_CONCURRENCY and LOCK_TTL."""

    def __init__(self, module: ModuleType, args: argparse.Namespace, ctx: Context) -> None:
        """Read the module's lock settings."""
        self.module = module
        self.args = args
        self.ctx = ctx
        self.max_concurrency = getattr(module, "MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)
        self.lock_ttl = getattr(module, "LOCK_TTL", None)

    def run(self) -> Any:
        """Hand the parsed arguments and the context to the module's entry point."""
        return self.module.run(self.args, self.ctx)


def module_cookbook(module: ModuleType) -> type[CookbookBase]:
    """Convert a module-API module into a CookbookBase class (same docstring, so the same help)."""
    leaf = module.__name__.rsplit(".", 1)[1]
    return type(leaf, (ModuleCookbook,), {"__doc__": module.__doc__, "__module__": module.__name__, "module": module})
