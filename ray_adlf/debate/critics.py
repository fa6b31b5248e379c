"""Critique agents: a ``Critic`` (persona + prompts + score reading) on a backend.

Backends (one explicit class each):

- ``HFCriticBackend``: a local causal LM (the policy, the reference model, or another model).
  Critiques are sampled with ``model.generate``; score masses are the next-token softmax
  probabilities after the ``Score:`` cue, summed per score over the single-token spellings
  ``"s"`` and ``" s"`` of each score s = 0..5.
- ``HTTPCriticBackend``: an OpenAI-compatible ``POST {base_url}/completions`` server (e.g.
  ``vllm serve``). Critiques: ``{"model", "prompt": [...], "max_tokens", "temperature",
  "seed"}`` -> ``choices[i].text`` (ordered by ``index``; a text that is not a string reads as
  ``""``). Score masses: ``max_tokens = 1``, ``temperature = 0``, ``logprobs = 20`` -> ``exp`` of
  ``choices[i].logprobs.top_logprobs[0]`` summed per score over the tokens that read as that
  digit once stripped (``masses_from_top_logprobs``); no logprobs in the answer -> no masses.
  The base URL must be http(s) (checked at construction); each request ends within ``timeout``
  seconds, answers over ``max_response_bytes`` fail, and ``RAY_ADLF_CRITIC_URL_TOKEN`` (or
  ``..._TOKEN_FILE``) is sent as a bearer token (``ray_adlf.http_json``, ``ray_adlf.secrets``).

A backend failure (``CriticBackendError``: the server is down, times out or answers nonsense,
such as the wrong number of choices, bad ``index`` values, or a score token's logprob that is
not a number <= 0) never ends a round. A failed critique call makes the batch's verdicts
failures; a failed score-mass call falls back to reading the score from text, as missing
masses do, and a verdict that gets no score either way is a failure (``Verdict`` with
``source = "failed"``, ``score = None`` and ``error`` giving every reason), counted by the
protocol. Messages show the URL redacted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ray_adlf.debate.prompts import SCORE_CUE, clean_critique, first_round_prompt, revision_prompt
from ray_adlf.debate.protocol import (
    SCORE_VALUES,
    JudgeRequest,
    Verdict,
    expected_score,
    parse_score_text,
)
from ray_adlf.engines.weights import Fingerprint, weights_fingerprint
from ray_adlf.http_json import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HTTPJSONError,
    parse_endpoint,
    post_json,
    preview,
)
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.secrets import CRITIC_URL_TOKEN, SecretError, endpoint_token

SCORE_TEXT_TOKENS = 4
TOP_LOGPROBS = 20
LOGPROB_SLACK = 1e-3  # rounding a server may add: logprobs up to this, masses up to 1 + this
_SCORE_TOKENS = {str(s): s for s in SCORE_VALUES}


class CriticBackendError(RuntimeError):
    """A critic backend could not produce an answer (network, time-out, malformed answer)."""


class HFCriticBackend:
    """A local transformers causal LM as critic engine."""

    def __init__(self, model_path: str, batch_size: int = 8) -> None:
        self.tokenizer = load_tokenizer(model_path)
        self.model = load_causal_lm(model_path).eval()
        self.batch_size = batch_size
        self.max_positions = getattr(self.model.config, "max_position_embeddings", 2048)
        self.score_token_ids = [self._single_tokens(str(s)) for s in SCORE_VALUES]

    def _single_tokens(self, digit: str) -> list[int]:
        ids = set()
        for spelling in (digit, " " + digit):
            encoded = self.tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(encoded[0])
        return sorted(ids)

    def _batch(self, prompts: Sequence[str], room: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and mask; each prompt keeps its last ``max_positions - room`` tokens."""
        rows = [self.tokenizer(p)["input_ids"][-(self.max_positions - room) :] for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        return ids, mask

    @torch.no_grad()
    def complete(
        self, prompts: Sequence[str], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        texts = []
        torch.manual_seed(seed)
        for start in range(0, len(prompts), self.batch_size):
            ids, mask = self._batch(prompts[start : start + self.batch_size], max_new_tokens)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
            texts += self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        return texts

    @torch.no_grad()
    def score_masses(self, prompts: Sequence[str]) -> list[list[float] | None]:
        if not any(self.score_token_ids):
            return [None] * len(prompts)
        masses: list[list[float] | None] = []
        for start in range(0, len(prompts), self.batch_size):
            ids, mask = self._batch(prompts[start : start + self.batch_size], 1)
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1)
            for row in probs:
                masses.append([float(row[t].sum()) for t in self.score_token_ids])
        return masses

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """New weights (a critic on the policy follows the learner)."""
        self.model.load_state_dict(state)

    def fingerprint(self) -> Fingerprint:
        """``weights_fingerprint`` of the model's weights as loaded."""
        return weights_fingerprint(self.model.state_dict())


def completions_url(base_url: str) -> str:
    """``base_url`` with ``/completions`` appended to its path (a query or fragment kept)."""
    path, rest = re.match(r"([^?#]*)(.*)", base_url, re.DOTALL).groups()
    return path.rstrip("/") + "/completions" + rest


def ordered_choices(answer: object, n: int) -> list[dict]:
    """``answer["choices"]``: ``n`` objects in ``index`` order (a missing index is the
    position); ``ValueError`` saying what is wrong otherwise."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        raise ValueError(f"expected {n} choices, got {preview(answer)}")
    if not all(isinstance(c, dict) for c in choices):
        raise ValueError("choices must be objects")
    order = [c.get("index", i) for i, c in enumerate(choices)]
    integers = all(isinstance(i, int) and not isinstance(i, bool) for i in order)
    if not integers or sorted(order) != list(range(n)):
        raise ValueError(f"choice indices must be 0..{n - 1} once each, got {preview(order)}")
    return [choice for _, choice in sorted(zip(order, choices), key=lambda pair: pair[0])]


def _logprob(value: object) -> float | None:
    """``value`` as a log-probability in [-inf, 0] (up to ``LOGPROB_SLACK``, clipped to 0), or
    None for anything else: not a number, NaN, too large, an integer beyond float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        logprob = float(value)
    except OverflowError:
        return None
    return min(logprob, 0.0) if logprob <= LOGPROB_SLACK else None  # NaN fails the comparison


def masses_from_top_logprobs(choice: dict) -> list[float] | None:
    """Per-score probability mass from ``choice.logprobs.top_logprobs[0]`` (tokens that are not
    a score once stripped are ignored), or None when the choice has no top logprobs.
    ``ValueError`` when a score token's logprob is not a number <= 0 or the masses sum to more
    than 1 (both up to ``LOGPROB_SLACK``)."""
    logprobs = choice.get("logprobs")
    top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    if not isinstance(top, list) or not top or not isinstance(top[0], dict):
        return None
    masses = [0.0] * len(SCORE_VALUES)
    for token, value in top[0].items():
        score = _SCORE_TOKENS.get(token.strip())
        if score is None:
            continue
        logprob = _logprob(value)
        if logprob is None:
            raise ValueError(f"score token {preview(token)} has logprob {preview(value)}")
        masses[score] += math.exp(logprob)
    if sum(masses) > 1.0 + LOGPROB_SLACK:
        raise ValueError(f"the score tokens' probabilities sum to {sum(masses):.4g} > 1")
    return masses


class HTTPCriticBackend:
    """An OpenAI-compatible completions endpoint as critic engine."""

    def __init__(
        self,
        base_url: str,
        model: str,
        timeout: float,
        retries: int,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        try:
            self.endpoint = parse_endpoint(
                completions_url(base_url), endpoint_token(CRITIC_URL_TOKEN)
            )
        except HTTPJSONError as err:
            raise CriticBackendError(f"--critic_url {err}") from err
        except SecretError as err:
            raise CriticBackendError(str(err)) from err
        self.model, self.timeout, self.retries = model, timeout, retries
        self.max_response_bytes = max_response_bytes

    def _failure(self, err: ValueError) -> CriticBackendError:
        return CriticBackendError(f"POST {self.endpoint.shown}: {err}")

    def _choices(self, payload: dict, n: int) -> list[dict]:
        try:
            answer = post_json(
                self.endpoint,
                payload,
                self.timeout,
                self.retries,
                max_response_bytes=self.max_response_bytes,
            )
        except HTTPJSONError as err:
            raise CriticBackendError(str(err)) from err
        try:
            return ordered_choices(answer, n)
        except ValueError as err:
            raise self._failure(err) from err

    def complete(
        self, prompts: Sequence[str], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        payload = {
            "model": self.model,
            "prompt": list(prompts),
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        choices = self._choices(payload, len(prompts))
        return [c["text"] if isinstance(c.get("text"), str) else "" for c in choices]

    def score_masses(self, prompts: Sequence[str]) -> list[list[float] | None]:
        payload = {
            "model": self.model,
            "prompt": list(prompts),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": TOP_LOGPROBS,
        }
        choices = self._choices(payload, len(prompts))
        try:
            return [masses_from_top_logprobs(c) for c in choices]
        except ValueError as err:
            raise self._failure(err) from err


CriticBackend = HFCriticBackend | HTTPCriticBackend


class Critic:
    """One critique agent: ``judge(requests) -> verdicts`` for one round over a batch."""

    def __init__(
        self,
        backend: CriticBackend,
        persona: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
    ) -> None:
        self.backend, self.persona = backend, persona
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed

    def _prompt(self, request: JudgeRequest) -> str:
        if request.round == 1 or request.own is None:
            return first_round_prompt(self.persona, request.context, request.response)
        return revision_prompt(
            self.persona,
            request.context,
            request.response,
            request.round - 1,
            (request.own.critique, request.own.score),
            [(peer.critique, peer.score) for peer in request.peers],
        )

    def judge(self, requests: Sequence[JudgeRequest], call: int = 1) -> list[Verdict]:
        """One verdict per request. Critiques are sampled with seed ``seed * 100003 + call``:
        ``call`` is the caller's count of judge calls, so a critic rebuilt after a fault
        samples what the lost one would have."""
        prompts = [self._prompt(r) for r in requests]
        seed = self.seed * 100_003 + call
        try:
            critiques = [
                clean_critique(text)
                for text in self.backend.complete(
                    prompts, self.max_new_tokens, self.temperature, seed
                )
            ]
        except CriticBackendError as err:
            return [Verdict("", None, "failed", str(err)) for _ in requests]
        cued = [f"{p} {c}{SCORE_CUE}" for p, c in zip(prompts, critiques)]
        try:
            masses, mass_error = self.backend.score_masses(cued), ""
        except CriticBackendError as err:
            masses, mass_error = [None] * len(cued), str(err)
        verdicts = []
        for prompt, critique, mass in zip(cued, critiques, masses):
            score = expected_score(mass) if mass is not None else None
            verdicts.append(
                Verdict(critique, score, "probs")
                if score is not None
                else self._score_from_text(prompt, critique, mass_error)
            )
        return verdicts

    def _score_from_text(self, cued_prompt: str, critique: str, mass_error: str) -> Verdict:
        """Fallback: generate a few tokens after the cue and parse a number in [0, 5]; a failed
        verdict's error also gives ``mass_error`` (why the masses failed, if they did)."""
        try:
            text = self.backend.complete([cued_prompt], SCORE_TEXT_TOKENS, 0.0, self.seed)[0]
        except CriticBackendError as err:
            return _failed(critique, mass_error, str(err))
        score = parse_score_text(text)
        if score is None:
            return _failed(critique, mass_error, f"no score in {text[:40]!r}")
        return Verdict(critique, score, "text")


def _failed(critique: str, *reasons: str) -> Verdict:
    return Verdict(critique, None, "failed", "; ".join(r for r in reasons if r))


@dataclass(frozen=True)
class CriticSpec:
    """How to build one critic: ``engine`` ``"hf"`` (``model`` = path or name) or ``"http"``
    (``url`` = OpenAI-compatible base URL, ``model`` = the name sent to the server).
    ``follows_policy``: the critic runs on the policy and takes its weights every round.
    ``url`` is left out of ``repr`` (it may hold credentials)."""

    engine: str
    model: str
    persona: int
    url: str | None = field(default=None, repr=False)
    max_new_tokens: int = 32
    temperature: float = 0.7
    seed: int = 0
    timeout: float = 30.0
    retries: int = 1
    follows_policy: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def make_backend(spec: CriticSpec) -> CriticBackend:
    if spec.engine == "hf":
        return HFCriticBackend(spec.model)
    if spec.engine == "http":
        if not spec.url:
            raise ValueError("an http critic needs a url")
        return HTTPCriticBackend(
            spec.url, spec.model, spec.timeout, spec.retries, spec.max_response_bytes
        )
    raise ValueError(f"unknown critic engine {spec.engine!r}")


def make_critic(spec: CriticSpec, backend: CriticBackend | None = None) -> Critic:
    """A critic from its spec; pass ``backend`` to share one model between critics."""
    return Critic(
        backend or make_backend(spec),
        spec.persona,
        spec.max_new_tokens,
        spec.temperature,
        spec.seed,
    )
