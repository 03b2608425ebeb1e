"""Locks that keep concurrent runs apart: in etcd (leases) across hosts, or with file locks on one host.

A lock is a key (named by :mod:`libcluster.resources`: ``cookbooks/NAME[:suffix]`` for the automatic
per-run lock, ``custom/NAME`` for locks taken by name in cookbook code, ``ganeti/...`` for clusters,
groups, nodes and instances) with a set of holders. Each holder declares a concurrency; a new
holder gets in only while the number of holders is below both its own concurrency and the lowest
concurrency of the current holders (the strictest holder wins; 0 means unlimited but tracked).

etcd layout: one key per holder, ``{prefix}{quoted lock key}/{holder id}``, attached to a lease of
the holder's TTL (``locks.ttl``, 30 s unless configured, at most 60) that a live holder renews every
TTL/3; a SIGKILLed holder's key disappears when its lease expires, within the TTL. A holder whose
renewals failed for a whole TTL (etcd unreachable) or whose lease etcd no longer knows has lost its
lock: :meth:`Locks.check_held` raises :class:`LockLostError`, and the runner calls it before every
change (the run stops and rolls back). Acquiring reads the holders under the lock's prefix at
revision R and writes the new holder in a transaction that succeeds only if no key under that prefix
was modified after R, so two racing holders cannot both count themselves in.

File layout: ``{file_dir}/{quoted lock key}/{holder id}.json``, each held with ``flock`` by its
owner, so a killed owner's file is recognisably stale; checks and writes happen under a short
``flock`` on ``.mutex`` in the same directory. The directories are created 0700 and must belong to
the running user and be writable by nobody else (``/run/lock`` itself is world-writable); files and
directories are opened without following symbolic links, and a holder file that is a link or
belongs to someone else is ignored.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from libcluster.errors import ConfigError, LibclusterError
from libcluster.etcd import EtcdAccess, Gateway

if TYPE_CHECKING:
    from libcluster.config import Section

logger = logging.getLogger(__name__)

ETCD_TIMEOUT = 5
"""Seconds per etcd request."""
RACE_RETRIES = 10
"""Immediate retries when another holder changed the lock between our read and our write."""
DEFAULT_TTL = 30
"""Seconds a lock outlives its holder's last lease renewal unless ``locks.ttl`` says otherwise."""
MAX_TTL = 60
"""Longest lease allowed: a killed runner's locks must be free within a minute."""
RENEW_RETRY = 1.0
"""Seconds between lease renewals after one failed (instead of TTL/3)."""


class LockError(LibclusterError):
    """A lock could not be acquired in time, or the lock backend failed."""


class LockLostError(LockError):
    """A held lock may have been lost (its lease not renewed for a whole TTL, or gone in etcd): stop changing."""


def check_ttl(ttl: int, what: str) -> int:
    """ttl if it is a lease we allow (1..MAX_TTL seconds); ValueError naming what otherwise."""
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"{what} must be between 1 and {MAX_TTL} seconds (a killed runner's locks must be free "
                         f"within {MAX_TTL} s), got {ttl}")
    return ttl


@dataclass(frozen=True)
class Holder:
    """One holder of a lock: who, since when, and the concurrency it accepts."""

    id: str
    owner: str
    """``user@host [pid]``."""
    concurrency: int
    ttl: int
    created: float
    """Unix time of acquisition."""

    def to_json(self) -> str:
        """The holder as stored in etcd or in its file."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Holder:
        """Read a holder written by :meth:`to_json`."""
        data = json.loads(text)
        return cls(str(data["id"]), str(data["owner"]), int(data["concurrency"]), int(data["ttl"]),
                   float(data["created"]))

    def describe(self) -> str:
        """``alice@host [123] (concurrency 1, since 12:00:03)`` for retry messages."""
        since = time.strftime("%H:%M:%S", time.localtime(self.created))
        return f"{self.owner} (concurrency {self.concurrency or 'unlimited'}, since {since})"


def limit_of(holders: list[Holder], concurrency: int) -> int | None:
    """How many holders the key allows for a newcomer with this concurrency; None = unlimited."""
    declared = [value for value in [concurrency, *(holder.concurrency for holder in holders)] if value > 0]
    return min(declared) if declared else None


def is_free(holders: list[Holder], concurrency: int) -> bool:
    """Whether a newcomer with this concurrency may join these holders."""
    limit = limit_of(holders, concurrency)
    return limit is None or len(holders) < limit


class Backend(Protocol):
    """Where holders are stored; acquisition must be atomic against other processes."""

    def holders(self, key: str) -> list[Holder]:
        """The live holders of key, without changing anything."""

    def try_acquire(self, key: str, holder: Holder) -> list[Holder] | None:
        """Add holder if the key has room (None) or return the holders that keep it out."""

    def release(self, key: str, holder: Holder) -> None:
        """Remove holder from key."""

    def check(self, key: str, holder: Holder) -> None:
        """Raise LockLostError if holder may no longer hold key."""


class FileBackend:
    """Holders as flock-held files in a directory of this host that only the running user may write.

    The directory (and each lock's subdirectory) is created 0700 and must be owned by the running user and
    not writable by group or others; nothing in it is opened through a symbolic link, so a holder or
    directory planted by someone else is refused or ignored, never trusted.
    """

    def __init__(self, directory: str | Path) -> None:
        """Keep locks under directory (created on first acquisition); refuse an existing one others control."""
        self.directory = Path(directory)
        self._held: dict[str, int] = {}
        try:
            base = self._open_base(create=False)
        except LockError as exc:
            raise ConfigError(f"key 'locks.file_dir': {exc}") from None
        if base is not None:
            os.close(base)

    def _open_base(self, *, create: bool) -> int | None:
        """The checked lock directory as an fd (created 0700 if create); None if it does not exist."""
        if create:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            with suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        return _open_private_dir(str(self.directory), None, create=False)

    @contextmanager
    def _key_dir(self, key: str, *, create: bool) -> Iterator[int | None]:
        """The checked directory of one lock key as an fd, None when it (or the lock directory) does not exist."""
        base = self._open_base(create=create)
        if base is None:
            yield None
            return
        try:
            name = quote(key, safe="")
            fd = _open_private_dir(name, base, create=create, shown=f"{self.directory}/{name}")
        finally:
            os.close(base)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    @contextmanager
    def _mutex(self, lock_dir: int, *, create: bool = True) -> Iterator[None]:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_CREAT if create else 0)
        fd = _open_file(".mutex", lock_dir, flags)
        try:
            _flock(fd, blocking=True)
            yield
        finally:
            os.close(fd)

    def _scan(self, lock_dir: int, *, prune: bool) -> list[Holder]:
        holders = []
        for name in sorted(os.listdir(lock_dir)):
            if not name.endswith(".json"):
                continue
            try:
                fd = _open_file(name, lock_dir, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except LockError as exc:
                logger.warning("Ignoring lock file %s: %s", name, exc)
                if prune:
                    os.unlink(name, dir_fd=lock_dir)
                continue
            try:
                if _flock(fd, blocking=False):
                    if prune:
                        os.unlink(name, dir_fd=lock_dir)
                    continue
                holders.append(Holder.from_json(os.read(fd, 65536)))
            except (ValueError, KeyError) as exc:
                logger.warning("Ignoring unreadable lock file %s: %s", name, exc)
            finally:
                os.close(fd)
        return holders

    def holders(self, key: str) -> list[Holder]:
        """The holders whose owner process still holds its file (read under the mutex, writing nothing)."""
        with self._key_dir(key, create=False) as lock_dir:
            if lock_dir is None:
                return []
            try:
                with self._mutex(lock_dir, create=False):
                    return self._scan(lock_dir, prune=False)
            except FileNotFoundError:
                return []

    def try_acquire(self, key: str, holder: Holder) -> list[Holder] | None:
        """Under the lock's mutex: drop stale and foreign files, count, and create ours if there is room."""
        with self._key_dir(key, create=True) as lock_dir:
            if lock_dir is None:
                raise LockError(f"lock directory of {key} under {self.directory} vanished while taking it")
            with self._mutex(lock_dir):
                holders = self._scan(lock_dir, prune=True)
                if not is_free(holders, holder.concurrency):
                    return holders
                fd = os.open(f"{holder.id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                             dir_fd=lock_dir)
                _flock(fd, blocking=False)
                os.write(fd, holder.to_json().encode())
                self._held[holder.id] = fd
        return None

    def check(self, key: str, holder: Holder) -> None:
        """Nothing to check: our flock lasts as long as this process."""

    def release(self, key: str, holder: Holder) -> None:
        """Delete our file and drop its flock."""
        fd = self._held.pop(holder.id)
        try:
            with self._key_dir(key, create=False) as lock_dir:
                if lock_dir is not None:
                    with self._mutex(lock_dir), suppress(FileNotFoundError):
                        os.unlink(f"{holder.id}.json", dir_fd=lock_dir)
        finally:
            os.close(fd)


def _open_private_dir(path: str, dir_fd: int | None, *, create: bool, shown: str | None = None) -> int | None:
    """Open a lock directory without following a symlink and check it is ours alone; None if it is missing."""
    shown = shown or path
    if create:
        with suppress(FileExistsError):
            os.mkdir(path, 0o700, dir_fd=dir_fd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LockError(f"lock directory {shown} is a symbolic link or not a directory: refused (it must be "
                            "a real directory of the user running cookbooks)") from None
        raise
    try:
        _check_private(fd, f"lock directory {shown}")
    except LockError:
        os.close(fd)
        raise
    return fd


def _open_file(name: str, dir_fd: int, flags: int) -> int:
    """Open a file of a lock directory without following a symlink; LockError if it is not a regular file of ours."""
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError(f"{name} is a symbolic link: not followed") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise LockError(f"{name} is not a regular file owned by uid {os.geteuid()}: not trusted")
    return fd


def _check_private(fd: int, what: str) -> None:
    """Refuse a lock directory another user owns or group/others may write: they could plant or remove holders."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise LockError(f"{what} is owned by uid {info.st_uid}, not by uid {os.geteuid()} that runs this: refused "
                        "(another user could plant or remove lock holders); remove it or set locks.file_dir")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError(f"{what} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}): refused "
                        "(they could plant or remove lock holders); make it 0700")


def _flock(fd: int, *, blocking: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@dataclass
class _Lease:
    """An etcd lease we keep alive, and what we know of its health."""

    id: int
    ttl: int
    renewed: float
    """time.monotonic() when the last successful grant or renewal was sent (etcd counts the TTL from later)."""
    stop: threading.Event = field(default_factory=threading.Event)
    failure: str = ""
    """The last renewal error, until a renewal succeeds."""
    gone: bool = False
    """etcd answered that the lease no longer exists."""


class EtcdBackend:
    """Holders as leased keys in etcd, through its v3 JSON gateway (etcd3gw), as the runner's etcd user."""

    def __init__(self, access: EtcdAccess, prefix: str) -> None:
        """access: etcd's URL, CA and user; prefix: where lock keys live."""
        self.access = access
        self.url = access.url
        self.prefix = prefix.rstrip("/") + "/"
        self._gateway = Gateway(self.access, ETCD_TIMEOUT, LockError)
        self._leases: dict[str, _Lease] = {}

    @property
    def gateway(self) -> Gateway:
        """The logged-in etcd client; the journal's etcd copy shares it (one login per run)."""
        return self._gateway

    def key_prefix(self, key: str) -> str:
        """The etcd prefix under which the holders of a lock key live."""
        return f"{self.prefix}{quote(key, safe='')}/"

    def _call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._gateway.call(what, path, payload)

    def _read(self, prefix: str) -> tuple[int, list[Holder]]:
        result = self._call("reading locks", "/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        holders = []
        for item in result.get("kvs", []):
            try:
                holders.append(Holder.from_json(_unb64(item.get("value", ""))))
            except (ValueError, KeyError) as exc:
                logger.warning("Ignoring unreadable lock entry %s: %s", _unb64(item["key"]), exc)
        return int(result["header"]["revision"]), holders

    def holders(self, key: str) -> list[Holder]:
        """The holders whose leases are alive."""
        return self._read(self.key_prefix(key))[1]

    def try_acquire(self, key: str, holder: Holder) -> list[Holder] | None:
        """Write our leased key only if nobody wrote under the lock's prefix since we counted."""
        prefix = self.key_prefix(key)
        holders: list[Holder] = []
        lease_id, granted = 0, 0.0
        for _ in range(RACE_RETRIES):
            revision, holders = self._read(prefix)
            if not is_free(holders, holder.concurrency):
                break
            if not lease_id:
                granted = time.monotonic()
                lease_id = int(self._call("granting a lease", "/lease/grant", {"TTL": holder.ttl, "ID": 0})["ID"])
            txn = {
                "compare": [{"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "target": "MOD",
                             "result": "LESS", "mod_revision": revision + 1}],
                "success": [{"request_put": {"key": _b64(prefix + holder.id), "value": _b64(holder.to_json()),
                                             "lease": lease_id}}],
                "failure": [],
            }
            if self._call("writing a lock", "/kv/txn", txn).get("succeeded"):
                self._keep_alive(holder, _Lease(lease_id, holder.ttl, granted))
                return None
        if lease_id:
            self._revoke(lease_id)
        return holders

    def _keep_alive(self, holder: Holder, lease: _Lease) -> None:
        """Renew the lease every TTL/3 (every RENEW_RETRY seconds after a failure) until released or gone."""
        self._leases[holder.id] = lease
        interval = max(lease.ttl / 3, 0.5)

        def refresh() -> None:
            while not lease.stop.wait(min(interval, RENEW_RETRY) if lease.failure else interval):
                sent = time.monotonic()
                try:
                    ttl = int(self._call("refreshing a lease", "/lease/keepalive", {"ID": lease.id})
                              .get("result", {}).get("TTL", -1))
                except LockError as exc:
                    lease.failure = str(exc)
                    logger.warning("Lock lease %s not refreshed: %s", lease.id, exc)
                    continue
                if ttl <= 0:
                    lease.gone = True
                    logger.error("Lock lease %s expired: the lock of %s is lost", lease.id, holder.owner)
                    return
                lease.renewed, lease.failure = sent, ""

        threading.Thread(target=refresh, name=f"lock-lease-{lease.id}", daemon=True).start()

    def check(self, key: str, holder: Holder) -> None:
        """LockLostError if etcd said our lease is gone, or no renewal succeeded for a whole TTL (it may be)."""
        lease = self._leases.get(holder.id)
        if lease is None:
            return
        if lease.gone:
            raise LockLostError(f"lock {key} is lost: etcd at {self.url} says its lease expired")
        silent = time.monotonic() - lease.renewed
        if silent >= lease.ttl:
            raise LockLostError(f"lock {key} may be lost: its lease ({lease.ttl}s) was not renewed for {silent:.0f}s "
                                f"({lease.failure or 'no answer from etcd'})")

    def _revoke(self, lease_id: int) -> None:
        self._call("revoking a lease", "/kv/lease/revoke", {"ID": lease_id})

    def release(self, key: str, holder: Holder) -> None:
        """Stop refreshing and revoke the lease, which deletes our key (nothing to revoke if etcd let it expire)."""
        lease = self._leases.pop(holder.id)
        lease.stop.set()
        if not lease.gone:
            self._revoke(lease.id)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with prefix (prefix ends with '/', so this is safe)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Locks:
    """Takes locks for a whole invocation: waits with visible retries, checks only in dry-run, or is disabled."""

    def __init__(
        self,
        backend: Backend | None,
        *,
        owner: str,
        dry_run: bool,
        ttl: int,
        tries: int,
        sleep: float,
        sleeper: Callable[[float], None] = time.sleep,
    ) -> None:
        """Lock through backend (None disables locking: ``--no-locks``) with leases of ttl seconds unless a lock
        says otherwise; tries/sleep bound the wait (linear backoff)."""
        self.backend = backend
        self.owner = owner
        self.dry_run = dry_run
        self.ttl = check_ttl(ttl, "the lock TTL")
        self.tries = max(tries, 1)
        self.sleep = sleep
        self._sleeper = sleeper
        self._entered: list[str] = []
        self._held: list[tuple[str, Holder]] = []

    def held_keys(self) -> list[str]:
        """Keys inside an acquired() block of this process, in the order entered (checked-only ones in dry-run too)."""
        return list(self._entered)

    @contextmanager
    def acquired(self, key: str, *, concurrency: int, ttl: int | None = None) -> Iterator[None]:
        """Hold lock key for the body of the with-statement; raise LockError if it stays busy."""
        if concurrency < 0:
            raise ValueError(f"lock concurrency must be >= 0, got {concurrency}")
        ttl = check_ttl(ttl, f"the TTL of lock {key}") if ttl is not None else self.ttl
        if self.backend is None:
            logger.debug("Locks disabled: not taking %s", key)
            with self._entering(key):
                yield
            return
        holder = Holder(os.urandom(16).hex(), self.owner, concurrency, ttl, time.time())
        if self.dry_run:
            self._check(self.backend, key, holder)
            with self._entering(key):
                yield
            return
        self._acquire(self.backend, key, holder)
        self._held.append((key, holder))
        try:
            with self._entering(key):
                yield
        finally:
            self._held.remove((key, holder))
            try:
                self.backend.release(key, holder)
                logger.debug("Released lock %s", key)
            except (LockError, OSError) as exc:
                logger.warning("Lock %s not released cleanly (it frees itself when its TTL expires): %s", key, exc)

    def check_held(self) -> None:
        """Raise LockLostError if a lock this process holds may have been lost; called before every change."""
        if self.backend is None:
            return
        for key, holder in list(self._held):
            self.backend.check(key, holder)

    @contextmanager
    def _entering(self, key: str) -> Iterator[None]:
        self._entered.append(key)
        try:
            yield
        finally:
            self._entered.remove(key)

    def _check(self, backend: Backend, key: str, holder: Holder) -> None:
        try:
            holders = backend.holders(key)
        except (LockError, OSError) as exc:
            logger.warning("DRY-RUN: could not check lock %s: %s", key, exc)
            return
        if is_free(holders, holder.concurrency):
            logger.debug("DRY-RUN: lock %s is free; not taking it in DRY-RUN mode", key)
        else:
            logger.warning("DRY-RUN: lock %s is busy, a real run would wait: %s", key,
                           _busy(holders, holder.concurrency))

    def _acquire(self, backend: Backend, key: str, holder: Holder) -> None:
        busy = ""
        for attempt in range(1, self.tries + 1):
            try:
                holders = backend.try_acquire(key, holder)
            except OSError as exc:
                raise LockError(f"cannot take lock {key}: {exc}") from None
            if holders is None:
                logger.debug("Acquired lock %s (concurrency %s, ttl %ss)", key, holder.concurrency, holder.ttl)
                return
            busy = _busy(holders, holder.concurrency)
            if attempt < self.tries:
                delay = self.sleep * attempt
                logger.warning("[%d/%d, retrying in %.2fs] Unable to acquire lock %s: %s", attempt, self.tries, delay,
                               key, busy)
                self._sleeper(delay)
        raise LockError(f"unable to acquire lock {key} after {self.tries} tries: {busy}")


def _busy(holders: list[Holder], concurrency: int) -> str:
    return (f"{len(holders)} holder(s), at most {limit_of(holders, concurrency)} allowed: "
            + ", ".join(holder.describe() for holder in holders))


DEFAULT_FILE_DIR = "/var/lock/cookbooks"
"""Where file locks live when neither etcd_url nor file_dir is configured."""
DEFAULT_ETCD_PREFIX = "/ganeti-cookbooks/locks/"
"""etcd key prefix of all locks unless locks.etcd_prefix says otherwise."""


def from_config(config: Section, *, owner: str, dry_run: bool, enabled: bool = True) -> Locks:
    """Locks as configured in the ``locks`` section: etcd when etcd_url is set, else file locks on this host."""
    section = config.section("locks", {})
    if section.has("default_ttl"):
        raise ConfigError(f"{section.source}: key '{section.key('default_ttl')}' is replaced by "
                          f"'{section.key('ttl')}' (seconds, at most {MAX_TTL}; default {DEFAULT_TTL})")
    try:
        ttl = check_ttl(section.int("ttl", DEFAULT_TTL), f"key '{section.key('ttl')}'")
    except ValueError as exc:
        raise ConfigError(f"{section.source}: {exc}") from None
    backend: Backend | None = None
    if enabled:
        if section.has("etcd_url"):
            backend = EtcdBackend(EtcdAccess.from_section(section), section.str("etcd_prefix", DEFAULT_ETCD_PREFIX))
        else:
            backend = FileBackend(section.str("file_dir", DEFAULT_FILE_DIR))
    return Locks(backend, owner=owner, dry_run=dry_run, ttl=ttl, tries=section.int("wait_tries", 27),
                 sleep=section.float("wait_sleep", 5.0))
