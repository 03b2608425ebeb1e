"""The cookbook API: what a cookbook imports to declare its arguments, its runner, its lock and its exit codes.

A class-API cookbook subclasses :class:`CookbookBase` (arguments, validation) and returns a
:class:`CookbookRunnerBase` (the actions) from ``get_runner()``. A module-API cookbook only
defines ``run(args, ctx)`` and optionally ``argument_parser()``; the runner converts it, so both
go through the same code path.
"""

from __future__ import annotations

import argparse
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libcluster.errors import LibclusterError
from libcluster.locks import check_ttl

if TYPE_CHECKING:
    from libcluster.context import Context

EXIT_SUCCESS = 0
"""The cookbook ran and succeeded (``run()`` returned 0 or None)."""
EXIT_SETUP_FAILED = 1
"""The runner itself could not start the run: bad configuration, log directory or audit log not writable."""
EXIT_ROLLBACK_FAILED = 93
"""``run()`` failed and then ``rollback()`` raised: manual cleanup is needed."""
EXIT_INIT_FAILED = 94
"""``get_runner()`` (validation and preparation) raised."""
EXIT_ARGPARSER_FAILED = 95
"""``argument_parser()`` raised."""
EXIT_ARGS_FAILED = 96
"""The cookbook's arguments did not parse."""
EXIT_INTERRUPTED = 97
"""Interrupted with Ctrl+C; rollback was run."""
EXIT_NOT_FOUND = 98
"""No cookbook by that name, or it cannot be loaded (syntax or import error)."""
EXIT_EXCEPTION = 99
"""``run()`` raised an exception (or the lock could not be acquired)."""
COOKBOOK_FAILURE_CODES = range(1, 90)
"""Codes a cookbook returns for its own failures; 90-99 are reserved for the runner."""

DEFAULT_MAX_CONCURRENCY = 20
"""How many runs of the same cookbook may run at once unless the runner says otherwise."""

_TASK_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*-?[0-9]+$")


class CookbookInitSuccess(Exception):
    """Raise in ``get_runner()`` (or the runner's ``__init__``) to exit 0 before locking and logging.

    For read-only reports that have already printed their result.
    """


class CookbookFailed(LibclusterError):
    """A cookbook called with ``ctx.run_cookbook(..., raises=True)`` exited non-zero."""

    def __init__(self, name: str, exit_code: int) -> None:
        """Record which cookbook failed and its exit code."""
        super().__init__(f"cookbook {name} failed with exit code {exit_code}")
        self.name = name
        self.exit_code = exit_code


@dataclass(frozen=True)
class LockArgs:
    """The automatic lock of a run: key ``NAME[:suffix]``, how many holders at once, and their lease TTL."""

    suffix: str
    """Appended to the cookbook name as ``NAME:suffix``; different suffixes are different locks."""
    concurrency: int
    """Holders allowed at once on the key (1 = exclusive, 0 = unlimited but tracked)."""
    ttl: int | None
    """Lease of the lock in seconds (1..60: how long it outlives a killed run); None takes ``locks.ttl`` (30)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot describe a lock."""
        if self.concurrency < 0:
            raise ValueError(f"LockArgs.concurrency must be >= 0, got {self.concurrency}")
        if self.ttl is not None:
            check_ttl(self.ttl, "LockArgs.ttl")


class ArgparseFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help formatter for cookbooks: docstrings keep their layout and defaults are shown."""


def first_line(text: str | None) -> str:
    """The first non-empty line of a docstring, stripped (a cookbook's or group's title)."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def task_id(value: str) -> str:
    """Argparse type of ``-t/--task-id``: a ticket id such as T12345 or OPS-42."""
    if not _TASK_ID.match(value):
        raise argparse.ArgumentTypeError(f"invalid task id {value!r}: expected a ticket id such as T12345 or OPS-42")
    return value


def reason(value: str) -> str:
    """Argparse type of ``-r/--reason``: a non-empty text without double quotes (it goes into logs and SAL)."""
    if not value.strip() or '"' in value:
        raise argparse.ArgumentTypeError('the reason must not be empty nor contain double quotes (")')
    return value


class CookbookRunnerBase(ABC):
    """The actions of one run: ``run()``, and ``rollback()`` when it fails; also names the run's lock."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Concurrent runs allowed of this cookbook (the automatic lock), unless ``lock_args`` says otherwise."""
    lock_ttl: int | None = None
    """Lease of the automatic lock in seconds (1..60); None takes ``locks.ttl`` of the config (30)."""

    @property
    def runtime_description(self) -> str:
        """Appended to the START/END lines and SAL, e.g. ``for instance vm1.example.org``."""
        return ""

    @property
    def lock_args(self) -> LockArgs:
        """The automatic lock: override to lock per resource (suffix) or with another concurrency."""
        return LockArgs(suffix="", concurrency=self.max_concurrency, ttl=self.lock_ttl)

    @abstractmethod
    def run(self) -> int | None:
        """Do the work; return 0 or None on success, 1..89 on failure (then ``rollback()`` is called)."""

    def rollback(self) -> None:  # noqa: B027 - optional: most runners have nothing to undo
        """Undo what a failed or interrupted ``run()`` left behind; by default nothing."""


class CookbookBase(ABC):
    """A cookbook: its title (first line of the docstring), owner team, arguments, and how to build its runner.

    ``get_runner()`` validates and prepares, and must not change anything: changes happen in ``run()``.
    """

    owner_team: str = "unowned"
    """The team answering for the cookbook; ``unowned`` inherits the group's ``__owner_team__``."""
    argument_task_required: bool | None = None
    """True adds a required ``-t/--task-id``, False an optional one (default ""), None none."""
    argument_reason_required: bool | None = None
    """True adds a required ``-r/--reason``, False an optional one (default ""), None none."""

    def __init__(self, ctx: Context) -> None:
        """Keep the run's context; ``get_runner()`` hands it to the runner."""
        self.ctx = ctx

    @property
    def title(self) -> str:
        """One line shown in listings and menus: the first line of the class docstring."""
        return first_line(type(self).__doc__)

    def argument_parser(self) -> argparse.ArgumentParser:
        """The cookbook's arguments; the default has none and shows the docstring as help."""
        import inspect

        return argparse.ArgumentParser(description=inspect.cleandoc(type(self).__doc__ or ""),
                                       formatter_class=ArgparseFormatter)

    @abstractmethod
    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        """Validate the parsed arguments and return the runner; raise CookbookInitSuccess to stop here."""
