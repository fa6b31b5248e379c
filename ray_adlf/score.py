"""``ray-adlf score``: every reward part for the assistant turns of a dataset, as ledger rows.

Each assistant turn of each record is scored as a response to the turns before it, with the
same actors and combiner the RL round uses (``actors.reward.compute_adlf_rewards``): the
reward model (``--reward_model_path``; needed unless ``--adlf_alpha 1``), the enabled internal
signals (fluency from a reference actor on ``--model_name`` at ``--temperature``, whose
tokenizer also gives the token ids), plugins, and the debate (``--use_debate_reward``).

One row per assistant turn in the RL ledger's schema (``ledger.schema``), so a dataset's parts
and a run's compare column by column: ``prompt_id`` and ``turn`` say which turn,
``human_score`` is the record's score on its last assistant turn (the turn it rates), the
round, policy and learner columns are null. ``--output`` ending in ``.jsonl`` gets the same
rows as JSON lines, any other name Parquet. ``ray-adlf inspect OUT`` reads either.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ray_adlf.config import Config, ConfigError
from ray_adlf.data.formats import prepare_tokenizer, render_prompt
from ray_adlf.data.records import Record, Turn
from ray_adlf.data.sample import sample_path
from ray_adlf.data.validate import read_records
from ray_adlf.ledger.schema import ledger_table, scored_columns
from ray_adlf.ledger.store import write_file
from ray_adlf.rewards.scorer import make_combiner


def assistant_turns(records: list[Record]) -> list[tuple[Record, int, tuple[Turn, ...], str]]:
    """``(record, turn index, context, response)`` for every assistant turn."""
    return [
        (record, i, record.conversation[:i], turn.content)
        for record in records
        for i, turn in enumerate(record.conversation)
        if turn.role == "assistant"
    ]


def token_rows(
    contexts: list, responses: list[str], tokenizer, token_format: str, max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and response ids of each pair, the prompt cut from the left so both fit in
    ``max_length`` tokens (the response keeps at most ``max_length - 1``)."""
    prompts, answers = [], []
    for context, response in zip(contexts, responses):
        ids = tokenizer(response, add_special_tokens=False)["input_ids"][: max_length - 1]
        text = render_prompt(list(context), tokenizer, token_format)
        prompts.append(
            tokenizer(text, add_special_tokens=False)["input_ids"][len(ids) - max_length :]
        )
        answers.append(ids)
    return prompts, answers


def last_assistant_index(record: Record) -> int:
    return max(i for i, t in enumerate(record.conversation) if t.role == "assistant")


def run_score(cfg: Config, output: str | Path, batch_size: int = 64) -> Path:
    """Score ``cfg.data.data_path`` into ``output`` (JSONL); returns its path.

    Starts a local Ray cluster unless one is already initialised (and then shuts it down).
    """
    import ray

    from ray_adlf.actors.critique import CritiquePool
    from ray_adlf.actors.reference import ReferenceActorPool
    from ray_adlf.actors.reward import RewardPool, compute_adlf_rewards
    from ray_adlf.models.loading import load_tokenizer
    from ray_adlf.rewards.catalog import SignalInputs

    reward_model = cfg.reward_model.reward_model_path
    if cfg.rewards.adlf_alpha < 1.0 and not reward_model:
        raise ConfigError(
            "--reward_model_path: needed for the external reward unless --adlf_alpha 1"
        )
    path = str(sample_path()) if cfg.data.data_path == "sample" else cfg.data.data_path
    records = read_records(
        path, cfg.data.lenient, cfg.data.max_bad_fraction, cfg.data.max_line_bytes
    ).records
    items = assistant_turns(records)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(include_dashboard=False)
    reference = cfg.model.model_name
    tokenizer = load_tokenizer(reference, cfg.model.trust_remote_code)
    prepare_tokenizer(tokenizer, cfg.data.token_format)
    combiner = make_combiner(cfg.rewards)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pool = critics = fluency = None
    try:
        pool = RewardPool.from_config(cfg, reference, reward_model)
        if cfg.rewards.use_debate_reward:
            critics = CritiquePool.from_config(cfg, reference, reference)
        if cfg.rewards.use_fluency_reward:
            fluency = ReferenceActorPool(
                reference, cfg.model.trust_remote_code, cfg.resources.reward_num_cpus
            )
        tables = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            contexts, responses = [c for _, _, c, _ in chunk], [r for *_, r in chunk]
            prompt_ids, response_ids = token_rows(
                contexts, responses, tokenizer, cfg.data.token_format, cfg.data.max_seq_length
            )
            logprobs = None
            if fluency is not None:
                temperature = cfg.rollout.temperature
                logprobs = fluency.logprobs(prompt_ids, response_ids, temperature)
            inputs = SignalInputs(contexts, responses, response_ids, logprobs)
            batch = compute_adlf_rewards(cfg.rewards, inputs, prompt_ids, pool, combiner, critics)
            columns = scored_columns(
                [record.record_id for record, *_ in chunk],
                [turn for _, turn, _, _ in chunk],
                contexts,
                responses,
                [len(ids) for ids in response_ids],
                batch.parts,
                batch.rewards,
                batch.debate,
                cfg.rewards.adlf_alpha,
                cfg.run.ledger_max_chars,
            )
            columns["sample"] = list(range(start, start + len(chunk)))
            columns["human_score"] = [
                record.score if turn == last_assistant_index(record) else None
                for record, turn, _, _ in chunk
            ]
            tables.append(ledger_table(columns))
            means = ", ".join(f"{k} {v:.3f}" for k, v in batch.means().items())
            print(f"[score] {start + len(chunk)}/{len(items)}: {means}", flush=True)
        write_file(pa.concat_tables(tables), output)
    finally:
        for actors in (pool, critics, fluency):
            if actors is not None:
                actors.shutdown()
        if started_ray:
            ray.shutdown()
    print(f"[score] wrote {len(items)} rows to {output}", flush=True)
    return output
