"""Property tests: whatever the bytes or JSON, reading gives records or our own ``DataError``,
never another exception; strict, lenient and ``iter_rows`` agree; valid rows always pass.
Deterministic (``derandomize``, no example database) and small enough for the unit suite."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ray_adlf.data.records import ROLE_ALIASES, Record
from ray_adlf.data.validate import REASON_CODES, DataError, iter_rows, parse_line, read_records

PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None)

GOOD = json.dumps(
    {
        "conversation": [{"role": "user", "content": "Hi"}, {"role": "gpt", "content": "Yo"}],
        "meta_eval_score": 3,
    }
).encode()
PIECES = [
    GOOD,
    b"",
    b" ",
    b"\r",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xed\xa0\x80",
    b"{",
    b"}",
    b"[",
    b'"',
    b"NaN",
    b"1e999",
]

# Text with everything JSON can carry, lone surrogates included (``st.text()`` leaves them out).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["", " ", "\ud800", "a\udfff", "\ufeff", "human", "gpt", "system"]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**310)
    | st.floats()
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)

# Valid rows, and the same with a few fields deleted or replaced (see ``mutate``).
NICE_TEXT = st.text(min_size=1, max_size=12).filter(lambda text: not text.isspace())
USER = st.fixed_dictionaries({"role": st.sampled_from(["human", "user"]), "content": NICE_TEXT})
ASSISTANT = st.fixed_dictionaries(
    {"role": st.sampled_from(["gpt", "assistant"]), "content": NICE_TEXT}
)
SYSTEM = st.fixed_dictionaries({"role": st.just("system"), "content": NICE_TEXT})
CONVERSATION = st.builds(
    lambda system, user, middle, assistant: [*system, user, *middle, assistant],
    st.lists(SYSTEM, max_size=1),
    USER,
    st.lists(USER | ASSISTANT, max_size=3),
    ASSISTANT,
)
VALID = st.fixed_dictionaries(
    {"conversation": CONVERSATION, "meta_eval_score": st.floats(0, 5) | st.integers(0, 5)},
    optional={"score_reason": st.none() | st.text(max_size=12), "id": st.integers() | TEXT},
)
FIELD = (
    st.sampled_from(
        [*ROLE_ALIASES, "Human", "bot", "", " ", "a\ud800", -0.0, 5.0000001, -1, 6, True, "4"]
    )
    | st.floats()
    | JSON
)


def mutate(row: dict, data: st.DataObject) -> None:
    """Delete or replace one key of ``row`` or of one of its turns, or replace a whole turn."""
    target = row
    turns = row.get("conversation")
    if isinstance(turns, list) and turns and data.draw(st.booleans()):
        n = data.draw(st.integers(0, len(turns) - 1))
        if not isinstance(turns[n], dict) or data.draw(st.booleans()):
            turns[n] = data.draw(FIELD)
            return
        target = turns[n]
    key = data.draw(st.sampled_from([*sorted(target), "extra"]))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(FIELD)


def encode(value: object, ascii_only: bool) -> bytes:
    """JSON text of ``value`` as bytes; unescaped lone surrogates become CESU-8 bytes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def outcome(read: Callable[[], object]) -> object:
    """What ``read()`` returns, or the ``DataError`` it raises; anything else fails the test."""
    try:
        return read()
    except DataError as e:
        assert e.code in REASON_CODES
        return e


def parse(raw: bytes) -> Record | DataError:
    return outcome(lambda: parse_line(raw, "p.jsonl", 1))


def check_file(data: bytes, name: str) -> None:
    """Read ``data`` as file ``name`` with ``iter_rows`` and both modes of ``read_records``:
    only records or ``DataError`` come out, and the three agree."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        items = outcome(lambda: list(iter_rows(path)))
        strict = outcome(lambda: read_records(path))
        lenient = outcome(lambda: read_records(path, lenient=True, max_bad_fraction=1.0))
    if isinstance(items, DataError):  # a file-level error, raised in both modes
        assert items.code == "corrupt gzip"
        assert isinstance(strict, DataError)
        assert str(lenient) == str(items)
        return
    assert [i.line for i in items] == list(range(1, len(items) + 1))
    records = [i for i in items if isinstance(i, Record)]
    errors = [i for i in items if isinstance(i, DataError)]
    assert len(records) + len(errors) == len(items)
    if not items:
        assert strict.code == lenient.code == "empty file"
    elif errors:
        assert str(strict) == str(errors[0])
    else:
        assert strict.records == records
    if records:
        assert (lenient.rows, lenient.n_bad, lenient.records) == (len(items), len(errors), records)
    elif items:
        assert lenient.code == "too many bad rows"


@PROPERTY
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    check_file(data, "data.jsonl")
    check_file(data, "data.jsonl.gz")  # almost always "corrupt gzip"
    check_file(gzip.compress(data), "data.jsonl.gz")


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from([b"\n", b"\r\n", b""]))))
def test_lines_of_likely_pieces(pieces: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(piece + end for piece, end in pieces)
    check_file(data, "data.jsonl")
    check_file(gzip.compress(data), "data.jsonl.gz")


@PROPERTY
@given(st.integers(0, 10_000), st.integers(0, 7))
def test_damaged_gzip(position: int, bit: int) -> None:
    packed = bytearray(gzip.compress(b"".join([GOOD + b"\n"] * 20)))
    packed[position % len(packed)] ^= 1 << bit
    check_file(bytes(packed), "data.jsonl.gz")
    check_file(bytes(packed[: position % len(packed)]), "data.jsonl.gz")


@PROPERTY
@given(JSON, st.booleans())
def test_arbitrary_json_values(value: object, ascii_only: bool) -> None:
    item = parse(encode(value, ascii_only))
    assert isinstance(item, (Record, DataError))


@PROPERTY
@given(VALID, st.integers(0, 3), st.booleans(), st.data())
def test_rows_close_to_valid(
    row: dict, mutations: int, ascii_only: bool, data: st.DataObject
) -> None:
    for _ in range(mutations):
        mutate(row, data)
    item = parse(encode(row, ascii_only))
    if mutations == 0:
        assert isinstance(item, Record), item
    if isinstance(item, Record):  # a record always round-trips through its own JSON
        again = parse(encode(item.to_json_dict(), ascii_only))
        assert isinstance(again, Record) and again.to_json_dict() == item.to_json_dict()
        assert 0 <= item.score <= 5
        assert any(t.role == "assistant" for t in item.conversation)


@PROPERTY
@given(VALID, st.data())
def test_a_repeated_key_is_always_rejected(row: dict, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(row)))
    raw = encode(row, True)[:-1] + b", " + encode(key, True) + b": 0}"
    item = parse(raw)
    assert isinstance(item, DataError)
    # Only a NaN / Infinity, rejected while the object is still being parsed, can come first.
    assert item.code == "duplicate key" or "is not valid JSON" in item.detail
