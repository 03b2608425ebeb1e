"""Keep secrets (RAPI passwords, NetBox tokens, TSIG keys) out of logs, output and exceptions.

Secrets are registered once (the config loader registers every value whose key names a
secret); a logging filter and :func:`redact` replace them wherever they appear.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "*****"
"""What a secret is replaced with."""

SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|tsig_key|api_key|signing_key)", re.IGNORECASE)
"""Config keys whose values are secrets."""

_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()
_longest_first: list[str] = []
"""The registered secrets and their escaped forms, longest first (what redact() replaces), sorted at register()."""


def register(value: object) -> None:
    """Remember a secret value, and how it reads once escaped, so that it is masked from now on (short ones ignored).

    Escaped forms: in JSON (ASCII-only or not), in a Python repr (a ``%r`` in a log message, an exception
    showing a value) and as unicode_escape, so a quote, backslash or non-ASCII character cannot unmask it.
    """
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN:
        forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
                 value.encode("unicode_escape").decode("ascii")}
        with _lock:
            _secrets.update(forms)
            _longest_first[:] = sorted(_secrets, key=len, reverse=True)


def is_secret_key(key: str) -> bool:
    """Tell whether a configuration key holds a secret, by its name."""
    return bool(SECRET_KEY_PATTERN.search(key))


def redact(text: str) -> str:
    """Return text with every registered secret masked, longest first."""
    with _lock:
        secrets = list(_longest_first)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_data(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, strings; other objects as their str()) with every secret masked.

    Mask before serialising: json.dumps escapes quotes, backslashes and non-ASCII, so a secret holding
    one of them no longer appears verbatim in the serialised text and redact() on it would miss it.
    """
    if isinstance(value, Mapping):
        return {redact(str(key)): redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_data(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Logging filter that masks secrets in the final message, arguments and traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message once, mask it, and drop the raw arguments."""
        message = record.getMessage()
        if record.exc_info:
            message = message + "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        return True
