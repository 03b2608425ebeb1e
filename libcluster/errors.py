"""Base exception of the library: every error raised on purpose derives from it."""


class LibclusterError(Exception):
    """Base class for all errors raised by libcluster and its integrations."""


class ConfigError(LibclusterError):
    """The configuration file is missing, unreadable or has a wrong key."""


class DryRunUnsupported(LibclusterError):
    """A cookbook asked for the result of a write that dry-run skipped."""
