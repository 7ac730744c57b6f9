"""Atomic file writes and strict JSON: every text file ferbench writes (task records, fold lists, prepare
reports, leaderboard pages) goes through `atomic_write`, so a reader, or a rerun after kill -9 or a full disk,
sees the old file or the whole new one, never half of one.

The steps: a temp file in the target's own folder (a rename never crosses file systems), fsync of the file,
rename over the target, fsync of the folder (so the rename itself survives a power cut). Strict JSON has no
NaN or Infinity: `dumps_strict` refuses them and `loads_strict` refuses to read them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems (and Windows) cannot open a folder for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, newline: str | None = None, binary: bool = False) -> Iterator[IO[Any]]:
    """`with atomic_open(p) as f: f.write(...)`: `p` appears complete when the block ends without error;
    on any error the temp file is removed and an existing `p` is left as it was. Text is UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; follow the umask like open() does
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe to probe later


def atomic_write(path: str | Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8, or bytes) to `path` atomically; return the path."""
    with atomic_open(path, newline="", binary=isinstance(content, bytes)) as f:
        f.write(content)
    return Path(path)


def dumps_strict(value: Any, indent: int | None = 1) -> str:
    """JSON text with no NaN/Infinity (ValueError naming the problem otherwise)."""
    return json.dumps(value, indent=indent, allow_nan=False, ensure_ascii=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """Parse JSON, refusing the NaN / Infinity / -Infinity literals Python's json module accepts by default."""
    return json.loads(text, parse_constant=_no_constant)


def write_json(path: str | Path, value: Any) -> Path:
    """Strict JSON, written atomically."""
    return atomic_write(path, dumps_strict(value) + "\n")
