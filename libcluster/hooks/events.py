"""Hook events in etcd: their format, the `hooks` settings, and reading, waiting for and deleting them.

An event is one etcd key ``{prefix}{cluster}/{time_ns}-{node}-{pid}`` (so keys sort by time), attached
to a lease of ``event_ttl`` seconds so that events nobody consumes disappear, whose value is JSON::

    {"version": 1, "cluster": "lab", "hook": "instance-add", "phase": "post", "op": "OP_INSTANCE_CREATE",
     "instance": "vm1.lab.example", "new_name": "", "node": "node1.lab.example", "time": 1795316410}

``cluster`` is the cluster's name in the framework's configuration (``--cluster``), written into
the hook's configuration file by install-hooks, and must be the key's CLUSTER; ``new_name`` is set by
renames only. Every field is checked for its type (FIELDS): anything else under the prefix is a bad key. The hook
script writes it with curl through etcd's v3 JSON gateway, as the nodes' etcd user (allowed to write
under the prefix only); Python reads it with etcd3gw, as the runner's user (see libcluster.etcd).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from libcluster.config import Section
from libcluster.errors import ConfigError, LibclusterError
from libcluster.etcd import EtcdAccess, Gateway
from libcluster.locks import DEFAULT_ETCD_PREFIX

logger = logging.getLogger(__name__)

EVENT_VERSION = 1
DEFAULT_PREFIX = "/ganeti-cookbooks/hooks/"
"""etcd key prefix of the hook events unless hooks.etcd_prefix says otherwise."""
ETCD_TIMEOUT = 5
"""Seconds per etcd request of the agent."""
READ_LIMIT = 500
"""Most keys one read of the events returns (the agent reads the next ones in its next cycle)."""


class EventError(LibclusterError):
    """etcd could not be read or written, or an event is malformed."""


@dataclass(frozen=True)
class HookSettings:
    """The `hooks` section: where events live, how long they last, and where hooks on nodes log and spool."""

    etcd: EtcdAccess
    """etcd as the agent reaches it (default: the locks' etcd, URL, CA and user)."""
    node_etcd: EtcdAccess
    """etcd as hooks on the nodes reach it: its URL, the CA file (on this host) shipped to them, their own etcd user."""
    prefix: str = DEFAULT_PREFIX
    event_ttl: int = 86400
    poll: float = 5.0
    """Seconds between reads of pending events when no watch notification came."""
    max_attempts: int = 5
    """Failed runs for one instance before its events are dropped (the next cluster-wide sync catches up)."""
    hooks_dir: str = "/etc/ganeti/hooks"
    log_file: str = "/var/log/ganeti/cookbook-event.log"
    spool_dir: str = "/var/spool/cookbook-event"
    cron_file: str = "/etc/cron.d/cookbook-event"
    """cron.d entry install-hooks writes on each node to send its spool every minute ("" for none)."""

    @staticmethod
    def configured(config: Section) -> bool:
        """Whether hook events are configured at all: an etcd URL in the hooks or the locks section."""
        return config.section("hooks", {}).has("etcd_url") or config.section("locks", {}).has("etcd_url")

    @classmethod
    def from_config(cls, config: Section) -> HookSettings:
        """Read the `hooks` section (etcd_* default to locks.etcd_*; a URL is needed in one of them).

        Nodes get hooks.node_etcd_url (default: the agent's URL), hooks.node_etcd_ca_file (default: the
        agent's CA) and their own hooks.node_etcd_user/password, never the runner's: when the agent logs in,
        nodes must have a user of their own.
        """
        section = config.section("hooks", {})
        locks = config.section("locks", {})
        if not cls.configured(config):
            raise ConfigError(f"{config.source}: hook events need hooks.etcd_url (or locks.etcd_url)")
        agent = EtcdAccess.from_section(section, fallback=EtcdAccess.from_section(locks) if locks.has("etcd_url")
                                        else None)
        node = EtcdAccess.from_section(section, "node_etcd_", fallback=agent, inherit=("ca_file",), any_url=True)
        if agent.user and not node.user:
            raise ConfigError(f"{config.source}: etcd is used with a user ({agent.user}): hooks on the nodes need "
                              "their own, hooks.node_etcd_user and hooks.node_etcd_password")
        base = cls(etcd=agent, node_etcd=node)
        settings = cls(
            etcd=agent,
            node_etcd=node,
            prefix=section.str("etcd_prefix", base.prefix).rstrip("/") + "/",
            event_ttl=section.int("event_ttl", base.event_ttl),
            poll=section.float("poll", base.poll),
            max_attempts=section.int("max_attempts", base.max_attempts),
            hooks_dir=section.str("hooks_dir", base.hooks_dir),
            log_file=section.str("log_file", base.log_file),
            spool_dir=section.str("spool_dir", base.spool_dir),
            cron_file=section.str("cron_file", base.cron_file),
        )
        cron = settings.cron_file
        if cron and not (cron.startswith("/") and re.fullmatch(r"[A-Za-z0-9_-]+", cron.rsplit("/", 1)[1])):
            raise ConfigError(f"{config.source}: key 'hooks.cron_file' ({cron}) must be an absolute path whose name "
                              "has only letters, digits, '-' and '_' (cron ignores other names), or \"\" for none")
        locks_prefix = locks.str("etcd_prefix", DEFAULT_ETCD_PREFIX).rstrip("/") + "/"
        if settings.prefix.startswith(locks_prefix) or locks_prefix.startswith(settings.prefix):
            raise ConfigError(f"{config.source}: key 'hooks.etcd_prefix' ({settings.prefix}) overlaps the locks' "
                              f"prefix ({locks_prefix}): hook events and locks must not share keys")
        return settings


FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "cluster": ((str,), True), "hook": ((str,), True), "phase": ((str,), True), "op": ((str,), False),
    "instance": ((str,), True), "new_name": ((str,), False), "node": ((str,), False), "time": ((int, float), False),
}
"""The fields of an event after ``version``: their types, and whether they must be there and not empty."""


def _field_problem(value: Any, types: tuple[type, ...], required: bool) -> str:
    """What is wrong with one field's value ("" when nothing): missing, empty, or of another type."""
    if value is None:
        return "is missing" if required else ""
    if isinstance(value, bool) or not isinstance(value, types):
        return f"must be {' or '.join(kind.__name__ for kind in types)}, not {value!r:.80}"
    return "is empty" if required and value == "" else ""


@dataclass(frozen=True)
class Event:
    """One instance operation a hook recorded."""

    key: str
    cluster: str
    hook: str
    phase: str
    op: str
    instance: str
    new_name: str = ""
    node: str = ""
    time: float = 0.0

    @classmethod
    def from_json(cls, key: str, text: str) -> Event:
        """Parse an event's value; ValueError naming the first field that is missing or of the wrong type."""
        data = json.loads(text)
        if not isinstance(data, dict) or type(data.get("version")) is not int or data["version"] != EVENT_VERSION:
            raise ValueError(f"not a version {EVENT_VERSION} hook event: {text[:200]!r}")
        for name, (types, required) in FIELDS.items():
            problem = _field_problem(data.get(name), types, required)
            if problem:
                raise ValueError(f"field {name!r} {problem}")
        try:
            time = float(data.get("time") or 0)
        except OverflowError:
            raise ValueError(f"field 'time' is out of range: {data['time']!r:.80}") from None
        return cls(key=key, cluster=data["cluster"], hook=data["hook"], phase=data["phase"], op=data.get("op") or "",
                   instance=data["instance"], new_name=data.get("new_name") or "", node=data.get("node") or "",
                   time=time)

    @property
    def target(self) -> str:
        """The instance as Ganeti now names it (the new name after a rename)."""
        return self.new_name or self.instance


@dataclass
class Batch:
    """One bounded read of the events prefix: the events, the bad keys with why, and whether more keys follow."""

    events: list[Event] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    more: bool = False
    last: str | None = None
    """The last key read (where the next read starts after, when more)."""


def b64(value: str) -> str:
    """value base64-encoded, as etcd's JSON gateway takes keys and values."""
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def range_end(prefix: str) -> str:
    """The range end that makes an etcd range request cover every key under prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EventStore:
    """The events under the prefix in etcd, through its v3 JSON gateway (etcd3gw), as the agent's etcd user."""

    def __init__(self, access: EtcdAccess, prefix: str) -> None:
        """access: etcd's URL, CA and user; prefix: where events live (ends with '/')."""
        self.access = access
        self.url = access.url
        self.prefix = prefix
        self._gateway = Gateway(self.access, ETCD_TIMEOUT, EventError)
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        self._cancel: Any = None
        self._unreadable: set[str] = set()

    def _call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._gateway.call(what, path, payload)

    def read(self, start: str | None = None, limit: int = READ_LIMIT) -> Batch:
        """Up to limit keys under the prefix from start on (default: the first), oldest first, parsed.

        A key is an event only when its value is one (see Event.from_json) and the cluster in the key's path
        is the value's cluster; anything else is returned as bad, with the reason.
        """
        payload = {"key": b64(start or self.prefix), "range_end": b64(range_end(self.prefix)),
                   "sort_order": "ASCEND", "sort_target": "KEY", "limit": limit}
        result = self._call("reading hook events", "/kv/range", payload)
        batch = Batch(more=bool(result.get("more")))
        for item in result.get("kvs", []):
            key = _unb64(item["key"])
            try:
                event = Event.from_json(key, _unb64(item.get("value", "")))
                path_cluster = key[len(self.prefix):].split("/")[0]
                if path_cluster != event.cluster:
                    raise ValueError(f"its value names cluster {event.cluster!r}, its key {path_cluster!r} (a node "
                                     "may only speak for its own cluster)")
                batch.events.append(event)
            except (ValueError, UnicodeDecodeError) as exc:
                batch.bad.append((key, str(exc)[:300]))
        batch.last = _unb64(result["kvs"][-1]["key"]) if result.get("kvs") else None
        return batch

    def pending(self, cluster: str | None = None) -> list[Event]:
        """The events waiting (of one cluster when given, the first READ_LIMIT keys), oldest first; anything else
        is logged once and left alone (the agent deletes it)."""
        batch = self.read(self.prefix + f"{cluster}/" if cluster else None)
        for key, reason in batch.bad:
            if key not in self._unreadable:
                logger.error("Ignoring %s under the hook events prefix: not a hook event (%s)", key, reason)
                self._unreadable.add(key)
        return [event for event in batch.events if not cluster or event.cluster == cluster]

    def delete(self, key: str) -> None:
        """Delete one event (done, or dropped)."""
        self._call("deleting a hook event", "/kv/deleterange", {"key": b64(key)})

    def wait(self, timeout: float) -> bool:
        """Wait until an event is written under the prefix (watch) or timeout passes; True when woken by one."""
        if self._watcher is None or not self._watcher.is_alive():
            self._wake.clear()
            self._watcher = threading.Thread(target=self._watch, name="hook-events-watch", daemon=True)
            self._watcher.start()
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

    def close(self) -> None:
        """Stop the watch (its stream thread would otherwise keep the process alive)."""
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    def _watch(self) -> None:
        """Set the wake flag on every put under the prefix, until the watch stream breaks or is closed."""
        try:
            self._gateway.login(renew=True)  # a fresh token: the stream is authorised once, when it starts
            events, self._cancel = self._gateway.client.watch_prefix(self.prefix, filters=["NODELETE"])
            for _ in events:
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 - a broken watch only means falling back to polling
            logger.warning("Watch of %s on %s stopped (%s); polling every cycle until it is restarted",
                           self.prefix, self.url, exc)
