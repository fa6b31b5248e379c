"""SFT examples: split, assistant-only labels, decision-transformer prefix, critique examples."""

import pytest
import torch

from ray_adlf.data.formats import IGNORE_INDEX, prepare_tokenizer
from ray_adlf.data.prompts import critique_prompt, generation_prompt
from ray_adlf.data.records import Record, Turn, split_records
from ray_adlf.data.sft_dataset import (
    build_examples,
    collate_examples,
    conversation_example,
    critique_example,
)
from ray_adlf.models.loading import load_tokenizer


def record(answer: str, score: float, reason: str | None = None, line: int = 1) -> Record:
    turns = (Turn("user", "What is 2 plus 2?"), Turn("assistant", answer))
    return Record(turns, score, reason, "test.jsonl", line)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def decode_where(tokenizer, example, labels) -> str:
    return tokenizer.decode(
        [t for t, label in zip(example.input_ids, labels) if label != IGNORE_INDEX]
    )


def test_split_is_seeded_disjoint_and_complete():
    records = [record(str(i), 3.0, line=i) for i in range(50)]
    train, held_out = split_records(records, 0.2, seed=7)
    assert len(held_out) == 10 and len(train) == 40
    assert sorted(r.line for r in train + held_out) == list(range(50))
    assert split_records(records, 0.2, seed=7) == (train, held_out)
    assert split_records(records, 0.2, seed=8)[1] != held_out


def test_split_holds_out_at_least_one_and_none_at_zero():
    records = [record(str(i), 3.0, line=i) for i in range(5)]
    assert len(split_records(records, 0.01, seed=0)[1]) == 1
    assert split_records(records, 0.0, seed=0)[1] == []


def test_conversation_example_trains_the_assistant_turn_only(tokenizer):
    example, truncated = conversation_example(record("4.", 4.0), tokenizer, "standard", 128, False)
    assert not truncated and example.kind == "conversation"
    assert decode_where(tokenizer, example, example.labels) == "4.<|end|>"
    assert set(example.critique_labels) == {IGNORE_INDEX}


def test_decision_transformer_conditions_training_on_the_record_score(tokenizer):
    plain, _ = conversation_example(record("4.", 4.4), tokenizer, "standard", 128, False)
    high, _ = conversation_example(record("4.", 4.4), tokenizer, "standard", 128, True)
    low, _ = conversation_example(record("4.", 1.0), tokenizer, "standard", 128, True)
    assert "Target score" not in tokenizer.decode(plain.input_ids)
    assert tokenizer.decode(high.input_ids).startswith("<|system|>\nTarget score: 4.5/5<|end|>")
    assert "Target score: 1/5" in tokenizer.decode(low.input_ids)
    # the prefix is context, not a target: the trained tokens are the same
    assert decode_where(tokenizer, high, high.labels) == "4.<|end|>"


@pytest.mark.parametrize("token_format", ["standard", "role_markers", "turn_markers"])
def test_generation_prompt_conditions_on_the_target_score(token_format):
    tokenizer = load_tokenizer("tiny")
    prepare_tokenizer(tokenizer, token_format)
    context = [Turn("user", "Hi")]
    conditioned = generation_prompt(context, tokenizer, token_format, target_score=5.0)
    assert "Target score: 5/5" in conditioned
    assert "Target score" not in generation_prompt(context, tokenizer, token_format, None)


def test_critique_example_trains_the_critique_only(tokenizer):
    example, _ = critique_example(
        record("4.", 4.5, "Right and polite."), tokenizer, "standard", 128
    )
    assert example.kind == "critique"
    critique = decode_where(tokenizer, example, example.critique_labels)
    assert critique == "Score: 4.5/5\nReason: Right and polite.<|end|>"
    assert set(example.labels) == {IGNORE_INDEX}
    text = tokenizer.decode(example.input_ids)
    assert critique_prompt(record("4.", 4.5).conversation, tokenizer, "standard") in text


def test_critique_examples_only_for_records_with_a_reason_and_never_conditioned(tokenizer):
    records = [record("4.", 4.5, "Right."), record("5.", 1.0), record("four", 4.0, "Fine.")]
    examples, stats = build_examples(records, tokenizer, "standard", 128, True, True)
    kinds = [e.kind for e in examples]
    assert kinds == ["conversation"] * 3 + ["critique"] * 2
    assert stats.built == 5 and stats.dropped == 0
    for example in examples[3:]:
        assert "Target score" not in tokenizer.decode(example.input_ids)
    without, _ = build_examples(records, tokenizer, "standard", 128, True, False)
    assert [e.kind for e in without] == ["conversation"] * 3


def test_examples_with_nothing_trained_after_truncation_are_dropped_and_counted(tokenizer):
    long_question = Turn("user", "What is 2 plus 2? " * 30)
    cut = Record((long_question, Turn("assistant", "4.")), 3.0, "Ok.", "t.jsonl", 1)
    examples, stats = build_examples(
        [cut, record("4.", 4.0)], tokenizer, "standard", 32, False, True
    )
    assert stats.truncated == 2 and stats.dropped == 2 and stats.built == 1
    assert len(examples) == 1


def test_collate_pads_to_the_right(tokenizer):
    examples, _ = build_examples(
        [record("4.", 4.0, "Ok."), record("It is four, of course!", 2.0)],
        tokenizer,
        "standard",
        128,
        False,
        True,
    )
    batch = collate_examples(examples, tokenizer.pad_token_id)
    width = max(len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == (3, width)
    first = len(examples[0].input_ids)
    assert batch["attention_mask"][0].tolist() == [1] * first + [0] * (width - first)
    assert set(batch["labels"][0, first:].tolist()) <= {IGNORE_INDEX}
    assert batch["is_conversation"].tolist() == [True, True, False]
    assert torch.equal(batch["scores"], torch.tensor([4.0, 2.0, 4.0]))
