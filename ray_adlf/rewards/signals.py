"""Internal reward signals, each a plain function with a value in [0, 1] (1 = best).

- coherence (``coherence_from_embeddings``): semantic fit of the response to the question it
  answers, ``c = max(0, cos(E(q), E(y)))`` where ``E`` is the L2-normalised mean-pooled
  all-MiniLM-L6-v2 sentence embedding (``rewards/models.py``), ``q`` the last user turn of the
  context and ``y`` the response; ``c = 0`` for an empty (blank) response.
  Why this choice: the embedding model is independent of the policy and of the reference model
  (so it stays meaningful when those are tiny or drift), and the reference model's view is
  already the fluency signal. Why the last user turn and not the whole context: a mean-pooled
  embedding of a long multi-turn context is dominated by earlier topics, and MiniLM reads at
  most 256 word pieces.
- length (``length_score``): 1 inside the band ``[lo, hi]`` tokens, a Gaussian fall-off outside:
  ``d = max(lo - n, 0, n - hi)``, ``s = exp(-0.5 * (d / width)^2)``.
- fluency (``fluency_score``): the frozen reference model's per-token likelihood of the
  response given the context, times a repetition factor:
  ``f = exp(mean_t log p_ref(y_t | x, y_<t)) * distinct_2(y)``, where
  ``distinct_2 = |unique token bigrams| / |token bigrams|`` (1 with fewer than 2 tokens); 0 for
  an empty response. ``exp(mean log p)`` is the inverse perplexity; language models give
  degenerate repetition a high likelihood (Holtzman et al. 2020), which the distinct-2 factor
  removes.
- faithfulness (``faithfulness_score``): agreement with facts the context states, read as
  copula claims ``<subject> is|are|was|were|equals [not] <value>`` (see ``extract_claims``).
  A response claim *agrees* when a context claim has the same subject, value and polarity, and
  *contradicts* when a context claim has the same subject and the same value with the other
  polarity, or another value with both positive. With ``a`` agreements and ``c``
  contradictions: ``faith = (a + 0.5) / (a + c + 1)`` (0.5 when nothing is checkable, 0.25
  for one contradiction, 0.75 for one agreement).
  Limits: English copula sentences only; subjects match on their last two content words, so
  paraphrases ("France's capital" vs "the capital of France") and coreference are missed;
  questions are not claims; world knowledge is not checked (a wrong capital the context never
  named is "nothing checkable", not a contradiction).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def coherence_from_embeddings(
    question_emb: np.ndarray, response_emb: np.ndarray, empty: np.ndarray
) -> np.ndarray:
    """``max(0, cos(q, y))``, 0 where ``empty``. question_emb, response_emb: [N, D]; empty: [N]
    bool -> [N]. Embeddings need not be normalised."""
    q = question_emb / np.maximum(np.linalg.norm(question_emb, axis=1, keepdims=True), 1e-12)
    y = response_emb / np.maximum(np.linalg.norm(response_emb, axis=1, keepdims=True), 1e-12)
    cosine = np.clip((q * y).sum(axis=1), 0.0, 1.0)
    return np.where(empty, 0.0, cosine)


def length_score(n_tokens: int, band_min: int, band_max: int, width: float) -> float:
    """``exp(-0.5 * (d / width)^2)`` with ``d = max(band_min - n, 0, n - band_max)``."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    distance = max(band_min - n_tokens, 0, n_tokens - band_max)
    return math.exp(-0.5 * (distance / width) ** 2)


def distinct_ratio(token_ids: Sequence[int], n: int = 2) -> float:
    """``|unique n-grams| / |n-grams|`` of ``token_ids``; 1 when there is no n-gram."""
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def fluency_score(token_logprobs: Sequence[float], token_ids: Sequence[int]) -> float:
    """``exp(mean(token_logprobs)) * distinct_ratio(token_ids, 2)``; 0 for no tokens.

    token_logprobs: [T] reference log-probabilities of the response tokens; token_ids: [T].
    """
    if len(token_ids) == 0:
        return 0.0
    if len(token_logprobs) != len(token_ids):
        raise ValueError(f"{len(token_logprobs)} logprobs for {len(token_ids)} tokens")
    return math.exp(float(np.mean(token_logprobs))) * distinct_ratio(token_ids, 2)


@dataclass(frozen=True)
class Claim:
    """``subject`` (last two content words before the copula) ``is [not]`` ``value``."""

    subject: tuple[str, ...]
    value: str
    negated: bool


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_SPLIT = re.compile(r"[,:;.!]")
_COPULA = re.compile(r"\b(?:is|are|was|were|equals)\b(\s+not\b)?", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
STOPWORDS = frozenset(
    _WORD.findall(
        "a an the my your our their his her its this that these those of to for in on at by with "
        "i you we they he she it me us them also really just usually actually probably so and or "
        "but then still always very quite there here what which who"
    )
)


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def extract_claims(text: str) -> list[Claim]:
    """Copula claims in ``text``: one per clause (split at , : ; . !) of each sentence that is
    not a question; the subject is the last two content words before the first copula, the
    value the first content word after it (and after an optional ``not``)."""
    claims = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?"):
            continue
        for clause in _CLAUSE_SPLIT.split(sentence):
            match = _COPULA.search(clause)
            if match is None:
                continue
            subject = _content_words(clause[: match.start()])[-2:]
            values = _content_words(clause[match.end() :])
            if subject and values:
                claims.append(Claim(tuple(subject), values[0], match.group(1) is not None))
    return claims


def faithfulness_score(context_texts: Sequence[str], response: str) -> float:
    """``(a + 0.5) / (a + c + 1)`` over the response's claims checked against the context's
    claims (a = agreements, c = contradictions; see the module docstring)."""
    facts = [claim for text in context_texts for claim in extract_claims(text)]
    agree = contradict = 0
    for claim in extract_claims(response):
        same_subject = [f for f in facts if f.subject == claim.subject]
        if any(f.value == claim.value and f.negated == claim.negated for f in same_subject):
            agree += 1
        elif any(
            (f.value == claim.value and f.negated != claim.negated)
            or (f.value != claim.value and not f.negated and not claim.negated)
            for f in same_subject
        ):
            contradict += 1
    return (agree + 0.5) / (agree + contradict + 1)
