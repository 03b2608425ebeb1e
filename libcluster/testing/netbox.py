"""NetBox in memory: :class:`FakeNetBox` stands for :class:`libcluster.netbox.NetBox`.

Objects are plain dicts per kind (``{"device": [{"id": 1, "name": ...}]}``); a filter compares a
top-level value, ``x_id`` compares ``x["id"]`` of a nested object. Writes are recorded (``created``,
``updates``, ``deleted``) and applied unless dry-run; ``error`` makes every read raise it (NetBox down).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from libcluster.netbox import NetBox, NetBoxAmbiguous, NetBoxNotFound


class FakeNetBox:
    """NetBox objects per kind in memory; filters compare top-level values or nested ids."""

    REAL = NetBox
    HELPERS = ("store", "error", "created", "updates", "deleted")

    def __init__(self, objects: dict[str, list[dict[str, Any]]] | None = None, *, dry_run: bool = False,
                 read_write: bool = False, error: Exception | None = None) -> None:
        """Serve objects (kept, not copied: tests read the changes in them); every read raises error if given."""
        self.store = objects if objects is not None else {}
        self.dry_run = dry_run
        self.read_write = read_write
        self.error = error
        self.created: list[tuple[str, list[dict[str, Any]]]] = []
        self.updates: list[tuple[str, list[dict[str, Any]]]] = []
        self.deleted: list[tuple[str, list[int]]] = []

    def objects(self, kind: str, *, fields: Iterable[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Objects of kind matching every filter (`x_id` matches x.id)."""
        if self.error is not None:
            raise self.error

        def value(obj: dict[str, Any], key: str) -> Any:
            if key.endswith("_id") and key[:-3] in obj:
                return (obj[key[:-3]] or {}).get("id")
            return obj.get(key)

        return [obj for obj in self.store.get(kind, []) if all(value(obj, k) == v for k, v in filters.items())]

    def find(self, kind: str, **filters: Any) -> dict[str, Any] | None:
        """The one match, None if none; several raise NetBoxAmbiguous."""
        found = self.objects(kind, **filters)
        if len(found) > 1:
            raise NetBoxAmbiguous(f"{len(found)} {kind} objects match {filters}")
        return found[0] if found else None

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        """The one match; none raises NetBoxNotFound."""
        found = self.find(kind, **filters)
        if found is None:
            raise NetBoxNotFound(f"no {kind} matches {filters}")
        return found

    def count(self, kind: str, **filters: Any) -> int:
        """How many objects of kind match."""
        return len(self.objects(kind, **filters))

    def create(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record the creation; unless dry-run, store the objects with new ids. Returns them."""
        made = [dict(obj) for obj in objects]
        self.created.append((kind, made))
        if not self.dry_run:
            stored = self.store.setdefault(kind, [])
            for obj in made:
                obj["id"] = max((other["id"] for other in stored), default=0) + 1
                stored.append(obj)
        return made

    def update(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record the update; unless dry-run, apply it (an `x` id becomes {"id": id}, as NetBox nests it)."""
        changes = [dict(obj) for obj in objects]
        self.updates.append((kind, changes))
        if not self.dry_run:
            for change in changes:
                target = self.get(kind, id=change["id"])
                target.update({key: {"id": value} if key in ("cluster", "device", "site", "tenant") else value
                               for key, value in change.items()})
        return changes

    def delete(self, kind: str, objects: Sequence[int | Mapping[str, Any]]) -> None:
        """Record the deletion; unless dry-run, remove the objects (ids or objects)."""
        ids = [obj if isinstance(obj, int) else int(obj["id"]) for obj in objects]
        self.deleted.append((kind, ids))
        if not self.dry_run:
            self.store[kind] = [obj for obj in self.store.get(kind, []) if obj["id"] not in ids]
