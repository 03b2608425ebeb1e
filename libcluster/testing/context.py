"""A Context for unit tests: the run's options, prompts, locks and undo stack, serving fake clients.

:class:`FakeCtx` stands for :class:`libcluster.context.Context` (same methods and signatures, checked by
the conformance test). Confirmations are recorded and answered "go" (or "abort"), ``ask_input`` answers
from a list, locks are the library's own :class:`~libcluster.locks.Locks` without a backend (nothing is
shared) recording what was taken (:class:`RecordingLocks`), ``undo`` is the library's own UndoStack over
the fake clients, and ``run_cookbook`` records the call and answers an exit code the test sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.context import Context
from libcluster.cookbook import CookbookFailed
from libcluster.dns import DNS
from libcluster.ganeti import GanetiCluster
from libcluster.interactive import AbortError, InputError
from libcluster.locks import Locks
from libcluster.netbox import NetBox
from libcluster.remote import Remote
from libcluster.resources import custom_lock
from libcluster.runner import discovery
from libcluster.testing.dns import fake_dns
from libcluster.undo import UndoStack


class RecordingLocks(Locks):
    """The library's Locks with no backend (every lock free, nothing shared), recording ("take"/"release", key)."""

    REAL = Locks
    HELPERS = ("events", "taken")

    def __init__(self, *, dry_run: bool = False, events: list[tuple[str, str]] | None = None) -> None:
        """Record into events (a list the test may share with other recorders)."""
        super().__init__(None, owner="libcluster.testing", dry_run=dry_run, ttl=30, tries=1, sleep=0.0)
        self.events = events if events is not None else []

    @property
    def taken(self) -> list[str]:
        """Keys taken so far, in order."""
        return [key for event, key in self.events if event == "take"]

    @contextmanager
    def acquired(self, key: str, *, concurrency: int, ttl: int | None = None) -> Iterator[None]:
        """Take key as Locks does, recording the take and the release."""
        with super().acquired(key, concurrency=concurrency, ttl=ttl):
            self.events.append(("take", key))
            try:
                yield
            finally:
                self.events.append(("release", key))


class FakeCtx:
    """The parts of a Context a cookbook uses, serving the fake clients it is given."""

    REAL = Context
    HELPERS = ("clusters", "base_dirs", "abort", "answers", "confirmations", "notifications", "cookbooks",
               "cookbook_exits")

    def __init__(self, config: Section, *, dry_run: bool = False, clusters: dict[str, Any] | None = None,
                 netbox: Any = None, remote: Any = None, dns_zones: Sequence[str] = (), abort: bool = False,
                 name: str = "test.cookbook", base_dirs: Sequence[str | Path] = ()) -> None:
        """Serve these fakes (FakeCluster per cluster name, FakeNetBox, FakeRemote) and, for dns_zones, the real
        DNS client on an in-memory server (fake_dns, journaling into this run); abort makes every confirmation
        answer "abort"; base_dirs: the cookbook trees (for cookbook_module)."""
        self.config = config
        self.dry_run = dry_run
        self.verbose = False
        self.user = "tester"
        self.name = name
        self.run_id = "test-run"
        self.base_dirs = list(base_dirs)
        self.parent: Context | None = None
        self.changes = ChangeLog(dry_run=dry_run)
        self.undo = UndoStack(self, registrar=self.changes.register_undo, enabled=not dry_run)
        self.changes.undo = self.undo
        self.locks = RecordingLocks(dry_run=dry_run)
        self.until_end = ExitStack()
        """What the run holds until it ends (resources.hold); run_runner closes it after rollback and undo."""
        self.clusters = clusters or {}
        for fake in [*self.clusters.values(), netbox, remote]:
            if isinstance(getattr(fake, "changes", None), ChangeLog):
                fake.changes.undo = self.undo  # its writes register undos on this run's stack, as real ones do
        self._netbox = netbox
        self._remote = remote
        self._dns = fake_dns(dns_zones, dry_run=dry_run, changes=self.changes) if dns_zones else None
        self.abort = abort
        self.answers: list[str] = []
        """What ask_input answers, in turn."""
        self.confirmations: list[str] = []
        self.notifications: list[str] = []
        self.cookbooks: list[tuple[str, list[str]]] = []
        self.cookbook_exits: dict[str, int] = {}
        """Exit code run_cookbook() answers per cookbook name (0 otherwise)."""

    def confirm(self, message: str) -> None:
        """Record the question; answer go, or abort."""
        self.confirmations.append(message)
        if self.abort:
            raise AbortError(f"aborted by the operator at: {message}")

    def ask_input(
        self,
        message: str,
        choices: Sequence[str] | None = None,
        validator: Callable[[str], object] | None = None,
    ) -> str:
        """The next of answers (InputError when none is left or it is not one of choices)."""
        if not self.answers:
            raise InputError(f"no answer for: {message}")
        answer = self.answers.pop(0)
        if choices is not None and answer not in choices:
            raise InputError(f"{answer!r} is not one of {', '.join(choices)}")
        if validator is not None:
            validator(answer)
        return answer

    def lock(self, name: str, concurrency: int = 1, ttl: int | None = None) -> AbstractContextManager[None]:
        """The custom lock ``custom/NAME``, as the real one."""
        return self.hold_lock(custom_lock(name), concurrency=concurrency, ttl=ttl)

    @contextmanager
    def hold_lock(self, key: str, *, concurrency: int, ttl: int | None = None) -> Iterator[None]:
        """Hold lock key (recorded by the locks)."""
        with self.locks.acquired(key, concurrency=concurrency, ttl=ttl):
            yield

    def notify(self, message: str) -> None:
        """Record the message."""
        self.notifications.append(message)

    def run_cookbook(self, name: str, args: Sequence[str] = (), raises: bool = True) -> int:
        """Record (name, args); the exit code is cookbook_exits.get(name, 0) (CookbookFailed if raises)."""
        self.cookbooks.append((name, list(args)))
        exit_code = self.cookbook_exits.get(name, 0)
        if exit_code and raises:
            raise CookbookFailed(name, exit_code)
        return exit_code

    def cookbook_module(self, name: str) -> ModuleType:
        """The module of cookbook name in the trees given as base_dirs (where a cookbook's own undo steps live)."""
        found = discovery.find(self.base_dirs, discovery.normalize(name))
        module_name = found.name if found.kind == "module" else found.name.rsplit(".", 1)[0]
        return discovery.import_cookbook_module(self.base_dirs, module_name)

    def remote(self) -> Remote:
        """The fake remote."""
        assert self._remote is not None, "this test gave no remote"
        return cast(Remote, self._remote)

    def ganeti(self, cluster: str) -> GanetiCluster:
        """The fake cluster of that name."""
        return cast(GanetiCluster, self.clusters[cluster])

    def netbox(self, read_write: bool = False) -> NetBox:
        """The fake NetBox."""
        assert self._netbox is not None, "this test gave no NetBox"
        return cast(NetBox, self._netbox)

    def dns(self) -> DNS:
        """The DNS client on its in-memory server (``ctx.dns().server``)."""
        assert self._dns is not None, "this test gave no dns_zones"
        return self._dns
