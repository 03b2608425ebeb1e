"""One run of one cookbook: arguments, runner, lock, START, run, rollback, END, SAL and the audit journal.

Right after the lock the journal's ``start`` line is written (fsynced) and the START announced; when
``run()`` fails, the cookbook's ``rollback()`` runs, then the run's undo stack (``ctx.undo``); the
``end`` line is the run's record. The task id (``-t``) goes into both lines, the START/END lines (and SAL)
and, through ``ctx.task_id``, the change message of every NetBox write. Exit codes follow
:mod:`libcluster.cookbook`: 95/96 for argument errors, 94 when ``get_runner()`` fails (CookbookInitSuccess
exits 0 before any lock or START line), 97 on Ctrl+C, 99 on an exception, 93 when rollback fails or leaves
something behind (one ERROR line "left behind: KIND NAME (id ID): ERROR" per object), otherwise what
``run()`` returned. Nested runs
(``ctx.run_cookbook``) go through the same path, share the caller's log files and take their own lock.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
from dataclasses import dataclass

from libcluster import audit, redact
from libcluster.changes import no_fence
from libcluster.context import Context, Session
from libcluster.cookbook import (
    EXIT_ARGPARSER_FAILED,
    EXIT_ARGS_FAILED,
    EXIT_EXCEPTION,
    EXIT_INIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_ROLLBACK_FAILED,
    EXIT_SETUP_FAILED,
    CookbookBase,
    CookbookInitSuccess,
    CookbookRunnerBase,
    reason,
    task_id,
)
from libcluster.journal import JournalError
from libcluster.resources import runner_lock
from libcluster.runner import discovery
from libcluster.runner.logs import RunLogFiles

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How ``run()`` (and rollback) ended."""

    exit_code: int
    raised: bool = False
    interrupted: bool = False
    left_behind: bool = False
    """Undo steps failed or were not run: the run stays recoverable (its etcd journal is kept)."""


def prepare_parser(cookbook: CookbookBase, parser: argparse.ArgumentParser, name: str, owner: str) -> None:
    """Name the cookbook in usage, show its owner, and add the -t/-r tunables it asks for."""
    parser.prog = f"cookbook [GLOBAL_ARGS] {name}"
    parser.epilog = "\n\n".join(part for part in (parser.epilog, f"Cookbook owner team: {owner}") if part)
    if cookbook.argument_task_required is not None:
        parser.add_argument("-t", "--task-id", type=task_id, required=cookbook.argument_task_required,
                            default=argparse.SUPPRESS, help="the ticket this run belongs to, e.g. T12345")
    if cookbook.argument_reason_required is not None:
        parser.add_argument("-r", "--reason", type=reason, required=cookbook.argument_reason_required,
                            default=argparse.SUPPRESS, help="why this is being done (goes into the logs and SAL)")


def register_secret_args(argv: list[str], args: argparse.Namespace) -> None:
    """Mask from now on, everywhere, the values of secret-looking arguments (``--root-password X``)."""
    for value in audit.secret_values(argv):
        redact.register(value)
    for key, value in vars(args).items():
        if redact.is_secret_key(key):
            redact.register(value)


def _run_runner(runner: CookbookRunnerBase, ctx: Context) -> Outcome:
    name = ctx.name
    value: object
    try:
        try:
            value, how = runner.run(), "returned"
        except SystemExit as exc:
            value, how = exc.code, "exited with SystemExit"
        except KeyboardInterrupt:
            logger.error("Ctrl+C pressed: interrupting cookbook %s", name)
            value, how = EXIT_INTERRUPTED, "interrupted"
        except Exception as exc:
            logger.error("Exception raised while running cookbook %s: %s: %s", name, type(exc).__name__, exc)
            logger.debug("Traceback of the exception in %s", name, exc_info=True)
            value, how = EXIT_EXCEPTION, "raised"
    except KeyboardInterrupt:  # pressed again while logging the first failure
        value, how = EXIT_INTERRUPTED, "interrupted"
    outcome = Outcome(0 if value is None else EXIT_EXCEPTION, raised=how == "raised",
                      interrupted=how == "interrupted")
    if isinstance(value, int) and not isinstance(value, bool):
        outcome.exit_code = value
    elif value is not None:
        logger.error("Cookbook %s %s %r instead of an exit code", name, how, value)
        outcome.raised = True
    if outcome.exit_code:
        _rollback(runner, ctx, outcome)
    return outcome


def _rollback(runner: CookbookRunnerBase, ctx: Context, outcome: Outcome) -> None:
    """The cookbook's rollback(), then the undo stack in reverse; exit 93 names what is left behind."""
    name = ctx.name
    logger.info("Running rollback of cookbook %s (exit_code=%d)", name, outcome.exit_code)
    ctx.changes.fence = no_fence  # putting things back is not fenced: a run whose lock is lost still rolls back
    try:
        runner.rollback()
    except KeyboardInterrupt:
        logger.error("Rollback of cookbook %s interrupted: manual cleanup may be needed", name)
        outcome.exit_code = EXIT_ROLLBACK_FAILED
    except Exception as exc:
        logger.error("Rollback of cookbook %s failed: %s: %s (manual cleanup may be needed)", name,
                     type(exc).__name__, exc)
        logger.debug("Traceback of the rollback failure in %s", name, exc_info=True)
        outcome.exit_code = EXIT_ROLLBACK_FAILED
    try:
        failures = ctx.undo.rollback()
    except KeyboardInterrupt:
        logger.error("Undo of the changes of %s interrupted: `cookbook --recover %s` undoes the rest", name,
                     ctx.run_id)
        outcome.exit_code, outcome.left_behind = EXIT_ROLLBACK_FAILED, True
        return
    for failure in failures:
        logger.error("%s", failure.describe())
    if failures:
        logger.error("Rollback of cookbook %s left %d object(s) behind: `cookbook --recover %s` retries", name,
                     len(failures), ctx.run_id)
        outcome.exit_code, outcome.left_behind = EXIT_ROLLBACK_FAILED, True


def _status(outcome: Outcome) -> str:
    if outcome.exit_code == 0:
        return "PASS"
    return "ERROR" if outcome.raised or outcome.interrupted else "FAIL"


def run(session: Session, name: str, argv: list[str], parent: Context | None = None) -> int:
    """Run cookbook name with its arguments argv; return the exit code (never raises but KeyboardInterrupt)."""
    session.run_nested = run
    try:
        loaded = discovery.load(session.base_dirs, name)
    except (discovery.CookbookNotFound, discovery.CookbookLoadError) as exc:
        logger.error("%s", exc)
        return EXIT_NOT_FOUND
    ctx = Context(session, loaded.name, audit.new_run_id(), parent)
    try:
        cookbook = loaded.cls(ctx)
        parser = cookbook.argument_parser()
        prepare_parser(cookbook, parser, loaded.name, loaded.owner_team)
    except Exception as exc:
        logger.error("Unable to get the argument parser of cookbook %s: %s: %s", loaded.name, type(exc).__name__, exc)
        logger.debug("Traceback of argument_parser() of %s", loaded.name, exc_info=True)
        return EXIT_ARGPARSER_FAILED
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):  # a usage error quotes the bad value: it may be a secret
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else EXIT_ARGS_FAILED
    finally:
        sys.stderr.write(redact.redact(errors.getvalue()))
    for tunable, wanted in (("task_id", cookbook.argument_task_required),
                            ("reason", cookbook.argument_reason_required)):
        if wanted is not None and not hasattr(args, tunable):
            setattr(args, tunable, "")  # an optional tunable not given (a "" default would go through its type)
    ctx.task_id = getattr(args, "task_id", "")
    register_secret_args(argv, args)
    if parent is not None:
        return _run_logged(session, ctx, cookbook, args, argv)
    try:
        session.log_files = RunLogFiles(session.logs_dir, loaded.name, user=session.user, dry_run=session.dry_run)
    except OSError as exc:
        logger.error("Cannot write the logs of %s under %s: %s", loaded.name, session.logs_dir, exc)
        return EXIT_SETUP_FAILED
    try:
        return _run_logged(session, ctx, cookbook, args, argv)
    finally:
        session.log_files.close()
        session.log_files = None


def _run_logged(session: Session, ctx: Context, cookbook: CookbookBase, args: argparse.Namespace,
                argv: list[str]) -> int:
    start, started = audit.utc_now(), time.monotonic()
    parent = ctx.parent.run_id if ctx.parent else None

    def finish(exit_code: int, left_behind: bool = False) -> int:
        session.results[ctx.name] = exit_code
        record = audit.record(run_id=ctx.run_id, cookbook=ctx.name, argv=argv, user=session.user,
                              origin=session.origin, dry_run=session.dry_run, start=start, end=audit.utc_now(),
                              exit_code=exit_code, changes=ctx.changes.as_list(), parent=parent,
                              task_id=ctx.task_id)
        try:
            ctx.journal.end(record, keep_mirror=left_behind)
        except JournalError as exc:
            logger.error("%s", exc)
        logger.debug("__COOKBOOK_STATS__:name=%s,exit_code=%d,duration=%.3f", ctx.name, exit_code,
                     time.monotonic() - started)
        return exit_code

    try:
        runner = cookbook.get_runner(args)
    except CookbookInitSuccess:
        return 0
    except KeyboardInterrupt:
        logger.error("Ctrl+C pressed while preparing cookbook %s", ctx.name)
        return _interrupted(ctx, finish(EXIT_INTERRUPTED))
    except Exception as exc:
        logger.error("Unable to prepare cookbook %s: %s: %s", ctx.name, type(exc).__name__, exc)
        logger.debug("Traceback of get_runner() of %s", ctx.name, exc_info=True)
        return finish(EXIT_INIT_FAILED)
    try:
        description = runner.runtime_description
    except Exception:
        logger.warning("Unable to get the runtime description of %s, using none", ctx.name, exc_info=True)
        description = ""
    suffix = (f" {description}" if description else "") + (f" ({ctx.task_id})" if ctx.task_id else "")
    try:
        lock_args = runner.lock_args
        lock_key = runner_lock(ctx.name, lock_args.suffix)
        with session.locks.acquired(lock_key, concurrency=lock_args.concurrency, ttl=lock_args.ttl), ctx.until_end:
            taken = not session.dry_run and session.locks.backend is not None
            held = [{"key": lock_key, "concurrency": lock_args.concurrency}] if taken else []
            ctx.journal.start({**audit.start_record(run_id=ctx.run_id, cookbook=ctx.name, argv=argv, user=session.user,
                                                    origin=session.origin, dry_run=session.dry_run, start=start,
                                                    parent=parent, task_id=ctx.task_id), "locks": held})
            _announce(session, ctx, f"START - Cookbook {ctx.name}{suffix}")
            outcome = _run_runner(runner, ctx)
    except KeyboardInterrupt:
        logger.error("Ctrl+C pressed while waiting for the lock of cookbook %s", ctx.name)
        return _interrupted(ctx, finish(EXIT_INTERRUPTED))
    except Exception as exc:
        logger.error("Cookbook %s not run: %s", ctx.name, exc)
        logger.debug("Traceback of the lock failure of %s", ctx.name, exc_info=True)
        return finish(EXIT_EXCEPTION)
    _announce(session, ctx, f"END ({_status(outcome)}) - Cookbook {ctx.name} (exit_code={outcome.exit_code}){suffix}")
    exit_code = finish(outcome.exit_code, outcome.left_behind)
    return _interrupted(ctx, exit_code) if outcome.interrupted else exit_code


def _interrupted(ctx: Context, exit_code: int) -> int:
    """After Ctrl+C: a nested run passes the interruption on to its caller, a top-level run returns its code."""
    if ctx.parent is not None:
        raise KeyboardInterrupt
    return exit_code


def _announce(session: Session, ctx: Context, line: str) -> None:
    logger.info(line)
    if session.sal is not None and not session.dry_run:
        session.sal.send(line)
