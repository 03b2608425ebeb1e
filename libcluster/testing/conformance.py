"""The check that keeps a fake honest: every method it offers exists on the real class with the same signature.

A fake declares which real class it stands for (``REAL``) and which of its public names are test helpers
the real class does not have (``HELPERS``). :func:`problems` compares each other public method or property
with the real one: parameter names, kinds, defaults, annotations and the return annotation must be identical
(a fake returning another fake says it returns the real type, with ``typing.cast``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

Signature = inspect.Signature


def _annotation(value: Any) -> str:
    """An annotation as text, spaces removed (annotations are strings under ``from __future__ import annotations``)."""
    if value is inspect.Parameter.empty:
        return ""
    text = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    return "".join(text.split())


def _signature(member: Callable[..., Any]) -> Signature:
    return inspect.signature(member, follow_wrapped=True)


def _describe(signature: Signature) -> str:
    return str(signature).replace("'", "")


def _public(cls: type) -> dict[str, Any]:
    """Public names defined by cls and its bases up to (not including) the real class or object."""
    real = getattr(cls, "REAL", None)
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or (real is not None and klass is real) or (real is not None and issubclass(real, klass)):
            continue
        found.update({name: value for name, value in vars(klass).items() if not name.startswith("_")})
    return found


def problems(fake: type, real: type) -> list[str]:
    """What differs between fake and real: one line per missing or different method or property."""
    helpers = set(getattr(fake, "HELPERS", ()))
    found = []
    for name, value in sorted(_public(fake).items()):
        if name in helpers or name in ("REAL", "HELPERS"):
            continue
        where = f"{fake.__name__}.{name}"
        if not hasattr(real, name):
            found.append(f"{where}: {real.__name__} has no {name} (a test helper belongs in HELPERS)")
            continue
        wanted = inspect.getattr_static(real, name)
        if isinstance(value, property) and isinstance(wanted, property):
            found += _compare(where, _signature(value.fget), _signature(wanted.fget))  # type: ignore[arg-type]
            continue
        if isinstance(value, property) or isinstance(wanted, property):
            if callable(value) or callable(wanted):
                found.append(f"{where}: a property and a method ({real.__name__}.{name})")
            continue
        if not callable(value):
            continue
        if not callable(wanted):
            found.append(f"{where}: a method where {real.__name__}.{name} is not callable")
            continue
        found += _compare(where, _signature(value), _signature(wanted))
    return found


def _compare(where: str, fake: Signature, real: Signature) -> list[str]:
    fake_params = [(p.name, p.kind, p.default, _annotation(p.annotation)) for p in fake.parameters.values()]
    real_params = [(p.name, p.kind, p.default, _annotation(p.annotation)) for p in real.parameters.values()]
    found = []
    if fake_params != real_params:
        found.append(f"{where}{_describe(fake)} differs from the real {_describe(real)}")
    returns, wanted = _annotation(fake.return_annotation), _annotation(real.return_annotation)
    if returns != wanted:
        found.append(f"{where} returns {returns or 'unannotated'} where the real one returns {wanted or 'unannotated'}")
    return found


def check_all(pairs: Iterable[tuple[type, type]]) -> list[str]:
    """problems() of every (fake, real) pair."""
    return [line for fake, real in pairs for line in problems(fake, real)]
