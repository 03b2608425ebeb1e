"""The slash-command front door: an HTTP endpoint speaking Slack's slash commands (Mattermost and Rocket.Chat too).

A request is accepted only when signed: Slack's v0 signature (``v0=hex(hmac_sha256(secret,
"v0:{timestamp}:{body}"))``, a timestamp within five minutes, each signature accepted once) or
Mattermost's per-command token. The HTTP answer is the immediate acknowledgement; a run's progress
and result are POSTed to the request's ``response_url`` (Slack takes five posts per URL, so
progress is batched and the last post is kept for the result). A user id from a verified request
is a Slack account identity (it may approve; a Mattermost one only with ``http.mattermost_approvers``).
A connection silent for ``http.timeout`` seconds, or still open ``http.request_deadline`` seconds after
it was accepted (a client trickling bytes), is closed; at most ``http.max_connections`` are served at
once, more are answered 503: clients cannot pile up threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

from libcluster.chatops.core import Chatops
from libcluster.chatops.feed import Pace
from libcluster.chatops.permissions import Identity
from libcluster.chatops.runs import Door
from libcluster.chatops.settings import HttpSettings

logger = logging.getLogger(__name__)

SIGNATURE_WINDOW = 300
"""Seconds a Slack request timestamp may be off from now (Slack's own recommendation)."""
MAX_BODY = 64 * 1024
"""Bytes of a request body; slash commands are a few hundred."""
POST_TIMEOUT = 10
"""Seconds to wait for a response URL to take a post."""
REPLY_LINES = 30
"""Lines of one reply or one progress post."""
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
"""The whole answer to a connection beyond http.max_connections."""


class Refused(Exception):  # not an error of the service: its verdict
    """A request refused before it reaches the core: HTTP status and the reason (no secret in it)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        """Refuse with status for reason."""
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ReplayGuard:
    """Remembers the signatures seen within the window, so a captured request cannot be sent again."""

    def __init__(self, window: float = SIGNATURE_WINDOW) -> None:
        """Remember each signature for window seconds (older requests fail the timestamp check anyway)."""
        self.window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, signature: str, now: float) -> bool:
        """Record signature; False if it was already seen within the window."""
        with self._lock:
            self._seen = {seen: until for seen, until in self._seen.items() if until > now}
            if signature in self._seen:
                return False
            self._seen[signature] = now + 2 * self.window  # timestamps may be off both ways
            return True


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request body sent at timestamp."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify_slack(secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                 guard: ReplayGuard) -> None:
    """Raise Refused unless signature is Slack's v0 signature of body, fresh and never seen before."""
    if not timestamp or not signature:
        raise Refused(HTTPStatus.UNAUTHORIZED, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > SIGNATURE_WINDOW:
        raise Refused(HTTPStatus.UNAUTHORIZED, "request timestamp missing or more than 5 minutes off")
    if not hmac.compare_digest(slack_signature(secret, timestamp, body), signature):
        raise Refused(HTTPStatus.UNAUTHORIZED, "bad request signature")
    if not guard.first_time(signature, now):
        raise Refused(HTTPStatus.UNAUTHORIZED, "request already received (replay)")


def check_response_url(url: str, prefixes: tuple[str, ...]) -> None:
    """Raise Refused unless url is http(s) and starts with one of prefixes (when any are configured)."""
    if urlsplit(url).scheme not in ("http", "https") or (prefixes and not url.startswith(prefixes)):
        raise Refused(HTTPStatus.BAD_REQUEST, "response_url missing or not allowed")


class ResponseUrlSink:
    """Posts a run's messages to the response URL of the request that started it."""

    def __init__(self, url: str, settings: HttpSettings, *, escape: bool) -> None:
        """Post to url at most settings.max_posts times, one batch per post_interval; escape &<> for Slack."""
        self.url = url
        self.escape = escape
        self.pace = Pace(interval=settings.post_interval, max_lines=REPLY_LINES, max_batches=settings.max_posts,
                         batch_gap=settings.post_interval)

    def send(self, lines: list[str]) -> None:
        """One post with the lines; raises RuntimeError naming only the host (the URL is a credential)."""
        text = "\n".join(lines)
        if self.escape:
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        host = urlsplit(self.url).netloc
        try:
            response = requests.post(self.url, json={"response_type": "in_channel", "text": text},
                                     timeout=POST_TIMEOUT)
        except requests.RequestException as exc:
            raise RuntimeError(f"post to the response URL on {host} failed: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise RuntimeError(f"post to the response URL on {host} answered HTTP {response.status_code}")


class SlashServer(ThreadingHTTPServer):
    """The HTTP endpoint; serve_forever() in a thread, shutdown() to stop."""

    daemon_threads = True

    def __init__(self, core: Chatops, settings: HttpSettings) -> None:
        """Listen on settings.listen:port (port 0 picks a free one, see server_address)."""
        self.core = core
        self.settings = settings
        self.guard = ReplayGuard()
        self.slots = threading.BoundedSemaphore(settings.max_connections)
        super().__init__((settings.listen, settings.port), SlashHandler)

    def process_request(self, request: socket.socket,  # type: ignore[override]
                        client_address: tuple[str, int]) -> None:
        """Serve the connection in a thread while a slot is free; otherwise answer 503 at once and close it."""
        if not self.slots.acquire(blocking=False):
            logger.warning("Slash command from %s refused: %d connections already served (http.max_connections)",
                           client_address[0], self.settings.max_connections)
            try:
                request.setblocking(False)
                request.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket,  # type: ignore[override]
                               client_address: tuple[str, int]) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def authenticate(self, headers: dict[str, str], body: bytes, form: dict[str, str]) -> str:
        """The kind of identity the request proves (``slack`` or ``mattermost``); Refused otherwise."""
        slack_headers = headers.get("x-slack-signature") or headers.get("x-slack-request-timestamp")
        if self.settings.slack_signing_secret and (slack_headers or not self.settings.mattermost_token):
            verify_slack(self.settings.slack_signing_secret, headers.get("x-slack-request-timestamp"),
                         headers.get("x-slack-signature"), body, now=time.time(), guard=self.guard)
            return "slack"
        if not hmac.compare_digest(form.get("token", "").encode(), self.settings.mattermost_token.encode()):
            raise Refused(HTTPStatus.UNAUTHORIZED, "bad or missing token")
        return "mattermost"

    def answer(self, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The JSON reply to one slash command; Refused for requests that never reach the core."""
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise Refused(HTTPStatus.BAD_REQUEST, "body is not a URL-encoded form") from None
        form = {key: values[0] for key, values in fields.items()}
        kind = self.authenticate(headers, body, form)
        if not form.get("user_id"):
            raise Refused(HTTPStatus.BAD_REQUEST, "user_id missing")
        check_response_url(form.get("response_url", ""), self.settings.response_url_prefixes)
        command = form.get("command") or "/cookbook"
        door = Door(cookbook=command, approve=f"{command} approve", deny=f"{command} deny", help=f"{command} help",
                    max_lines=REPLY_LINES)
        identity = Identity(kind, form["user_id"], display=form.get("user_name", ""))
        channel = f"{kind}:#{form.get('channel_name') or form.get('channel_id', '?')}"
        sink = ResponseUrlSink(form["response_url"], self.settings, escape=kind == "slack")
        reply = self.core.handle(form.get("text", ""), identity, channel, door, sink)
        return {"response_type": "in_channel" if reply.public else "ephemeral", "text": "\n".join(reply.lines)}


class SlashHandler(BaseHTTPRequestHandler):
    """POST of a slash command on the configured path; everything else is refused."""

    server: SlashServer
    server_version = "cookbook-chatops"

    def setup(self) -> None:
        """Give the connection the socket timeout (every read and write) and its overall deadline; set up streams."""
        self.timeout = self.server.settings.timeout  # type: ignore[misc]  # per connection: setup() reads it
        super().setup()
        self.deadline = threading.Timer(self.server.settings.request_deadline, self._expire)
        self.deadline.daemon = True
        self.deadline.start()

    def _expire(self) -> None:
        """Cut the connection off at its deadline: a blocked read returns at once, the thread ends."""
        logger.warning("Slash command from %s: not done within %.0fs (http.request_deadline), connection closed",
                       self.client_address[0], self.server.settings.request_deadline)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """Stop the deadline, flush and close the streams."""
        self.deadline.cancel()
        super().finish()

    def do_POST(self) -> None:  # the name http.server calls
        """Verify, hand the command to the core, answer with its immediate reply."""
        try:
            if self.path.split("?", 1)[0] != self.server.settings.path:
                raise Refused(HTTPStatus.NOT_FOUND, "no such path")
            length = int(self.headers.get("Content-Length") or -1)
            if not 0 <= length <= MAX_BODY:
                raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body missing or over {MAX_BODY} bytes")
            body = self.rfile.read(length)
            if len(body) < length:
                raise TimeoutError("connection closed before the whole body came")
            headers = {key.lower(): value for key, value in self.headers.items()}
            self._send(HTTPStatus.OK, self.server.answer(headers, body))
        except TimeoutError:
            logger.warning("Slash command from %s: no whole request body in time, connection closed",
                           self.client_address[0])
            self.close_connection = True
        except Refused as exc:
            logger.warning("Slash command from %s refused: %s", self.client_address[0], exc.reason)
            self._send(exc.status, {"response_type": "ephemeral", "text": f"refused: {exc.reason}"})
        except Exception:  # answer 500 and keep serving; the traceback goes to the log
            logger.exception("Slash command from %s failed", self.client_address[0])
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"response_type": "ephemeral", "text": "internal error"})

    def _send(self, status: HTTPStatus, payload: dict[str, str]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of http.server
        """Access log lines go to the debug log, not stderr."""
        logger.debug("%s %s", self.client_address[0], format % args)
