"""Render conversations to training text and token ids with assistant-only labels.

Three token formats (``--token_format``):

``standard``
    The tokenizer's own chat template (``apply_chat_template``); generation stops at the
    tokenizer's EOS token. A tokenizer without a chat template is an error.

``role_markers``
    Paired tags per role, added to the tokenizer as special tokens::

        <system>You are helpful.</system><user>Hi</user><assistant>Hello!</assistant>

    Generation is prompted with ``<assistant>`` and stops at ``</assistant>``.

``turn_markers``
    One generic turn marker pair, the role as the turn's first line::

        <|turn_start|>user
        Hi<|turn_end|>
        <|turn_start|>assistant
        Hello!<|turn_end|>

    Generation is prompted with ``<|turn_start|>assistant\\n`` and stops at ``<|turn_end|>``.

Labels: a token is trained on (label = its id) only when its characters lie inside an assistant
span: the assistant content plus the closing marker that ends the turn, so the model learns to
stop. Every other label is -100. Spans are found on the rendered text (render the conversation
up to each assistant turn, with and without it) and mapped to tokens with the fast tokenizer's
offset mapping, which works for any chat template whose renderings of a prefix are prefixes of
the full rendering. Sequences longer than ``max_seq_length`` are cut at the right and flagged
``truncated`` so callers can count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_adlf.data.records import Turn

TokenFormat = Literal["standard", "role_markers", "turn_markers"]
TOKEN_FORMATS: tuple[str, ...] = ("standard", "role_markers", "turn_markers")
ROLE_TAGS = {role: (f"<{role}>", f"</{role}>") for role in ("system", "user", "assistant")}
TURN_START, TURN_END = "<|turn_start|>", "<|turn_end|>"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    """One conversation as model input: ``input_ids``/``labels`` are ``[T]`` lists, T <= max."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


def format_special_tokens(token_format: str) -> list[str]:
    """The special tokens a format needs beyond the tokenizer's own."""
    if token_format == "role_markers":
        return [tag for pair in ROLE_TAGS.values() for tag in pair]
    if token_format == "turn_markers":
        return [TURN_START, TURN_END]
    if token_format == "standard":
        return []
    raise ValueError(f"unknown token format {token_format!r}; choose from {TOKEN_FORMATS}")


def prepare_tokenizer(tokenizer, token_format: str) -> int:
    """Add the format's special tokens; return how many were new (resize embeddings if > 0)."""
    tokens = format_special_tokens(token_format)
    if token_format == "standard" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "token format 'standard' needs a tokenizer with a chat template; this tokenizer has "
            "none: use --token_format role_markers or turn_markers"
        )
    if not tokens:
        return 0
    return tokenizer.add_special_tokens(
        {"additional_special_tokens": tokens}, replace_extra_special_tokens=False
    )


def stop_token(tokenizer, token_format: str) -> str:
    """The token that ends an assistant turn in this format (generation stops there)."""
    if token_format == "role_markers":
        return ROLE_TAGS["assistant"][1]
    if token_format == "turn_markers":
        return TURN_END
    return tokenizer.eos_token


def _render_turn(turn: Turn, token_format: str) -> str:
    if token_format == "role_markers":
        start, end = ROLE_TAGS[turn.role]
        return f"{start}{turn.content}{end}"
    return f"{TURN_START}{turn.role}\n{turn.content}{TURN_END}\n"


def _generation_cue(token_format: str) -> str:
    if token_format == "role_markers":
        return ROLE_TAGS["assistant"][0]
    return f"{TURN_START}assistant\n"


def _render(turns: list[Turn], tokenizer, token_format: str, add_generation_prompt: bool) -> str:
    if token_format == "standard":
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    text = "".join(_render_turn(t, token_format) for t in turns)
    bos = tokenizer.bos_token or ""
    return bos + text + (_generation_cue(token_format) if add_generation_prompt else "")


def render_prompt(turns: list[Turn], tokenizer, token_format: str) -> str:
    """The context rendered and followed by the cue for the assistant's next turn."""
    return _render(list(turns), tokenizer, token_format, add_generation_prompt=True)


def render_conversation(
    turns: list[Turn], tokenizer, token_format: str
) -> tuple[str, list[tuple[int, int]]]:
    """Full text and the ``[start, end)`` character spans that carry labels (assistant turns)."""
    turns = list(turns)
    text = _render(turns, tokenizer, token_format, add_generation_prompt=False)
    spans = []
    for index, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        before = _render(turns[:index], tokenizer, token_format, add_generation_prompt=True)
        through = _render(turns[: index + 1], tokenizer, token_format, add_generation_prompt=False)
        if not (text.startswith(before) and text.startswith(through)):
            raise ValueError(
                "the chat template does not render conversation prefixes as prefixes of the "
                "whole; assistant-only labels cannot be placed (try --token_format turn_markers)"
            )
        spans.append((len(before), len(through.rstrip("\n"))))
    return text, spans


def tokenize_conversation(
    turns: list[Turn], tokenizer, token_format: str, max_seq_length: int
) -> TokenizedExample:
    """Token ids and assistant-only labels, cut to ``max_seq_length`` tokens."""
    text, spans = render_conversation(turns, tokenizer, token_format)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = [
        token
        if any(start <= lo and hi <= end and hi > lo for start, end in spans)
        else IGNORE_INDEX
        for token, (lo, hi) in zip(ids, offsets)
    ]
    truncated = len(ids) > max_seq_length
    return TokenizedExample(ids[:max_seq_length], labels[:max_seq_length], truncated)
