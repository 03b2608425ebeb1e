"""etcd through its v3 JSON gateway (etcd3gw), over TLS and as an etcd user, for locks and hook events.

etcd 3.4's gateway cannot tell callers apart by client certificate (with authentication on it
refuses any request whose certificate has a common name), so identities are etcd users with
roles: the password is exchanged at ``/v3/auth/authenticate`` for a token sent in the
``Authorization`` header, and exchanged again when etcd says the token expired (401, code 16).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from libcluster import redact
from libcluster.errors import ConfigError

if TYPE_CHECKING:
    from libcluster.config import Section

INVALID_TOKEN = 16
"""gRPC code etcd answers (HTTP 401) for an expired or unknown token."""


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach etcd: its URL, the CA its certificate is checked against, and the etcd user to act as."""

    url: str
    ca_file: str | None = None
    """CA bundle of etcd's certificate (https only; default: the system CAs)."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Refuse a URL that is not http(s)://host[:port], a user without password, or a password over http."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid etcd URL {self.url!r}: expected http(s)://host:port")
        if bool(self.user) != bool(self.password):
            raise ValueError("an etcd user needs both a user name and a password")
        if self.password and parts.scheme != "https":
            raise ValueError(f"etcd URL {self.url!r} is not https: the password would be sent in clear")
        if self.ca_file and parts.scheme != "https":
            raise ValueError(f"a CA file is given for etcd URL {self.url!r}, which is not https")

    @classmethod
    def from_section(cls, section: Section, prefix: str = "etcd_", fallback: EtcdAccess | None = None,
                     inherit: tuple[str, ...] = ("ca_file", "user", "password"), any_url: bool = False) -> EtcdAccess:
        """Read PREFIXurl, PREFIXca_file, PREFIXuser, PREFIXpassword; an absent URL and (for the same URL, or any
        with any_url) the inherited keys come from fallback."""
        keys = {name: f"{prefix}{name}" for name in ("url", "ca_file", "user", "password")}
        values = {name: section.str(key, None) for name, key in keys.items()}
        if fallback is not None and (any_url or values["url"] in (None, fallback.url)):
            values["url"] = values["url"] or fallback.url
            for name in inherit:
                if values[name] is None and (name != "ca_file" or urlsplit(values["url"]).scheme == "https"):
                    values[name] = getattr(fallback, name)
        url = values.pop("url")
        if not url:
            raise ConfigError(f"{section.source}: missing key '{section.key(keys['url'])}'")
        try:
            return cls(url, **values)
        except ValueError as exc:
            raise ConfigError(f"{section.source}: key '{section.key(keys['url'])}': {exc}") from None

    @property
    def port(self) -> int:
        """The URL's port (2379, etcd's client port, when none is given)."""
        return urlsplit(self.url).port or 2379


def error_text(exc: Exception) -> str:
    """What etcd (or the connection) said, for messages: etcd's own error text when it gave one."""
    detail = getattr(exc, "detail_text", None)
    if detail:
        try:
            text = str(json.loads(detail).get("error") or detail)
        except (ValueError, AttributeError):
            text = str(detail)
        return redact.redact(text[:200])
    return redact.redact(f"{type(exc).__name__}: {exc}")


class Gateway:
    """An etcd3gw client that verifies etcd's certificate and logs in as the configured user."""

    def __init__(self, access: EtcdAccess, timeout: float, error: type[Exception]) -> None:
        """access: where and who; timeout: seconds per request; error: the exception class raised on failure."""
        self.access = access
        self.timeout = timeout
        self.error = error
        self._client: Any = None
        self._token_lock = threading.Lock()
        self._has_token = False
        if access.password:
            redact.register(access.password)

    @property
    def client(self) -> Any:
        """The etcd3gw client, created on first use; its session ignores REQUESTS_CA_BUNDLE and proxies."""
        if self._client is None:
            import requests
            from etcd3gw.client import Etcd3Client

            session = requests.Session()
            session.trust_env = False  # else REQUESTS_CA_BUNDLE silently replaces our CA
            session.verify = self.access.ca_file or True
            if self.access.ca_file and not Path(self.access.ca_file).is_file():
                raise self.error(f"etcd at {self.access.url}: CA file {self.access.ca_file} not found")
            parts = urlsplit(self.access.url)
            self._client = Etcd3Client(host=str(parts.hostname), port=self.access.port,  # hostname: EtcdAccess checks
                                       protocol=parts.scheme, timeout=self.timeout, session=session)
        return self._client

    def login(self, *, renew: bool = False) -> None:
        """Get a token for the configured user (once, or again with renew); nothing to do without a user."""
        if not self.access.user:
            return
        with self._token_lock:
            if self._has_token and not renew:
                return
            client = self.client
            client.session.headers.pop("Authorization", None)
            answer = self._post("logging in", "/auth/authenticate",
                                {"name": self.access.user, "password": self.access.password})
            token = str(answer.get("token") or "")
            if not token:
                raise self.error(f"etcd at {self.access.url}: logging in as {self.access.user} gave no token")
            redact.register(token)
            client.session.headers["Authorization"] = token
            self._has_token = True

    def _post(self, what: str, path: str, payload: dict[str, Any], *, renewable: bool = False) -> dict[str, Any]:
        from etcd3gw.exceptions import Etcd3Exception
        from requests import RequestException

        try:
            answer: dict[str, Any] = self.client.post(self.client.get_url(path), json=payload)
        except Etcd3Exception as exc:
            if renewable and _invalid_token(exc):
                raise _TokenExpired from None
            raise self.error(f"etcd at {self.access.url}: {what} failed: {error_text(exc)}") from None
        except RequestException as exc:
            raise self.error(f"etcd at {self.access.url}: {what} failed: {error_text(exc)}") from None
        return answer

    def call(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST payload to the gateway path (``/kv/range``...); a token etcd no longer knows is renewed once."""
        self.login()
        try:
            return self._post(what, path, payload, renewable=bool(self.access.user))
        except _TokenExpired:
            self.login(renew=True)
            return self._post(what, path, payload)


class _TokenExpired(Exception):
    """etcd did not know our token (it expires after --auth-token-ttl of disuse)."""


def _invalid_token(exc: Exception) -> bool:
    try:
        return int(json.loads(getattr(exc, "detail_text", "") or "{}").get("code", 0)) == INVALID_TOKEN
    except (ValueError, TypeError, AttributeError):
        return False
