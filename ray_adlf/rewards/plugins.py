"""Extra reward signals without editing this package: a Python file plugin or an HTTP endpoint.

Both see a batch as plain JSON-like data: ``contexts`` is a list of N conversations, each a list
of ``{"role": "system"|"user"|"assistant", "content": str}``; ``responses`` is a list of N
strings. Both return N finite floats (meant to lie in [0, 1], like the other internal signals).

File plugin, ``--reward_plugin path/to/file.py:function``::

    def function(contexts: list[list[dict]], responses: list[str]) -> list[float]: ...

HTTP endpoint, ``--reward_url http://host:port/path``: one ``POST`` per batch with
``Content-Type: application/json``::

    request:  {"contexts": [[{"role": "user", "content": "Hi"}], ...], "responses": ["Hello", ...]}
    response: {"rewards": [0.7, ...]}          (status 200, one finite number per response)

Each attempt ends within ``timeout`` seconds in total, and an answer larger than
``max_response_bytes`` (default 4 MiB) is a failure. Time-outs, connection errors, HTTP 429 and
5xx are retried up to ``retries`` times (``ray_adlf.http_json`` gives the worst-case total);
then, or at once for any other status, a body that is not usable JSON, or a ``rewards`` value
of the wrong shape, ``RewardPluginError`` is raised with the URL (credentials redacted) and what
was wrong, so ``--on_reward_error`` decides. A URL that is not http(s) is refused at
construction. ``RAY_ADLF_REWARD_URL_TOKEN`` (or ``..._TOKEN_FILE``) in the environment is sent as
``Authorization: Bearer <token>`` (``ray_adlf.secrets``).

Rewards are checked the same way for both: a list (or 1-d array) of N numbers, each a finite
float once converted (an integer too large for a float is an error, not an overflow).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ray_adlf.data.records import Turn
from ray_adlf.http_json import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HTTPJSONError,
    parse_endpoint,
    post_json,
    preview,
)
from ray_adlf.secrets import REWARD_URL_TOKEN, SecretError, endpoint_token

PluginFunction = Callable[[list[list[dict]], list[str]], Sequence[float]]


class RewardPluginError(RuntimeError):
    """A reward plugin or endpoint failed or answered badly; the message says which and how."""


def contexts_as_json(contexts: Sequence[Sequence[Turn]]) -> list[list[dict]]:
    """Turns -> ``[[{"role", "content"}, ...], ...]``."""
    return [[{"role": t.role, "content": t.content} for t in turns] for turns in contexts]


def _reward(value: object, i: int, source: str) -> float:
    """Reward ``i`` as a finite float, or ``RewardPluginError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise RewardPluginError(f"{source}: reward {i} is not a number: {preview(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise RewardPluginError(
            f"{source}: reward {i} is an integer too large for a float"
        ) from None
    if not math.isfinite(number):
        raise RewardPluginError(f"{source}: reward {i} is not finite: {number}")
    return number


def check_rewards(values: object, n: int, source: str) -> np.ndarray:
    """``values`` as an ``[n]`` float array, or ``RewardPluginError`` naming ``source``."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise RewardPluginError(f"{source}: expected a list of {n} numbers, got {preview(values)}")
    if len(values) != n:
        raise RewardPluginError(f"{source}: expected {n} rewards, got {len(values)}")
    return np.array([_reward(value, i, source) for i, value in enumerate(values)], float)


def load_plugin(spec: str) -> PluginFunction:
    """``"path/to/file.py:function"`` -> the function (the file is imported as a module)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise RewardPluginError(f"--reward_plugin {spec!r}: expected path/to/file.py:function")
    file = Path(path)
    if not file.is_file():
        raise RewardPluginError(f"--reward_plugin {spec!r}: no file {file}")
    module_spec = importlib.util.spec_from_file_location(f"ray_adlf_plugin_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        raise RewardPluginError(f"--reward_plugin {spec!r}: cannot import {file}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise RewardPluginError(f"--reward_plugin {spec!r}: {file} has no function {name!r}")
    return function


def call_plugin(
    function: PluginFunction, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]
) -> np.ndarray:
    """Run a file plugin on a batch; any exception or bad value becomes ``RewardPluginError``."""
    name = getattr(function, "__name__", "plugin")
    try:
        values = function(contexts_as_json(contexts), list(responses))
    except Exception as err:
        raise RewardPluginError(f"reward plugin {name}: {type(err).__name__}: {err}") from err
    return check_rewards(values, len(responses), f"reward plugin {name}")


class HTTPRewardClient:
    """Posts batches to ``url`` (protocol in the module docstring) and returns rewards [N]."""

    def __init__(
        self,
        url: str,
        timeout: float,
        retries: int,
        backoff: float = 0.2,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        try:
            self.endpoint = parse_endpoint(url, endpoint_token(REWARD_URL_TOKEN))
        except HTTPJSONError as err:
            raise RewardPluginError(f"--reward_url {err}") from err
        except SecretError as err:
            raise RewardPluginError(str(err)) from err
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_response_bytes = max_response_bytes

    def __call__(self, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]) -> np.ndarray:
        payload = {"contexts": contexts_as_json(contexts), "responses": list(responses)}
        source = f"POST {self.endpoint.shown}"
        try:
            answer = post_json(
                self.endpoint,
                payload,
                self.timeout,
                self.retries,
                self.backoff,
                self.max_response_bytes,
            )
        except HTTPJSONError as err:
            raise RewardPluginError(str(err)) from err
        if not isinstance(answer, dict) or "rewards" not in answer:
            raise RewardPluginError(
                f'{source}: expected {{"rewards": [...]}}, got {preview(answer)}'
            )
        return check_rewards(answer["rewards"], len(responses), source)
