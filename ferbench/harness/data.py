"""Data on the device, loaded once per process: a store's frames as uint8 tensors, batches gathered by index.

Every process (the client in-process, or each dask worker) opens the data file itself and keeps the tensors
for the rest of its life, so tasks after the first pay no loading cost and nothing large crosses the network.
Labels are never read from here for training or selection: tasks get the labels they may use from their spec.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferbench.errors import FerbenchError
from ferbench.store import Loaded, Store, open_store


def au_name(value: Any) -> str:
    """An AU column name as the records spell it: 1 -> "AU1", "AU12" -> "AU12"."""
    text = str(value).strip()
    return text if text.upper().startswith("AU") else f"AU{text}"


@dataclass
class DataFile:
    """One open store and the tensors made from it (per index and device), with id lookups."""

    path: Path
    store: Store
    row_of: dict[str, int]
    _loaded: dict[tuple[str, str], tuple[Loaded, dict[str, int]]] = field(default_factory=dict)
    _coded: np.ndarray | None = None
    _source_frame: np.ndarray | None = None

    @property
    def length(self) -> int:
        return self.store.length

    @property
    def size(self) -> int:
        return int(self.store.frame_shape[0])

    def rows(self, ids: list[str] | tuple[str, ...]) -> list[int]:
        """Store rows of sample ids (a missing id is a stale plan: refuse)."""
        try:
            return [self.row_of[i] for i in ids]
        except KeyError as e:
            raise FerbenchError(f"{self.path}: no sample {e.args[0]!r}; the fold list does not match this file") from None

    def loaded(self, index: str, device: str) -> tuple[Loaded, dict[str, int]]:
        """All samples (all with a states index, for `states`) on `device`, and id -> position in that tensor."""
        key = (index, str(device))
        if key not in self._loaded:
            if index == "states":
                rows = [s.row for s in self.store.samples if s.states is not None]
            else:
                rows = None
            data = self.store.load(device=device, index=index, samples=rows)
            self._loaded[key] = (data, {sid: i for i, sid in enumerate(data.ids)})
        return self._loaded[key]

    def positions(self, index: str, device: str, ids: tuple[str, ...] | list[str]) -> torch.Tensor:
        """Positions of `ids` in the loaded tensor of `index` (states: refuses samples without a states index)."""
        _, pos = self.loaded(index, device)
        missing = [i for i in ids if i not in pos]
        if missing:
            why = "has no expression-state index" if index == "states" else "is not in the file"
            raise FerbenchError(f"{self.path}: sample {missing[0]!r} {why} ({len(missing)} such samples)")
        return torch.tensor([pos[i] for i in ids], dtype=torch.int64)

    # -- AU detection: coded frames and their native frame numbers ------------------------------------------
    def au_columns(self, classes: tuple[str, ...]) -> list[int]:
        """Columns of /aus that hold the protocol's AUs, in the protocol's order."""
        names = [au_name(a) for a in self.store.au_names]
        if not names:
            raise FerbenchError(f"{self.path}: the file holds no AU labels (au-detection needs a BP4D-style store)")
        missing = [c for c in classes if au_name(c) not in names]
        if missing:
            raise FerbenchError(f"{self.path}: no AU column for {', '.join(missing)} (the file has {', '.join(names)})")
        return [names.index(au_name(c)) for c in classes]

    def coded_units(self, ids: tuple[str, ...] | list[str], columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The coded frames of these samples (any of `columns` known): (sample position, local frame) arrays.

        Whether a frame is coded is public annotation metadata, not a label value.
        """
        if self._coded is None:
            self._coded = self.store.per_frame("aus")
        known = self._coded[:, columns] != -1
        coded = known.any(1)
        positions, locals_ = [], []
        for i, sid in enumerate(ids):
            s = self.store.sample(sid)
            hit = np.nonzero(coded[s.frame_start : s.frame_start + s.frame_count])[0]
            positions.append(np.full(len(hit), self.row_of[sid], np.int64))
            locals_.append(hit.astype(np.int64))
        if not positions:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(positions), np.concatenate(locals_)

    def source_frames(self) -> np.ndarray:
        if self._source_frame is None:
            self._source_frame = self.store.per_frame("source_frame")
        return self._source_frame


_CACHE: dict[tuple[str, int, int], DataFile] = {}
_LOCK = threading.Lock()


def open_data(path: str | Path) -> DataFile:
    """The process-wide DataFile of a store (re-opened when the file changes on disk)."""
    p = Path(path).resolve()
    st = p.stat() if p.exists() else None
    key = (str(p), st.st_size if st else -1, st.st_mtime_ns if st else -1)
    with _LOCK:
        if key not in _CACHE:
            store = open_store(p)
            for old in [k for k in _CACHE if k[0] == str(p)]:
                _CACHE.pop(old).store.close()
            _CACHE[key] = DataFile(p, store, {s.id: s.row for s in store.samples})
        return _CACHE[key]


# -- batches ---------------------------------------------------------------------------------------------------
def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [0, 1] (models normalise inside if they need to)."""
    return x.float().div_(255.0)


def gather_clips(data: Loaded, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3, H, W) uint8 clips and their lengths for positions `pos` (native index: right-padded)."""
    dev = data.x.device
    pos = pos.to(dev)
    if data.index != "native":
        x = data.x.index_select(0, pos)
        return x, torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=dev)
    starts, counts = data.offsets[pos, 0], data.offsets[pos, 1]
    t = int(counts.max())
    steps = torch.arange(t, device=dev)
    idx = starts[:, None] + torch.minimum(steps[None, :], counts[:, None] - 1)  # pad by repeating the last frame
    return data.x[idx], counts


def gather_windows(data: Loaded, pos: torch.Tensor, local: torch.Tensor, length: int) -> torch.Tensor:
    """Fixed-length windows ending at frame `local` of sample `pos` (native index); frames before a sample's
    first frame repeat its first frame. (B, length, 3, H, W) uint8."""
    dev = data.x.device
    starts = data.offsets[pos.to(dev), 0]
    rel = local.to(dev)[:, None] - (length - 1) + torch.arange(length, device=dev)[None, :]
    return data.x[starts[:, None] + rel.clamp_min(0)]
