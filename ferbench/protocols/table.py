"""The sample table a protocol splits: one row per stored sample (id, subject, label, split, mode).

Read once from a prepared store so splitting never touches pixels; `fingerprint` hashes everything a split
depends on, so two labs holding the same table get the same string.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SampleTable:
    """Per-sample columns of one prepared file. `labels` index `classes` (-1 = unlabelled)."""

    path: Path | None
    dataset: str
    classes: tuple[str, ...]
    ids: list[str]
    subjects: list[str]
    labels: np.ndarray
    splits: list[str | None]
    modes: list[dict[str, Any]]
    fingerprint: str = field(default="", compare=False)
    #: Where each subject id came from, as the store records it (None: a file of schema 1-2, which did not);
    #: it does not change a split, so it is not in the fingerprint.
    subject_sources: list[str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", tuple(self.classes))
        if not (len(self.subjects) == len(self.splits) == len(self.modes) == labels.shape[0] == n):
            raise ValueError("SampleTable columns differ in length")
        if len(set(self.ids)) != n:
            raise ValueError("SampleTable ids are not unique")
        if n and (labels.min() < -1 or labels.max() >= len(self.classes)):
            raise ValueError("SampleTable labels outside -1 .. len(classes) - 1")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", self._digest())

    def _digest(self) -> str:
        payload = json.dumps(
            [self.dataset, list(self.classes), self.ids, self.subjects, self.labels.tolist(), self.splits, self.modes],
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_store(cls, store: Any) -> SampleTable:
        """The table of an open `ferbench.store.Store`."""
        rows = store.samples
        seen: set[str] = set()
        for r in rows:
            if r.id in seen:
                from ferbench.errors import DatasetError

                raise DatasetError(store.path, f"sample id {r.id!r} appears more than once in the sample table; "
                                               "each sample needs its own id (prepare the file again)")
            seen.add(r.id)
        return cls(
            path=Path(store.path), dataset=store.dataset, classes=tuple(store.classes),
            ids=[r.id for r in rows], subjects=[str(r.subject) for r in rows],
            labels=np.array([-1 if r.label is None else r.label for r in rows], dtype=np.int64),
            splits=[r.split for r in rows], modes=[dict(r.mode) for r in rows],
            subject_sources=[r.subject_source for r in rows] if store.schema_version >= 3 else None,
        )

    @classmethod
    def open(cls, path: str | Path) -> SampleTable:
        """The table of a prepared .h5 file (read, then the file is closed)."""
        from ferbench.store import open_store

        with open_store(Path(path).expanduser()) as store:
            return cls.from_store(store)

    def mode_keys(self) -> np.ndarray:
        """Each sample's mode as one canonical string (`mode_key`), e.g. "illumination=Strong,system=VL"."""
        return np.array([mode_key(m) for m in self.modes], dtype=object).astype(str)


def mode_key(mode: dict[str, Any]) -> str:
    """A mode dict as one string, keys sorted: {"system": "VL", "illumination": "Strong"} ->
    "illumination=Strong,system=VL" (the store keeps modes as JSON with sorted keys, so key order carries
    no meaning)."""
    return ",".join(f"{k}={mode[k]}" for k in sorted(mode))
