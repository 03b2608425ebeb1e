"""Base exception of the library: every error raised on purpose derives from it."""


class LibclusterError(Exception):
    """Base class for all errors raised by libcluster and its integrations."""


class ConfigError(LibclusterError):
    """The configuration file is missing, unreadable or has a wrong key."""


class DryRunUnsupported(LibclusterError):
    """A cookbook asked for the result of a write that dry-run skipped."""


class AnswerLostError(LibclusterError):
    """A write was sent but its answer was lost (timeout, connection reset): it may or may not have been made."""


def is_answer_lost(exc: BaseException) -> bool:
    """Whether exc means the request was sent and its answer lost, so the write is "maybe done".

    A read timeout, a connection reset or closed after sending, ``socket.timeout``, ``RemoteDisconnected``
    and :class:`AnswerLostError` are; a connect timeout, a refused connection or a TLS handshake failure
    (nothing was sent) are not. Modules are looked up in ``sys.modules`` so this imports nothing heavy.
    """
    import sys
    from http.client import RemoteDisconnected

    if isinstance(exc, AnswerLostError | RemoteDisconnected | TimeoutError | ConnectionResetError):
        return True
    requests_exceptions = sys.modules.get("requests.exceptions")
    if requests_exceptions is not None:
        if isinstance(exc, requests_exceptions.ConnectTimeout | requests_exceptions.SSLError):
            return False
        if isinstance(exc, requests_exceptions.ReadTimeout | requests_exceptions.ChunkedEncodingError):
            return True
        if isinstance(exc, requests_exceptions.ConnectionError):
            return not _not_sent(exc)
    return False


def _not_sent(exc: BaseException) -> bool:
    """A requests ConnectionError that failed before sending: refused, unresolvable, connect timeout."""
    import sys

    urllib3_exceptions = sys.modules.get("urllib3.exceptions")
    reason: object = exc.args[0] if exc.args else None
    if urllib3_exceptions is not None and isinstance(reason, urllib3_exceptions.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, ConnectionRefusedError):
        return True
    return urllib3_exceptions is not None and isinstance(
        reason, urllib3_exceptions.NewConnectionError | urllib3_exceptions.ConnectTimeoutError)
