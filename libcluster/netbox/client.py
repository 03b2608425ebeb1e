"""The NetBox client cookbooks use: paged strict reads, bulk writes, IP allocation and MACs, dry-run aware.

Reads return NetBox's JSON objects as plain dicts, fetched page by page through pynetbox's
request layer (or NetBox's GraphQL API where REST is slow for the fields needed): no
per-object lazy fetch can hide behind an attribute access (requests grow with pages, not
objects), and no caller can bypass dry-run with `record.save()`. Every write
goes through this class, is journaled in the run's ChangeLog (each object its own intent and
result, with its undo: see libcluster.netbox.inverse) and, in dry-run, is only recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import pynetbox
from pynetbox.core.query import Request

from libcluster import redact
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.netbox import inverse, strict
from libcluster.netbox.errors import (
    NetBoxAmbiguous,
    NetBoxConflict,
    NetBoxError,
    NetBoxFilterError,
    NetBoxNotFound,
    NetBoxReadOnly,
)
from libcluster.netbox.http import NetBoxAdapter, translated
from libcluster.netbox.kinds import KINDS, VM_INTERFACE_TYPE, Kind
from libcluster.undo import Undo
from libcluster.writes import NotOursError, Write, undoing, writing_all

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 1000
"""Objects per GET page (NetBox's default MAX_PAGE_SIZE; a lower server limit is followed by `next` links)."""

DEFAULT_BULK_SIZE = 200
"""Objects per bulk POST/PATCH/DELETE, so one request stays well inside the server's worker timeout."""

DEFAULT_THREADS = 4
"""Pages fetched in parallel after the first one."""

MAX_FILTER_VALUES = 200
"""Values of one multi-valued filter per request (longer lists are split, keeping URLs short)."""

SYSTEM = "netbox"
"""System name of NetBox entries in the ChangeLog."""

CHANGELOG_MESSAGE_LENGTH = 200
"""Characters NetBox keeps of a write's `changelog_message` (its change log entry's message, NetBox 4.4+)."""

PrefixRef = int | str | Mapping[str, Any]
"""A prefix given as its id, its CIDR (looked up) or its object."""


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _checked_url(config: Section) -> str:
    """The NetBox URL of config: https://, or plain http:// only with `allow_insecure_http: true` (tokens in clear)."""
    url = config.str("url").rstrip("/")
    scheme = urlsplit(url).scheme
    if scheme == "http" and not config.bool("allow_insecure_http", False):
        raise ConfigError(f"{config.source}: key '{config.key('url')}' is a plain http:// URL ({url}): the NetBox "
                          f"tokens would cross the network unencrypted; use https://, or set "
                          f"'{config.key('allow_insecure_http')}: true' to accept that (e.g. NetBox on loopback)")
    if scheme not in ("http", "https"):
        raise ConfigError(f"{config.source}: key '{config.key('url')}' must be an https:// URL, got {url!r}")
    return url


class NetBox:
    """NetBox through pynetbox, with the read-only token for reads and dry-run, and the read-write one for writes."""

    def __init__(self, config: Section, *, read_write: bool, dry_run: bool, changes: ChangeLog,
                 changelog_message: str = "") -> None:
        """Connect per the `netbox` config section; read-only or dry-run use the ro_token, even if read_write.

        changelog_message goes with every write (bodies of creates, updates, deletes and undos): NetBox 4.4+
        shows it as the message of each change log entry (Context.netbox() gives the cookbook, task id and run).
        """
        self.url = _checked_url(config)
        self.read_write = read_write
        self.dry_run = dry_run
        self._changes = changes
        self.changelog_message = changelog_message[:CHANGELOG_MESSAGE_LENGTH]
        for key in ("token", "ro_token"):
            if config.has(key):
                redact.register(config[key])
        token = config.str("token") if read_write and not dry_run else config.str("ro_token")
        self.page_size = config.int("page_size", DEFAULT_PAGE_SIZE)
        self.bulk_size = config.int("bulk_size", DEFAULT_BULK_SIZE)
        self._threads = max(1, config.int("threads", DEFAULT_THREADS))
        self._api = pynetbox.api(self.url, token=token)
        self._adapter = NetBoxAdapter(
            timeout=config.float("timeout", 30.0), verify=config.str("ca_file", None) or True, pool_size=self._threads
        )
        for scheme in ("http://", "https://"):
            self._api.http_session.mount(scheme, self._adapter)
        self._version: tuple[int, int] | None = None

    @property
    def session(self) -> Any:
        """The requests session every call goes through (tests mount stub adapters on it)."""
        return self._api.http_session

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far by this client."""
        return self._adapter.sent

    @property
    def version(self) -> tuple[int, int]:
        """NetBox API version as (major, minor), read once from the API-Version header."""
        if self._version is None:
            with translated("GET /api/"):
                text = self._api.version
            try:
                major, minor = (int(part) for part in text.split(".")[:2])
            except ValueError:
                raise NetBoxError(f"GET /api/: no usable API-Version header ({text!r}): not a NetBox URL?") from None
            self._version = (major, minor)
        return self._version

    # Reads

    def objects(self, kind: str, *, fields: Iterable[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Every object of kind matching the filters, read by pages of `page_size`.

        fields limits the fields NetBox serialises (much faster for bulk reads); the fields the
        filter checks need, id and the label are always added. Filters are checked (see strict).
        """
        spec = self._kind(kind)
        strict.params(spec, filters)
        if strict.matches_nothing(filters):
            return []
        found: list[dict[str, Any]] = []
        for part in self._split(filters):
            query = strict.params(spec, part)
            if fields is not None:
                query["fields"] = ",".join(sorted(set(fields) | strict.needed_fields(spec, part)))
            request = self._request(spec, filters=query, limit=self.page_size, threaded=True)
            with translated(f"GET {spec.path}"):
                for obj in request.get():
                    strict.verify(spec, part, obj)
                    found.append(obj)
        return found

    def graphql_list(self, name: str, selection: str, *, filters: str,
                     variables: Mapping[str, tuple[str, Any]]) -> list[dict[str, Any]]:
        """Every object of the GraphQL list query `name`, by pages of `page_size`, until an empty page.

        For bulk reads REST makes slow: NetBox's REST list of VM interfaces prefetches addresses, FHRP
        groups and L2VPN terminations whatever `fields` asks (about 1.5 s per 1,000 rows); GraphQL loads
        only `selection` (about 0.25 s). `filters` is the GraphQL filter object, using `$variables`
        given as {name: (GraphQL type, value)}; NetBox rejects unknown filter fields, so nothing is
        silently ignored. Needs NetBox 4.3 or later (lookup-style filters). Ids come back as strings.
        """
        declared = ", ".join(f"${var}: {kind}" for var, (kind, _) in variables.items())
        query = (f"query($offset: Int!, $limit: Int!, {declared}) {{ {name}(filters: {filters}, "
                 f"pagination: {{offset: $offset, limit: $limit}}) {{ {selection} }} }}")
        values = {var: value for var, (_, value) in variables.items()}
        request = Request(base=f"{self.url}/graphql/", http_session=self.session, token=self._api.token)
        action = f"POST /graphql/ {name}"
        found: list[dict[str, Any]] = []
        while True:
            body = {"query": query, "variables": {**values, "offset": len(found), "limit": self.page_size}}
            with translated(action):
                answer = request.post(body)
            if answer.get("errors"):
                raise NetBoxError(f"{action}: " + "; ".join(str(error.get("message")) for error in answer["errors"]))
            page = (answer.get("data") or {}).get(name)
            if not isinstance(page, list):
                raise NetBoxError(f"{action}: the answer has no {name} list")
            if not page:
                return found
            found.extend(page)

    def find(self, kind: str, **filters: Any) -> dict[str, Any] | None:
        """The one object of kind matching the filters, None if none; several raise NetBoxAmbiguous."""
        spec = self._kind(kind)
        if not filters:
            raise NetBoxFilterError(f"{spec.name}: a lookup of one object needs at least one filter")
        found = self.objects(kind, **filters)
        if len(found) > 1:
            labels = ", ".join(str(obj.get(spec.label)) for obj in found[:5])
            raise NetBoxAmbiguous(f"GET {spec.path}: {len(found)} {spec.name} objects match {filters}: {labels}")
        return found[0] if found else None

    def get(self, kind: str, **filters: Any) -> dict[str, Any]:
        """The one object of kind matching the filters; none raises NetBoxNotFound, several NetBoxAmbiguous."""
        found = self.find(kind, **filters)
        if found is None:
            spec = self._kind(kind)
            raise NetBoxNotFound(f"GET {spec.path}: no {spec.name} matches {filters}")
        return found

    def count(self, kind: str, **filters: Any) -> int:
        """How many objects of kind match the filters, in one request (its one returned object is checked)."""
        spec = self._kind(kind)
        query = strict.params(spec, filters)
        if strict.matches_nothing(filters):
            return 0
        query["fields"] = ",".join(sorted(strict.needed_fields(spec, filters)))
        request = self._request(spec, filters=query, limit=1, offset=0)
        with translated(f"GET {spec.path}"):
            for obj in request.get():
                strict.verify(spec, filters, obj)
        return int(request.count)

    def available_ips(self, prefix: PrefixRef, count: int = 1) -> list[str]:
        """Up to count free addresses of the prefix (with its mask), lowest first; reads only, allocates nothing."""
        prefix_id, _ = self._prefix(prefix)
        spec = KINDS["prefix"]
        request = self._request(spec, suffix=f"{prefix_id}/available-ips/")
        with translated(f"GET {spec.path}/{prefix_id}/available-ips"):
            return [str(item["address"]) for item in request.get(add_params={"limit": count})][:count]

    # Writes

    def create(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create objects in bulk (list bodies of `bulk_size`); returns NetBox's objects (dry-run: the planned ones)."""
        spec = self._kind(kind)
        return self._write(spec, "create", f"POST {spec.path}", self._request(spec), objects)

    def update(self, kind: str, objects: Sequence[Mapping[str, Any]], *,
               current: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Change fields of existing objects in bulk; each mapping holds the object's id and only the changed fields.

        The old values the undo patches back are read first, except from current: objects as NetBox just
        answered them (e.g. the answer of the write that made them), one request fewer each.
        """
        spec = self._kind(kind)
        for obj in objects:
            if not isinstance(obj.get("id"), int):
                raise NetBoxError(f"PATCH {spec.path}: every object to update needs its integer id, got {obj!r}")
        known = {obj["id"]: obj for obj in current if isinstance(obj.get("id"), int)}
        return self._write(spec, "update", f"PATCH {spec.path}", self._request(spec), objects, known=known)

    def delete(self, kind: str, objects: Sequence[int | Mapping[str, Any]]) -> None:
        """Delete objects (ids or objects) in bulk."""
        self._delete(self._kind(kind), objects, "delete")

    def allocate_ips(self, prefix: PrefixRef, wanted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Allocate one free address of the prefix per mapping (dns_name, assigned_object_*, status...).

        In dry-run the free addresses are read (GET available-ips) and returned as planned objects, nothing
        is allocated; too few free addresses raise NetBoxConflict in both modes.
        """
        if not wanted:
            return []
        spec = KINDS["ip-address"]
        prefix_id, prefix_label = self._prefix(prefix)
        action = f"POST {KINDS['prefix'].path}/{prefix_id}/available-ips"
        self._writable(spec, action)
        if self.dry_run:
            free = self.available_ips(prefix_id, len(wanted))
            if len(free) < len(wanted):
                raise NetBoxConflict(f"{action}: {len(free)} free address(es) in {prefix_label}, {len(wanted)} wanted")
            wanted = [{**data, "address": address} for address, data in zip(free, wanted, strict=True)]
        request = self._request(KINDS["prefix"], suffix=f"{prefix_id}/available-ips/")
        return self._write(spec, "allocate", action, request, wanted, prefix=prefix_label)

    # Undo

    def undo(self, action: str, args: Mapping[str, Any]) -> str:
        """Take back one write (see libcluster.netbox.inverse): "undone" or "absent"; idempotent.

        `KIND-delete` deletes a created object by id, or, when its id was lost with the answer, the objects
        its lookup finds that the write made; `KIND-restore` patches an updated object's old values back
        while it still holds what was written. Anything else found raises NotOursError and is left alone.
        """
        spec = self._kind(str(args.get("kind") or ""))
        if action == f"{spec.name}-delete":
            return self._undo_create(spec, args)
        if action == f"{spec.name}-restore":
            return self._undo_update(spec, args)
        raise NetBoxError(f"unknown NetBox undo action {action!r} for {spec.name} objects")

    def _undo_create(self, spec: Kind, args: Mapping[str, Any]) -> str:
        label = str(args.get("label") or args.get("find") or "")
        if args.get("id") is not None:
            obj = self.find(spec.name, id=int(args["id"]))
            if obj is None:
                return "absent"
            wrong = inverse.mismatches(obj, args.get("check") or {})
            if wrong:
                raise inverse.refuse(spec.name, label, [f"#{obj['id']} ({', '.join(wrong)})"])
            found = [obj]
        else:
            if not args.get("find"):
                raise NetBoxError(f"netbox {spec.name} {label}: its id was not learnt and nothing identifies it: "
                                  "cannot look it up, check by hand")
            candidates = self.objects(spec.name, **args["find"])
            found, others = inverse.split_ours(candidates, args)
            if not found and others:
                raise inverse.refuse(spec.name, label, others)
            if others:
                logger.warning("netbox %s %s: also found %s: not made by this write, left alone", spec.name, label,
                               ", ".join(others))
            if not found:
                return "absent"
        self._send_delete(spec, [int(obj["id"]) for obj in found])
        logger.info("Undo: deleted netbox %s %s (id %s)", spec.name, label, ", ".join(str(obj["id"]) for obj in found))
        return "undone"

    def _undo_update(self, spec: Kind, args: Mapping[str, Any]) -> str:
        object_id = int(args["id"])
        old, new = dict(args.get("old") or {}), dict(args.get("new") or {})
        obj = self.find(spec.name, id=object_id)
        if obj is None or not inverse.mismatches(obj, old):
            return "absent"
        wrong = inverse.mismatches(obj, new)
        if wrong:
            raise NotOursError(f"netbox {spec.name} {obj.get(spec.label)} (id {object_id}) changed since this write "
                               f"({', '.join(wrong)}): not patched back, left alone")
        self._writable(spec, f"PATCH {spec.path}")
        with translated(f"PATCH {spec.path}"):
            self._request(spec).patch(self._bodies([{"id": object_id, **old}]))
        logger.info("Undo: netbox %s %s (id %s) patched back: %s", spec.name, obj.get(spec.label), object_id,
                    ", ".join(sorted(old)))
        return "undone"

    def allocate_ip(self, prefix: PrefixRef, *, dns_name: str, interface_id: int | None = None,
                    status: str = "active", description: str = "") -> dict[str, Any]:
        """Allocate the next free address of the prefix with its DNS name, assigned to a VM interface if given."""
        data: dict[str, Any] = {"dns_name": dns_name, "status": status, "description": description}
        if interface_id is not None:
            data.update(assigned_object_type=VM_INTERFACE_TYPE, assigned_object_id=interface_id)
        return self.allocate_ips(prefix, [data])[0]

    def release_ips(self, ips: Sequence[int | Mapping[str, Any]]) -> None:
        """Give addresses (ids or objects) back to their prefix by deleting them."""
        self._delete(KINDS["ip-address"], ips, "release")

    def set_macs(self, macs: Mapping[int, str]) -> None:
        """Give VM interfaces (interface id -> MAC) their MAC address the way this NetBox version stores it.

        4.7 accepts `mac_address` on the interface again (and makes a MAC object of it); 4.2 to 4.6 need
        a dcim MAC address object assigned to the interface and made its `primary_mac_address`. Either
        way the interfaces' other MAC objects (a replaced MAC) are deleted afterwards.
        """
        if not macs:
            return
        if self.version >= (4, 7):
            self.update("vm-interface", [{"id": iface, "mac_address": mac} for iface, mac in macs.items()])
        else:
            created = self.create("mac-address", [
                {"mac_address": mac, "assigned_object_type": VM_INTERFACE_TYPE, "assigned_object_id": iface}
                for iface, mac in macs.items()
            ])
            self.update("vm-interface", [
                {"id": iface, "primary_mac_address": obj["id"]} for iface, obj in zip(macs, created, strict=True)
            ])
        wanted = {iface: mac.lower() for iface, mac in macs.items()}
        stale = [obj for obj in self.objects("mac-address", vminterface_id=list(wanted))
                 if str(obj["mac_address"]).lower() != wanted[obj["assigned_object_id"]]]
        if stale:
            self.delete("mac-address", stale)

    # Internals

    def _kind(self, name: str) -> Kind:
        try:
            return KINDS[name]
        except KeyError:
            raise NetBoxError(f"unknown NetBox object kind {name!r}; known: {', '.join(sorted(KINDS))}") from None

    def _request(self, spec: Kind, *, suffix: str = "", filters: dict[str, Any] | None = None,
                 limit: int | None = None, offset: int | None = None, threaded: bool = False) -> Request:
        endpoint = getattr(getattr(self._api, spec.app), spec.endpoint)
        return Request(
            base=f"{endpoint.url}/{suffix}", http_session=self._api.http_session, token=self._api.token,
            filters=filters, limit=limit, offset=offset, threading=threaded and self._threads > 1,
            max_workers=self._threads,
        )

    def _split(self, filters: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The filters, with the longest multi-valued one split into parts of MAX_FILTER_VALUES values."""
        multi = [name for name, value in filters.items() if isinstance(value, (list, tuple, set, frozenset))]
        longest = max(multi, key=lambda name: len(filters[name]), default=None)
        if longest is None or len(filters[longest]) <= MAX_FILTER_VALUES:
            yield dict(filters)
            return
        for part in _chunks(sorted(filters[longest], key=str), MAX_FILTER_VALUES):
            yield {**filters, longest: list(part)}

    def _prefix(self, prefix: PrefixRef) -> tuple[int, str]:
        if isinstance(prefix, Mapping):
            return int(prefix["id"]), str(prefix.get("prefix", f"#{prefix['id']}"))
        if isinstance(prefix, int):
            return prefix, f"#{prefix}"
        return int(self.get("prefix", prefix=prefix)["id"]), prefix

    def _writable(self, spec: Kind, action: str) -> None:
        if not self.read_write:
            raise NetBoxReadOnly(f"{action}: this NetBox client was opened read-only (read_write=False)")
        if not spec.writable:
            raise NetBoxReadOnly(f"{action}: {spec.name} objects are read-only through this client")

    def _record(self, spec: Kind, verb: str, obj: Mapping[str, Any], **detail: Any) -> None:
        self._changes.record(SYSTEM, f"{spec.name}-{verb}", _label(spec, obj), id=obj.get("id"), **detail)

    def _write(self, spec: Kind, verb: str, action: str, request: Request, objects: Sequence[Mapping[str, Any]],
               known: Mapping[int, Mapping[str, Any]] | None = None, **detail: Any) -> list[dict[str, Any]]:
        """Send objects as list bodies of bulk_size (dry-run: only record them), check what NetBox kept.

        Each object is journaled as its own write (intent before its request, result with its id after),
        with its undo when one is kept: delete what was created, patch back what was updated (its old values
        from known, else read first).
        """
        self._writable(spec, action)
        if self.dry_run:
            planned = [{**obj, "id": obj.get("id")} for obj in objects]
            for obj in planned:
                self._record(spec, verb, obj, fields=_fields(obj), **detail)
            return planned
        method = action.split(" ", 1)[0]
        done: list[dict[str, Any]] = []
        for chunk in _chunks([dict(obj) for obj in objects], self.bulk_size):
            writes = self._writes(spec, verb, chunk, detail, known or {})
            with writing_all(self._changes, SYSTEM, writes) as pendings, translated(action):
                bodies = self._bodies(chunk)
                answer = request.post(bodies) if method == "POST" else request.patch(bodies)
                for pending, got in zip(pendings, answer, strict=True):
                    pending.learn(id=got.get("id"), **({"address": got.get("address")} if verb == "allocate" else {}))
            for sent, got in zip(chunk, answer, strict=True):
                strict.verify_written(spec, method, sent, got)
            done.extend(answer)
        return done

    def _writes(self, spec: Kind, verb: str, chunk: Sequence[Mapping[str, Any]], detail: Mapping[str, Any],
                known: Mapping[int, Mapping[str, Any]]) -> list[Write]:
        """The journaled writes of one request, each with its undo when one is kept.

        The objects an update changes are read first (one request, only the fields it sets) unless known
        holds them with those fields: their names label the journal lines, and their old values make the undo.
        """
        action = f"{spec.name}-{verb}"
        prefix = detail.get("prefix")
        current: dict[int, Mapping[str, Any]] = {}
        if verb == "allocate":
            labels = [f"{sent.get('dns_name') or 'address'} in {prefix}" for sent in chunk]
        elif verb == "update":
            fields = {field for sent in chunk for field in sent}
            current = {sent["id"]: known[sent["id"]] for sent in chunk if fields <= set(known.get(sent["id"], {}))}
            unread = [sent["id"] for sent in chunk if sent["id"] not in current]
            if unread:
                current.update({obj["id"]: obj for obj in self.objects(spec.name, id=unread, fields=fields)})
            labels = [_label(spec, current.get(sent["id"], sent)) for sent in chunk]
        else:
            labels = [_label(spec, sent) for sent in chunk]
        undos: list[Undo | None] = [None] * len(chunk)
        pairs = list(zip(labels, chunk, strict=True))
        if undoing(self._changes):
            if verb == "allocate":
                cidr = str(prefix) if prefix and not str(prefix).startswith("#") else None
                undos = [inverse.allocated_undo(label, cidr, sent) for label, sent in pairs]
            elif verb == "create":
                undos = [inverse.created_undo(spec.name, label, sent) for label, sent in pairs]
            elif verb == "update":
                undos = [inverse.updated_undo(spec.name, current[sent["id"]], sent, spec.label)
                         if sent["id"] in current else None for sent in chunk]
        return [Write(action, label, undo, {"fields": _fields(sent), **detail})
                for label, undo, sent in zip(labels, undos, chunk, strict=True)]

    def _delete(self, spec: Kind, objects: Sequence[int | Mapping[str, Any]], verb: str) -> None:
        """Delete objects by id in bulk requests; each is journaled as its own write (deletes have no undo)."""
        action = f"DELETE {spec.path}"
        self._writable(spec, action)
        targets = [{"id": obj} if isinstance(obj, int) else {"id": obj["id"], spec.label: obj.get(spec.label)}
                   for obj in objects]
        if self.dry_run:
            for target in targets:
                self._record(spec, verb, target)
            return
        for chunk in _chunks(targets, self.bulk_size):
            writes = [Write(f"{spec.name}-{verb}", _label(spec, target), None, {"id": target["id"]})
                      for target in chunk]
            with writing_all(self._changes, SYSTEM, writes):
                self._send_delete(spec, [int(target["id"]) for target in chunk])

    def _send_delete(self, spec: Kind, ids: Sequence[int]) -> None:
        """One bulk DELETE request of objects by id (journaled by the caller)."""
        action = f"DELETE {spec.path}"
        self._writable(spec, action)
        with translated(action):
            self._request(spec).delete(self._bodies([{"id": object_id} for object_id in ids]))

    def _bodies(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Request bodies of objects, each with the run's changelog_message when there is one."""
        extra = {"changelog_message": self.changelog_message} if self.changelog_message else {}
        return [{**obj, **extra} for obj in objects]


def _label(spec: Kind, obj: Mapping[str, Any]) -> str:
    """What names obj in the journal and messages: its label field, else its id."""
    return str(obj.get(spec.label) or f"#{obj.get('id')}")


def _fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key != "id"}
