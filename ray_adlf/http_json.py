"""POST a JSON body to an http(s) endpoint and read a JSON answer, with a deadline and retries.

``parse_endpoint(url, token)`` checks a URL once (``http://`` or ``https://`` with a host, an
ASCII path without spaces; anything else is ``HTTPJSONError``) and fixes what every request
sends: ``Content-Type: application/json`` and, with credentials, ``Authorization``: ``Bearer
<token>`` for a token (``ray_adlf.secrets``) or ``Basic`` for ``user:password@`` in the URL
(both at once is an error). ``post_json(endpoint, payload, ...)`` POSTs and decodes the answer.

Deadline: one attempt ends within ``timeout`` seconds in total. The TCP connect runs under a
socket time-out of the time left; from then on a watchdog shuts the socket down at the deadline,
so a server that trickles its TLS handshake, headers or body cannot hold the attempt longer.
Name resolution (the OS resolver) and, for a host with several addresses, the connect to each
are the only steps that can run past it. Size cap: an answer whose ``Content-Length`` is over
``max_response_bytes`` fails before its body is read, and a streamed body fails as soon as it
passes the cap, so memory stays bounded by the cap.

Time-outs, connection errors, HTTP 429 and 5xx are retried up to ``retries`` times, sleeping
``backoff * 2^attempt`` seconds in between: at worst a call takes ``(retries + 1) * timeout +
backoff * (2^retries - 1)`` seconds. Any other status (redirects are not followed), a broken
HTTP answer, an answer over the cap, or a body that is not usable JSON (not JSON, not UTF-8,
nested too deeply, a number too long to read) raises ``HTTPJSONError`` at once. Every message
starts with ``POST <url>:``, the URL redacted by ``ray_adlf.secrets.redact_url``. Connections
go straight to the host (no proxy from the environment).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import json
import re
import reprlib
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from ray_adlf.secrets import redact_url

DEFAULT_MAX_RESPONSE_BYTES = 4 * 2**20
_CHUNK_BYTES = 64 * 2**10
_SNIPPET_BYTES = 200
_NOT_IN_URL = re.compile(r"[^\x21-\x7e]")  # what http.client would reject or cannot encode
_TOKEN = re.compile(r"[\x21-\x7e]+")


class HTTPJSONError(RuntimeError):
    """The endpoint is unusable, failed, or answered something that is not usable JSON."""


class _Retryable(HTTPJSONError):
    """A failed attempt that may succeed when repeated."""


@dataclass(frozen=True)
class Endpoint:
    """Where ``post_json`` sends; ``shown`` (the redacted URL) is all that messages and
    ``repr`` show."""

    shown: str
    tls: bool
    host: str
    port: int
    target: str = field(repr=False)  # path and query, sent in the request line
    headers: tuple[tuple[str, str], ...] = field(repr=False)


def _authorization(parts: urllib.parse.SplitResult, token: str | None, shown: str) -> dict:
    """The ``Authorization`` header for a bearer ``token`` or ``user:password@`` in the URL."""
    if token is not None and "@" in parts.netloc:
        raise HTTPJSONError(f"{shown!r}: give credentials in the URL or as a token, not both")
    if token is not None:
        if not _TOKEN.fullmatch(token):
            raise HTTPJSONError(f"{shown!r}: the token must be printable ASCII without spaces")
        return {"Authorization": f"Bearer {token}"}
    if "@" in parts.netloc:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {basic}"}
    return {}


def parse_endpoint(url: str, token: str | None = None) -> Endpoint:
    """``url`` checked and parsed (module docstring); ``token`` is sent as a bearer token."""
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise HTTPJSONError(
            f"{shown!r}: not a valid URL (check the port and [IPv6] brackets)"
        ) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise HTTPJSONError(f"{shown!r}: the URL must start with http:// or https:// and a host")
    tls = parts.scheme.lower() == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _NOT_IN_URL.search(parts.hostname + target):
        raise HTTPJSONError(f"{shown!r}: percent-encode spaces and non-ASCII characters")
    headers = {"Content-Type": "application/json", **_authorization(parts, token, shown)}
    return Endpoint(
        shown, tls, parts.hostname, port or (443 if tls else 80), target, tuple(headers.items())
    )


def _shut_down(sock: socket.socket) -> None:
    """End every blocked read or write on ``sock`` (at the socket level, below any TLS)."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """A deadline ``seconds`` from now at which the watched socket is shut down."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._end = time.monotonic() + seconds
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def time_left(self) -> float:
        """Seconds until the deadline; ``TimeoutError`` once it has passed."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut_down(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut_down(self._sock)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Connection(http.client.HTTPConnection):
    """An HTTP or HTTPS connection to ``endpoint`` whose socket ``watchdog`` watches."""

    def __init__(self, endpoint: Endpoint, watchdog: _Watchdog) -> None:
        super().__init__(endpoint.host, endpoint.port)
        self.default_port = 443 if endpoint.tls else 80  # the Host header omits it
        self.endpoint, self.watchdog = endpoint, watchdog

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.watchdog.time_left())
        self.watchdog.watch(self.sock)
        if self.endpoint.tls:
            self.sock = _tls_context().wrap_socket(
                self.sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            self.watchdog.watch(self.sock)
            self.sock.do_handshake()


def _read_capped(answer: http.client.HTTPResponse, max_bytes: int, shown: str) -> bytes:
    """The body, read in chunks; ``HTTPJSONError`` once it is over ``max_bytes``."""
    too_large = HTTPJSONError(
        f"POST {shown}: the answer is larger than max_response_bytes = {max_bytes}"
    )
    if answer.length is not None and answer.length > max_bytes:
        raise too_large
    chunks, size = [], 0
    while chunk := answer.read1(_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    if answer.length:  # the connection ended before the announced Content-Length
        raise http.client.IncompleteRead(b"", answer.length)
    return b"".join(chunks)


def _status_error(shown: str, status: int, snippet: bytes) -> HTTPJSONError:
    message = f"POST {shown}: HTTP {status}: {snippet.decode('utf-8', 'replace')}"
    return _Retryable(message) if status == 429 or status >= 500 else HTTPJSONError(message)


def _transport_error(err: Exception, timed_out: bool, shown: str, timeout: float) -> HTTPJSONError:
    """The ``HTTPJSONError`` for an exception raised while talking to the endpoint."""
    if timed_out or isinstance(err, TimeoutError):
        return _Retryable(f"POST {shown}: no answer within {timeout} s")
    if isinstance(err, OSError):  # refused, reset, closed without an answer, name unknown, ...
        return _Retryable(f"POST {shown}: {err}")
    return HTTPJSONError(f"POST {shown}: bad HTTP answer: {err!r}")


def _attempt(endpoint: Endpoint, body: bytes, timeout: float, max_bytes: int) -> bytes:
    """One POST within ``timeout`` seconds: the body of a 2xx answer, else an error."""
    watchdog = _Watchdog(timeout)
    connection = _Connection(endpoint, watchdog)
    try:
        connection.request("POST", endpoint.target, body, dict(endpoint.headers))
        answer = connection.getresponse()
        if not 200 <= answer.status < 300:
            raise _status_error(endpoint.shown, answer.status, answer.read(_SNIPPET_BYTES))
        raw = _read_capped(answer, max_bytes, endpoint.shown)
        if watchdog.fired:  # the body may have been cut short by the shut-down
            raise TimeoutError
        return raw
    except (OSError, http.client.HTTPException) as err:
        raise _transport_error(err, watchdog.fired, endpoint.shown, timeout) from err
    finally:
        watchdog.stop()
        connection.close()


def _decode(raw: bytes, shown: str) -> object:
    """The JSON value in ``raw``; ``HTTPJSONError`` for anything ``json`` cannot read."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise HTTPJSONError(f"POST {shown}: the answer is JSON nested too deeply") from None
    except ValueError as err:  # not JSON, not UTF-8, an integer too long to convert
        snippet = raw[:_SNIPPET_BYTES].decode("utf-8", "replace")
        raise HTTPJSONError(f"POST {shown}: the answer is not JSON: {snippet!r} ({err})") from None


def preview(value: object) -> str:
    """A short ``repr`` of ``value`` (depth and size limited) that cannot fail (for
    messages about answers and plugin return values)."""
    try:
        return reprlib.repr(value)
    except Exception:  # a huge int, or an object whose __repr__ fails
        return f"<{type(value).__name__}>"


def post_json(
    endpoint: Endpoint,
    payload: object,
    timeout: float,
    retries: int,
    backoff: float = 0.2,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> object:
    """POST ``payload`` as JSON to ``endpoint``; return the decoded JSON answer.

    Takes at most ``(retries + 1) * timeout + backoff * (2^retries - 1)`` seconds (module
    docstring); every failure is an ``HTTPJSONError``.
    """
    body = json.dumps(payload).encode("utf-8")
    for attempt in range(retries + 1):
        try:
            raw = _attempt(endpoint, body, timeout, max_response_bytes)
            break
        except _Retryable as err:
            if attempt == retries:
                raise HTTPJSONError(f"{err} (after {attempt + 1} attempts)") from err
            time.sleep(backoff * 2**attempt)
    return _decode(raw, endpoint.shown)
