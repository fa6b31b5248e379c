import pytest

from ray_adlf.data.formats import (
    IGNORE_INDEX,
    prepare_tokenizer,
    render_conversation,
    render_prompt,
    stop_token,
    tokenize_conversation,
)
from ray_adlf.data.records import Turn
from ray_adlf.models.loading import load_tokenizer

TURNS = [
    Turn("system", "Be nice."),
    Turn("user", "Hi there"),
    Turn("assistant", "Hello!"),
    Turn("user", "What is 2 plus 2?"),
    Turn("assistant", "4."),
]


@pytest.fixture
def tokenizer():
    return load_tokenizer("tiny")


def labelled_text(tokenizer, example):
    return tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    )


def test_standard_uses_the_chat_template(tokenizer):
    text, spans = render_conversation(TURNS, tokenizer, "standard")
    assert text == tokenizer.apply_chat_template(
        [{"role": t.role, "content": t.content} for t in TURNS], tokenize=False
    )
    assert [text[a:b] for a, b in spans] == ["Hello!<|end|>", "4.<|end|>"]
    assert render_prompt(TURNS[:4], tokenizer, "standard").endswith("<|assistant|>\n")
    assert stop_token(tokenizer, "standard") == "<|end|>"


def test_role_markers_add_special_tokens_and_render(tokenizer):
    before = len(tokenizer)
    assert prepare_tokenizer(tokenizer, "role_markers") == 6
    assert len(tokenizer) == before + 6
    assert tokenizer.convert_tokens_to_ids("</assistant>") >= before
    text, spans = render_conversation(TURNS, tokenizer, "role_markers")
    assert text == (
        "<s><system>Be nice.</system><user>Hi there</user>"
        "<assistant>Hello!</assistant><user>What is 2 plus 2?</user>"
        "<assistant>4.</assistant>"
    )
    assert [text[a:b] for a, b in spans] == ["Hello!</assistant>", "4.</assistant>"]
    assert render_prompt(TURNS[:2], tokenizer, "role_markers").endswith("</user><assistant>")
    assert stop_token(tokenizer, "role_markers") == "</assistant>"


def test_turn_markers_render(tokenizer):
    assert prepare_tokenizer(tokenizer, "turn_markers") == 2
    text, _ = render_conversation(TURNS[1:3], tokenizer, "turn_markers")
    assert text == (
        "<s><|turn_start|>user\nHi there<|turn_end|>\n<|turn_start|>assistant\nHello!<|turn_end|>\n"
    )
    assert stop_token(tokenizer, "turn_markers") == "<|turn_end|>"


@pytest.mark.parametrize("token_format", ["standard", "role_markers", "turn_markers"])
def test_labels_cover_assistant_tokens_only(tokenizer, token_format):
    prepare_tokenizer(tokenizer, token_format)
    example = tokenize_conversation(TURNS, tokenizer, token_format, max_seq_length=512)
    end = stop_token(tokenizer, token_format)
    assert labelled_text(tokenizer, example) == f"Hello!{end}4.{end}"
    assert not example.truncated
    assert len(example.input_ids) == len(example.labels)


def test_truncation_is_explicit(tokenizer):
    full = tokenize_conversation(TURNS, tokenizer, "standard", max_seq_length=512)
    cut = tokenize_conversation(TURNS, tokenizer, "standard", max_seq_length=10)
    assert cut.truncated and len(cut.input_ids) == 10
    assert cut.input_ids == full.input_ids[:10] and cut.labels == full.labels[:10]


def test_standard_without_chat_template_is_a_clear_error(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        prepare_tokenizer(tokenizer, "standard")
