"""Typed DNS errors: each names the server, zone or record concerned and never holds the TSIG secret."""

from __future__ import annotations

from libcluster import redact
from libcluster.errors import AnswerLostError, LibclusterError


class DNSError(LibclusterError):
    """A DNS operation failed; the message is masked for secrets."""

    def __init__(self, message: str) -> None:
        """Mask registered secrets in message."""
        super().__init__(redact.redact(message))


class DNSAuthError(DNSError):
    """The server refused our TSIG key (unknown key, wrong secret, clock skew) or the unsigned request."""


class DNSPrerequisiteError(DNSError):
    """An update's prerequisite failed (YXDOMAIN, YXRRSET, NXDOMAIN, NXRRSET): the zone changed since it was read."""

    def __init__(self, message: str, *, rcode: str, zone: str, applied: int) -> None:
        """Keep the rcode, the zone and how many changes earlier messages applied."""
        super().__init__(message)
        self.rcode = rcode
        self.zone = zone
        self.applied = applied


class DNSRefused(DNSError):
    """The server refused an update or transfer for another reason (REFUSED, NOTZONE, SERVFAIL...)."""


class DNSUnavailable(DNSError):
    """The server did not answer: timeout or connection refused."""


class DNSAnswerLost(DNSUnavailable, AnswerLostError):
    """An update message was sent and its answer lost (timeout, connection closed): it may have been applied."""


class DNSZoneError(DNSError):
    """A name or address is outside the configured zones, or a configured zone name is malformed."""


class DNSSnippetError(DNSError):
    """A rendered zone file snippet does not parse back to the records it was made from."""
