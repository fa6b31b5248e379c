"""``ray_adlf.http_json`` against hostile servers on 127.0.0.1: trickling, oversized, malformed."""

import socket
import threading
import time
import tracemalloc
from contextlib import contextmanager

import pytest
from stub_server import Raw, json_answer, serve

from ray_adlf.http_json import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HTTPJSONError,
    parse_endpoint,
    post_json,
)

SLACK_S = 0.5


def call(url: str, timeout: float = 5.0, retries: int = 0, **kwargs):
    return post_json(parse_endpoint(url), {"q": 1}, timeout, retries, backoff=0.05, **kwargs)


def timed_failure(url: str, match: str, **kwargs) -> float:
    started = time.monotonic()
    with pytest.raises(HTTPJSONError, match=match):
        call(url, **kwargs)
    return time.monotonic() - started


def trickle(head: bytes, piece: bytes, every_s: float, times: int = 1000):
    yield head
    for _ in range(times):
        time.sleep(every_s)
        yield piece


def test_a_trickled_body_cannot_outlast_the_timeout():
    # one byte every 0.25 s of a 1000-byte body: a per-read time-out of 1 s never fires
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n"
    with serve(lambda path, body: Raw(trickle(head, b" ", 0.25))) as (url, _):
        elapsed = timed_failure(url, r"no answer within 1.0 s \(after 1 attempts\)", timeout=1.0)
    assert 1.0 <= elapsed < 1.0 + SLACK_S


def test_trickled_headers_cannot_outlast_the_timeout():
    head = b"HTTP/1.0 200 OK\r\n"
    with serve(lambda path, body: Raw(trickle(head, b"X-Slow: 1\r\n", 0.25, 90))) as (url, _):
        elapsed = timed_failure(url, "no answer within 1.0 s", timeout=1.0)
    assert elapsed < 1.0 + SLACK_S


def test_retries_of_a_trickle_stay_within_the_documented_worst_case():
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n"
    with serve(lambda path, body: Raw(trickle(head, b" ", 0.1))) as (url, requests):
        elapsed = timed_failure(url, r"after 3 attempts", timeout=0.5, retries=2)
    worst = 3 * 0.5 + 0.05 * (2**2 - 1)  # (retries + 1) * timeout + backoff * (2^retries - 1)
    assert worst - 0.1 <= elapsed < worst + SLACK_S
    assert len(requests) == 3


@contextmanager
def silent_tcp_server():
    """Accepts connections and never says a word (a TLS handshake stalls on it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        for conn, _ in accepted:
            conn.close()
        listener.close()


def test_a_stalled_tls_handshake_is_bounded_by_the_timeout():
    with silent_tcp_server() as port:
        elapsed = timed_failure(f"https://127.0.0.1:{port}/", "no answer within 0.5 s", timeout=0.5)
    assert elapsed < 0.5 + SLACK_S


def test_a_streamed_body_over_the_cap_fails_with_bounded_memory():
    head = b"HTTP/1.0 200 OK\r\n\r\n"  # no Content-Length: read until the server closes
    chunks = (head, *[b"7" * 2**16] * 1024)  # 64 MiB of digits
    tracemalloc.start()
    try:
        with serve(lambda path, body: Raw(iter(chunks))) as (url, _):
            timed_failure(url, "larger than max_response_bytes = 1048576", max_response_bytes=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_a_content_length_over_the_cap_fails_before_the_body():
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 314572800\r\n\r\n"  # 300 MiB, never sent
    with serve(lambda path, body: Raw(trickle(head, b"", 3.0, 1))) as (url, requests):
        elapsed = timed_failure(
            url, f"max_response_bytes = {DEFAULT_MAX_RESPONSE_BYTES}", retries=2
        )
    assert elapsed < SLACK_S
    assert len(requests) == 1  # not retried


@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_of_exactly_the_cap_is_read(streamed):
    answer = b'{"rewards": [0.5]}'
    head = b"HTTP/1.0 200 OK\r\n" + (b"" if streamed else b"Content-Length: 18\r\n") + b"\r\n"
    with serve(lambda path, body: Raw([head, answer])) as (url, _):
        assert call(url, max_response_bytes=len(answer)) == {"rewards": [0.5]}
        with pytest.raises(HTTPJSONError, match="larger than max_response_bytes = 17"):
            call(url, max_response_bytes=len(answer) - 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "the answer is JSON nested too deeply"),
        (b'{"rewards": [' + b"9" * 10**6 + b"]}", "not JSON: .* integer string conversion"),
        (b"\xff\xfe\x00garbage", "the answer is not JSON"),
    ],
)
def test_unreadable_json_is_an_http_json_error_without_retry(body, message):
    with (
        serve(lambda path, _: (200, body, 0.0)) as (url, requests),
        pytest.raises(HTTPJSONError, match=message),
    ):
        call(url, retries=2, max_response_bytes=2 * 2**20)
    assert len(requests) == 1


def test_a_body_cut_short_is_a_bad_answer_without_retry():
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n"
    with serve(lambda path, body: Raw([head, b'{"rewards": '])) as (url, requests):
        timed_failure(url, "bad HTTP answer: IncompleteRead", retries=2)
    assert len(requests) == 1


def test_a_connection_closed_without_an_answer_is_retried():
    with serve(lambda path, body: Raw([])) as (url, requests):
        timed_failure(url, "after 3 attempts", retries=2)
    assert len(requests) == 3


def test_redirects_are_not_followed():
    with serve(lambda path, body: json_answer({}, status=302)) as (url, requests):
        timed_failure(url, "HTTP 302", retries=2)
    assert len(requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/reward",
        "file:///etc/passwd",
        "127.0.0.1:8000/reward",
        "http:///no-host",
        "http://host:99999/",
        "http://[::1/",
        "http://host/a path",
        "http://höst/",
    ],
)
def test_urls_that_are_not_plain_http_or_https_are_refused(url):
    with pytest.raises(HTTPJSONError, match="must start with http|not a valid URL|percent-encode"):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("http://127.0.0.1:8000/reward", (False, "127.0.0.1", 8000, "/reward")),
        ("HTTPS://Example.com", (True, "example.com", 443, "/")),
        (
            "http://[::1]:9/v1/completions?model=a#frag",
            (False, "::1", 9, "/v1/completions?model=a"),
        ),
    ],
)
def test_endpoints_are_parsed(url, where):
    endpoint = parse_endpoint(url)
    assert (endpoint.tls, endpoint.host, endpoint.port, endpoint.target) == where
    assert dict(endpoint.headers) == {"Content-Type": "application/json"}
