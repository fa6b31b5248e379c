"""--use_curriculum: the batches the Trainer's dataloader yields go from easy to hard (no Ray)."""

import math

import pytest
from transformers import TrainingArguments

from ray_adlf.config import Config
from ray_adlf.data.curriculum import difficulty_scores
from ray_adlf.data.sample import sample_path
from ray_adlf.data.sft_dataset import (
    EpochOrder,
    EpochOrderSampler,
    SFTDataset,
    build_examples,
    collate_examples,
)
from ray_adlf.data.validate import read_records
from ray_adlf.models.loading import load_causal_lm, load_tokenizer
from ray_adlf.train.sft import epoch_order
from ray_adlf.train.sft_trainer import SamplerEpochCallback, SFTObjectives, SFTObjectivesTrainer

BATCH = 8


@pytest.fixture(scope="module")
def examples():
    tokenizer = load_tokenizer("tiny")
    records = read_records(sample_path()).records[:160]
    built, _ = build_examples(records, tokenizer, "standard", 128, False, False)
    unique = list({tuple(e.input_ids): e for e in built}.values())  # batches name examples by ids
    return unique, tokenizer.pad_token_id


def seen_batches(tmp_path, examples, use_curriculum: bool, epoch: int = 0) -> list[list[int]]:
    """Example indices of each batch the Trainer's train dataloader yields in ``epoch``."""
    built, pad_id = examples
    cfg = Config()
    cfg.data.use_curriculum = use_curriculum
    cfg.sft.sft_batch_size = BATCH
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=BATCH,
        disable_tqdm=True,
    )
    trainer = SFTObjectivesTrainer(
        model=load_causal_lm("tiny"),
        args=args,
        train_dataset=SFTDataset(built),
        data_collator=lambda batch: collate_examples(batch, pad_id),
        objectives=SFTObjectives(),
        order=epoch_order(cfg, built, world_size=1),
    )
    index_of = {tuple(e.input_ids): i for i, e in enumerate(built)}
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    batches = []
    for batch in loader:
        rows = [
            [t for t, m in zip(ids, mask) if m]
            for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())
        ]
        batches.append([index_of[tuple(row)] for row in rows])
    return batches


def difficulties(examples) -> list[float]:
    built, _ = examples
    return difficulty_scores(
        [e.score for e in built],
        [len(e.input_ids) for e in built],
        Config().data.curriculum_score_weight,
    )


def mean(values) -> float:
    return sum(values) / len(values)


def test_curriculum_batches_go_from_easy_to_hard(tmp_path, examples):
    batches = seen_batches(tmp_path, examples, use_curriculum=True)
    difficulty = difficulties(examples)
    n = len(difficulty)
    easiest = set(sorted(range(n), key=lambda i: (difficulty[i], i))[: math.ceil(0.3 * n)])
    assert set(batches[0]) <= easiest  # step 0 draws from the easiest start_fraction = 0.3
    per_batch = [mean([difficulty[i] for i in batch]) for batch in batches]
    third = len(per_batch) // 3
    assert mean(per_batch[:third]) < mean(per_batch[-third:]) - 0.15
    assert sorted(i for batch in batches for i in batch) == list(range(n))


def test_without_curriculum_batches_are_shuffled(tmp_path, examples):
    batches = seen_batches(tmp_path, examples, use_curriculum=False)
    difficulty = difficulties(examples)
    per_batch = [mean([difficulty[i] for i in batch]) for batch in batches]
    third = len(per_batch) // 3
    assert abs(mean(per_batch[:third]) - mean(per_batch[-third:])) < 0.1


def test_curriculum_paces_the_first_epoch_then_shuffles(tmp_path, examples):
    first = seen_batches(tmp_path, examples, use_curriculum=True, epoch=0)
    assert seen_batches(tmp_path, examples, use_curriculum=True, epoch=0) == first
    second = seen_batches(tmp_path, examples, use_curriculum=True, epoch=1)
    shuffled = EpochOrder(len(examples[0]), seed=0).for_epoch(1)
    assert [i for batch in second for i in batch] == shuffled


def test_curriculum_batch_is_one_optimizer_step_across_workers(examples):
    cfg = Config()
    cfg.data.use_curriculum = True
    cfg.sft.sft_batch_size, cfg.sft.gradient_accumulation_steps = 4, 2
    order = epoch_order(cfg, examples[0], world_size=2)
    assert order.examples_per_step == 16 and order.difficulties is not None


@pytest.mark.parametrize(
    "state_epoch, expected", [(None, 0), (0.0, 0), (1.0, 1), (1.3, 1), (2 + 22 / 23, 2)]
)
def test_sampler_epoch_follows_the_trainer_state(state_epoch, expected):
    """Also in a resumed epoch, where the Trainer's set_epoch misses a custom sampler."""
    from transformers import TrainerControl, TrainerState

    sampler = EpochOrderSampler(EpochOrder(10, seed=0))
    state = TrainerState()
    state.epoch = state_epoch
    SamplerEpochCallback(sampler).on_epoch_begin(None, state, TrainerControl())
    assert sampler.epoch == expected
    assert list(sampler) == EpochOrder(10, seed=0).for_epoch(expected)
