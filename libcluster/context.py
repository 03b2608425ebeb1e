"""The one object cookbooks get: run options, configuration, prompts, locks, notifications and library clients.

``run(args, ctx)`` receives it in the module API; ``CookbookBase.__init__(ctx)`` in the class API.
Clients (Ganeti, remote hosts, NetBox, DNS) are created on first use, once per run, and all share
the run's dry-run flag and ChangeLog, so the audit record lists every write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar, cast

from libcluster.changes import ChangeLog, no_fence
from libcluster.journal import Journal
from libcluster.undo import UndoStack, request_timeout

if TYPE_CHECKING:
    from libcluster.audit import AuditLog
    from libcluster.config import Section
    from libcluster.dns import DNS
    from libcluster.ganeti import GanetiCluster
    from libcluster.interactive import Prompter
    from libcluster.journal import EtcdMirror
    from libcluster.locks import Locks
    from libcluster.netbox import NetBox
    from libcluster.remote import Remote
    from libcluster.runner.logs import RunLogFiles
    from libcluster.sal import SAL

logger = logging.getLogger(__name__)

_Client = TypeVar("_Client")


@dataclass
class Session:
    """What all runs of one ``cookbook`` invocation share: options, configuration and services."""

    config: Section
    base_dirs: list[Path]
    logs_dir: Path
    dry_run: bool
    verbose: bool
    user: str
    origin: dict[str, str]
    prompter: Prompter
    locks: Locks
    audit: AuditLog
    sal: SAL | None = None
    log_files: RunLogFiles | None = None
    """The files of the top-level run in progress; nested runs write into them too."""
    results: dict[str, int] = field(default_factory=dict)
    """Exit code of each cookbook run so far (shown by the menu)."""
    mirror: EtcdMirror | None = None
    """The etcd copy of the journals (when locks are in etcd), for ``--recover`` from another host."""
    fence: Callable[[], None] = no_fence
    """Raises when the run's locks are lost; checked before each journaled write."""
    run_nested: Callable[[Session, str, list[str], Context], int] | None = None
    """Runs a cookbook from another one (set by the runner: this module does not import it)."""


class Context:
    """Everything one run of a cookbook may use; created by the runner, one per run."""

    def __init__(self, session: Session, name: str, run_id: str, parent: Context | None = None) -> None:
        """A context for run run_id of cookbook name; parent is the calling run for run_cookbook()."""
        self._session = session
        self.name = name
        """Full name of the running cookbook, e.g. ``sre.ganeti.makevm``."""
        self.run_id = run_id
        """Id of this run in the audit log."""
        self.parent = parent
        self.task_id = ""
        """The ticket of the run (``-t/--task-id``, set by the runner once the arguments parsed), "" without one."""
        self.journal = Journal(run_id, session.audit, session.mirror, dry_run=session.dry_run)
        """The run's lines in the audit file (and etcd): start, intents, results, undo steps, end."""
        self.changes = ChangeLog(dry_run=session.dry_run, journal=self.journal, fence=session.fence)
        """Every write the run made (or would make in dry-run); clients record into it."""
        self.undo = UndoStack(self, recorder=lambda seq, status, error: self.journal.undo(seq, status, error, run_id),
                              registrar=self.changes.register_undo, enabled=not session.dry_run,
                              recheck=lambda undo: request_timeout(session.config, undo.system, undo.args))
        """The undo steps of the run's changes, run in reverse by rollback (``ctx.undo.push`` adds one)."""
        self.changes.undo = self.undo
        self.until_end = ExitStack()
        """What the run holds until it ends (e.g. resources.hold's locks): closed by the runner after rollback and
        undo."""
        self._clients: dict[tuple[str | bool, ...], object] = {}

    @property
    def dry_run(self) -> bool:
        """True with ``-d``: read freely, change nothing, record what would change."""
        return self._session.dry_run

    @property
    def verbose(self) -> bool:
        """True with ``-v``."""
        return self._session.verbose

    @property
    def user(self) -> str:
        """The real operator (SUDO_USER when run through sudo)."""
        return self._session.user

    @property
    def config(self) -> Section:
        """The root of the configuration file."""
        return self._session.config

    def confirm(self, message: str) -> None:
        """Ask the operator to type "go"; ``-y`` answers it. Raises AbortError/InputError (run stops)."""
        self._session.prompter.confirm(message)

    def ask_input(
        self,
        message: str,
        choices: Sequence[str] | None = None,
        validator: Callable[[str], object] | None = None,
    ) -> str:
        """Ask the operator for an answer (one of choices, accepted by validator); never answered by ``-y``."""
        return self._session.prompter.ask_input(message, choices, validator)

    @property
    def locks(self) -> Locks:
        """The invocation's lock service; resource locks are taken with libcluster.resources.acquire(ctx, ...)."""
        return self._session.locks

    def lock(self, name: str, concurrency: int = 1, ttl: int | None = None) -> AbstractContextManager[None]:
        """A lock named by the cookbook (key ``custom/NAME``); ttl defaults to the config's ``locks.ttl``.

        Ganeti objects have their own keys: take those with libcluster.resources.acquire(ctx, cluster, ...).
        """
        from libcluster.resources import custom_lock

        return self.hold_lock(custom_lock(name), concurrency=concurrency, ttl=ttl)

    @contextmanager
    def hold_lock(self, key: str, *, concurrency: int, ttl: int | None = None) -> Iterator[None]:
        """Hold lock key and journal it (a ``lock`` line) once taken, so that ``--recover`` takes it too."""
        with self._session.locks.acquired(key, concurrency=concurrency, ttl=ttl):
            self.journal.lock(key, concurrency)
            yield

    def notify(self, message: str) -> None:
        """Log message and, in a real run, announce it on the server admin log."""
        logger.info(message)
        if self._session.sal is not None and not self.dry_run:
            self._session.sal.send(f"{self.name}: {message}")

    def run_cookbook(self, name: str, args: Sequence[str] = (), raises: bool = True) -> int:
        """Run another cookbook through the runner (own lock, same dry-run and logs); return its exit code.

        With raises=True a non-zero exit code raises CookbookFailed.
        """
        from libcluster.cookbook import CookbookFailed

        if self._session.run_nested is None:
            raise RuntimeError("run_cookbook() outside the runner: the session has no run_nested")
        exit_code = self._session.run_nested(self._session, name, list(args), self)
        if exit_code and raises:
            raise CookbookFailed(name, exit_code)
        return exit_code

    def cookbook_module(self, name: str) -> ModuleType:
        """The module of cookbook name in the configured trees: where a cookbook's own undo steps live."""
        from libcluster.runner import discovery

        found = discovery.find(self._session.base_dirs, discovery.normalize(name))
        module_name = found.name if found.kind == "module" else found.name.rsplit(".", 1)[0]
        return discovery.import_cookbook_module(self._session.base_dirs, module_name)

    def _cached(self, key: tuple[str | bool, ...], build: Callable[[], _Client]) -> _Client:
        """The client stored under key, built on first use (each key always holds the same client class)."""
        if key not in self._clients:
            self._clients[key] = build()
        return cast(_Client, self._clients[key])

    def remote(self) -> Remote:
        """Commands on hosts (libcluster.remote.Remote), from the ``remote`` section."""
        from libcluster.remote import Remote

        return self._cached(("remote",), lambda: Remote(self.config.section("remote"), dry_run=self.dry_run,
                                                        changes=self.changes))

    def ganeti(self, cluster: str) -> GanetiCluster:
        """A Ganeti cluster client (libcluster.ganeti.connect) for a cluster of ``ganeti.clusters``."""
        from libcluster import ganeti

        return self._cached(("ganeti", cluster), lambda: ganeti.connect(
            self.config, cluster, dry_run=self.dry_run, changes=self.changes, remote=self.remote))

    @property
    def change_message(self) -> str:
        """What NetBox's change log says of each write of this run: cookbook, task id (-t) and run id."""
        task = f" {self.task_id}" if self.task_id else ""
        return f"cookbook {self.name}{task} (run {self.run_id})"

    def netbox(self, read_write: bool = False) -> NetBox:
        """A NetBox client (libcluster.netbox.NetBox); read_write picks the read-write token; every write carries
        change_message as its changelog_message."""
        from libcluster.netbox import NetBox

        return self._cached(("netbox", read_write), lambda: NetBox(
            self.config.section("netbox"), read_write=read_write, dry_run=self.dry_run, changes=self.changes,
            changelog_message=self.change_message))

    def dns(self) -> DNS:
        """A DNS client (libcluster.dns.DNS) for the zones of the ``dns`` section."""
        from libcluster.dns import DNS

        return self._cached(("dns",), lambda: DNS(self.config.section("dns"), dry_run=self.dry_run,
                                                  changes=self.changes))
