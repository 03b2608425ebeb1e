"""The one core behind every front door: commands, permissions, approvals, the queue and the runs.

A front door hands :meth:`Chatops.handle` the text of a command (``list sre``, ``-d NAME ARGS``,
``approve ID``...), who sent it, where, and a sink for the run's later messages; it gets back the
immediate reply. A run request is split with shell rules (never given to a shell), refused early
(control characters, unknown cookbook, no right, limits), then checked by the cookbook's own
parser; a real run of a cookbook needing approval waits for another person's approval; then it
waits in one queue for a slot and runs as a ``cookbook`` subprocess.

``status`` and ``log`` answer known people only, about the runs they may see: their own, those
asked in the channel they ask from, and those of cookbooks they may approve.
"""

from __future__ import annotations

import collections
import logging
import re
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from libcluster import audit, redact
from libcluster.chatops import runs
from libcluster.chatops.feed import Feed, Sink
from libcluster.chatops.permissions import Identity, Policy
from libcluster.chatops.runs import Door, Run, RunState
from libcluster.chatops.settings import ChatopsSettings, Person
from libcluster.runner import catalog

logger = logging.getLogger(__name__)

CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters refused anywhere in a request: NUL, newlines and other control characters (tab is allowed)."""
IMPORTANT = re.compile(r"^(DRY-RUN )?(START|END|DONE) ")
"""Output lines never skipped when a run prints faster than the chat takes: the runner's START/END lines."""
KEEP_FINISHED = 200
"""Finished runs kept for status and log."""
VERBS = ("help", "list", "status", "log", "cancel", "approve", "deny")
"""First words that are commands, not cookbook names."""


@dataclass
class Reply:
    """The immediate answer to a command; public ones are shown to the whole channel (Slack in_channel)."""

    lines: list[str]
    public: bool = False


class Chatops:
    """Permissions, approvals, the queue and the runs, shared by the IRC bot and the slash-command endpoint."""

    def __init__(self, settings: ChatopsSettings, config_path: Path, base_dirs: list[Path],
                 command: list[str] | None = None) -> None:
        """Serve the cookbooks of base_dirs, run as ``command -c config_path ...`` (default: ``cookbook``)."""
        self.settings = settings
        self.policy = Policy(settings)
        self.config_path = config_path
        self.base_dirs = base_dirs
        self.command = command or runs.cookbook_command()
        self.runs: dict[str, Run] = {}
        self._queue: collections.deque[Run] = collections.deque()
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.RLock()
        self._closing = False

    # --- commands ---------------------------------------------------------------------------------------------

    def handle(self, text: str, identity: Identity, channel: str, door: Door, sink: Sink) -> Reply:
        """Answer one command from identity in channel; sink receives the later messages of a run it starts."""
        if CONTROL.search(text):
            return Reply(["refused: control characters (NUL, newlines...) are not allowed in a request"])
        try:
            words = shlex.split(text)
        except ValueError as exc:
            return Reply([f"refused: cannot split the request with shell rules: {exc}"])
        verb = words[0] if words else "help"
        if verb == "help":
            return self._help(door)
        if verb == "list":
            return self._list(words[1:], identity, door)
        person = self.policy.person(identity)
        if isinstance(person, str):
            logger.info("Refused %r from %s in %s: %s", redact.redact(text), identity, channel, person)
            return Reply([f"refused: {person}"])
        if verb == "status":
            return self._status(words[1:], person, channel)
        if verb in VERBS:
            if len(words) != 2:
                return Reply([f"usage: {door.cookbook} {verb} ID"])
            with self._lock:
                run = self.runs.get(words[1])
                if run is None or (verb == "log" and not self._may_see(run, person, channel)):
                    return Reply([f"no run {words[1]} you may see (`{door.cookbook} status` lists the active "
                                  "ones)"])
                if verb == "approve":
                    return self._approve(run, person, identity)
                return {"log": self._log, "cancel": self._cancel, "deny": self._deny}[verb](run, person)
        return self._submit(words, person, identity, channel, door, sink)

    def _help(self, door: Door) -> Reply:
        c = door.cookbook
        return Reply([
            f"{c} list [PREFIX]  - the cookbooks and what you may do with them",
            f"{c} [-d] NAME ARGS...  - run a cookbook (-d: dry-run, changes nothing); {c} NAME -h shows its help",
            f"{c} status [ID]  - one run, or the active runs",
            f"{c} log ID  - the last lines of a run's output and where its full log is",
            f"{c} cancel ID  - interrupt a run (it rolls back) or take it out of the queue",
            f"{door.approve} ID / {door.deny} ID  - approve or deny someone else's real run that waits for approval",
        ])

    def _list(self, words: list[str], identity: Identity, door: Door) -> Reply:
        prefix = words[0] if words else ""
        person = self.policy.person(identity)
        found = [node for node in self._tree().cookbooks() if node.name.startswith(prefix)]
        if not found:
            return Reply([f"no cookbook starts with {prefix!r}"])
        lines = []
        for node in found[:door.max_lines]:
            if isinstance(person, str):
                right = ""
            elif not self.policy.refusal_to_run(person, node.name, dry_run=False):
                right = " [run" + (", needs approval]" if self.policy.needs_approval(node.name, dry_run=False) else "]")
            elif not self.policy.refusal_to_run(person, node.name, dry_run=True):
                right = " [dry-run only]"
            else:
                right = " [no access]"
            lines.append(f"{node.name}{right}: {node.title}" if node.title else f"{node.name}{right}")
        if len(found) > door.max_lines:
            lines.append(f"... and {len(found) - door.max_lines} more: give a longer prefix")
        return Reply(lines)

    def _tree(self) -> catalog.Node:
        """The cookbooks as `cookbook -l` lists them (read statically, cached per file)."""
        return catalog.scan(self.base_dirs, catalog.default_cache_path(self.base_dirs))

    def _may_see(self, run: Run, person: Person, channel: str) -> bool:
        """Whether person may see run's status and log: theirs, asked where they ask from, or theirs to approve."""
        return (person.name == run.requester or channel == run.channel
                or self.policy.may_approve(person, run.cookbook))

    def _status(self, words: list[str], person: Person, channel: str) -> Reply:
        with self._lock:
            if words:
                run = self.runs.get(words[0])
                visible = run is not None and self._may_see(run, person, channel)
                return Reply([self._describe(run) if run and visible else f"no run {words[0]} you may see"])
            active = [run for run in self.runs.values()
                      if run.state.active and self._may_see(run, person, channel)]
            return Reply([self._describe(run) for run in active] or ["no active runs you may see"])

    @staticmethod
    def _describe(run: Run) -> str:
        approved = f", approved by {run.approver}" if run.approver else ""
        who = f"requested by {run.requester} in {run.channel}{approved}"
        since = f", {time.time() - (run.started or run.created):.0f}s" if run.state.active else ""
        state = run.outcome() if run.exit_code is not None else f"{run.state}" + (f" ({run.note})" if run.note else "")
        return f"[{run.id}] {state}{since}: {run.command}, {who}"

    def _log(self, run: Run, person: Person) -> Reply:
        if run.log_path is None or not run.log_path.exists():
            return Reply([f"[{run.id}] has no output yet ({run.state})"])
        lines = run.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = [line for line in lines if not line.startswith("# ")][-run.door.max_lines:]
        return Reply([f"[{run.id}] full log: {run.log_path} ({len(lines)} lines), last {len(tail)}:",
                      *(f"[{run.id}] {line}" for line in tail)])

    def _may_act_on(self, run: Run, person: Person) -> bool:
        return person.name == run.requester or self.policy.may_approve(person, run.cookbook)

    def _cancel(self, run: Run, person: Person) -> Reply:
        if not self._may_act_on(run, person):
            return Reply([f"refused: only {run.requester} or someone who may approve {run.cookbook} can cancel it"])
        if run.state == RunState.RUNNING and run.process is not None:
            if not run.process.interrupt():
                return Reply([f"[{run.id}] is ending already"])
            run.move(RunState.CANCELLING)
            run.cancelled_by = person.name
            logger.info("Run %s interrupted by %s", run.id, person.name)
            run.feed.add(f"[{run.id}] interrupted by {person.name}: the cookbook rolls back", important=True)
            return Reply([f"[{run.id}] interrupt sent (SIGINT): it rolls back, its result follows"], public=True)
        if run.state == RunState.CANCELLING:
            return Reply([f"[{run.id}] is already being interrupted by {run.cancelled_by}: wait for its rollback"])
        if not run.state.active:
            return Reply([f"[{run.id}] already ended: {run.outcome()}"])
        run.cancelled_by = person.name
        self._end(run, RunState.CANCELLED, f"cancelled by {person.name} before it ran")
        return Reply([f"[{run.id}] cancelled: not run"], public=True)

    def _approve(self, run: Run, person: Person, identity: Identity) -> Reply:
        if run.state != RunState.AWAITING_APPROVAL:
            return Reply([f"[{run.id}] is not waiting for an approval ({run.state})"])
        if person.name == run.requester:
            return Reply([f"refused: {person.name} asked for [{run.id}]; someone else with the approve right must "
                          "approve it"])
        if not self.policy.may_approve(person, run.cookbook):
            return Reply([f"refused: {person.name} may not approve {run.cookbook}"])
        if not self.policy.proves_account(person, identity):
            logger.warning("Approval of %s refused: %s is not an account identity of %s", run.id, identity,
                           person.name)
            return Reply([f"refused: approving needs an identity proving an account ({identity} does not): log in "
                          "(e.g. PASS with your login on IRC) or use the slash command"])
        run.approver = person.name
        self._stop_timer(run)
        logger.info("Run %s approved by %s", run.id, person.name)
        run.feed.add(f"[{run.id}] approved by {person.name}", important=True)
        self._enqueue(run)
        return Reply([f"[{run.id}] approved: {run.command} ({run.state})"], public=True)

    def _deny(self, run: Run, person: Person) -> Reply:
        if run.state != RunState.AWAITING_APPROVAL:
            return Reply([f"[{run.id}] is not waiting for an approval ({run.state})"])
        if not self._may_act_on(run, person):
            return Reply([f"refused: {person.name} may not approve or deny {run.cookbook}"])
        self._end(run, RunState.DENIED, f"denied by {person.name}")
        return Reply([f"[{run.id}] denied: not run"], public=True)

    # --- run requests -----------------------------------------------------------------------------------------

    def _submit(self, words: list[str], person: Person, identity: Identity, channel: str, door: Door,
                sink: Sink) -> Reply:
        dry_run = bool(words) and words[0] in ("-d", "--dry-run")
        words = words[1:] if dry_run else words
        if not words or words[0].startswith("-"):
            option = f"unknown option {words[0]}: " if words else ""
            return Reply([f"{option}usage: {door.cookbook} [-d] NAME ARGS... ({door.help} for more)"])
        name, args = words[0], words[1:]
        node = self._tree().find(name)  # canonical names only: an alias (NAME.Class, a path) escapes no pattern
        if node is None or not name:
            return Reply([f"no cookbook {name} (`{door.cookbook} list` shows them)"])
        if node.group:
            return Reply([f"{name} is a group of cookbooks: `{door.cookbook} list {name}` shows them"])
        refusal = self.policy.refusal_to_run(person, name, dry_run=dry_run)
        if refusal:
            logger.info("Refused %s from %s (%s) in %s: %s", name, person.name, identity, channel, refusal)
            return Reply([f"refused: {refusal}"])
        for value in audit.secret_values(args):  # keep secrets given as arguments out of every message
            redact.register(value)
        with self._lock:
            problem = self._over_limit(person)
            if problem:
                return Reply([f"refused: {problem}"])
            run_id = self._new_id()
            run = Run(run_id, name, args, dry_run, person.name, str(identity), channel,
                      Feed(sink, max_pending=self.settings.max_pending_lines,
                           skipped_note=lambda count: f"[{run_id}] ... {count} lines skipped: `{door.cookbook} log "
                           f"{run_id}` shows the end, the log file has them all"),
                      door)
            self.runs[run_id] = run
            self._prune()
        logger.info("Run %s: %s asked for %s from %s in %s", run_id, person.name, run.command, identity, channel)
        threading.Thread(target=self._check, args=(run,), name=f"chatops-check-{run_id}", daemon=True).start()
        mode = " (dry-run)" if dry_run else ""
        return Reply([f"[{run_id}] accepted{mode}: {run.command}, requested by {person.name}"], public=True)

    def _over_limit(self, person: Person) -> str:
        if self._closing:
            return "the chatops service is stopping"
        mine = sum(1 for run in self.runs.values() if run.requester == person.name and run.state.active)
        if mine >= self.settings.max_per_user:
            return f"{person.name} has {mine} runs not finished yet (limit {self.settings.max_per_user})"
        waiting = sum(1 for run in self.runs.values() if run.state.waiting)
        if waiting >= self.settings.max_queued:
            return f"{waiting} runs are waiting already (limit {self.settings.max_queued}): try again later"
        return ""

    def _new_id(self) -> str:
        while (run_id := secrets.token_hex(3)) in self.runs:
            pass
        return run_id

    def _prune(self) -> None:
        finished = [run_id for run_id, run in self.runs.items() if not run.state.active]
        for run_id in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self.runs[run_id]

    def _check(self, run: Run) -> None:
        """Check the arguments with the cookbook's parser when an approval will be asked (or help is), then go on.

        Other runs go straight to the queue: the runner parses the arguments first thing, so invalid
        ones fail the same way (exit 96, argparse's message in the channel) before anything happens,
        and the request saves a Python start-up.
        """
        needs_approval = self.policy.needs_approval(run.cookbook, dry_run=run.dry_run)
        if not needs_approval and not {"-h", "--help"} & set(run.args):
            with self._lock:
                if run.state == RunState.CHECKING:
                    self._enqueue(run)
            return
        started = time.monotonic()
        result = runs.check_arguments(self.config_path, run.cookbook, run.args)
        logger.debug("Run %s: arguments checked in %.3fs: exit_code=%d", run.id, time.monotonic() - started,
                     result.exit_code)
        with self._lock:
            if run.state != RunState.CHECKING:
                return
            if result.help:
                lines = result.message.splitlines()
                shown = [f"[{run.id}] {line}" for line in lines[:run.door.max_lines] if line.strip()]
                self._end(run, RunState.HELP, "help shown, nothing run", shown)
            elif result.exit_code:
                shown = [f"[{run.id}] {line}" for line in result.message.splitlines()[-2:] if line.strip()]
                self._end(run, RunState.REJECTED, f"not run (exit_code={result.exit_code})", shown)
            elif needs_approval:
                run.move(RunState.AWAITING_APPROVAL)
                timer = threading.Timer(self.settings.approval_timeout, self._expire, args=(run,))
                timer.daemon = True
                self._timers[run.id] = timer
                timer.start()
                run.feed.add(f"[{run.id}] {run.cookbook} needs an approval: someone else with the approve right "
                             f"types `{run.door.approve} {run.id}` (or `{run.door.deny} {run.id}`)", important=True)
            else:
                self._enqueue(run)

    def _expire(self, run: Run) -> None:
        with self._lock:
            if run.state == RunState.AWAITING_APPROVAL:
                self._end(run, RunState.EXPIRED, f"no approval within {self.settings.approval_timeout:.0f}s, not run")

    def _stop_timer(self, run: Run) -> None:
        timer = self._timers.pop(run.id, None)
        if timer is not None:
            timer.cancel()

    def _enqueue(self, run: Run) -> None:
        run.move(RunState.QUEUED)
        self._queue.append(run)
        self._schedule()

    def _schedule(self) -> None:
        running = sum(1 for run in self.runs.values() if run.state.started)
        while self._queue and running < self.settings.max_running and not self._closing:
            run = self._queue.popleft()
            if run.state == RunState.QUEUED:
                self._start(run)
                running += 1

    def _start(self, run: Run) -> None:
        run.move(RunState.RUNNING)
        run.started = time.time()
        run.log_path = self.settings.state_dir / "runs" / f"{run.id}.log"
        argv = [*self.command, "-c", str(self.config_path), "-y", *(["-d"] if run.dry_run else []), "--",
                run.cookbook, *run.args]
        try:
            run.process = runs.RunProcess(argv, runs.run_environment(run), run.log_path,
                                          on_line=lambda line: self._output(run, line),
                                          on_exit=lambda code: self._exited(run, code))
        except OSError as exc:
            logger.error("Run %s: cannot start %s: %s", run.id, argv[0], exc)
            self._end(run, RunState.FAILED, f"cannot start the cookbook runner: {exc.strerror}")
            return
        logger.info("Run %s started (pid %d): %s", run.id, run.process.popen.pid, shlex.join(audit.redact_argv(argv)))

    @staticmethod
    def _output(run: Run, line: str) -> None:
        logger.debug("Run %s: %s", run.id, line)
        run.feed.add(f"[{run.id}] {line}", important=bool(IMPORTANT.match(line)))

    def _exited(self, run: Run, exit_code: int) -> None:
        with self._lock:
            run.exit_code, run.ended = exit_code, time.time()
            run.move(RunState.PASSED if exit_code == 0 else RunState.CANCELLED if run.cancelled_by
                     else RunState.FAILED)
            logger.info("Run %s ended: %s", run.id, run.outcome())
            run.feed.close([self._summary(run)])
            self._schedule()

    def _summary(self, run: Run) -> str:
        took = f" in {run.ended - run.started:.1f}s" if run.started and run.ended else ""
        approved = f", approved by {run.approver}" if run.approver else ""
        cancelled = f", interrupted by {run.cancelled_by}" if run.cancelled_by and run.started else ""
        log = f"; `{run.door.cookbook} log {run.id}` shows its output" if run.log_path else ""
        if run.process is not None and run.process.log.error:
            log = f"; its log {run.log_path} is incomplete ({run.process.log.error})"
        return (f"[{run.id}] {run.outcome()}: {run.command}{took}, requested by {run.requester}{approved}"
                f"{cancelled}{log}")

    def _end(self, run: Run, state: RunState, note: str, lines: list[str] | None = None) -> None:
        """End a run that did not (or could not) run the cookbook."""
        run.move(state)
        run.note, run.ended = note, time.time()
        self._stop_timer(run)
        logger.info("Run %s ended without running: %s (%s)", run.id, state, note)
        run.feed.close([*(lines or []), f"[{run.id}] {state}: {run.command}: {note}"])

    # --- service life -----------------------------------------------------------------------------------------

    def close(self, grace: float = 60.0) -> None:
        """Stop: take no more requests, end the waiting ones, interrupt the running ones and wait for their rollback."""
        with self._lock:
            self._closing = True
            for run in list(self.runs.values()):
                if run.state.waiting:
                    self._end(run, RunState.CANCELLED, "the chatops service is stopping")
                elif run.state == RunState.RUNNING and run.process is not None:
                    run.cancelled_by = "the chatops service (stopping)"
                    run.process.interrupt()
            running = [run.process for run in self.runs.values() if run.process is not None and run.ended is None]
        if running:
            logger.info("Waiting up to %.0fs for %d interrupted runs to roll back", grace, len(running))
        deadline = time.monotonic() + grace
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
        for run in list(self.runs.values()):
            run.feed.join(max(0.0, deadline - time.monotonic()))
