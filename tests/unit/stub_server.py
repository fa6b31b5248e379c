"""A tiny HTTP server on 127.0.0.1 for plugin and critic tests: ``serve(handler)`` runs
``handler(path, json_body) -> (status, body_bytes, delay_s)`` per POST and records requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[str, object], tuple[int, bytes, float]]


@contextmanager
def serve(handler: Handler) -> Iterator[tuple[str, list]]:
    """Yield ``(base_url, requests)``; the server stops on exit."""
    requests: list = []

    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            status, payload, delay = handler(self.path, body)
            time.sleep(delay)
            try:
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
