"""Read and validate scored-conversation JSONL (``.jsonl``, or gzip when the name ends ``.gz``).

One JSON object a line::

    {"conversation": [{"role": "human", "content": "..."}, {"role": "gpt", "content": "..."}],
     "meta_eval_score": 4.5, "score_reason": "optional text"}

Every bad row gets one of the stable reason codes in ``REASON_CODES``, plus a detail:
``PATH:LINE: code: detail`` (lines and turns are counted from 1). File-level errors (empty file,
too many bad rows) have ``line = None`` and read ``PATH: code: detail``. Keys other than the three
above are ignored; ``score_reason`` may be absent or null.

Lines end at ``\\n``. The newline after the last line is normal (and may be missing); any other
empty or whitespace-only line is an error ("empty line"). A ``\\r`` before the ``\\n`` is JSON
whitespace, so CRLF files read fine. The size cap counts a line's bytes without its ``\\n``; an
overlong line is never held in memory whole. NaN / Infinity literals, which Python's json would
accept, are "not JSON".

Strict mode (the default) raises the first bad row. Lenient mode skips bad rows, keeps their line
numbers per reason code in ``ReadResult.bad``, logs a warning with ``format_bad_summary`` and
raises ``DataBudgetError`` when ``bad / rows > max_bad_fraction`` or no row is good.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ray_adlf.data.records import ROLE_ALIASES, Record, Turn

DEFAULT_MAX_LINE_BYTES = 1 << 20

REASON_CODES: tuple[str, ...] = (
    # bytes and JSON
    "line too long",
    "UTF-8 BOM",
    "invalid UTF-8",
    "empty line",
    "not JSON",
    "not an object",
    # conversation
    "missing conversation",
    "conversation not a list",
    "empty conversation",
    "turn not an object",
    "turn missing role",
    "turn missing content",
    "role not a string",
    "unknown role",
    "content not a string",
    "empty content",
    "invalid Unicode",
    "system turn not first",
    "no user turn before assistant",
    "no assistant turn",
    # score
    "missing score",
    "score not a number",
    "score not finite",
    "score out of range",
    "score_reason not a string",
    # file level
    "corrupt gzip",
    "empty file",
    "too many bad rows",
)

_BOM = b"\xef\xbb\xbf"
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A bad row or file: ``str(e)`` is ``PATH:LINE: reason`` (``PATH: reason`` if line is None).

    ``code`` is one of ``REASON_CODES``; ``reason`` is ``code`` or ``"code: detail"``.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, code: str, detail: str = ""):
        super().__init__(str(path), line, code, detail)
        self.path = str(path)
        self.line = line
        self.code = code
        self.detail = detail
        self.reason = f"{code}: {detail}" if detail else code

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class ReadResult:
    """What ``read_records`` read: the good records, the row count, bad line numbers per code."""

    path: str
    records: list[Record] = field(default_factory=list)
    rows: int = 0
    bad: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_bad(self) -> int:
        """Number of bad (skipped) rows."""
        return sum(len(lines) for lines in self.bad.values())


class DataBudgetError(DataError):
    """Lenient mode: too many bad rows, or none good. ``str(e)`` ends with the bad-row summary."""

    def __init__(self, result: ReadResult, max_bad_fraction: float):
        n_bad, rows = result.n_bad, result.rows
        detail = f"{n_bad} of {rows} rows bad ({n_bad / rows:.2%}), allowed {max_bad_fraction:.2%}"
        super().__init__(result.path, None, "too many bad rows", detail)
        self.result = result
        self.max_bad_fraction = max_bad_fraction
        self.args = (result, max_bad_fraction)

    def __str__(self) -> str:
        return "\n  ".join([super().__str__(), *format_bad_summary(self.result)])


class _Invalid(Exception):
    """Internal: a row rule failed; ``parse_line`` adds the path and line."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _check_unicode(text: str, where: str) -> None:
    """Reject lone surrogates (from escapes like ``\\ud800``): they cannot be encoded to UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        detail = f"lone surrogate U+{ord(text[e.start]):04X} in {where}"
        raise _Invalid("invalid Unicode", detail) from None


def _decode(raw: bytes, max_line_bytes: int) -> object:
    """Bytes of one line -> the parsed JSON value."""
    if len(raw) - raw.endswith(b"\n") > max_line_bytes:
        raise _Invalid("line too long", f"over {max_line_bytes} bytes")
    if raw.startswith(_BOM):
        raise _Invalid("UTF-8 BOM", "remove the byte order mark EF BB BF")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Invalid(
            "invalid UTF-8", f"byte 0x{raw[e.start]:02x} at byte {e.start + 1}"
        ) from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            raise _Invalid("empty line") from None
        raise _Invalid("not JSON", f"{e.msg} at column {e.colno}") from None
    except ValueError as e:  # NaN / Infinity, or an integer with too many digits
        raise _Invalid("not JSON", str(e)) from None
    except RecursionError:
        raise _Invalid("not JSON", "nested too deeply") from None


def _turns(conversation: object) -> tuple[Turn, ...]:
    """The JSON ``conversation`` value -> validated turns with normalised roles."""
    if not isinstance(conversation, list):
        raise _Invalid("conversation not a list", f"got {_json_type(conversation)}")
    if not conversation:
        raise _Invalid("empty conversation")
    turns = []
    seen_user = False
    for n, item in enumerate(conversation, 1):
        if not isinstance(item, dict):
            raise _Invalid("turn not an object", f"turn {n} is {_json_type(item)}")
        if "role" not in item:
            raise _Invalid("turn missing role", f"turn {n} has keys {sorted(item)}")
        if "content" not in item:
            raise _Invalid("turn missing content", f"turn {n} has keys {sorted(item)}")
        role, content = item["role"], item["content"]
        if not isinstance(role, str):
            raise _Invalid("role not a string", f"turn {n} role is {_json_type(role)}")
        norm = ROLE_ALIASES.get(role)
        if norm is None:
            expected = ", ".join(ROLE_ALIASES)
            raise _Invalid("unknown role", f"{role!r} in turn {n} (expected one of {expected})")
        if not isinstance(content, str):
            raise _Invalid("content not a string", f"turn {n} content is {_json_type(content)}")
        if not content or content.isspace():
            raise _Invalid("empty content", f"turn {n}")
        if not content.isascii():  # fast path: ASCII has no surrogates
            _check_unicode(content, f"turn {n} content")
        if norm == "system" and n != 1:
            raise _Invalid("system turn not first", f"turn {n}")
        if norm == "user":
            seen_user = True
        elif norm == "assistant" and not seen_user:
            raise _Invalid("no user turn before assistant", f"turn {n} is the first assistant turn")
        turns.append(Turn(norm, content))
    if not any(t.role == "assistant" for t in turns):
        raise _Invalid("no assistant turn")
    return tuple(turns)


def _score(obj: dict) -> float:
    if "meta_eval_score" not in obj:
        raise _Invalid("missing score", "no meta_eval_score key")
    score = obj["meta_eval_score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise _Invalid("score not a number", f"meta_eval_score is {_json_type(score)}")
    if isinstance(score, float) and not math.isfinite(score):
        raise _Invalid("score not finite", f"meta_eval_score is {score}")
    if not 0 <= score <= 5:
        raise _Invalid("score out of range", f"{score} not in [0, 5]")
    return float(score)


def parse_line(
    raw: bytes, path: str, line_no: int, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Record:
    """Validate one line (with or without its ``\\n``) into a ``Record``; raise ``DataError``.

    Pure: no I/O. Rules are checked in document order, so the first problem is the one reported.
    """
    try:
        obj = _decode(raw, max_line_bytes)
        if not isinstance(obj, dict):
            raise _Invalid("not an object", f"got {_json_type(obj)}")
        if "conversation" not in obj:
            raise _Invalid("missing conversation", f"keys are {sorted(obj)}")
        turns = _turns(obj["conversation"])
        score = _score(obj)
        reason = obj.get("score_reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise _Invalid("score_reason not a string", f"got {_json_type(reason)}")
            _check_unicode(reason, "score_reason")
    except _Invalid as e:
        raise DataError(path, line_no, *e.args) from None
    return Record(turns, score, reason, path, line_no)


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _iter_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, raw line)``. An overlong line is cut to ``max_line_bytes + 1``
    bytes (enough for ``parse_line`` to reject it); the rest is read in 64 KiB pieces and dropped."""
    limit = max_line_bytes + 1
    line_no = 0
    # Only the gzip layer turns a damaged file into these; plain-file OSErrors pass through.
    gzip_errors = (OSError, EOFError, zlib.error) if path.name.endswith(".gz") else ()
    with _open(path) as f:
        try:
            while raw := f.readline(limit):
                line_no += 1
                if len(raw) == limit and not raw.endswith(b"\n"):
                    while (rest := f.readline(1 << 16)) and not rest.endswith(b"\n"):
                        pass
                yield line_no, raw
        except gzip_errors as e:
            raise DataError(path, line_no + 1, "corrupt gzip", str(e)) from e


def iter_rows(
    path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[Record | DataError]:
    """Stream a file: one item a line, the ``Record`` or the ``DataError`` saying why it is bad.

    Bad rows are yielded, not raised (the caller picks strict or lenient); only file-level
    problems (I/O, corrupt gzip) raise. Does not check for an empty file.
    """
    source = str(path)
    for line_no, raw in _iter_lines(Path(path), max_line_bytes):
        try:
            item: Record | DataError = parse_line(raw, source, line_no, max_line_bytes)
        except DataError as e:
            item = e
        yield item


def read_records(
    path: str | os.PathLike[str],
    lenient: bool = False,
    max_bad_fraction: float = 0.01,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ReadResult:
    """Read and validate a whole file.

    Strict: raise the first bad row's ``DataError``. Lenient: skip bad rows, recording their
    line numbers per reason code; raise ``DataBudgetError`` if ``bad / rows > max_bad_fraction``
    or no row is good, else log the summary as a warning. Both modes raise
    ``DataError(path, None, "empty file")`` for a file without rows.
    """
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    result = ReadResult(str(path))
    with closing(iter_rows(path, max_line_bytes)) as rows:  # close the file on a strict raise
        for item in rows:
            result.rows += 1
            if isinstance(item, Record):
                result.records.append(item)
            elif lenient:
                result.bad.setdefault(item.code, []).append(item.line)
            else:
                raise item
    if result.rows == 0:
        raise DataError(path, None, "empty file", "no rows")
    if result.bad:
        if result.n_bad / result.rows > max_bad_fraction or not result.records:
            raise DataBudgetError(result, max_bad_fraction)
        summary = "\n  ".join(format_bad_summary(result))
        log.warning("%s: skipped %d of %d rows:\n  %s", path, result.n_bad, result.rows, summary)
    return result


def format_bad_summary(result: ReadResult) -> list[str]:
    """One line per reason code, most frequent first: ``code: N rows (lines 3, 7, 9, ...)``."""
    lines = []
    for code, nums in sorted(result.bad.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(map(str, nums[:5])) + (", ..." if len(nums) > 5 else "")
        plural = "s" if len(nums) > 1 else ""
        lines.append(f"{code}: {len(nums)} row{plural} (line{plural} {shown})")
    return lines
