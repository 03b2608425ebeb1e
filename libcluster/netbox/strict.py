"""Strict use of an API that forgives too much: NetBox ignores unknown filters and unknown fields.

Filters: only names listed in :mod:`libcluster.netbox.kinds` are sent, and every returned object is checked
against each filter that can be seen on it, so a filter NetBox ignored (misspelt, or removed in
an upgrade like `site` on clusters in 4.2) fails loudly instead of returning everything. This
costs no request, unlike pynetbox's `strict_filters` which downloads the OpenAPI schema.
Writes: every field sent must come back in NetBox's answer with the value sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from libcluster.netbox.errors import NetBoxFilterError, NetBoxIgnoredField
from libcluster.netbox.kinds import Kind

_MULTI = (list, tuple, set, frozenset)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _MULTI):
        return [_query_value(item) for item in value]
    return value


def _as_strings(value: Any) -> list[str]:
    value = _query_value(value)
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def params(kind: Kind, filters: Mapping[str, Any]) -> dict[str, Any]:
    """Filters as query parameters; a name the kind does not list raises before any request."""
    allowed = kind.allowed()
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise NetBoxFilterError(
            f"{kind.name}: unknown filter {', '.join(unknown)} (NetBox would ignore it and return every object); "
            f"known filters: {', '.join(sorted(allowed))}"
        )
    return {name: _query_value(value) for name, value in filters.items()}


def matches_nothing(filters: Mapping[str, Any]) -> bool:
    """Whether a filter has an empty list of values (sent as nothing, NetBox would match everything)."""
    return any(isinstance(value, _MULTI) and not value for value in filters.values())


def needed_fields(kind: Kind, filters: Mapping[str, Any]) -> set[str]:
    """Top-level fields the checks of these filters read, plus id and the label."""
    fields = {"id", kind.label}
    for name in filters:
        check = kind.allowed()[name]
        if check is not None:
            fields.update(check.fields)
    return fields


def verify(kind: Kind, filters: Mapping[str, Any], obj: Mapping[str, Any]) -> None:
    """Raise NetBoxFilterError when obj does not match a filter it was returned for."""
    allowed = kind.allowed()
    for name, value in filters.items():
        check = allowed[name]
        if check is not None and not check.matches(obj, _as_strings(value)):
            raise NetBoxFilterError(
                f"GET {kind.path}: NetBox returned {kind.name} {obj.get(kind.label)!r} (id {obj.get('id')}) that does "
                f"not match {name}={value!r}: the filter was ignored or means something else on this NetBox version"
            )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _same(sent: Any, got: Any) -> bool:
    if isinstance(got, Mapping):
        got = got.get("id", got.get("value"))
    if sent is None or got is None or isinstance(sent, bool) or isinstance(got, bool):
        return sent == got or (sent in ("", None) and got in ("", None))
    sent_text, got_text = str(sent).strip(), str(got).strip()
    if sent_text.lower() == got_text.lower():
        return True
    sent_number, got_number = _number(sent_text), _number(got_text)
    if sent_number is not None and got_number is not None:
        return sent_number == got_number
    try:
        return ipaddress.ip_interface(sent_text) == ipaddress.ip_interface(got_text)
    except ValueError:
        return False


def verify_written(kind: Kind, method: str, sent: Mapping[str, Any], got: Mapping[str, Any]) -> None:
    """Raise NetBoxIgnoredField when a scalar field sent is missing from NetBox's answer or has another value."""
    for name, value in sent.items():
        if name == "id" or isinstance(value, (list, dict)):
            continue
        if name not in got or not _same(value, got[name]):
            shown = got.get(name, "<absent>")
            raise NetBoxIgnoredField(
                f"{method} {kind.path}: NetBox accepted {kind.name} {got.get(kind.label)!r} (id {got.get('id')}) but "
                f"did not apply {name}={value!r} (answer has {shown!r}): unknown or read-only field on this version"
            )
