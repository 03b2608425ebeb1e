"""Where a run's log lines go: stderr for the operator, and per-cookbook INFO and DEBUG files for the record.

Every handler masks secrets (RedactingFilter). File lines carry the timestamp, a ``DRY-RUN``
marker in dry-run, the real operator (SUDO_USER) and the pid.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from libcluster.redact import RedactingFilter

LOG_MAX_BYTES = 10 * 1024 * 1024
"""Size at which a log file rotates."""
LOG_BACKUP_COUNT = 100
"""Rotated files kept per log (about 1 GB each): the logs are part of the audit trail."""
QUIET_LOGGERS = ("urllib3", "requests")
"""Third-party loggers limited to warnings: their debug lines are noise."""
FILE_ONLY_LOGGERS = ("cumin",)
"""Loggers whose records below WARNING go to the log files only: the operator sees our own lines about them."""


class FileOnlyFilter(logging.Filter):
    """Drop records of FILE_ONLY_LOGGERS below WARNING (for the console handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is a file-only logger's INFO or DEBUG line."""
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == name or record.name.startswith(f"{name}.") for name in FILE_ONLY_LOGGERS)


class ConsoleFormatter(logging.Formatter):
    """Operator-facing lines: the message, with the level for warnings and errors, DRY-RUN marked."""

    def __init__(self, *, dry_run: bool) -> None:
        """Prefix every line with ``DRY-RUN`` (and a space) in dry-run."""
        super().__init__()
        self.marker = "DRY-RUN " if dry_run else ""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record for stderr."""
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        return f"{self.marker}{level}{super().format(record)}"


def log_paths(base_dir: str | Path, name: str) -> tuple[Path, Path]:
    """The INFO and DEBUG log files of a cookbook: ``sre.ganeti.makevm`` -> ``sre/ganeti/makevm{,-extended}.log``."""
    *groups, leaf = name.split(".")
    folder = Path(base_dir).joinpath(*groups)
    return folder / f"{leaf}.log", folder / f"{leaf}-extended.log"


class SizeRotatedFile(logging.FileHandler):
    """A log file rotated by size by the standard library's RotatingFileHandler (LOG_BACKUP_COUNT files kept),
    which is imported only when the file is full: logging.handlers brings pickle, socket and queue, and a run
    that rotates nothing should not pay for them at start-up."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write record, after rotating the file if it has reached LOG_MAX_BYTES."""
        stream = self.stream
        if stream is not None and stream.tell() >= LOG_MAX_BYTES:
            stream.close()
            self._rotate()
            self.stream = self._open()
        super().emit(record)

    def _rotate(self) -> None:
        """NAME -> NAME.1 -> NAME.2 ..., the oldest dropped: RotatingFileHandler.doRollover on the closed file."""
        import logging.handlers

        rotating = logging.handlers.RotatingFileHandler(self.baseFilename, maxBytes=LOG_MAX_BYTES,
                                                        backupCount=LOG_BACKUP_COUNT, encoding=self.encoding,
                                                        delay=True)
        rotating.doRollover()
        rotating.close()


def _file_handler(path: Path, level: int, fmt: str) -> logging.Handler:
    handler = SizeRotatedFile(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter())
    return handler


class Console:
    """The stderr handler of one invocation, on the root logger until closed."""

    def __init__(self, *, verbose: bool, dry_run: bool) -> None:
        """INFO to stderr (DEBUG with verbose); quiet the chatty HTTP libraries."""
        root = logging.getLogger()
        self._previous_level = root.level
        root.setLevel(logging.DEBUG)
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        self.handler.setFormatter(ConsoleFormatter(dry_run=dry_run))
        self.handler.addFilter(FileOnlyFilter())
        self.handler.addFilter(RedactingFilter())
        root.addHandler(self.handler)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

    def close(self) -> None:
        """Remove the handler and restore the root level."""
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._previous_level)


class RunLogFiles:
    """The two rotating log files of one top-level run, on the root logger until closed."""

    def __init__(self, base_dir: str | Path, name: str, *, user: str, dry_run: bool) -> None:
        """Open ``{base_dir}/{group path}/{leaf}.log`` (INFO) and ``{leaf}-extended.log`` (DEBUG); raise OSError."""
        self.info_path, self.debug_path = log_paths(base_dir, name)
        self.info_path.parent.mkdir(parents=True, exist_ok=True)
        who = ("DRY-RUN " if dry_run else "") + user.replace("%", "%%")
        head = f"%(asctime)s {who} %(process)d [%(levelname)s"
        self.handlers = [
            _file_handler(self.info_path, logging.INFO, head + "] %(message)s"),
            _file_handler(self.debug_path, logging.DEBUG, head + " %(name)s:%(lineno)s in %(funcName)s] %(message)s"),
        ]
        root = logging.getLogger()
        for handler in self.handlers:
            root.addHandler(handler)

    def close(self) -> None:
        """Detach and close both files."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
