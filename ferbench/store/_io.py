"""Write failures as one line: OSError and h5py's RuntimeError become a `StoreIOError` naming the file."""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import sys
from pathlib import Path
from typing import Any

from ferbench.errors import FerbenchError


class StoreIOError(FerbenchError):
    """Writing the store failed (full disk, permissions, a vanished folder); finished shards are kept."""


@contextlib.contextmanager
def io_errors(what: str, path: Path, keep: Path | None = None):
    """Turn OSError and h5py's RuntimeError (raised for ENOSPC and other HDF5 write failures) into one
    StoreIOError line naming the file and what to do.

    While the block runs, the errors h5py reports from object destructors on a failing disk ("Exception
    ignored in ObjectID.__dealloc__", one per open object) are held back: the failure is reported once, as
    one line; after a successful block they are passed on unchanged."""
    held: list[Any] = []
    previous, stderr = sys.unraisablehook, sys.stderr
    sys.unraisablehook, sys.stderr = held.append, io.StringIO()  # h5py prints some of them to stderr itself
    try:
        yield
    except (OSError, RuntimeError) as e:
        gc.collect()  # let h5py's half-closed objects go now, while their complaints are held back
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0] if str(e) else type(e).__name__
        if "errno = 28" in str(e) or getattr(e, "errno", None) == errno.ENOSPC:
            reason = "no space left on device"
        elif "errno = 13" in str(e) or getattr(e, "errno", None) == errno.EACCES:
            reason = "permission denied"
        kept = f"; finished samples are kept in {keep}, rerun the same command to resume" if keep else ""
        held.clear()
        sys.stderr = io.StringIO()
        raise StoreIOError(f"{path}: cannot {what} ({reason}){kept}") from None
    finally:
        printed, sys.stderr, sys.unraisablehook = sys.stderr.getvalue(), stderr, previous
        if printed and stderr is not None:  # None: the process was started with stderr closed (`2>&-`)
            stderr.write(printed)
        for unraisable in held:
            previous(unraisable)


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (a rename is durable only once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

