"""Typed NetBox errors: each names the request that failed and never holds a token."""

from __future__ import annotations

from typing import Any

from libcluster import redact
from libcluster.errors import AnswerLostError, LibclusterError


class NetBoxError(LibclusterError):
    """A NetBox call failed; the message names the method and API path, with secrets masked."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Keep the HTTP status (None when no answer came) beside the masked message."""
        super().__init__(redact.redact(message))
        self.status = status


class NetBoxAuthError(NetBoxError):
    """NetBox refused the token (HTTP 401/403): missing, wrong or read-only."""


class NetBoxNotFound(NetBoxError):
    """The object or API path does not exist (HTTP 404), or a lookup matched nothing."""


class NetBoxAmbiguous(NetBoxError):
    """A lookup that must match one object matched several."""


class NetBoxValidationError(NetBoxError):
    """NetBox rejected the data (HTTP 400); `errors` holds NetBox's per-field messages."""

    def __init__(self, message: str, *, status: int | None = 400, errors: Any = None) -> None:
        """Keep NetBox's error body (a dict per object) for callers that inspect fields."""
        super().__init__(message, status=status)
        self.errors = errors


class NetBoxConflict(NetBoxError):
    """NetBox could not fulfil an allocation (HTTP 409), e.g. no free address left in a prefix."""


class NetBoxFilterError(NetBoxError):
    """A filter is not known to this client, or NetBox returned objects that do not match it."""


class NetBoxIgnoredField(NetBoxError):
    """NetBox accepted a write but did not apply a field (unknown or read-only on this version)."""


class NetBoxReadOnly(NetBoxError):
    """A write was asked of a client opened read-only."""


class NetBoxUnavailable(NetBoxError):
    """NetBox did not answer: connection refused, timeout, TLS failure or a server error."""


class NetBoxAnswerLost(NetBoxUnavailable, AnswerLostError):
    """A request was sent and its answer lost (read timeout, connection reset): a write may have been made."""
