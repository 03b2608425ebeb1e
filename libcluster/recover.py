"""``cookbook --recover``: list the runs that died, and undo one's changes from its journal.

A run that died (SIGKILL, host crash) has a ``start`` line and no ``end``; a run whose rollback left
something behind ended with exit 93 and changes not undone. Both are listed. Recovering a run reads its
journal (etcd first, so that another host can do it, else the local audit file), takes its locks, and
undoes in reverse order every change that has an undo and was done, maybe done, or has no result (it
died during the write), skipping those already undone. Its ``undo`` lines and a final ``recovered`` line
go on the dead run's id; the recovery writes its own start/end record (cookbook ``recover``).
Journal lines read from etcd are untrusted: a line that is not what the runner writes is skipped.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libcluster import audit
from libcluster.changes import no_fence
from libcluster.cookbook import EXIT_EXCEPTION, EXIT_NOT_FOUND, EXIT_ROLLBACK_FAILED
from libcluster.errors import LibclusterError
from libcluster.journal import EVENTS, Journal
from libcluster.undo import Undo, UndoError, UndoStack, request_timeout

if TYPE_CHECKING:
    from libcluster.config import Section
    from libcluster.context import Context, Session

logger = logging.getLogger(__name__)

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
"""A run id as the runner makes them (audit.new_run_id)."""
NAME = "recover"
"""The cookbook name of a recovery's own record."""
FIELDS: dict[str, dict[str, type]] = {
    "lock": {"key": str, "concurrency": int},
    "intent": {"seq": int, "system": str, "action": str, "target": str},
    "result": {"seq": int, "status": str},
    "undo": {"seq": int, "status": str},
}
"""The fields a journal line of each event must have, with their types."""


@dataclass
class Step:
    """One change of a run as its journal tells it."""

    seq: int
    system: str
    action: str
    target: str
    undo: dict[str, Any] | None
    result: str | None = None
    """``done``, ``failed``, ``maybe`` or None (the run died before the result line)."""
    learnt: dict[str, Any] = field(default_factory=dict)
    undone: str | None = None
    """Status of the last undo line: ``undone``, ``absent``, ``failed`` or None."""
    time: str = ""
    """When the intent was written (ISO 8601)."""

    @property
    def pending(self) -> bool:
        """Whether recovery must undo it: it has an undo, was (maybe) made, and is not undone yet."""
        return (self.undo is not None and self.result in (None, "done", "maybe")
                and self.undone not in ("undone", "absent"))

    def as_undo(self) -> Undo:
        """The undo step, its args completed with the ids the result line learnt."""
        return Undo.from_dict(self.undo).with_args(**self.learnt)

    def describe(self) -> str:
        """``seq 3 maybe netbox ip-address-create 10.0.0.5/24``."""
        state = self.result or "no result"
        undone = f", {self.undone}" if self.undone else ""
        return shown(f"seq {self.seq} {state}{undone}: {self.system} {self.action} {self.target}")


@dataclass
class RunJournal:
    """What the journal says about one run."""

    run_id: str
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    recovered: dict[str, Any] | None = None
    locks: list[tuple[str, int]] = field(default_factory=list)
    steps: dict[int, Step] = field(default_factory=dict)
    lines: int = 0
    """How many lines were read: the next line number of its etcd copy."""
    source: str = ""

    def add(self, line: dict[str, Any]) -> None:
        """Take one checked line into account."""
        self.lines += 1
        event = line["event"]
        if event == "start":
            self.start = line
            self.locks += [(str(item["key"]), int(item["concurrency"])) for item in line.get("locks", [])]
        elif event == "lock":
            self.locks.append((str(line["key"]), int(line["concurrency"])))
        elif event == "intent":
            self.steps[line["seq"]] = Step(line["seq"], line["system"], line["action"], line["target"], line["undo"],
                                           time=str(line.get("time") or ""))
        elif event in ("result", "undo") and line["seq"] in self.steps:
            step = self.steps[line["seq"]]
            if event == "result":
                step.result, step.learnt = line["status"], dict(line.get("detail") or {})
            else:
                step.undone = line["status"]
        elif event == "end":
            self.end = line
        elif event == "recovered" and line.get("status") == "done":
            self.recovered = line

    @property
    def pending(self) -> list[Step]:
        """The changes recovery must undo, newest first."""
        return [step for _, step in sorted(self.steps.items(), reverse=True) if step.pending]

    @property
    def needs_recovery(self) -> bool:
        """A real run that died without an end line, or ended with changes not undone; and not recovered since."""
        if self.start is None or self.start.get("dry_run") is True or self.recovered is not None:
            return False
        return self.end is None or bool(self.pending)

    @property
    def owner(self) -> str:
        """``user@host [pid]``, as the run's lock holders are named."""
        start = self.start or {}
        return f"{start.get('user')}@{start.get('host')} [{start.get('pid')}]"


def shown(value: object) -> str:
    """A value read from a journal, for the terminal: control characters (escape sequences) replaced by '?'."""
    return "".join(char if char.isprintable() else "?" for char in str(value))


def checked(data: object, run_id: str | None = None) -> dict[str, Any] | None:
    """A journal line if it has the fields of its event with the right types (of run_id when given), else None."""
    if not isinstance(data, dict) or data.get("event") not in EVENTS or not isinstance(data.get("id"), str):
        return None
    if not RUN_ID.match(data["id"]) or (run_id is not None and data["id"] != run_id):
        return None
    event = data["event"]
    if not all(isinstance(data.get(name), kind) and not isinstance(data.get(name), bool)
               for name, kind in FIELDS.get(event, {}).items()):
        return None
    if event == "intent" and data.get("undo") is not None:
        try:
            Undo.from_dict(data["undo"])
        except UndoError:
            return None
    if event == "start":
        locks = data.get("locks", [])
        if not isinstance(locks, list) or not all(
                isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("concurrency"), int)
                for item in locks):
            return None
    return data


def _parse(text: str, run_id: str | None) -> dict[str, Any] | None:
    try:
        return checked(json.loads(text), run_id)
    except ValueError:
        return None


def read_file(path: Path, run_id: str | None = None) -> dict[str, RunJournal]:
    """The journals of the local audit file (of run_id only when given); lines without event are old records."""
    runs: dict[str, RunJournal] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return runs
    for raw in text.splitlines():
        if run_id is not None and run_id not in raw:
            continue
        line = _parse(raw, run_id)
        if line is not None:
            runs.setdefault(line["id"], RunJournal(line["id"], source=f"audit file {path}")).add(line)
    return runs


def read_etcd(session: Session, run_id: str | None = None) -> dict[str, RunJournal]:
    """The journals kept in etcd (of run_id only when given); foreign lines are skipped, etcd down is a warning."""
    if session.mirror is None:
        return {}
    runs: dict[str, RunJournal] = {}
    try:
        found_lines = session.mirror.runs(run_id)
    except LibclusterError as exc:
        logger.warning("Journals in etcd not read (only this host's audit file is): %s", exc)
        return runs
    for found, lines in found_lines.items():
        run = RunJournal(found, source="etcd")
        for raw in lines:
            line = _parse(raw, found)
            if line is None:
                logger.warning("Skipping a journal line in etcd under run %s: not a journal line of that run",
                               found[:40])
            else:
                run.add(line)
        run.lines = len(lines)  # the next line number, unreadable lines counted
        runs[found] = run
    return runs


def journals(session: Session, run_id: str | None = None) -> dict[str, RunJournal]:
    """Every journal, etcd's copy (with a start line) preferred to the local file's: it has what other hosts wrote."""
    runs = read_file(session.audit.path, run_id)
    runs.update({found: run for found, run in read_etcd(session, run_id).items() if run.start is not None})
    return runs


def alive(run: RunJournal) -> bool | None:
    """Whether the run's process still runs: None when it ran on another host (cannot be checked from here)."""
    start = run.start or {}
    if start.get("host") != socket.gethostname():
        return None
    pid = start.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"cookbook" in cmdline


def lock_state(session: Session, run: RunJournal) -> str:
    """``free``, ``held by the dead run``, ``held by another run`` or ``unknown`` for the run's locks."""
    backend = session.locks.backend
    if backend is None or not run.locks:
        return "none" if not run.locks else "unknown (--no-locks)"
    states = []
    for key, _ in run.locks:
        try:
            holders = backend.holders(key)
        except (LibclusterError, OSError) as exc:
            return f"unknown ({exc})"
        if any(holder.owner == run.owner for holder in holders):
            states.append(f"{key} held by the dead run (until its lease expires)")
        elif holders:
            states.append(f"{key} held by {', '.join(holder.owner for holder in holders)}")
    return shown("; ".join(states) or "free")


def describe(session: Session, run: RunJournal) -> list[str]:
    """The listing lines of one run: who, where, alive, locks, and each change."""
    start = run.start or {}
    state = {True: "alive", False: "dead", None: "unknown (other host)"}[alive(run)]
    ended = f", ended with exit {run.end.get('exit_code')}" if run.end else ""
    lines = [shown(f"{run.run_id} {start.get('cookbook')} by {start.get('user')} on {start.get('host')} pid "
                   f"{start.get('pid')} ({state}{ended}), started {start.get('start')}, from {run.source}"),
             f"  locks: {lock_state(session, run)}"]
    for _, step in sorted(run.steps.items()):
        mark = "to undo" if step.pending else ("no undo" if step.undo is None else "nothing to undo")
        lines.append(f"  {step.describe()} ({mark})")
    return lines


def list_runs(session: Session) -> int:
    """Print the runs that need recovery; exit 0."""
    runs = [run for run in journals(session).values() if run.needs_recovery]
    if not runs:
        print("No run to recover.")
        return 0
    for run in sorted(runs, key=lambda run: str((run.start or {}).get("start"))):
        print("\n".join(describe(session, run)))
    return 0


def recover(session: Session, run_id: str) -> int:
    """Undo the pending changes of run_id (only print the plan in dry-run); the exit code of ``--recover RUN_ID``."""
    if not RUN_ID.match(run_id):
        logger.error("Invalid run id %r: expected the 32 hexadecimal digits of a run (`cookbook --recover` lists them)",
                     run_id[:80])
        return EXIT_NOT_FOUND
    run = journals(session, run_id).get(run_id)
    if run is None or run.start is None:
        logger.error("No journal of run %s in etcd nor in %s", run_id, session.audit.path)
        return EXIT_NOT_FOUND
    if alive(run):
        logger.error("Run %s is still running (pid %s on this host): not recovered", run_id, run.start.get("pid"))
        return EXIT_EXCEPTION
    steps = run.pending
    print("\n".join(describe(session, run)))
    print(f"Plan: undo {len(steps)} change(s), newest first" + ("" if steps else " (nothing to undo)"))
    for step in steps:
        print(f"  undo seq {step.seq}: {shown(step.as_undo().describe())}")
    if session.dry_run:
        print("DRY-RUN: nothing changed")
        return 0
    return _execute(session, run, steps)


def lock_order(run: RunJournal) -> list[tuple[str, int]]:
    """The locks a recovery takes: its own (one recovery of a run at a time), then the run's, resource locks in
    the global order of :mod:`libcluster.resources` (cluster, groups, nodes, instances) so as not to deadlock."""
    from libcluster import resources

    others = sorted({(key, concurrency) for key, concurrency in run.locks if resources.Resource.from_key(key) is None})
    owned = {(resource, concurrency) for key, concurrency in run.locks
             if (resource := resources.Resource.from_key(key)) is not None}
    ordered = [(resource.key, concurrency) for resource, concurrency in sorted(owned)]
    return [(resources.runner_lock(NAME, run.run_id), 1), *others, *ordered]


def _execute(session: Session, run: RunJournal, steps: list[Step]) -> int:
    """Take the run's locks, confirm, undo, and journal it on both runs; the exit code."""
    from libcluster.context import Context
    from libcluster.runner.logs import RunLogFiles

    ctx = Context(session, NAME, audit.new_run_id())
    ctx.changes.fence = no_fence  # undoing is not fenced, as a rollback is not
    start, argv = audit.utc_now(), ["--recover", run.run_id]
    exit_code = EXIT_EXCEPTION
    log_files = RunLogFiles(session.logs_dir, NAME, user=session.user, dry_run=False)
    try:
        with ExitStack() as held:
            wanted = lock_order(run)
            for key, concurrency in wanted:
                held.enter_context(session.locks.acquired(key, concurrency=concurrency))
            ctx.journal.start({**audit.start_record(run_id=ctx.run_id, cookbook=NAME, argv=argv, user=session.user,
                                                    origin=session.origin, dry_run=False, start=start),
                               "recovers": run.run_id, "locks": [{"key": key, "concurrency": concurrency}
                                                                 for key, concurrency in wanted]})
            logger.info("START - recovery of run %s (%s) by %s", run.run_id, shown((run.start or {}).get("cookbook")),
                        ctx.run_id)
            exit_code = _undo(session, ctx, run, steps)
    except LibclusterError as exc:
        logger.error("Run %s not recovered: %s", run.run_id, exc)
    except KeyboardInterrupt:
        logger.error("Recovery of run %s interrupted: run `cookbook --recover %s` again", run.run_id, run.run_id)
        exit_code = EXIT_ROLLBACK_FAILED
    finally:
        record = audit.record(run_id=ctx.run_id, cookbook=NAME, argv=argv, user=session.user, origin=session.origin,
                              dry_run=False, start=start, end=audit.utc_now(), exit_code=exit_code,
                              changes=ctx.changes.as_list())
        try:
            ctx.journal.end({**record, "recovers": run.run_id})
        except LibclusterError as exc:
            logger.error("%s", exc)
        logger.info("END (exit_code=%d) - recovery of run %s", exit_code, run.run_id)
        log_files.close()
    return exit_code


def settle(config: Section, steps: list[Step]) -> None:
    """Wait until no request of a change without a result (or ``maybe``) can still be acted on, so that the undo's
    lookup of it (by name, marker or address) cannot miss a write that lands afterwards."""
    now = audit.utc_now()
    waits = [(datetime.fromisoformat(step.time) - now).total_seconds()
             + request_timeout(config, step.system, (step.undo or {}).get("args") or {})
             for step in steps if step.result in (None, "maybe") and step.time]
    wait = max(waits, default=0.0)
    if wait > 0:
        logger.info("Waiting %.0f s for the requests the run may have sent to be acted on (their timeout) before "
                    "looking them up", wait)
        time.sleep(wait)


def _undo(session: Session, ctx: Context, run: RunJournal, steps: list[Step]) -> int:
    """Confirm, run the undo steps through the recovery's clients, write ``recovered``; 0 or 93.

    The dead run's new lines go to etcd only when its journal came from there (numbered after its lines).
    """
    mirror = session.mirror if run.source == "etcd" else None
    dead = Journal(run.run_id, session.audit, mirror, dry_run=False, next_number=run.lines)
    if steps:
        session.prompter.confirm(f"Undo {len(steps)} change(s) of run {run.run_id}?")
    settle(session.config, steps)
    stack = UndoStack(ctx, recorder=lambda seq, status, error: dead.undo(seq, status, error, ctx.run_id),
                      recheck=lambda undo: request_timeout(session.config, undo.system, undo.args))
    for step in reversed(steps):
        stack.push(step.as_undo(), seq=step.seq, unsure=step.result == "maybe")
    failures = stack.rollback()
    for failure in failures:
        logger.error("%s", failure.describe())
    dead.recovered(ctx.run_id, "partial" if failures else "done")
    if failures:
        return EXIT_ROLLBACK_FAILED
    if mirror is not None:
        try:
            mirror.delete(run.run_id)
        except LibclusterError as exc:
            logger.warning("etcd journal of run %s not deleted: %s", run.run_id, exc)
    logger.info("Run %s recovered: %d change(s) undone", run.run_id, len(steps))
    return 0
