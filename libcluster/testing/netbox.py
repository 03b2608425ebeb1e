"""NetBox in memory: :class:`FakeNetBox` stands for :class:`libcluster.netbox.NetBox`.

Objects are plain dicts per kind (``{"device": [{"id": 1, "name": ...}]}``); a filter compares a
top-level value, ``x_id`` compares ``x["id"]`` of a nested object. Writes are recorded (``created``,
``updates``, ``deleted``) and applied unless dry-run; ``error`` makes every read raise it (NetBox down).
As the real client, each created or updated object is journaled in ``changes`` with its undo (pushed on the
run's undo stack when ``changes.undo`` is set, as FakeCtx does), and :meth:`FakeNetBox.undo` takes it back:
a created object is deleted (by id, or found by its lookup fields when the id was lost) unless it is not this
write's, an updated one patched back while it still holds what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from libcluster.changes import ChangeLog
from libcluster.netbox import NetBox, NetBoxAmbiguous, NetBoxError, NetBoxNotFound, inverse
from libcluster.undo import Undo
from libcluster.writes import NotOursError, undoing

LABELS = ("name", "address", "mac_address")
"""Fields that name an object in the journal, in this order (its id otherwise)."""
NESTED = ("cluster", "device", "site", "tenant", "group", "virtual_machine")
"""Fields NetBox answers as a nested object ({"id": ...}) when a write sends an id."""


def label(obj: Mapping[str, Any]) -> str:
    """What names obj in the journal: its name, address or MAC, else #id."""
    return str(next((obj[field] for field in LABELS if obj.get(field)), f"#{obj.get('id')}"))


class FakeNetBox:
    """NetBox objects per kind in memory; filters compare top-level values or nested ids."""

    REAL = NetBox
    HELPERS = ("store", "error", "created", "updates", "deleted", "changes")

    def __init__(self, objects: dict[str, list[dict[str, Any]]] | None = None, *, dry_run: bool = False,
                 read_write: bool = False, error: Exception | None = None, changes: ChangeLog | None = None) -> None:
        """Serve objects (kept, not copied: tests read the changes in them); every read raises error if given."""
        self.store = objects if objects is not None else {}
        self.dry_run = dry_run
        self.changes = changes or ChangeLog(dry_run=dry_run)
        self.read_write = read_write
        self.error = error
        self.created: list[tuple[str, list[dict[str, Any]]]] = []
        self.updates: list[tuple[str, list[dict[str, Any]]]] = []
        self.deleted: list[tuple[str, list[int]]] = []

    def objects(self, kind: str, *, fields: Iterable[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Objects of kind matching every filter (`x_id` matches x.id; a list value matches any of its values)."""
        if self.error is not None:
            raise self.error

        def value(obj: dict[str, Any], key: str) -> Any:
            if key.endswith("_id") and key[:-3] in obj:
                return (obj[key[:-3]] or {}).get("id")
            return obj.get(key)

        def matches(obj: dict[str, Any], key: str, wanted: Any) -> bool:
            return value(obj, key) in wanted if isinstance(wanted, (list, tuple, set)) else value(obj, key) == wanted

        return [obj for obj in self.store.get(kind, []) if all(matches(obj, k, v) for k, v in filters.items())]

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
        """Record the creation; unless dry-run, store each object with a new id and its creation time, journaled
        with its undo. Returns them."""
        made = [dict(obj) for obj in objects]
        self.created.append((kind, made))
        for obj in made:
            undo = inverse.created_undo(kind, label(obj), obj) if undoing(self.changes) else None
            self._write(kind, "create", obj, undo, lambda obj=obj: self._store(kind, obj))
        return made

    def update(self, kind: str, objects: Sequence[Mapping[str, Any]], *,
               current: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Record the update; unless dry-run, apply it (an id sent for a nested object becomes {"id": id}),
        journaled with its undo (the old values, read from the store: current only saves the real client a read)."""
        changes = [dict(obj) for obj in objects]
        self.updates.append((kind, changes))
        for change in changes:
            target = self.get(kind, id=change["id"]) if not self.dry_run else change
            field = next((field for field in LABELS if target.get(field)), "name")
            undo = inverse.updated_undo(kind, target, change, field) if undoing(self.changes) else None
            self._write(kind, "update", target, undo, lambda target=target, change=change: target.update(
                {key: {"id": value} if key in NESTED and isinstance(value, int) else value
                 for key, value in change.items()}))
        return changes

    def delete(self, kind: str, objects: Sequence[int | Mapping[str, Any]]) -> None:
        """Record the deletion; unless dry-run, remove the objects (ids or objects), journaled (no undo)."""
        ids = [obj if isinstance(obj, int) else int(obj["id"]) for obj in objects]
        self.deleted.append((kind, ids))
        for object_id in ids:
            self._write(kind, "delete", {"id": object_id}, None,
                        lambda object_id=object_id: self._drop(kind, object_id))

    def release_ips(self, ips: Sequence[int | Mapping[str, Any]]) -> None:
        """Give addresses back: delete them (as the real client does)."""
        self.delete("ip-address", ips)

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Take back a create (``KIND-delete``) or an update (``KIND-restore``): "undone", or "absent" when there
        is nothing to do; an object that is not this write's raises NotOursError and is left alone."""
        kind = str(args.get("kind") or "")
        if action == f"{kind}-delete":
            return self._undo_create(kind, args)
        if action == f"{kind}-restore":
            return self._undo_update(kind, args)
        raise NetBoxError(f"unknown NetBox undo action {action!r} for {kind} objects")

    # Internals

    def _write(self, kind: str, verb: str, obj: Mapping[str, Any], undo: Undo | None, apply: Any) -> None:
        if self.dry_run:
            self.changes.record("netbox", f"{kind}-{verb}", label(obj))
            return
        with self.changes.writing("netbox", f"{kind}-{verb}", label(obj), undo=undo) as pending:
            apply()
            pending.learn(id=obj.get("id"))

    def _store(self, kind: str, obj: dict[str, Any]) -> None:
        stored = self.store.setdefault(kind, [])
        obj["id"] = max((other["id"] for other in stored), default=0) + 1
        obj.setdefault("created", datetime.now(UTC).isoformat())
        stored.append(obj)

    def _drop(self, kind: str, object_id: int) -> None:
        self.store[kind] = [obj for obj in self.store.get(kind, []) if obj["id"] != object_id]

    def _undo_create(self, kind: str, args: Mapping[str, Any]) -> str:
        name = str(args.get("label") or "")
        if args.get("id") is not None:
            found = self.objects(kind, id=int(args["id"]))
            wrong = inverse.mismatches(found[0], args.get("check") or {}) if found else []
            if wrong:
                raise inverse.refuse(kind, name, [f"#{found[0]['id']} ({', '.join(wrong)})"])
        else:
            found, others = inverse.split_ours(self.objects(kind, **dict(args.get("find") or {})), args)
            if not found and others:
                raise inverse.refuse(kind, name, others)
        if not found:
            return "absent"
        for obj in found:
            self._drop(kind, int(obj["id"]))
        return "undone"

    def _undo_update(self, kind: str, args: Mapping[str, Any]) -> str:
        old, new = dict(args.get("old") or {}), dict(args.get("new") or {})
        found = self.objects(kind, id=int(args["id"]))
        if not found or not inverse.mismatches(found[0], old):
            return "absent"
        wrong = inverse.mismatches(found[0], new)
        if wrong:
            raise NotOursError(f"netbox {kind} {label(found[0])} changed since this write ({', '.join(wrong)}): "
                               "not patched back, left alone")
        found[0].update({key: {"id": value} if key in NESTED and isinstance(value, int) else value
                         for key, value in old.items()})
        return "undone"
