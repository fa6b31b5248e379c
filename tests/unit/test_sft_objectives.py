"""The SFT objective of SFTObjectivesTrainer.compute_loss on the tiny model (no Ray).

Each advanced objective is checked against a loss recomputed here from its definition, so the
tests fail when the term is dropped; the contrastive test also shows what training with the term
does to the response representations.
"""

import math

import pytest
import torch
from transformers import TrainingArguments

from ray_adlf.algo.contrastive import info_nce_loss
from ray_adlf.algo.sft_losses import IGNORE_INDEX, response_embeddings, sft_token_losses
from ray_adlf.data.critique import format_critique, parse_critique
from ray_adlf.data.records import Record, Turn
from ray_adlf.data.sft_dataset import EpochOrder, SFTDataset, build_examples, collate_examples
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.train.sft_trainer import SFTObjectives, SFTObjectivesTrainer

ANSWERS = {
    "The capital of Peru is Lima. Happy to help!": (5.0, "Correct and polite."),
    "Lima.": (4.0, "Correct but very short."),
    "Sure! Lima is the capital of Peru.": (4.5, None),
    "I don't care about that.": (0.5, "Rude and off-topic."),
    "It is a city somewhere in Peru, I think.": (2.0, None),
    "The capital of Peru is Oslo.": (1.0, "The answer is factually wrong."),
}


def records() -> list[Record]:
    return [
        Record(
            (Turn("user", "What is the capital of Peru?"), Turn("assistant", answer)),
            score,
            reason,
            "t.jsonl",
            line,
        )
        for line, (answer, (score, reason)) in enumerate(ANSWERS.items(), 1)
    ]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def make_trainer(tmp_path, tokenizer, objectives: SFTObjectives, self_critique: bool):
    torch.manual_seed(0)
    examples, _ = build_examples(records(), tokenizer, "standard", 128, False, self_critique)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=len(examples),
        disable_tqdm=True,
    )
    trainer = SFTObjectivesTrainer(
        model=load_causal_lm("tiny"),
        args=args,
        train_dataset=SFTDataset(examples),
        data_collator=lambda batch: collate_examples(batch, tokenizer.pad_token_id),
        objectives=objectives,
        order=EpochOrder(len(examples), seed=0),
    )
    return trainer, collate_examples(examples, tokenizer.pad_token_id)


def test_token_losses_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
    labels = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX]])
    critique = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2]])
    lm, crit = sft_token_losses(logits, labels, critique)
    # token 1 is predicted from position 0, token 2 from position 1
    assert lm.item() == pytest.approx(-math.log(0.25))
    assert crit.item() == pytest.approx(-math.log(0.1))
    none = torch.full_like(labels, IGNORE_INDEX)
    assert sft_token_losses(logits, labels, none)[1].item() == 0.0
    with pytest.raises(ValueError, match="both"):
        sft_token_losses(logits, labels, labels)


def test_response_embeddings_average_the_trained_tokens():
    hidden = torch.arange(12.0).reshape(1, 4, 3)
    labels = torch.tensor([[IGNORE_INDEX, 5, 6, IGNORE_INDEX]])
    assert response_embeddings(hidden, labels).tolist() == [[4.5, 5.5, 6.5]]


def test_critique_format_round_trip():
    text = format_critique(3.75, "  Mostly right.  ")
    assert text == "Score: 3.8/5\nReason: Mostly right."
    assert parse_critique(text) == (3.8, "Mostly right.")
    assert parse_critique("blah Score: 4 / 5") == (4.0, None)
    assert parse_critique("Score: 7/5") is None and parse_critique("no score") is None


@pytest.mark.parametrize("weight", [0.3, 1.5])
def test_critique_loss_is_added_with_its_weight(tmp_path, tokenizer, weight):
    objectives = SFTObjectives(use_self_critique=True, critique_weight=weight)
    trainer, batch = make_trainer(tmp_path, tokenizer, objectives, self_critique=True)
    assert (~batch["is_conversation"]).sum() == 4  # the four records with a reason
    loss = trainer.compute_loss(trainer.model, batch)
    logits = trainer.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    lm, critique = sft_token_losses(logits, batch["labels"], batch["critique_labels"])
    assert critique.item() > 1.0
    assert loss.item() == pytest.approx((lm + weight * critique).item(), rel=1e-5)


def test_records_without_a_reason_add_no_critique_loss(tmp_path, tokenizer):
    objectives = SFTObjectives(use_self_critique=True, critique_weight=0.5)
    trainer, batch = make_trainer(tmp_path, tokenizer, objectives, self_critique=True)
    no_reason = [i for i, r in enumerate(records()) if r.score_reason is None]
    sub = {k: v[no_reason] for k, v in batch.items()}
    loss = trainer.compute_loss(trainer.model, sub)
    logits = trainer.model(input_ids=sub["input_ids"], attention_mask=sub["attention_mask"]).logits
    lm, critique = sft_token_losses(logits, sub["labels"], sub["critique_labels"])
    assert critique.item() == 0.0 and loss.item() == pytest.approx(lm.item(), rel=1e-6)


def contrastive_reference(model, batch, temperature: float, threshold: float) -> torch.Tensor:
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
    )
    conversations = batch["is_conversation"]
    pooled = response_embeddings(out.hidden_states[-1], batch["labels"])[conversations]
    return info_nce_loss(pooled, batch["scores"][conversations], temperature, threshold)


def test_contrastive_loss_is_added_with_its_weight(tmp_path, tokenizer):
    objectives = SFTObjectives(
        use_contrastive=True,
        contrastive_weight=0.7,
        contrastive_temp=0.07,
        contrastive_threshold=3.5,
    )
    trainer, batch = make_trainer(tmp_path, tokenizer, objectives, self_critique=True)
    loss = trainer.compute_loss(trainer.model, batch)
    logits = trainer.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    lm, _ = sft_token_losses(logits, batch["labels"], batch["critique_labels"])
    contrastive = contrastive_reference(trainer.model, batch, 0.07, 3.5)
    assert contrastive.item() > 0.1
    assert loss.item() == pytest.approx((lm + 0.7 * contrastive).item(), rel=1e-5)


def high_low_margin(model, batch, threshold: float) -> float:
    """Mean cosine of high-high pairs minus mean cosine of high-low pairs."""
    with torch.no_grad():
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        )
    z = torch.nn.functional.normalize(response_embeddings(out.hidden_states[-1], batch["labels"]))
    high = batch["scores"] >= threshold
    cosine = z @ z.T
    pairs_high = cosine[high][:, high][~torch.eye(int(high.sum()), dtype=torch.bool)]
    return (pairs_high.mean() - cosine[high][:, ~high].mean()).item()


def test_training_with_contrastive_pulls_high_scores_together(tmp_path, tokenizer):
    margins = {}
    for use_contrastive in (False, True):
        objectives = SFTObjectives(
            use_contrastive=use_contrastive,
            contrastive_weight=1.0,
            contrastive_temp=0.1,
            contrastive_threshold=3.5,
        )
        trainer, batch = make_trainer(tmp_path, tokenizer, objectives, self_critique=False)
        before = high_low_margin(trainer.model, batch, 3.5)
        optimizer = torch.optim.Adam(trainer.model.parameters(), lr=3e-3)
        for _ in range(15):
            optimizer.zero_grad()
            trainer.compute_loss(trainer.model, batch).backward()
            optimizer.step()
        margins[use_contrastive] = high_low_margin(trainer.model, batch, 3.5) - before
    assert margins[True] > margins[False] + 0.05


def test_log_adds_per_objective_token_means(tmp_path, tokenizer):
    objectives = SFTObjectives(
        use_self_critique=True, critique_weight=0.5, use_contrastive=True, contrastive_weight=0.1
    )
    trainer, batch = make_trainer(tmp_path, tokenizer, objectives, self_critique=True)
    trainer.model.train()  # training-mode losses are logged as train metrics
    trainer.compute_loss(trainer.model, batch)
    halves = [{k: v[i::2] for k, v in batch.items()} for i in (0, 1)]
    for half in halves:
        trainer.compute_loss(trainer.model, half)
    logs = {"loss": 1.0}
    trainer.log(logs)
    logits = trainer.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    lm, critique = sft_token_losses(logits, batch["labels"], batch["critique_labels"])
    # the whole batch once and its two halves once: token means equal the whole batch's
    assert logs["lm_loss"] == pytest.approx(lm.item(), rel=1e-5)
    assert logs["critique_loss"] == pytest.approx(critique.item(), rel=1e-5)
    assert "contrastive_loss" in logs
    after = {"loss": 1.0}
    trainer.log(after)
    assert "lm_loss" not in after  # drained
