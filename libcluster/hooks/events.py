"""Hook events in etcd: their format, the `hooks` settings, and reading, waiting for and deleting them.

An event is one etcd key ``{prefix}{cluster}/{time_ns}-{node}-{pid}`` (so keys sort by time), attached
to a lease of ``event_ttl`` seconds so that events nobody consumes disappear, whose value is JSON::

    {"version": 1, "cluster": "lab", "hook": "instance-add", "phase": "post", "op": "OP_INSTANCE_CREATE",
     "instance": "vm1.lab.example", "new_name": "", "node": "node1.lab.example", "time": 1795316410}

``cluster`` is the cluster's name in the framework's configuration (``--cluster``), written into
the hook's configuration file by install-hooks; ``new_name`` is set by renames only. The hook
script writes it with curl through etcd's v3 JSON gateway; Python reads it with etcd3gw.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from libcluster.config import Section
from libcluster.errors import ConfigError, LibclusterError
from libcluster.locks import DEFAULT_ETCD_PREFIX

logger = logging.getLogger(__name__)

EVENT_VERSION = 1
ETCD_TIMEOUT = 5
"""Seconds per etcd request of the agent."""


class EventError(LibclusterError):
    """etcd could not be read or written, or an event is malformed."""


@dataclass(frozen=True)
class HookSettings:
    """The `hooks` section: where events live, how long they last, and where hooks on nodes log and spool."""

    etcd_url: str
    """etcd as the agent reaches it (default: locks.etcd_url)."""
    node_etcd_url: str
    """etcd as hooks on the nodes reach it (default: etcd_url)."""
    prefix: str = "/ganeti-cookbooks/hooks/"
    event_ttl: int = 86400
    poll: float = 5.0
    """Seconds between reads of pending events when no watch notification came."""
    max_attempts: int = 5
    """Failed runs for one instance before its events are dropped (the next cluster-wide sync catches up)."""
    hooks_dir: str = "/etc/ganeti/hooks"
    log_file: str = "/var/log/ganeti/cookbook-event.log"
    spool_dir: str = "/var/spool/cookbook-event"

    @classmethod
    def from_config(cls, config: Section) -> HookSettings:
        """Read the `hooks` section (etcd_url defaults to locks.etcd_url; one of them is needed)."""
        section = config.section("hooks", {})
        url = section.str("etcd_url", None) or config.section("locks", {}).str("etcd_url", None)
        if not url:
            raise ConfigError(f"{config.source}: hook events need hooks.etcd_url (or locks.etcd_url)")
        base = cls(etcd_url=url, node_etcd_url=url)
        settings = cls(
            etcd_url=url,
            node_etcd_url=section.str("node_etcd_url", url),
            prefix=section.str("etcd_prefix", base.prefix).rstrip("/") + "/",
            event_ttl=section.int("event_ttl", base.event_ttl),
            poll=section.float("poll", base.poll),
            max_attempts=section.int("max_attempts", base.max_attempts),
            hooks_dir=section.str("hooks_dir", base.hooks_dir),
            log_file=section.str("log_file", base.log_file),
            spool_dir=section.str("spool_dir", base.spool_dir),
        )
        locks = config.section("locks", {}).str("etcd_prefix", DEFAULT_ETCD_PREFIX).rstrip("/") + "/"
        if settings.prefix.startswith(locks) or locks.startswith(settings.prefix):
            raise ConfigError(f"{config.source}: key 'hooks.etcd_prefix' ({settings.prefix}) overlaps the locks' "
                              f"prefix ({locks}): hook events and locks must not share keys")
        for key, value in (("etcd_url", settings.etcd_url), ("node_etcd_url", settings.node_etcd_url)):
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{config.source}: key 'hooks.{key}' must be http(s)://host:port, got {value!r}")
        return settings


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
        """Parse an event's value; ValueError when it is not a version 1 event with an instance."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != EVENT_VERSION or not data.get("instance"):
            raise ValueError(f"not a version {EVENT_VERSION} hook event with an instance: {text[:200]!r}")
        return cls(key=key, cluster=str(data.get("cluster", "")), hook=str(data.get("hook", "")),
                   phase=str(data.get("phase", "")), op=str(data.get("op", "")), instance=str(data["instance"]),
                   new_name=str(data.get("new_name") or ""), node=str(data.get("node", "")),
                   time=float(data.get("time") or 0))

    @property
    def target(self) -> str:
        """The instance as Ganeti now names it (the new name after a rename)."""
        return self.new_name or self.instance


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def _range_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EventStore:
    """The events under the prefix in etcd, through its v3 JSON gateway (etcd3gw)."""

    def __init__(self, url: str, prefix: str) -> None:
        """url: http(s)://host:port of an etcd member; prefix: where events live (ends with '/')."""
        parts = urlsplit(url)
        self.url = url
        self.prefix = prefix
        self._parts = parts
        self._client: Any = None
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        self._cancel: Any = None
        self._unreadable: set[str] = set()

    @property
    def client(self) -> Any:
        """The etcd3gw client, created on first use."""
        if self._client is None:
            from etcd3gw.client import Etcd3Client

            self._client = Etcd3Client(host=self._parts.hostname, port=self._parts.port or 2379,
                                       protocol=self._parts.scheme, timeout=ETCD_TIMEOUT)
        return self._client

    def _call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        from etcd3gw.exceptions import Etcd3Exception
        from requests import RequestException

        try:
            return self.client.post(self.client.get_url(path), json=payload)
        except (Etcd3Exception, RequestException) as exc:
            raise EventError(f"etcd at {self.url}: {what} failed: {type(exc).__name__}: {exc}") from None

    def pending(self, cluster: str | None = None) -> list[Event]:
        """The events waiting (of one cluster when given), oldest first; anything else is logged once, left alone."""
        prefix = self.prefix + (f"{cluster}/" if cluster else "")
        result = self._call("reading hook events", "/kv/range",
                            {"key": _b64(prefix), "range_end": _b64(_range_end(prefix)), "sort_order": "ASCEND",
                             "sort_target": "KEY"})
        events = []
        for item in result.get("kvs", []):
            key = _unb64(item["key"])
            try:
                events.append(Event.from_json(key, _unb64(item.get("value", ""))))
            except (ValueError, KeyError, UnicodeDecodeError) as exc:
                if key not in self._unreadable:
                    logger.error("Ignoring %s under the hook events prefix: not a hook event (%s)", key, exc)
                    self._unreadable.add(key)
        return events

    def delete(self, key: str) -> None:
        """Delete one event (done, or dropped)."""
        self._call("deleting a hook event", "/kv/deleterange", {"key": _b64(key)})

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
            events, self._cancel = self.client.watch_prefix(self.prefix, filters=["NODELETE"])
            for _ in events:
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 - a broken watch only means falling back to polling
            logger.warning("Watch of %s on %s stopped (%s); polling every cycle until it is restarted",
                           self.prefix, self.url, exc)
