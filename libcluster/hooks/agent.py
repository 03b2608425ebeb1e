"""cookbook-hooks-agent: act on the events Ganeti hooks record, so NetBox and DNS follow hand-made changes.

Events are untrusted input (whoever can write under the prefix, e.g. any node, can forge one), so each is
checked first. A key whose value is not a well-formed event (every field of the right type, see
libcluster.hooks.events) or whose value names another cluster than its key's path is logged and deleted
(unless it lies under a configured cluster another agent handles). Each cycle reads at most
READ_LIMIT keys and goes on after the last one in the next cycle. Then an event's instance names must be
FQDNs in the cluster's domain (``domain`` of the cluster's settings), and a rename is believed only when
Ganeti no longer has the old name and has the new one. A bad event is logged and deleted, nothing else is done for it.

For each changed instance the agent then runs ``sre.ganeti.sync-netbox --cluster C --vm NAME
[--delete] [--renamed-from OLD]`` through the cookbook runner (its lock, logs and audit record, with
origin "hook"; no server admin log line), then deletes the instance's events. ``--delete`` is given
only when Ganeti says the instance is gone (a removal event for an instance Ganeti still has only
syncs it); the sync itself reads Ganeti and NetBox again. Events are coalesced per instance: the
sync reads Ganeti's current state, so one run covers any number of events. An
instance whose instance lock a cookbook holds (makevm creating it records it itself; changedisk,
reboot-vm) is left for a later cycle.
A failed run is retried every cycle; after ``hooks.max_attempts`` failures the events are dropped
with an error (the next cluster-wide sync-netbox catches up). Pre-phase events are dropped: the
agent acts on what Ganeti did, not on what it is about to do. With -d the runs are dry-runs and
no event is deleted.

Usage: ``cookbook-hooks-agent -c /etc/ganeti-cookbooks/config.yaml [--cluster C] [--instances GLOB] [--once]``
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libcluster import audit, clusters, config, interactive, locks, resources
from libcluster.changes import ChangeLog
from libcluster.context import Session
from libcluster.errors import ConfigError, LibclusterError
from libcluster.ganeti import RapiNotFoundError
from libcluster.ganeti import connect as ganeti_connect
from libcluster.hooks.events import Event, EventError, EventStore, HookSettings
from libcluster.remote_results import InvalidHostError, validate_host
from libcluster.runner import execute
from libcluster.runner.logs import Console

logger = logging.getLogger(__name__)

SYNC_COOKBOOK = "sre.ganeti.sync-netbox"


@dataclass
class Work:
    """One sync run: an instance of a cluster, the name it had before a rename, and the events it covers."""

    cluster: str
    name: str
    renamed_from: str | None = None
    events: list[Event] = field(default_factory=list)
    delete: bool = False
    """Whether Ganeti says the instance is gone (set from Ganeti's answer, never from the events)."""

    def args(self) -> list[str]:
        """Arguments of the sync-netbox run."""
        extra = ["--delete"] if self.delete else []
        extra += ["--renamed-from", self.renamed_from] if self.renamed_from else []
        return ["--cluster", self.cluster, "--vm", self.name, *extra]


def in_domain(name: str, domain: str) -> bool:
    """Whether name is a plain DNS name (an FQDN) below domain."""
    try:
        validate_host(name)
    except InvalidHostError:
        return False
    return name.lower().endswith("." + domain.lower().strip("."))


def coalesce(events: Sequence[Event]) -> tuple[list[Work], list[Event]]:
    """Post-phase events grouped per (cluster, instance as now named), in order of first event; and the others."""
    work: dict[tuple[str, str], Work] = {}
    dropped = []
    for event in events:
        if event.phase != "post":
            dropped.append(event)
            continue
        item = work.setdefault((event.cluster, event.target), Work(event.cluster, event.target))
        if event.new_name and event.new_name != event.instance:
            item.renamed_from = event.instance
        item.events.append(event)
    return list(work.values()), dropped


class Agent:
    """Reads pending events, runs the sync per instance, deletes what is done."""

    def __init__(self, session: Session, store: EventStore, settings: HookSettings,
                 only: Sequence[str] | None = None, instances: Sequence[str] = (),
                 has_instance: Callable[[str, str], bool] | None = None) -> None:
        """Run cookbooks in session; handle the events of the clusters in only (default: every configured one)
        and, when instances (glob patterns) are given, only of the instances matching one: others are left.
        has_instance(cluster, name) asks Ganeti (default: the cluster's RAPI). ConfigError without a domain."""
        self.session = session
        self.store = store
        self.settings = settings
        self.configured = set(clusters.names(session.config))
        self.clusters = set(only or self.configured)
        self.domains = {name: clusters.load(session.config, name).domain for name in self.clusters}
        self.instances = tuple(instances)
        self.has_instance = has_instance or self._ganeti_has
        self._ganeti: dict[str, Any] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._cursor: str | None = None

    def _ours(self, key: str) -> bool:
        """Whether a bad key is this agent's to delete: under one of its clusters, or under no configured cluster."""
        path = key[len(self.store.prefix):]
        cluster = path.split("/")[0] if "/" in path else ""
        return cluster in self.clusters or cluster not in self.configured

    def _mine(self, event: Event) -> bool:
        names = {event.instance, event.target}
        return event.cluster in self.clusters and (
            not self.instances or any(fnmatch.fnmatchcase(name, pattern)
                                      for name in names for pattern in self.instances))

    def cycle(self) -> int:
        """Handle the pending events of one bounded read (the next read goes on after it); returns the sync runs
        that succeeded. Keys that are no valid event of one of our clusters are logged and deleted."""
        batch = self.store.read(self._cursor)
        self._cursor = batch.last + "\0" if batch.more and batch.last else None
        for key, reason in batch.bad:
            if self._ours(key):
                logger.error("Deleting %s under the hook events prefix: not a valid hook event (%s)", key, reason)
                if not self.session.dry_run:
                    self.store.delete(key)
        pending = [event for event in batch.events if self._mine(event)]
        work, dropped = coalesce(pending)
        for event in dropped:
            logger.info("Dropping %s-phase event %s of %s (only post-phase events are acted on)", event.phase,
                        event.hook, event.instance)
            self._delete([event])
        done = 0
        for item in work:
            if self._busy(item.cluster, item.name):
                logger.info("A cookbook holds the instance lock of %s: its events wait", item.name)
                continue
            try:
                trusted = self._trusted(item)
            except LibclusterError as exc:
                logger.error("Cannot ask Ganeti about %s of cluster %s (%s): its events wait", item.name,
                             item.cluster, exc)
                continue
            if trusted:
                done += self._run(trusted)
        return done

    def _trusted(self, item: Work) -> Work | None:
        """The work that Ganeti confirms: bad events logged and deleted, --delete only for an instance Ganeti lacks."""
        domain = self.domains[item.cluster]
        good = []
        for event in item.events:
            problem = self._problem(event, domain)
            if problem:
                logger.error("Dropping hook event %s (%s of %s, from node %s): %s", event.key, event.hook,
                             event.instance, event.node or "?", problem)
                self._delete([event])
            else:
                good.append(event)
        if not good:
            return None
        renames = [event for event in good if event.new_name and event.new_name != event.instance]
        delete = not self.has_instance(item.cluster, item.name)
        if not delete and any(event.hook == "instance-remove" for event in good):
            logger.warning("Removal event for %s, but Ganeti still has it: syncing it, nothing deleted", item.name)
        return Work(item.cluster, item.name, renames[-1].instance if renames else None, good, delete)

    def _problem(self, event: Event, domain: str) -> str:
        """Why event cannot be believed ("" when it can): a name outside the domain, a rename Ganeti does not show."""
        for name in filter(None, (event.instance, event.new_name)):
            if not in_domain(name, domain):
                return f"instance name {name!r} is not an FQDN in cluster {event.cluster}'s domain {domain}"
        if event.new_name and event.new_name != event.instance:
            old, new = self.has_instance(event.cluster, event.instance), self.has_instance(event.cluster,
                                                                                             event.new_name)
            if old or not new:
                return (f"rename {event.instance} -> {event.new_name} does not match Ganeti ({event.instance} "
                        f"{'still exists' if old else 'is gone'}, {event.new_name} "
                        f"{'exists' if new else 'does not exist'})")
        return ""

    def _ganeti_has(self, cluster: str, name: str) -> bool:
        """Whether the cluster's Ganeti has an instance named name (read-only RAPI request)."""
        if cluster not in self._ganeti:
            self._ganeti[cluster] = ganeti_connect(self.session.config, cluster, dry_run=True,
                                                   changes=ChangeLog(dry_run=True), remote=None)
        try:
            self._ganeti[cluster].instance(name)
        except RapiNotFoundError:
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        """Cycle until stop is set, waking on new events (watch) or every hooks.poll seconds."""
        logger.info("Watching hook events under %s on %s for clusters %s", self.store.prefix, self.store.url,
                    ", ".join(sorted(self.clusters)))
        try:
            while not stop.is_set():
                try:
                    self.cycle()
                except EventError as exc:
                    logger.error("%s (retrying in %ss)", exc, self.settings.poll)
                except Exception:  # one bad cycle must not stop the handling of all later events
                    logger.exception("Unexpected error in a cycle (retrying in %ss)", self.settings.poll)
                if self._cursor is None and not stop.is_set():
                    self.store.wait(self.settings.poll)
        finally:
            self.store.close()
        logger.info("Stopped")

    def _busy(self, cluster: str, name: str) -> bool:
        try:
            return bool(resources.instances_held(self.session.locks.backend, cluster, [name]))
        except (locks.LockError, OSError) as exc:
            logger.warning("Cannot check the locks of %s (%s): going on", name, exc)
            return False

    def _run(self, item: Work) -> int:
        hooks = ",".join(sorted({event.hook for event in item.events}))
        logger.info("Syncing %s of cluster %s after %d event(s): %s (%s)", item.name, item.cluster, len(item.events),
                    hooks, "gone from Ganeti: --delete" if item.delete else "in Ganeti")
        self.session.origin = {"origin": "hook", "hooks": hooks, "events": str(len(item.events))}
        exit_code = execute.run(self.session, SYNC_COOKBOOK, item.args())
        key = (item.cluster, item.name)
        if exit_code == 0:
            self._failures.pop(key, None)
            self._delete(item.events)
            return 1
        attempts = self._failures[key] = self._failures.get(key, 0) + 1
        if attempts >= self.settings.max_attempts:
            logger.error("Giving up on %s after %d failed syncs (exit code %d): dropping its events; the next "
                         "cluster-wide sync-netbox will catch up", item.name, attempts, exit_code)
            self._failures.pop(key)
            self._delete(item.events)
        else:
            logger.warning("Sync of %s failed (exit code %d, attempt %d/%d): retrying next cycle", item.name,
                           exit_code, attempts, self.settings.max_attempts)
        return 0

    def _delete(self, events: Sequence[Event]) -> None:
        if self.session.dry_run:
            return
        for event in events:
            self.store.delete(event.key)


def session_for(root: config.Section, *, dry_run: bool, verbose: bool) -> Session:
    """A runner session for the agent: locks and audit log as configured, confirmations answered, no SAL."""
    user = os.environ.get("SUDO_USER") or "hooks-agent"
    owner = f"{user}@{socket.gethostname()} [{os.getpid()}]"
    lock_service = locks.from_config(root, owner=owner, dry_run=dry_run)
    return Session(
        config=root, base_dirs=[Path(str(item)) for item in root.list("cookbooks_base_dirs")],
        logs_dir=Path(root.str("logs_base_dir")), dry_run=dry_run, verbose=verbose, user=user,
        origin={"origin": "hook"}, prompter=interactive.Prompter(assume_yes=True), locks=lock_service,
        audit=audit.AuditLog(audit.path_from_config(root)), fence=lock_service.check_held,
    )


def build_parser() -> argparse.ArgumentParser:
    """Options of cookbook-hooks-agent."""
    parser = argparse.ArgumentParser(prog="cookbook-hooks-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config-file", default=config.DEFAULT_CONFIG_PATH, metavar="CONFIG",
                        help="configuration file (the cookbooks' one)")
    parser.add_argument("--cluster", action="append", help="handle only this cluster's events (repeatable)")
    parser.add_argument("--instances", action="append", default=[], metavar="GLOB",
                        help="handle only instances whose name matches (repeatable; for a staged rollout or tests); "
                        "other events are left for another agent")
    parser.add_argument("--once", action="store_true", help="handle the pending events once and exit")
    parser.add_argument("-d", "--dry-run", action="store_true", help="dry-run syncs, delete no event")
    parser.add_argument("-v", "--verbose", action="store_true", help="show DEBUG messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of cookbook-hooks-agent: 0 on a clean stop, 1 on a configuration or etcd error."""
    args = build_parser().parse_args(argv)
    console = Console(verbose=args.verbose, dry_run=args.dry_run)
    try:
        root = config.load(args.config_file)
        unknown = sorted(set(args.cluster or ()) - set(clusters.names(root)))
        if unknown:
            raise ConfigError(f"{root.source}: unknown cluster(s) {', '.join(unknown)}")
        settings = HookSettings.from_config(root)
        session = session_for(root, dry_run=args.dry_run, verbose=args.verbose)
        agent = Agent(session, EventStore(settings.etcd, settings.prefix), settings, args.cluster,
                      args.instances)
        if args.once:
            agent.cycle()
            return 0
        stop = threading.Event()

        def stopping(signum: int, _frame: Any) -> None:
            logger.info("Signal %d: stopping after the current run", signum)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stopping)
        agent.run(stop)
        return 0
    except LibclusterError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        console.close()


if __name__ == "__main__":
    sys.exit(main())
