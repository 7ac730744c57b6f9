"""Folders ferbench writes into (the data home, --out of prepare, evaluate and leaderboard), checked before any
work: a folder that is a file, lies under a file, or cannot be written is one line naming it, not an OS error
after the work is done.

Writability is asked with os.access, which also answers for a read-only mount when the user is root.
"""

from __future__ import annotations

import os
from pathlib import Path

from ferbench.errors import FerbenchError


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (what decides whether `path` can be made)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(folder: str | Path, write: bool = True) -> str | None:
    """Why `folder` cannot be (or be made into) a folder ferbench writes files into; None when it can.
    `write=False` only asks that it is, or could be, a folder (for commands that read it)."""
    folder = Path(folder)
    base = _existing(folder)
    if not base.is_dir():
        return "is a file, not a folder" if base == Path(os.path.abspath(folder)) else f"lies under {base}, a file"
    if write and not os.access(base, os.W_OK | os.X_OK):
        return "is not writable" if base == Path(os.path.abspath(folder)) else f"cannot be made: {base} is not writable"
    return None


def require_folder(folder: str | Path, what: str, write: bool = True) -> Path:
    """`folder` (a Path), or one FerbenchError line "WHAT FOLDER: what is wrong" (see `folder_problem`)."""
    problem = folder_problem(folder, write)
    if problem:
        raise FerbenchError(f"{what} {folder}: {problem}")
    return Path(folder)
