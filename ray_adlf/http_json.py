"""POST a JSON body and read a JSON answer, with a time-out per attempt and retries.

Time-outs, connection errors, HTTP 429 and 5xx are retried up to ``retries`` times, sleeping
``backoff * 2^attempt`` seconds in between; any other HTTP status or a body that is not JSON
raises ``HTTPJSONError`` at once. Every message starts with ``POST <url>:``.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request


class HTTPJSONError(RuntimeError):
    """The endpoint failed or answered something that is not JSON."""


class _Retryable(HTTPJSONError):
    """A failed attempt that may succeed when repeated."""


def _attempt(url: str, body: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()
    except urllib.error.HTTPError as err:
        message = f"POST {url}: HTTP {err.code}: {err.read()[:200].decode('utf-8', 'replace')}"
        if err.code == 429 or err.code >= 500:
            raise _Retryable(message) from err
        raise HTTPJSONError(message) from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _Retryable(f"POST {url}: no answer within {timeout} s") from err
        raise _Retryable(f"POST {url}: {err.reason}") from err
    except TimeoutError as err:
        raise _Retryable(f"POST {url}: no answer within {timeout} s") from err
    except http.client.HTTPException as err:  # not an HTTP answer at all
        raise HTTPJSONError(f"POST {url}: bad HTTP answer: {err!r}") from err
    except OSError as err:  # connection reset, remote end closed without a response, ...
        raise _Retryable(f"POST {url}: {err}") from err


def post_json(url: str, payload: object, timeout: float, retries: int, backoff: float = 0.2):
    """POST ``payload`` as JSON to ``url``; return the decoded JSON answer."""
    if not url.startswith(("http://", "https://")):
        raise HTTPJSONError(f"POST {url}: the URL must start with http:// or https://")
    body = json.dumps(payload).encode("utf-8")
    for attempt in range(retries + 1):
        try:
            raw = _attempt(url, body, timeout)
            break
        except _Retryable as err:
            if attempt == retries:
                raise HTTPJSONError(f"{err} (after {attempt + 1} attempts)") from err
            time.sleep(backoff * 2**attempt)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        snippet = raw[:200].decode("utf-8", "replace")
        raise HTTPJSONError(f"POST {url}: the answer is not JSON: {snippet!r}") from None
