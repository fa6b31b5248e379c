"""Keeping the credentials of ``--reward_url`` and ``--critic_url`` out of messages and logs.

``redact_url(url)`` is the form of a URL that may be shown: ``user:password@`` (or a lone
``user@``) becomes ``***@``, and the values of query (and fragment) parameters whose key looks
secret (``is_secret_key``) become ``***``; a URL with nothing to hide comes back unchanged, one
whose host part does not parse comes back as ``scheme://***``.

Passing a secret without putting it in the URL: the HTTP clients send ``Authorization: Bearer
<token>`` when the environment of the process that builds them holds a token:

- ``RAY_ADLF_REWARD_URL_TOKEN`` for ``--reward_url`` (``rewards.plugins.HTTPRewardClient``),
- ``RAY_ADLF_CRITIC_URL_TOKEN`` for ``--critic_url`` (``debate.critics.HTTPCriticBackend``),

or ``<variable>_FILE`` (e.g. ``RAY_ADLF_REWARD_URL_TOKEN_FILE=/run/secrets/reward``) naming a
file that holds it; surrounding whitespace is stripped. A file suits clusters: only its path
has to reach the workers. A variable that is empty (or only whitespace) counts as unset; setting both
forms, an unreadable file or an empty one is a ``SecretError``. Credentials written in the URL
(``http://user:password@host/``) are sent as HTTP Basic auth, but then the secret is part of the
flag value; the token variables keep it out of config files and experiment trackers.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

REWARD_URL_TOKEN = "RAY_ADLF_REWARD_URL_TOKEN"
CRITIC_URL_TOKEN = "RAY_ADLF_CRITIC_URL_TOKEN"
SECRET_QUERY_KEYS = frozenset(
    {
        "token",
        "key",
        "api_key",
        "apikey",
        "secret",
        "password",
        "auth",
        "sig",
        "signature",
        "access_token",
    }
)
MASK = "***"


class SecretError(ValueError):
    """A token variable or token file is set but unusable; the message names which."""


def is_secret_key(key: str) -> bool:
    """Whether a query key looks secret: case-insensitively, one of ``SECRET_QUERY_KEYS`` is the
    key, one of its parts between non-alphanumerics, or its ending (``X-Amz-Signature``,
    ``client_secret``, ``accessToken``). Hiding a harmless value is the price of that breadth."""
    name = key.lower()
    parts = re.split(r"[^a-z0-9]+", name)
    return any(name.endswith(word) or word in parts for word in SECRET_QUERY_KEYS)


def _redact_parameters(text: str) -> str:
    """``k=v&k2=v2`` (``&`` or ``;`` separated) with the values of secret keys as ``***``."""
    pieces = re.split(r"([&;])", text)
    for i, piece in enumerate(pieces):
        key, sep, _ = piece.partition("=")
        if sep and is_secret_key(urllib.parse.unquote_plus(key)):
            pieces[i] = f"{key}={MASK}"
    return "".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (module docstring)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when the host part does not parse
    except ValueError:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    redacted = parts._replace(
        netloc=netloc,
        query=_redact_parameters(parts.query),
        fragment=_redact_parameters(parts.fragment),
    )
    return url if redacted == parts else urllib.parse.urlunsplit(redacted)


def endpoint_token(variable: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token in ``$variable`` or in the file named by ``$variable_FILE`` (stripped); None
    when neither is set. ``SecretError`` for both, an unreadable file or an empty token."""
    value = (environ.get(variable) or "").strip() or None
    file = environ.get(f"{variable}_FILE") or None
    if value is not None and file is not None:
        raise SecretError(f"set {variable} or {variable}_FILE, not both")
    if file is None:
        return value
    try:
        token = Path(file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise SecretError(f"{variable}_FILE={file!r}: cannot read the token ({err})") from None
    if not token:
        raise SecretError(f"{variable}_FILE={file!r}: the file is empty")
    return token
