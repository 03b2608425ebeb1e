"""The journal of a real run for the benchmarks: what a cookbook run pays for each write it makes.

A run journals each write (intent before, result after) to the audit file, fsynced, and to etcd when its
locks are there. The benchmarks do the same, into a file of their own beside the configured audit log (same
file system) and under a run id of their own in etcd; both are removed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from libcluster import audit, config, journal, locks
from libcluster.changes import ChangeLog


@contextmanager
def changelog(root: config.Section, *, enabled: bool = True) -> Iterator[ChangeLog]:
    """A ChangeLog journaling like a run of the cookbook configured by root (none when not enabled)."""
    if not enabled:
        yield ChangeLog(dry_run=False)
        return
    run_id = audit.new_run_id()
    path = Path(audit.path_from_config(root)).with_name(f"bench-journal-{run_id}.jsonl")
    service = locks.from_config(root, owner=f"bench [{os.getpid()}]", dry_run=False)
    lines = journal.Journal(run_id, audit.AuditLog(path), journal.mirror_for(service), dry_run=False)
    try:
        yield ChangeLog(dry_run=False, journal=lines)
    finally:
        lines.forget()
        path.unlink(missing_ok=True)


def describe(changes: ChangeLog) -> str:
    """Where the benchmark journals, for its result file."""
    lines = changes.journal
    if lines is None:
        return "journal: none (--no-journal)"
    return f"journal: audit file (fsynced){' + etcd' if lines.mirror is not None else ''}, as a real run"
