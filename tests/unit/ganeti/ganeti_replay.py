"""Replay of real RAPI exchanges for the Ganeti client's unit tests (imported by tests and conftest).

`RecordedRapi` is a requests transport adapter that answers each request with a recorded
exchange matching its method, path, query and JSON body, and keeps every request it saw
(user, verify, timeout included). Exchanges come from the shared Ganeti 3.0.2 transcript and
from tests/unit/ganeti/fixtures/ (recorded from the lab the same way).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter

from libcluster.ganeti.rapi import Credentials

FIXTURES = Path(__file__).parent / "fixtures"
"""Exchanges recorded from the lab cluster (Ganeti 3.0.2) by tests/lab/test_ganeti_client.py."""

RW = Credentials("cookbooks", "rw-secret-password")
RO = Credentials("cookbooks-ro", "ro-secret-password")
CA_FILE = "/etc/ganeti-cookbooks/test-ca.pem"
URL = "https://198.18.0.10:5080"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of a transcript file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _params(raw: dict[str, Any] | None) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in (raw or {}).items():
        values = value if isinstance(value, list) else [value]
        result[key] = [str(int(item)) if isinstance(item, bool) else str(item) for item in values]
    return result


@dataclass
class Seen:
    """One request the adapter received."""

    method: str
    path: str
    params: dict[str, list[str]]
    body: Any
    user: str
    verify: Any
    timeout: Any


class RecordedRapi(BaseAdapter):
    """Answers requests from recorded exchanges (each used once, first match wins)."""

    def __init__(self, exchanges: Iterable[dict[str, Any]]) -> None:
        super().__init__()
        self.exchanges = [exchange for exchange in exchanges if "method" in exchange]
        self.seen: list[Seen] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: D102
        url = urlsplit(request.url or "")
        body = json.loads(request.body) if request.body else None
        auth = request.headers.get("Authorization", "")
        user = base64.b64decode(auth.split()[1]).decode().split(":")[0] if auth else ""
        seen = Seen(request.method or "", unquote(url.path), parse_qs(url.query), body, user,
                    kwargs.get("verify"), kwargs.get("timeout"))
        self.seen.append(seen)
        for index, exchange in enumerate(self.exchanges):
            if (
                exchange["method"] == seen.method
                and exchange["path"] == seen.path
                and _params(exchange.get("params")) == seen.params
                and exchange.get("body") == body
            ):
                del self.exchanges[index]
                return self.response(request, exchange["status"], exchange["response"])
        raise AssertionError(f"no recorded answer for {seen.method} {seen.path} {seen.params} {body}")

    @staticmethod
    def response(request: requests.PreparedRequest, status: int, payload: Any) -> requests.Response:
        """A requests Response carrying a JSON payload."""
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:  # noqa: D102
        pass




def exchanges_for(transcript: list[dict[str, Any]], *paths: str) -> list[dict[str, Any]]:
    """The recorded exchanges whose path is one of paths."""
    return [entry for entry in transcript if entry.get("path") in paths]
