"""A tiny HTTP server on 127.0.0.1 for plugin and critic tests.

``serve(handler)`` runs ``handler(path, json_body)`` per POST and records each request as a
``Request(path, body, headers)``. The handler returns ``(status, body_bytes, delay_s)`` for a
well-formed answer, or ``Raw(chunks)`` to play a hostile server: the chunks (status line and
headers included) are written as they come, so a generator can trickle them with sleeps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


@dataclass
class Raw:
    """Bytes written verbatim, one flush per chunk, then the connection closes."""

    chunks: Iterable[bytes]


class Request(NamedTuple):
    path: str
    body: object
    headers: dict[str, str]


Handler = Callable[[str, object], "tuple[int, bytes, float] | Raw"]


@contextmanager
def serve(handler: Handler) -> Iterator[tuple[str, list[Request]]]:
    """Yield ``(base_url, requests)``; the server stops on exit."""
    requests: list[Request] = []

    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(Request(self.path, body, dict(self.headers)))
            reply = handler(self.path, body)
            try:
                if isinstance(reply, Raw):
                    for chunk in reply.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    return
                status, payload, delay = reply
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def json_answer(obj: object, status: int = 200, delay: float = 0.0) -> tuple[int, bytes, float]:
    return status, json.dumps(obj).encode(), delay
