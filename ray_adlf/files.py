"""Files the project writes itself are written whole or not at all.

``atomic_write_text`` / ``atomic_write_bytes`` write to a temporary file beside the target,
flush and ``fsync`` it, then ``os.replace`` it over the target: a crash (or a full disk) at
any moment leaves either the old file or the new one, never a torn mix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (module docstring); parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(scratch, mode)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)
