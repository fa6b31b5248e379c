"""The ledger's pure parts: its rows, its files, and what ``inspect`` computes from them,
against values worked out by hand."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ray_adlf.data.records import Turn
from ray_adlf.debate.protocol import DebateResult, Verdict
from ray_adlf.ledger import analysis
from ray_adlf.ledger.schema import (
    FIXED,
    LEARNER_COLUMNS,
    clip_end,
    clip_start,
    join_columns,
    ledger_table,
    scored_columns,
    select_rows,
)
from ray_adlf.ledger.store import (
    LedgerWriter,
    is_recorded,
    read_ledger,
    recorded_rounds,
    round_file,
    write_file,
)
from ray_adlf.ledger.terminal import inspect_lines
from ray_adlf.train.experience import Experience, sample_statistics
from ray_adlf.train.rl_ledger import round_columns
from ray_adlf.train.rollout_batch import Rollout
from ray_adlf.train.rollout_producer import ProducedRound


def test_texts_are_cut_to_the_limit_with_a_marker():
    assert clip_end("abcdef", 6) == "abcdef" and clip_end("abcdefg", 6) == "abcde…"
    assert clip_start("abcdefg", 4) == "…efg" and len(clip_start("x" * 50, 10)) == 10


def debate(scores: list[float | None]) -> DebateResult:
    verdicts = [Verdict(f"critique {k}", s, "probs") for k, s in enumerate(scores)]
    return DebateResult(0.5, 0.1, 0.8, 2, 0, [verdicts, verdicts])


def scored(n: int = 2) -> dict[str, list]:
    parts = {
        "external": np.array([0.2, 0.8])[:n],
        "length": np.array([1.0, 0.5])[:n],
        "internal": np.array([1.0, 0.5])[:n],
        "reward_raw": np.array([0.6, 0.65])[:n],
        "reward": np.array([0.6, 0.65])[:n],
        "response_tokens": np.array([3.0, 4.0])[:n],
    }
    context = (Turn("user", "What is the capital of France?"),)
    return scored_columns(
        ["a.jsonl:1", "a.jsonl:2"][:n],
        [1, 1][:n],
        [context] * n,
        ["Paris.", "Paris, the capital."][:n],
        [3, 4][:n],
        parts,
        np.array([0.1, -0.1])[:n],
        [debate([4.0, None]), debate([2.5, 3.0])][:n],
        0.5,
        12,
    )


def test_scored_columns_hold_every_part_once_and_each_critic():
    columns = scored()
    assert columns["prompt"] == ["… of France?"] * 2  # the context's end is kept
    assert columns["response"] == ["Paris.", "Paris, the …"]
    assert columns["reward_combined"] == [0.6, 0.65] and columns["reward"] == [0.1, -0.1]
    parts = sorted(name for name in columns if name.startswith("part_"))
    assert parts == ["part_external", "part_internal", "part_length"]  # no copies
    assert columns["critic0_score"] == [4.0, 2.5] and columns["critic1_score"] == [None, 3.0]
    assert columns["critic1_critique"] == ["critique 1"] * 2


def test_the_table_has_every_fixed_column_typed_and_null_where_absent():
    table = ledger_table(scored())
    assert table.column_names[: len(FIXED.names)] == FIXED.names
    assert table.schema.field("round").type == pa.int32()
    assert table.schema.field("critic0_critique").type == pa.string()
    assert table.column("round").null_count == 2 and table.column("kl").null_count == 2
    joined = join_columns([select_rows(scored(), [1]), select_rows(scored(), [0])])
    assert joined["response"] == ["Paris, the …", "Paris."]


def test_round_columns_put_each_ranks_rows_back_in_the_rollouts_order():
    # 3 prompt groups of 2 over 2 ranks: rank 0 has groups 0 and 2, rank 1 group 1
    rollout = Rollout([[1]] * 6, [[2]] * 6, [[-1.0]] * 6, ["stop"] * 6, torch.zeros(6), 2, [4] * 6)
    samples = {name: [None] * 6 for name in ("prompt_id", "response")}
    by_rank = [
        {name: [0.0, 1.0, 4.0, 5.0] for name in LEARNER_COLUMNS if name != "kl"},
        {name: [2.0, 3.0] for name in LEARNER_COLUMNS if name != "kl"},
    ]
    for rank in by_rank:
        rank["kl"] = [None] * len(rank["advantage"])
    columns = round_columns(ProducedRound(5, rollout, samples=samples), by_rank)
    assert columns["advantage"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert columns["group"] == [0, 0, 1, 1, 2, 2] and columns["round"] == [5] * 6
    assert columns["policy_version"] == [4] * 6 and columns["sample"] == list(range(6))


def test_sample_statistics_are_masked_row_means():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    experience = Experience(
        batch={"engine_logprobs": torch.tensor([[-1.0, -3.0, 9.0], [-0.5, 9.0, 9.0]])},
        mask=mask,
        scores=torch.zeros(2),
        ref_logprobs=None,
        old_logprobs=torch.tensor([[-2.0, -4.0, 0.0], [-1.0, 0.0, 0.0]]),
        kl=torch.tensor([[0.1, 0.2, 0.0], [0.3, 0.0, 0.0]]),
        advantages=torch.tensor([[1.0, 3.0, 0.0], [-2.0, 0.0, 0.0]]),
    )
    stats = sample_statistics(experience, has_reference=True)
    assert stats["advantage"] == [2.0, -2.0]
    assert stats["engine_logprob"] == [-2.0, -0.5] and stats["learner_logprob"] == [-3.0, -1.0]
    assert stats["kl"] == pytest.approx([0.3, 0.3])
    assert sample_statistics(experience, has_reference=False)["kl"] == [None, None]


def test_recorded_rounds_are_the_first_every_nth_after_it_and_the_last():
    assert [r for r in range(1, 11) if is_recorded(r, 3, 10)] == [1, 4, 7, 10]
    assert [r for r in range(1, 9) if is_recorded(r, 3, 8)] == [1, 4, 7, 8]
    assert not any(is_recorded(r, 0, 8) for r in range(1, 9))


def round_rows(round_index: int, n: int = 2) -> dict[str, list]:
    return {**scored(n), "round": [round_index] * n, "sample": list(range(n))}


def test_the_writer_writes_a_file_per_round_and_a_resume_drops_the_later_ones(tmp_path):
    writer = LedgerWriter(tmp_path, last_kept=0)
    for r in (1, 2, 3):
        writer.write(r, round_rows(r))
    writer.flush()
    assert recorded_rounds(tmp_path) == [1, 2, 3] and writer.pop_write_s() > 0
    writer.close()
    (tmp_path / "round-000004.parquet.partial").write_bytes(b"torn")
    resumed = LedgerWriter(tmp_path, last_kept=2)  # the checkpoint was after round 2
    assert recorded_rounds(tmp_path) == [1, 2] and not list(tmp_path.glob("*.partial"))
    resumed.write(3, round_rows(3, n=1))
    resumed.close()
    table = read_ledger(tmp_path)
    assert table.column("round").to_pylist() == [1, 1, 2, 2, 3]
    assert pq.read_table(round_file(tmp_path, 3)).num_rows == 1


def test_a_failed_write_is_raised_by_the_next_call(tmp_path):
    writer = LedgerWriter(tmp_path, last_kept=0)
    writer.write(1, {"round": [1], "no such column": [object()]})
    with pytest.raises(RuntimeError, match="the ledger writer failed"):
        writer.flush()
    with pytest.raises(RuntimeError):
        writer.close()


def test_reading_a_directory_without_files_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ledger here"):
        read_ledger(tmp_path)


def test_a_scored_file_reads_back_and_a_bad_json_line_is_named(tmp_path):
    table = ledger_table(scored())
    for name in ("scores.parquet", "scores.jsonl"):
        write_file(table, tmp_path / name)
        assert read_ledger(tmp_path / name).to_pylist() == table.to_pylist()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample": 0}\n{"sample":\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        read_ledger(bad)


def test_round_stats_and_pearson_by_hand():
    rounds = np.array([1, 1, 1, 2, 2])
    values = np.array([1.0, 2.0, 6.0, np.nan, 4.0])
    one, two = analysis.round_stats(rounds, values)
    assert (one.count, one.mean, one.median, one.min, one.max) == (3, 3.0, 2.0, 1.0, 6.0)
    assert one.std == pytest.approx(math.sqrt(14 / 3)) and (two.count, two.mean) == (1, 4.0)
    x, y = np.array([1.0, 2.0, 3.0, np.nan]), np.array([2.0, 4.0, 7.0, 1.0])
    assert analysis.pearson(x, y) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert analysis.pearson(np.ones(4), y) is None


def test_trend_is_the_change_from_the_first_to_the_last_quarter_with_welchs_t():
    # 8 rounds: windows of 2 rounds; two samples a round
    rounds = np.repeat(np.arange(1, 9), 2)
    values = np.array([0, 1, 1, 2, 5, 5, 5, 5, 5, 5, 5, 5, 4, 5, 5, 6], float)
    trend = analysis.trend(rounds, values)
    early, late = values[:4], values[-4:]
    sd = values.std()
    assert trend.window == 2 and trend.change_sd == pytest.approx((5.0 - 1.0) / sd)
    se = math.sqrt(early.var(ddof=1) / 4 + late.var(ddof=1) / 4)
    assert trend.t == pytest.approx(4.0 / se) and trend.rises() and not trend.falls()
    assert analysis.trend(rounds[:4], values[:4]) is None  # two rounds only


def ledger_of(rounds: int, external, length, plugin=None, n: int = 40, seed: int = 0) -> dict:
    """A ledger of ``rounds`` x ``n`` samples whose parts have per-round means ``f(r)`` plus
    noise of std 0.05."""
    rng = np.random.default_rng(seed)
    r = np.repeat(np.arange(1, rounds + 1), n).astype(float)
    noise = lambda: rng.normal(0, 0.05, r.size)  # noqa: E731
    data = {
        "round": r,
        "sample": np.tile(np.arange(n), rounds).astype(float),
        "reward": noise(),
        "reward_combined": noise(),
        "part_external": external(r) + noise(),
        "part_length": length(r) + noise(),
        "advantage": noise(),
        "kl": np.full(r.size, np.nan),
        "prompt_id": np.array([f"d.jsonl:{i % n + 1}" for i in range(r.size)], dtype=object),
        "prompt": np.array(["user: q"] * r.size, dtype=object),
        "response": np.array(["a"] * r.size, dtype=object),
    }
    if plugin is not None:
        data["part_plugin"] = plugin(r) + noise()
    return data


def test_a_part_that_rises_while_the_external_reward_falls_is_a_hacking_sign():
    hacked = ledger_of(8, lambda r: 0.8 - 0.05 * r, lambda r: 0.1 * r)
    signs = analysis.hacking_signs(hacked)
    assert [s.part for s in signs] == ["length"] and signs[0].reference == "part_external"
    lines = inspect_lines(hacked, "OUT", "length", 2, None)
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "length rises" in warning[0] and "external falls" in warning[0]
    assert "ray-adlf inspect OUT --sort length --round 8" in warning[0]


@pytest.mark.parametrize(
    "external, length",
    [
        (lambda r: 0.2 + 0.05 * r, lambda r: 0.1 * r),  # both rise: no conflict
        (lambda r: 0.8 - 0.05 * r, lambda r: 1.0 - 0.1 * r),  # both fall
        (lambda r: 0.5 + 0 * r, lambda r: 0.1 * r),  # the external holds still
        (lambda r: 0.8 - 0.002 * r, lambda r: 0.1 * r),  # a fall of 0.014 is within the noise
    ],
)
def test_no_hacking_sign_without_a_clear_fall_of_the_external_reward(external, length):
    assert analysis.hacking_signs(ledger_of(8, external, length)) == []


def test_without_an_external_reward_the_parts_are_compared_with_the_reward():
    data = ledger_of(4, lambda r: 0 * r, lambda r: 0.1 * r)
    data["part_external"][:] = np.nan
    assert analysis.reference_part(data) == "reward"
    (length,) = analysis.correlations(data)
    assert length.part == "length" and length.trend.rises()


def test_correlations_over_samples_and_over_round_means():
    data = ledger_of(6, lambda r: 0.1 * r, lambda r: 1.0 - 0.1 * r, plugin=lambda r: 0 * r)
    by_part = {c.part: c for c in analysis.correlations(data)}
    assert by_part["length"].over_rounds < -0.95 and by_part["length"].over_samples < -0.8
    means = [data["part_plugin"][data["round"] == r].mean() for r in range(1, 7)]
    external = [data["part_external"][data["round"] == r].mean() for r in range(1, 7)]
    assert by_part["plugin"].over_rounds == pytest.approx(np.corrcoef(means, external)[0, 1])


def test_critic_agreement_by_hand():
    data = {
        "critic0_score": np.array([1.0, 2.0, 3.0, 4.0]),
        "critic1_score": np.array([2.0, 2.0, np.nan, 5.0]),
        "critic2_score": np.array([4.0, 3.0, 2.0, 1.0]),
    }
    pairs = {(p.first, p.second): p for p in analysis.critic_agreement(data)}
    assert pairs[(0, 1)].mean_abs_difference == pytest.approx((1 + 0 + 1) / 3)
    assert pairs[(0, 1)].r == pytest.approx(np.corrcoef([1, 2, 4], [2, 2, 5])[0, 1])
    assert pairs[(0, 2)].r == pytest.approx(-1.0)


def test_ranked_picks_the_best_and_worst_of_a_round():
    data = {"round": np.array([1, 1, 1, 2, 2.0]), "part_length": np.array([3, 1, 2, 9, 0.0])}
    best, worst = analysis.ranked(data, "length", 2, 1)
    assert best.tolist() == [0, 2] and worst.tolist() == [1, 2]
    assert analysis.ranked(data, "part_length", 1, None)[0].tolist() == [3]
    with pytest.raises(KeyError):
        analysis.column_name(data, "nope")


def test_inspect_lines_name_the_round_asked_for_and_refuse_a_missing_one():
    data = ledger_of(3, lambda r: 0 * r, lambda r: 0 * r)
    lines = inspect_lines(data, "OUT", "reward", 1, 2)
    assert lines[0] == "ledger OUT: 3 rounds (1-3), 120 samples"
    assert "distribution in round 2" in lines and "top 1 by reward in round 2" in lines
    with pytest.raises(ValueError, match="--round 7: the ledger holds rounds 1-3"):
        inspect_lines(data, "OUT", "reward", 1, 7)


def test_inspect_reads_a_scored_dataset_as_one_roundless_set(tmp_path):
    path = tmp_path / "scores.parquet"
    pq.write_table(ledger_table({**scored(), "sample": [0, 1]}), path)  # as score.py writes
    lines = inspect_lines(analysis.columns(read_ledger(path)), "scores", "length", 1, None)
    text = "\n".join(lines)
    assert lines[0] == "ledger scores: a scored dataset (no rounds), 2 samples"
    assert "warning:" not in text  # no rounds, no trend
    assert "distribution in the dataset" in lines and "top 1 by length in the dataset" in lines
    assert "  sample 0 (a.jsonl:1): length 1.000, reward 0.100" in lines
