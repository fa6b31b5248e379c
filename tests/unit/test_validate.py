"""JSONL reading and validation: one bad file per rule, exact line numbers, both modes."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import re
from pathlib import Path

import pytest

from ray_adlf.data.records import Record, Turn, split_last_assistant
from ray_adlf.data.sample import sample_path
from ray_adlf.data.validate import (
    REASON_CODES,
    DataBudgetError,
    DataError,
    format_bad_summary,
    iter_rows,
    parse_line,
    read_records,
)

HU = {"role": "human", "content": "What is 2 plus 2?"}
AS = {"role": "assistant", "content": "4."}
SY = {"role": "system", "content": "Be brief."}


def row(conversation: object = (HU, AS), score: object = 4.5, **extra: object) -> bytes:
    """One JSONL line (no newline) with the given fields; pass score=... to override."""
    obj = {"conversation": list(conversation) if isinstance(conversation, tuple) else conversation}
    obj["meta_eval_score"] = score
    obj.update(extra)
    return json.dumps(obj).encode()


def drop(key: str) -> bytes:
    """A good row without ``key``."""
    obj = json.loads(row())
    del obj[key]
    return json.dumps(obj).encode()


def write(tmp_path: Path, lines: list[bytes], name: str = "data.jsonl") -> Path:
    """Write lines, each ended by a newline (gzip if the name ends .gz)."""
    path = tmp_path / name
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


GOOD = row()
BOM = b"\xef\xbb\xbf"

# (id, file lines, bad line number, reason substring)
BAD_CASES = [
    ("invalid_utf8", [GOOD, GOOD.replace(b"4.", b"4\xff")], 2, "invalid UTF-8: byte 0xff"),
    ("cesu_surrogate_bytes", [GOOD.replace(b"4.", b"\xed\xa0\x80")], 1, "invalid UTF-8"),
    ("utf16_file", [GOOD.decode().encode("utf-16")], 1, "invalid UTF-8: byte 0xff"),
    ("bom_at_file_start", [BOM + GOOD, GOOD], 1, "UTF-8 BOM"),
    ("bom_at_line_start", [GOOD, GOOD, BOM + GOOD], 3, "UTF-8 BOM"),
    (
        "line_too_long",
        [GOOD, row(({**HU, "content": "x" * (1 << 20)}, AS)), GOOD],
        2,
        "line too long",
    ),
    ("empty_line_middle", [GOOD, b"", GOOD], 2, "empty line"),
    ("whitespace_line", [GOOD, b" \t\r", GOOD], 2, "empty line"),
    ("extra_blank_line_at_end", [GOOD, GOOD, b""], 3, "empty line"),
    ("not_json", [GOOD, b"{conversation: []}"], 2, "not JSON: Expecting property name"),
    ("truncated_json", [GOOD, GOOD[:-7]], 2, "not JSON"),
    ("two_objects_one_line", [GOOD + b" " + GOOD], 1, "not JSON: Extra data"),
    ("raw_control_char", [GOOD.replace(b"4.", b"4\x01")], 1, "not JSON: Invalid control"),
    ("nan_literal", [GOOD, row(score=float("nan"))], 2, "not JSON: NaN is not valid JSON"),
    ("infinity_literal", [row(score=float("inf"))], 1, "not JSON: Infinity is not valid"),
    ("minus_infinity_literal", [row(score=float("-inf"))], 1, "not JSON: -Infinity"),
    ("nan_in_extra_key", [row(extra=float("nan"))], 1, "not JSON: NaN"),
    ("deep_nesting", [b"[" * 200_000 + b"]" * 200_000], 1, "not JSON: nested too deeply"),
    ("array_line", [GOOD, b"[1, 2]"], 2, "not an object: got array"),
    ("string_line", [b'"hello"'], 1, "not an object: got string"),
    ("null_line", [GOOD, b"null"], 2, "not an object: got null"),
    ("duplicate_score", [GOOD, GOOD[:-1] + b', "meta_eval_score": 3}'], 2, "duplicate key: 'meta_"),
    (
        "duplicate_in_turn",
        [GOOD.replace(b'"4."', b'"4.", "role": "x"')],
        1,
        "duplicate key: 'role'",
    ),
    ("duplicate_deep", [row(x=[{"b": 1}]).replace(b"1}", b'1, "b": 2}')], 1, "duplicate key: 'b'"),
    ("missing_conversation", [GOOD, drop("conversation")], 2, "missing conversation"),
    ("conversation_null", [row(None)], 1, "conversation not a list: got null"),
    ("conversation_string", [row("hi")], 1, "conversation not a list: got string"),
    ("conversation_object", [row({"a": 1})], 1, "conversation not a list: got object"),
    ("empty_conversation", [GOOD, row([])], 2, "empty conversation"),
    ("turn_string", [row((HU, "hello"))], 1, "turn not an object: turn 2 is string"),
    ("turn_missing_role", [row(({"content": "hi"}, AS))], 1, "turn missing role: turn 1"),
    ("sharegpt_keys", [row(({"from": "human", "value": "hi"}, AS))], 1, "turn missing role"),
    ("turn_missing_content", [row((HU, {"role": "gpt"}))], 1, "turn missing content: turn 2"),
    ("role_int", [row(({"role": 1, "content": "hi"}, AS))], 1, "role not a string: turn 1"),
    ("unknown_role", [row((HU, {"role": "bot", "content": "hi"}))], 1, "unknown role: 'bot'"),
    ("role_capitalised", [row(({"role": "Human", "content": "hi"}, AS))], 1, "unknown role"),
    ("content_null", [row((HU, {"role": "gpt", "content": None}))], 1, "content not a string"),
    ("content_list", [row(({"role": "user", "content": ["a"]}, AS))], 1, "content not a string"),
    ("content_empty", [GOOD, row((HU, {**AS, "content": ""}))], 2, "empty content: turn 2"),
    ("content_blank", [row(({**HU, "content": " \n\t"}, AS))], 1, "empty content: turn 1"),
    ("lone_surrogate", [row((HU, {**AS, "content": "a\ud800"}))], 1, "invalid Unicode"),
    ("no_assistant", [GOOD, row((HU,))], 2, "no assistant turn"),
    ("only_system", [row((SY,))], 1, "no assistant turn"),
    ("assistant_first", [row((AS, HU, AS))], 1, "no user turn before assistant: turn 1"),
    ("system_then_assistant", [row((SY, AS))], 1, "no user turn before assistant: turn 2"),
    ("system_not_first", [row((HU, SY, AS))], 1, "system turn not first: turn 2"),
    ("two_system_turns", [row((SY, SY, HU, AS))], 1, "system turn not first: turn 2"),
    ("missing_score", [GOOD, GOOD, drop("meta_eval_score")], 3, "missing score"),
    ("score_null", [row(score=None)], 1, "score not a number: meta_eval_score is null"),
    ("score_string", [row(score="4.5")], 1, "score not a number: meta_eval_score is string"),
    ("score_bool", [row(score=True)], 1, "score not a number: meta_eval_score is boolean"),
    ("score_list", [row(score=[4])], 1, "score not a number"),
    ("score_overflow_float", [GOOD.replace(b"4.5", b"1e999")], 1, "score not finite: "),
    ("score_negative", [row(score=-0.5)], 1, "score out of range: -0.5 not in [0, 5]"),
    ("score_above_5", [GOOD, row(score=5.0001)], 2, "score out of range: 5.0001"),
    ("score_int_above_5", [row(score=6)], 1, "score out of range: 6 not in"),
    ("score_huge_int", [row(score=10**400)], 1, "score out of range"),
    ("reason_int", [GOOD, row(score_reason=3)], 2, "score_reason not a string: got number"),
    ("reason_list", [row(score_reason=["ok"])], 1, "score_reason not a string: got array"),
    ("reason_surrogate", [row(score_reason="\udfff")], 1, "invalid Unicode: lone surrogate"),
]


@pytest.mark.parametrize(
    ("lines", "line_no", "reason"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_row_strict(tmp_path: Path, lines: list[bytes], line_no: int, reason: str) -> None:
    path = write(tmp_path, lines)
    with pytest.raises(DataError) as info:
        read_records(path)
    err = info.value
    assert (err.path, err.line) == (str(path), line_no)
    assert reason in err.reason
    assert err.code in REASON_CODES
    assert str(err).startswith(f"{path}:{line_no}: {err.code}")


def test_every_row_code_has_a_case() -> None:
    file_level = {
        "no such file",
        "not a regular file",
        "unreadable",
        "corrupt gzip",
        "file too large",
        "too many rows",
        "empty file",
        "too many bad rows",
    }
    covered = {c[3].split(":")[0] for c in BAD_CASES}
    assert set(REASON_CODES) - file_level <= covered


def test_valid_round_trip(tmp_path: Path) -> None:
    rows = [
        {"conversation": [SY, HU, AS], "meta_eval_score": 3.25, "score_reason": "ok"},
        {"conversation": [HU, AS, HU, {"role": "gpt", "content": "Hi ü 🎉"}], "meta_eval_score": 0},
        {"conversation": [HU, AS], "meta_eval_score": 5, "score_reason": None, "id": "x"},
    ]
    path = write(tmp_path, [json.dumps(r).encode() for r in rows])
    first = read_records(path)
    assert (first.rows, first.bad_counts, first.bad_lines, first.path) == (3, {}, {}, str(path))
    assert [r.line for r in first.records] == [1, 2, 3]
    assert [r.score for r in first.records] == [3.25, 0.0, 5.0]
    assert [r.score_reason for r in first.records] == ["ok", None, None]
    assert first.records[1].conversation[3] == Turn("assistant", "Hi ü 🎉")
    assert "score_reason" not in first.records[1].to_json_dict()
    again = write(tmp_path, [json.dumps(r.to_json_dict()).encode() for r in first.records], "b")
    second = read_records(again)
    assert [r.to_json_dict() for r in second.records] == [r.to_json_dict() for r in first.records]


def test_role_normalisation(tmp_path: Path) -> None:
    roles = ["system", "human", "gpt", "user", "assistant"]
    conv = [{"role": r, "content": f"text {r}"} for r in roles]
    (record,) = read_records(write(tmp_path, [row(conv)])).records
    assert [t.role for t in record.conversation] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert record.to_json_dict()["conversation"][1] == {"role": "user", "content": "text human"}


def test_score_types_and_bounds(tmp_path: Path) -> None:
    lines = [row(score=4), row(score=0), row(score=5), row(score=0.0), row(score=5.0)]
    records = read_records(write(tmp_path, lines)).records
    assert [r.score for r in records] == [4.0, 0.0, 5.0, 0.0, 5.0]
    assert all(type(r.score) is float for r in records)


def test_gzip(tmp_path: Path) -> None:
    lines = [row(score=s) for s in (1, 2, 3)]
    plain = read_records(write(tmp_path, lines)).records
    gz = read_records(write(tmp_path, lines, "data.jsonl.gz")).records
    assert [r.to_json_dict() for r in gz] == [r.to_json_dict() for r in plain]
    with pytest.raises(DataError, match=r"data\.jsonl\.gz:2: score out of range"):
        read_records(write(tmp_path, [GOOD, row(score=9)], "data.jsonl.gz"))


def test_corrupt_gzip_fails_even_lenient(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD] * 200, "data.jsonl.gz")
    path.write_bytes(path.read_bytes()[:-20])  # truncated download
    with pytest.raises(DataError, match="corrupt gzip"):
        read_records(path, lenient=True, max_bad_fraction=1.0)
    not_gz = write(tmp_path, [GOOD], "plain.jsonl")
    not_gz.rename(tmp_path / "plain.jsonl.gz")
    with pytest.raises(DataError, match=r"plain\.jsonl\.gz:1: corrupt gzip"):
        read_records(tmp_path / "plain.jsonl.gz")


@pytest.mark.parametrize("lenient", [False, True])
def test_empty_file(tmp_path: Path, lenient: bool) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_records(path, lenient=lenient)
    assert info.value.line is None
    assert str(info.value) == f"{path}: empty file: no rows"


def test_trailing_newline_optional_and_crlf(tmp_path: Path) -> None:
    with_nl = tmp_path / "a.jsonl"
    with_nl.write_bytes(GOOD + b"\n" + GOOD + b"\n")
    without = tmp_path / "b.jsonl"
    without.write_bytes(GOOD + b"\n" + GOOD)
    crlf = tmp_path / "c.jsonl"
    crlf.write_bytes(GOOD + b"\r\n" + GOOD + b"\r\n")
    for path in (with_nl, without, crlf):
        result = read_records(path)
        assert (result.rows, len(result.records)) == (2, 2)


def test_line_cap_boundary_and_line_numbers_after_long_line(tmp_path: Path) -> None:
    cap = len(GOOD)
    assert parse_line(GOOD + b"\n", "p", 1, max_line_bytes=cap).line == 1
    with pytest.raises(DataError, match=f"p:1: line too long: over {cap - 1} bytes"):
        parse_line(GOOD, "p", 1, max_line_bytes=cap - 1)
    long = row(({**HU, "content": "y" * 10_000}, AS))
    path = write(tmp_path, [GOOD] * 200 + [long] + [GOOD, b"oops"] + [GOOD] * 97)
    result = read_records(path, lenient=True, max_line_bytes=cap)
    assert result.rows == 300
    assert result.bad_counts == {"line too long": 1, "not JSON": 1}
    assert result.bad_lines == {"line too long": [201], "not JSON": [203]}
    assert len(result.records) == 298
    assert [r.line for r in result.records[199:201]] == [200, 202]


def test_lenient_skips_within_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [GOOD] * 100
    lines[9] = b"{bad"
    path = write(tmp_path, lines)
    with pytest.raises(DataError, match=r":10: not JSON"):
        read_records(path)
    with caplog.at_level(logging.WARNING):
        result = read_records(path, lenient=True, max_bad_fraction=0.01)  # 1/100 is allowed
    assert (result.rows, len(result.records), result.n_bad) == (100, 99, 1)
    assert (result.bad_counts, result.bad_lines) == ({"not JSON": 1}, {"not JSON": [10]})
    assert 10 not in [r.line for r in result.records]
    assert "skipped 1 of 100 rows" in caplog.text
    assert "not JSON: 1 row (line 10)" in caplog.text


def test_lenient_budget_exceeded(tmp_path: Path) -> None:
    lines = [GOOD] * 100
    lines[4] = b"[]"
    lines[49] = row(score=7)
    path = write(tmp_path, lines)
    with pytest.raises(DataBudgetError) as info:
        read_records(path, lenient=True, max_bad_fraction=0.01)
    err = info.value
    assert err.line is None and err.code == "too many bad rows"
    assert err.result.bad_lines == {"not an object": [5], "score out of range": [50]}
    assert str(err) == (
        f"{path}: too many bad rows: 2 of 100 rows bad (2.00%), allowed 1.00%\n"
        "  not an object: 1 row (line 5)\n"
        "  score out of range: 1 row (line 50)"
    )
    assert len(read_records(path, lenient=True, max_bad_fraction=0.02).records) == 98


def test_lenient_all_bad_fails_even_with_full_budget(tmp_path: Path) -> None:
    path = write(tmp_path, [b"x", b"y"])
    with pytest.raises(DataBudgetError, match="2 of 2 rows bad"):
        read_records(path, lenient=True, max_bad_fraction=1.0)


def test_format_bad_summary_order_and_truncation(tmp_path: Path) -> None:
    lines = [GOOD] * 20
    for i in (2, 4, 6, 8, 10, 12, 14):
        lines[i - 1] = b"nope"
    lines[15] = row([])
    result = read_records(write(tmp_path, lines), lenient=True, max_bad_fraction=0.5)
    assert format_bad_summary(result) == [
        "not JSON: 7 rows (lines 2, 4, 6, 8, 10, ...)",
        "empty conversation: 1 row (line 16)",
    ]
    assert result.bad_counts == {"not JSON": 7, "empty conversation": 1}
    assert result.bad_lines["not JSON"] == [2, 4, 6, 8, 10]  # only the first BAD_LINES_KEPT


def test_duplicate_key_in_ignored_key_and_same_key_in_other_objects(tmp_path: Path) -> None:
    ok = row(extra={"role": 1, "content": {"role": 2}})  # same names in different objects: fine
    assert read_records(write(tmp_path, [ok])).rows == 1
    dup = ok[:-1] + b', "extra": null}'  # an ignored key, but still twice
    with pytest.raises(DataError, match=r":1: duplicate key: 'extra'$"):
        read_records(write(tmp_path, [dup]))


@pytest.mark.parametrize("cap", ["max_line_bytes", "max_total_bytes", "max_rows"])
@pytest.mark.parametrize("value", [0, -1, -2, 1.5, None])
def test_caps_must_be_positive_integers(tmp_path: Path, cap: str, value: object) -> None:
    path = write(tmp_path, [GOOD])
    message = f"{cap} must be a positive integer, got {value!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_records(path, **{cap: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        iter_rows(path, **{cap: value})  # at the call, not at the first next()
    assert read_records(path, **{cap: 1 if cap == "max_rows" else len(GOOD) + 1}).rows == 1


@pytest.mark.parametrize("value", [0, -1])
def test_parse_line_cap_must_be_positive(value: int) -> None:
    with pytest.raises(ValueError, match="max_line_bytes must be a positive integer"):
        parse_line(GOOD, "p", 1, max_line_bytes=value)


def test_iter_rows_yields_errors_in_order(tmp_path: Path) -> None:
    items = list(iter_rows(write(tmp_path, [GOOD, b"", GOOD])))
    assert [type(i) for i in items] == [Record, DataError, Record]
    assert items[1].line == 2 and items[1].code == "empty line"


def test_split_last_assistant(tmp_path: Path) -> None:
    last = {"role": "gpt", "content": "final"}
    conv = [SY, HU, AS, {"role": "user", "content": "more?"}, last, HU]
    (record,) = read_records(write(tmp_path, [row(conv)])).records
    context, answer = split_last_assistant(record)
    assert answer == Turn("assistant", "final")
    assert [t.role for t in context] == ["system", "user", "assistant", "user"]
    assert context[-1].content == "more?"


def test_errors_pickle(tmp_path: Path) -> None:
    err = DataError("f.jsonl", 3, "not JSON", "Expecting value at column 1")
    assert (
        str(pickle.loads(pickle.dumps(err))) == "f.jsonl:3: not JSON: Expecting value at column 1"
    )
    path = write(tmp_path, [b"x", GOOD])
    with pytest.raises(DataBudgetError) as info:
        read_records(path, lenient=True)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_bundled_sample_is_valid() -> None:
    result = read_records(sample_path())
    assert result.rows == len(result.records) > 0
