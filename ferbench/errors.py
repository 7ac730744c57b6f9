"""User-facing errors. The CLI prints these as one line (no traceback) and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class FerbenchError(Exception):
    """A mistake in the user's input or environment, with a message that says what to fix."""


class DatasetError(FerbenchError):
    """A native dataset file or folder is missing or not in the expected format."""

    def __init__(self, path: str | Path, expected: str):
        self.path = Path(path)
        self.expected = expected
        super().__init__(f"{self.path}: {expected}")
