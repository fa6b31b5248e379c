"""Hostile inputs: paths that are not regular files, and files built to eat memory or time."""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ray_adlf.data.validate import DataBudgetError, DataError, iter_rows, read_records

GOOD = (
    b'{"conversation": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}],'
    b' "meta_eval_score": 4}'
)
MiB = 1 << 20


def finishes(call: Callable[[], object], seconds: float = 10) -> BaseException | None:
    """Run ``call`` in a daemon thread; fail if it is still running after ``seconds`` (the bug
    this file guards against is a read that never returns). Return what it raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            raised.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    return raised[0] if raised else None


def file_error(path: Path | str, lenient: bool = False) -> DataError:
    """The file-level ``DataError`` that reading ``path`` raises."""
    err = finishes(lambda: read_records(path, lenient=lenient, max_bad_fraction=1.0))
    assert isinstance(err, DataError), repr(err)
    assert err.path == str(path) and err.line is None
    return err


def gzip_of(chunk: bytes, repeat: int) -> bytes:
    """gzip of ``chunk * repeat`` without holding the whole plain text."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    return b"".join(packer.compress(chunk) for _ in range(repeat)) + packer.flush()


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("name", ["pipe.jsonl", "pipe.jsonl.gz"])
def test_fifo_is_refused_without_opening_it(tmp_path: Path, name: str, lenient: bool) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    try:
        err = file_error(fifo, lenient)
    finally:  # on failure a reader may be stuck in open(): let it through
        with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert str(err) == f"{fifo}: not a regular file: is a FIFO"


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_character_device_is_refused(device: str, lenient: bool) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    assert (
        str(file_error(device, lenient)) == f"{device}: not a regular file: is a character device"
    )


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    assert str(file_error(folder)) == f"{folder}: not a regular file: is a directory"


def test_symlink_to_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    link = tmp_path / "data.jsonl"
    link.symlink_to(tmp_path / "pipe")
    assert file_error(link).code == "not a regular file"


def test_symlink_to_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real.jsonl").write_bytes(GOOD + b"\n")
    link = tmp_path / "data.jsonl"
    link.symlink_to("real.jsonl")
    assert len(read_records(link).records) == 1


@pytest.mark.parametrize("lenient", [False, True])
def test_missing_path(tmp_path: Path, lenient: bool) -> None:
    missing = tmp_path / "nope.jsonl"
    assert str(file_error(missing, lenient)) == f"{missing}: no such file"
    (tmp_path / "file").write_bytes(GOOD)
    under_a_file = tmp_path / "file" / "data.jsonl"
    assert file_error(under_a_file, lenient).code == "no such file"


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "data.jsonl"
    link.symlink_to(tmp_path / "gone.jsonl")
    err = file_error(link)
    assert str(err) == f"{link}: no such file: dangling symlink to {tmp_path / 'gone.jsonl'}"


def test_symlink_loop_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").symlink_to("b.jsonl")
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")
    err = file_error(tmp_path / "a.jsonl")
    assert err.code == "unreadable" and "symbolic links" in err.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD + b"\n")
    path.chmod(0)
    assert str(file_error(path)) == f"{path}: unreadable: Permission denied"


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_read_error_mid_file_names_path_and_line() -> None:
    # A regular file whose read fails with EIO: offset 0 of our own address space is unmapped.
    with pytest.raises(DataError) as info:
        read_records("/proc/self/mem")
    assert (info.value.path, info.value.line, info.value.code) == (
        "/proc/self/mem",
        1,
        "unreadable",
    )


def test_newline_gzip_bomb_stops_at_byte_cap_quickly(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip_of(b"\n" * MiB, 50))  # 50 KB that expand to 50 MiB of empty lines
    assert bomb.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(DataError) as info:
        read_records(bomb, lenient=True, max_bad_fraction=1.0, max_total_bytes=MiB // 4)
    assert time.perf_counter() - started < 5  # about 0.3 s; generous for a loaded machine
    assert str(info.value) == f"{bomb}: file too large: over 262,144 bytes"


def test_lenient_memory_does_not_grow_with_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(gzip_of(b"\n" * 1000, 100) + gzip.compress(GOOD + b"\n"))
    tracemalloc.start()
    try:
        with pytest.raises(DataBudgetError) as info:
            read_records(path, lenient=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result = info.value.result
    assert (result.rows, result.n_bad, len(result.records)) == (100_001, 100_000, 1)
    assert result.bad_lines == {"empty line": [1, 2, 3, 4, 5]}
    assert peak < MiB  # keeping all 100,000 line numbers would take over 3 MiB


def test_one_endless_line_stops_at_byte_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "zeros.jsonl.gz"
    bomb.write_bytes(gzip_of(b"0" * MiB, 100))  # one 100 MiB line, never held whole
    started = time.perf_counter()
    with pytest.raises(DataError, match="file too large: over 4,194,304 bytes"):
        read_records(bomb, lenient=True, max_bad_fraction=1.0, max_total_bytes=4 * MiB)
    assert time.perf_counter() - started < 5


def test_byte_cap_boundary(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes((GOOD + b"\n") * 3)
    size = path.stat().st_size
    assert read_records(path, max_total_bytes=size).rows == 3
    with pytest.raises(DataError) as info:
        read_records(path, max_total_bytes=size - 1)
    assert str(info.value) == f"{path}: file too large: over {size - 1:,} bytes"


@pytest.mark.parametrize("lenient", [False, True])
def test_row_cap_boundary(tmp_path: Path, lenient: bool) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes((GOOD + b"\n") * 15)
    assert len(list(iter_rows(path, max_rows=15))) == 15
    with pytest.raises(DataError) as info:
        read_records(path, lenient=lenient, max_bad_fraction=1.0, max_rows=14)
    assert str(info.value) == f"{path}: too many rows: over 14 lines"
