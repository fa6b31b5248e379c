import math

import pytest

from ray_adlf.data.records import Turn
from ray_adlf.debate.prompts import (
    PERSONAS,
    SCORE_CUE,
    clean_critique,
    first_round_prompt,
    revision_prompt,
)
from ray_adlf.debate.protocol import (
    JudgeRequest,
    Verdict,
    aggregate_scores,
    debate_parts,
    expected_score,
    parse_score_text,
    run_debate,
    score_spread,
    summarize_debate,
)

CONTEXT = (Turn("user", "What is the capital of France?"),)


def test_expected_score_over_score_token_masses():
    assert expected_score([0, 0, 0, 0, 1.0, 0]) == pytest.approx(4.0)
    # masses need not sum to 1: E = (1*.1 + 5*.3) / .4 = 4
    assert expected_score([0, 0.1, 0, 0, 0, 0.3]) == pytest.approx(4.0)
    assert expected_score([1 / 6] * 6) == pytest.approx(2.5)
    assert expected_score([0.0] * 6) is None
    assert expected_score([1e-9] * 6) is None  # below MIN_SCORE_MASS
    assert expected_score([math.nan] * 6) is None
    with pytest.raises(ValueError):
        expected_score([1.0, 2.0])


@pytest.mark.parametrize(
    ("text", "score"),
    [
        (" 4", 4.0),
        (" 3.5/5 good", 3.5),
        ("**5**", 5.0),
        (": 0", 0.0),
        (" 7", None),
        (" banana", None),
        ("", None),
    ],
)
def test_parse_score_text(text, score):
    assert parse_score_text(text) == score


def test_aggregates_and_spread_exact():
    scores = [1.0, 4.0, 4.5, 5.0]
    assert aggregate_scores(scores, "mean") == pytest.approx(3.625)
    assert aggregate_scores(scores, "median") == pytest.approx(4.25)
    assert aggregate_scores(scores, "trimmed_mean") == pytest.approx(4.25)  # drop 1 and 5
    assert aggregate_scores([2.0, 4.0], "trimmed_mean") == pytest.approx(3.0)  # < 3: plain mean
    assert score_spread([2.0, 4.0]) == pytest.approx(1.0)
    assert score_spread([3.0]) == 0.0
    with pytest.raises(ValueError):
        aggregate_scores(scores, "mode")


def test_summary_carries_forward_and_counts_failures():
    failed = Verdict("", None, "failed", "garbage")
    rounds = [
        [Verdict("a", 2.0, "probs"), Verdict("b", 4.0, "probs"), failed],
        [Verdict("a", 3.0, "probs"), failed, failed],
    ]
    result = summarize_debate(rounds, "mean")
    # finals: critic 0 -> 3 (round 2), critic 1 -> 4 (carried from round 1), critic 2 -> none
    assert result.valid == 2 and result.parse_failures == 3
    assert result.score == pytest.approx(3.5 / 5)
    assert result.spread == pytest.approx(0.5 / 5)
    assert result.agreement == pytest.approx(1 - 2 * 0.1)
    nothing = summarize_debate([[failed, failed]], "median")
    assert (nothing.score, nothing.valid, nothing.agreement, nothing.parse_failures) == (
        0.5,
        0,
        1.0,
        2,
    )


def test_rounds_show_each_critic_its_own_and_its_peers_last_verdicts():
    seen: list[list[list[JudgeRequest]]] = []

    def judge(requests):
        seen.append(requests)
        round_no = requests[0][0].round
        return [
            [Verdict(f"c{k}r{round_no}", float(k + round_no), "probs") for _ in row]
            for k, row in enumerate(requests)
        ]

    results = run_debate([CONTEXT, CONTEXT], ["Paris.", "Rome."], 3, 2, "median", judge)
    assert len(seen) == 2 and all(len(row) == 2 for row in seen[1])
    first, second = seen
    assert first[0][0].own is None and first[0][0].peers == ()
    assert second[1][0].own.critique == "c1r1"
    assert [p.critique for p in second[1][0].peers] == ["c0r1", "c2r1"]
    # final round scores 2, 3, 4 -> median 3 -> 0.6; spread std(2,3,4)/5
    assert results[0].score == pytest.approx(0.6)
    assert results[0].spread == pytest.approx(math.sqrt(2 / 3) / 5)
    parts = debate_parts(results)
    assert parts["debate"].tolist() == pytest.approx([0.6, 0.6])
    assert set(parts) == {
        "debate",
        "debate_spread",
        "debate_agreement",
        "debate_valid",
        "debate_parse_failures",
    }


def test_judge_must_answer_every_request():
    with pytest.raises(ValueError, match="3 x 1 verdicts"):
        run_debate([CONTEXT], ["Paris."], 3, 1, "mean", lambda requests: [[]] * 3)


def test_prompt_templates():
    first = first_round_prompt(0, CONTEXT, "Paris.")
    assert first.startswith(PERSONAS[0]) and "User: What is the capital of France?" in first
    assert "Paris." in first and first.endswith("Critique:")
    revised = revision_prompt(
        1, CONTEXT, "Paris.", 1, ("Correct.", 4.0), [("Too short.", 3.0), ("", None)]
    )
    assert "In round 1 you wrote: Correct. (score 4.0)" in revised
    assert "- Too short. (score 3.0)" in revised and "- (no critique) (score none)" in revised
    assert SCORE_CUE == "\nScore:"
    assert clean_critique("\n Right answer.\nScore: 5") == "Right answer."
    assert clean_critique("ok\x07 fine" + "x" * 500).startswith("ok fine")
    assert len(clean_critique("x" * 500)) == 240
