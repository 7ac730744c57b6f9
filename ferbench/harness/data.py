"""A task's data files, opened once per process, and the frame source of each index (`source`).

Every process (the client in-process, or each dask worker) opens the data file itself, so nothing large crosses
the network. Frames that fit the task's memory budget are loaded onto the device once and kept for the rest of
the process's life (tasks after the first pay no loading cost); frames that do not are streamed from this
process's own file handle (`ferbench.harness.sources`). Labels are never read from here for training or
selection: tasks get the labels they may use from their spec.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferbench.errors import FerbenchError
from ferbench.harness.memory import Budget, default_budget
from ferbench.harness.sources import FrameSource, ResidentFrames, StreamedFrames
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
    _loaded: dict[tuple[str, str], Loaded] = field(default_factory=dict)  # (index, device) -> resident frames
    #: (index, device, thread) -> streamed source: one prefetcher per index and thread (a worker running tasks on
    #: several threads gives each its own: a prefetcher's schedule belongs to one caller)
    _streamed: dict[tuple[str, str, int], StreamedFrames] = field(default_factory=dict)
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

    def _rows(self, index: str) -> list[int] | None:
        """The store rows an index serves: every sample, or (states) those with a states index."""
        return [s.row for s in self.store.samples if s.states is not None] if index == "states" else None

    def loaded(self, index: str, device: str) -> Loaded:
        """All samples (all with a states index, for `states`) on `device`, loaded once and kept (see `source`,
        which decides whether a task may keep them)."""
        key = (index, str(device))
        if key not in self._loaded:
            self._loaded[key] = self.store.load(device=device, index=index, samples=self._rows(index))
        return self._loaded[key]

    def resident_bytes(self, index: str) -> int:
        """Bytes `loaded(index, ...)` holds: its frames (and their AU rows), from the sample table alone."""
        rows = self._rows(index)
        samples = self.store.samples if rows is None else [self.store.samples[r] for r in rows]
        per_sample = {"clip": self.length, "states": 5}
        frames = sum(per_sample[index] if index in per_sample else s.frame_count for s in samples)
        h, w, c = self.store.frame_shape
        return frames * (h * w * c + len(self.store.au_names))

    def stop_streams(self, thread: int | None = None) -> None:
        """Stop the read-ahead of every streamed source (of `thread`'s sources only, when given): at the end of
        a task, and before the file closes."""
        for (_, _, owner), src in list(self._streamed.items()):
            if thread is None or owner == thread:
                src.stop()

    def held_bytes(self, device_type: str) -> int:
        """Bytes of resident frames this file holds on CPU or CUDA devices."""
        return sum(self.resident_bytes(i) for i, d in self._loaded if str(d).startswith(device_type))

    def source(self, index: str, device: torch.device, budget: Budget) -> FrameSource:
        """The frames of `index` for a task: resident when they fit what is left of `budget` (frames of other
        files or indexes that this task does not use are released first when needed), else streamed."""
        key = (str(self.path), index, str(device))
        nbytes = self.resident_bytes(index)
        with _LOCK:  # tasks on several threads of one worker share the process's files
            resident = budget.grant(key, nbytes)
            loading = resident and (index, str(device)) not in self._loaded
            release_except(budget.keys, budget.total - (nbytes if loading else 0))
            if resident:
                src: FrameSource = ResidentFrames(self.path, self.loaded(index, str(device)))
            else:
                skey = (index, str(device), threading.get_ident())
                if skey not in self._streamed:
                    rows = self._rows(index)
                    self._streamed[skey] = StreamedFrames(
                        self.store, index, list(range(len(self.store.samples))) if rows is None else rows, device)
                src = self._streamed[skey]
        budget.modes[f"{self.path}:{index}"] = src.mode
        return src

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
_LOCK = threading.RLock()  # re-entrant: `DataFile.source` holds it while it releases and loads


def _version(p: Path) -> tuple[str, int, int]:
    """The cache key of a store: its path, size and modification time (-1, -1 when it is gone)."""
    st = p.stat() if p.exists() else None
    return (str(p), st.st_size if st else -1, st.st_mtime_ns if st else -1)


def close_changed(path: str | Path) -> None:
    """Close this process's DataFiles of `path` that were opened before the file changed on disk. Called before
    the file is opened again: HDF5 gives every open of one file (device and inode) the structure cached by the
    first, so a file copied over in place while a stale handle stays open would be read through that stale
    structure (h5py's bare OSError naming no file, or old offsets into new bytes)."""
    p = Path(path).resolve()
    key = _version(p)
    with _LOCK:
        for old in [k for k in _CACHE if k[0] == str(p) and k != key]:
            stale = _CACHE.pop(old)
            stale.stop_streams()  # its reader threads end before the handle they read through closes
            stale.store.close()


def open_data(path: str | Path) -> DataFile:
    """The process-wide DataFile of a store (re-opened when the file changes on disk)."""
    p = Path(path).resolve()
    key = _version(p)
    with _LOCK:
        if key not in _CACHE:
            close_changed(p)  # before the open, not after: see `close_changed`
            store = open_store(p)
            _CACHE[key] = DataFile(p, store, {s.id: s.row for s in store.samples})
        return _CACHE[key]


def held_bytes(device_type: str) -> int:
    """Bytes of resident frames this process holds on CPU (`cpu`) or CUDA (`cuda`) devices, every file."""
    with _LOCK:
        return sum(d.held_bytes(device_type) for d in _CACHE.values())


def stop_streams() -> None:
    """End this thread's read-ahead in every file (a task's last step: a task that stops before its planned
    batches, on a divergence or an error, leaves no reader thread holding batches behind)."""
    with _LOCK:
        files = list(_CACHE.values())
    for d in files:
        d.stop_streams(threading.get_ident())


def release_except(keep: set[tuple[str, str, str]], room: int) -> None:
    """Drop resident frames (of any file) whose (file, index, device) is not in `keep` until this process holds
    at most `room` bytes of them: a budget bounds what the process keeps, not only what one task loads."""
    with _LOCK:
        for d in list(_CACHE.values()):
            for index, dev in list(d._loaded):
                if held_bytes("cpu") + held_bytes("cuda") <= room:
                    return
                if (str(d.path), index, dev) not in keep:
                    del d._loaded[(index, dev)]


def task_budget(memory_budget: int | None, device: torch.device) -> Budget:
    """A task's budget: `memory_budget` bytes when given, else the default share of this process's memory."""
    if memory_budget is not None:
        return Budget(int(memory_budget), explicit=True)
    return Budget(default_budget(device, held_bytes("cpu"), held_bytes("cuda")), explicit=False)


# -- batches ---------------------------------------------------------------------------------------------------
def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [0, 1] (models normalise inside if they need to)."""
    return x.float().div_(255.0)
