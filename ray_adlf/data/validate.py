"""Read and validate scored-conversation JSONL (``.jsonl``, or gzip when the name ends ``.gz``).

One JSON object a line::

    {"conversation": [{"role": "human", "content": "..."}, {"role": "gpt", "content": "..."}],
     "meta_eval_score": 4.5, "score_reason": "optional text"}

Every bad row gets one of the stable reason codes in ``REASON_CODES``, plus a detail:
``PATH:LINE: code: detail`` (lines and turns are counted from 1). File-level errors (missing,
not a regular file, empty, over a cap, too many bad rows) have ``line = None`` and read
``PATH: code: detail``. Keys other than the three above are ignored; ``score_reason`` may be
absent or null. A key twice in one object, at any depth, is an error ("duplicate key"): JSON
parsers disagree on which value wins.

Only regular files are read (symlinks to them too): the path is stat-ed before it is opened, so
a FIFO, a device such as ``/dev/zero`` or a directory fails at once ("not a regular file")
instead of blocking or reading forever. A missing path or dangling symlink is "no such file";
other failures to stat, open or read (permissions, symlink loops, I/O errors) are "unreadable".

Lines end at ``\\n``. The newline after the last line is normal (and may be missing); any other
empty or whitespace-only line is an error ("empty line"). A ``\\r`` before the ``\\n`` is JSON
whitespace, so CRLF files read fine. ``max_line_bytes`` counts a line's bytes without its
``\\n``; an overlong line is never held in memory whole. NaN / Infinity literals, which Python's
json would accept, are "not JSON".

Caps bound the time and memory one file can take, in both modes (a small gzip can expand to
gigabytes). Each must be a positive integer (``ValueError`` otherwise):

- ``max_line_bytes`` (default 1 MiB): a longer line is a bad row ("line too long").
- ``max_total_bytes`` (default 2 GiB, decompressed, newlines included): reading more raises
  "file too large". Records take about 2.5 times their JSON size in memory, so a file at the cap
  already needs some 5 GiB on the driver; shard bigger data sets or raise the cap.
- ``max_rows`` (default 10 million lines, good and bad): more raises "too many rows".

Strict mode (the default) raises the first bad row. Lenient mode skips bad rows, counts them per
reason code in ``ReadResult.bad_counts`` (keeping the first ``BAD_LINES_KEPT`` line numbers of
each in ``ReadResult.bad_lines``), logs a warning with ``format_bad_summary`` and raises
``DataBudgetError`` when ``bad / rows > max_bad_fraction`` or no row is good.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ray_adlf.data.records import ROLE_ALIASES, Record, Turn

DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_TOTAL_BYTES = 2 << 30
DEFAULT_MAX_ROWS = 10_000_000
BAD_LINES_KEPT = 5  # line numbers kept per reason code in lenient mode; the rest are counted

REASON_CODES: tuple[str, ...] = (
    # bytes and JSON
    "line too long",
    "UTF-8 BOM",
    "invalid UTF-8",
    "empty line",
    "not JSON",
    "not an object",
    "duplicate key",
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
    "no such file",
    "not a regular file",
    "unreadable",
    "corrupt gzip",
    "file too large",
    "too many rows",
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
_FILE_KINDS = {  # stat.filemode's first letter
    "d": "directory",
    "c": "character device",
    "b": "block device",
    "p": "FIFO",
    "s": "socket",
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
    """What ``read_records`` read: the good records, the row count and, per reason code, the
    number of bad rows and the first ``BAD_LINES_KEPT`` of their line numbers."""

    path: str
    records: list[Record] = field(default_factory=list)
    rows: int = 0
    bad_counts: dict[str, int] = field(default_factory=dict)
    bad_lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_bad(self) -> int:
        """Number of bad (skipped) rows."""
        return sum(self.bad_counts.values())

    def add_bad(self, code: str, line: int) -> None:
        """Count one bad row; keep its line number if it is among the first of its code."""
        count = self.bad_counts.get(code, 0)
        self.bad_counts[code] = count + 1
        if count < BAD_LINES_KEPT:
            self.bad_lines.setdefault(code, []).append(line)


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


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Build one JSON object, rejecting a repeated key (``json`` would keep the last value)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid("duplicate key", repr(key))
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_reject_constant)


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


def _require_positive(**caps: int) -> None:
    """Raise ``ValueError`` for a cap that is not an integer >= 1 (0 does not mean "no cap")."""
    for name, value in caps.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def parse_line(
    raw: bytes, path: str, line_no: int, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Record:
    """Validate one line (with or without its ``\\n``) into a ``Record``; raise ``DataError``.

    Pure: no I/O. Rules are checked in document order, so the first problem is the one reported.
    """
    _require_positive(max_line_bytes=max_line_bytes)
    return _parse(raw, path, line_no, max_line_bytes)


def _parse(raw: bytes, path: str, line_no: int, max_line_bytes: int) -> Record:
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


def _check_regular(path: Path, mode: int) -> None:
    """Raise "not a regular file" unless ``mode`` (from a stat) is a regular file's."""
    if not stat.S_ISREG(mode):
        kind = _FILE_KINDS.get(stat.filemode(mode)[0], "special file")
        raise DataError(path, None, "not a regular file", f"is a {kind}")


def _stat(path: Path) -> os.stat_result:
    """``os.stat`` (following symlinks) with its errors as ``DataError``."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        detail = f"dangling symlink to {os.readlink(path)}" if path.is_symlink() else ""
        raise DataError(path, None, "no such file", detail) from None
    except OSError as e:
        raise DataError(path, None, "unreadable", e.strerror or str(e)) from None


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading, gunzipped if the name ends ``.gz``.

    Stat first, so a FIFO is never opened: a blocking open waits for a writer, and any open wakes
    a writer waiting for a reader. The open is still non-blocking, and checked again with
    ``fstat``, in case the path is swapped for a FIFO in between.
    """
    _check_regular(path, _stat(path).st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DataError(path, None, "unreadable", e.strerror or str(e)) from None
    with open(fd, "rb") as f:
        _check_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                yield gz
        else:
            yield f


def _skip_rest(f: BinaryIO, budget: int) -> int:
    """Drop the rest of an overlong line, stopping once past ``budget`` bytes; return its size."""
    dropped = 0
    while dropped <= budget and (rest := f.readline(1 << 16)):
        dropped += len(rest)
        if rest.endswith(b"\n"):
            break
    return dropped


def _iter_lines(
    path: Path, max_line_bytes: int, max_total_bytes: int, max_rows: int
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, raw line)``. An overlong line is cut to ``max_line_bytes + 1``
    bytes (enough for ``parse_line`` to reject it); the rest is read in 64 KiB pieces and dropped.
    Raise ``DataError`` past ``max_total_bytes`` read or ``max_rows`` lines."""
    limit = max_line_bytes + 1
    line_no = total = 0
    with _open(path) as f:
        try:
            while raw := f.readline(limit):
                line_no += 1
                total += len(raw)
                if len(raw) == limit and not raw.endswith(b"\n"):
                    total += _skip_rest(f, max_total_bytes - total)
                if total > max_total_bytes:
                    raise DataError(path, None, "file too large", f"over {max_total_bytes:,} bytes")
                if line_no > max_rows:
                    raise DataError(path, None, "too many rows", f"over {max_rows:,} lines")
                yield line_no, raw
        except (OSError, EOFError, zlib.error) as e:  # only gzip raises the last two
            code = "corrupt gzip" if path.name.endswith(".gz") else "unreadable"
            raise DataError(path, line_no + 1, code, str(e)) from e


def iter_rows(
    path: str | os.PathLike[str],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Iterator[Record | DataError]:
    """Stream a file: one item a line, the ``Record`` or the ``DataError`` saying why it is bad.

    Bad rows are yielded, not raised (the caller picks strict or lenient); only file-level
    problems (not a readable regular file, corrupt gzip, a cap exceeded) raise, once iteration
    starts. Bad caps raise ``ValueError`` at the call. Does not check for an empty file.
    """
    _require_positive(
        max_line_bytes=max_line_bytes, max_total_bytes=max_total_bytes, max_rows=max_rows
    )
    return _rows(Path(path), max_line_bytes, max_total_bytes, max_rows)


def _rows(
    path: Path, max_line_bytes: int, max_total_bytes: int, max_rows: int
) -> Iterator[Record | DataError]:
    source = str(path)
    for line_no, raw in _iter_lines(path, max_line_bytes, max_total_bytes, max_rows):
        if raw.isspace() and len(raw) <= max_line_bytes:  # cheap: no exception raised
            yield DataError(source, line_no, "empty line")
            continue
        try:
            item: Record | DataError = _parse(raw, source, line_no, max_line_bytes)
        except DataError as e:
            item = e
        yield item


def read_records(
    path: str | os.PathLike[str],
    lenient: bool = False,
    max_bad_fraction: float = 0.01,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ReadResult:
    """Read and validate a whole file.

    Strict: raise the first bad row's ``DataError``. Lenient: skip bad rows, counting them per
    reason code; raise ``DataBudgetError`` if ``bad / rows > max_bad_fraction`` or no row is good,
    else log the summary as a warning. Both modes raise ``DataError(path, None, code)`` for a
    file without rows ("empty file"), one that is not a readable regular file, or one over
    ``max_total_bytes`` or ``max_rows``; and ``ValueError`` for a cap below 1.
    """
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    result = ReadResult(str(path))
    rows = iter_rows(path, max_line_bytes, max_total_bytes, max_rows)
    with closing(rows):  # close the file on a strict raise
        for item in rows:
            result.rows += 1
            if isinstance(item, Record):
                result.records.append(item)
            elif lenient:
                result.add_bad(item.code, item.line)
            else:
                raise item
    if result.rows == 0:
        raise DataError(path, None, "empty file", "no rows")
    if result.bad_counts:
        if result.n_bad / result.rows > max_bad_fraction or not result.records:
            raise DataBudgetError(result, max_bad_fraction)
        summary = "\n  ".join(format_bad_summary(result))
        log.warning("%s: skipped %d of %d rows:\n  %s", path, result.n_bad, result.rows, summary)
    return result


def format_bad_summary(result: ReadResult) -> list[str]:
    """One line per reason code, most frequent first: ``code: N rows (lines 3, 7, 9, ...)``."""
    lines = []
    for code, count in sorted(result.bad_counts.items(), key=lambda kv: -kv[1]):
        more = ", ..." if count > BAD_LINES_KEPT else ""
        shown = ", ".join(map(str, result.bad_lines[code])) + more
        plural = "s" if count > 1 else ""
        lines.append(f"{code}: {count} row{plural} (line{plural} {shown})")
    return lines
