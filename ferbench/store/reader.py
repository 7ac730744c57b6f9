"""`Store`: read access to a finished store, checked for consistency before anything is read from it.

Column lengths against `n_samples`, per-frame arrays against `n_frames`, labels within the class list, each
sample's frame range inside `/frames` and its indices inside its frames: a damaged file is one DatasetError
naming what is wrong. Which datasets exist and how their rows decode comes from `schema`.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import ferbench
from ferbench.errors import DatasetError, FerbenchError
from ferbench.issues import Issue, failure

from .chunks import ChunkIndex, one_frame_chunks, read_threads
from .flags import coverage
from .schema import (
    COLUMNS,
    FAILURE_IDS,
    FAILURE_REASONS,
    FRAME_ARRAYS,
    INDEXES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    StoredSample,
    required_paths,
)

@dataclass
class Loaded:
    """A whole store (or a subset) as torch tensors on one device (see `Store.load`)."""

    x: Any  # torch.Tensor: clip (n,T,3,H,W) | states (n,5,3,H,W) | native (F,3,H,W), uint8
    labels: Any  # (n,) int64, -1 = none
    subject_index: Any  # (n,) int64 into `subject_names`
    subject_names: list[str]
    subjects: list[str]
    ids: list[str]
    index: str
    offsets: Any = None  # native only: (n, 2) int64 [start, count] into x
    aus: Any = None  # int8, frame-aligned with x ((n,T,A) / (n,5,A) / (F,A)) where the store has AUs


def _decode(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v


def _open_h5(path: Path) -> h5py.File:
    """Open a store file for reading, turning every way it can be wrong into a DatasetError naming it."""
    if not path.exists():
        raise DatasetError(path, "file not found (expected a ferbench store written by `ferbench prepare`)")
    if path.is_dir():
        raise DatasetError(path, "is a folder (expected a ferbench .h5 store)")
    if path.stat().st_size == 0:
        raise DatasetError(path, "empty file (0 bytes), not a ferbench store; delete it and run `ferbench prepare` again")
    if not h5py.is_hdf5(str(path)):
        raise DatasetError(path, "not an HDF5 file (expected a ferbench store written by `ferbench prepare`)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(path, f"unreadable or truncated HDF5 file ({e}); run `ferbench prepare` again") from None


def _check_schema(path: Path, f: h5py.File) -> dict[str, Any]:
    if "schema_version" not in f.attrs:
        raise DatasetError(path, "HDF5 file without a ferbench schema_version attribute (not a ferbench store)")
    try:
        version = int(f.attrs["schema_version"])
    except (TypeError, ValueError):
        raise DatasetError(path, f"unreadable schema_version {f.attrs['schema_version']!r}") from None
    if version not in READABLE_VERSIONS:
        fix = "upgrade ferbench" if version > SCHEMA_VERSION else "re-run `ferbench prepare` to rebuild it"
        raise DatasetError(
            path,
            f"store schema version {version}, but ferbench {ferbench.__version__} reads schema version "
            f"{SCHEMA_VERSION} (and {', '.join(map(str, READABLE_VERSIONS[:-1]))}); {fix}",
        )
    missing = [name for name in required_paths(version) if name not in f]
    if missing:
        raise DatasetError(path, f"damaged ferbench store: missing {', '.join('/' + m for m in missing)}")
    attrs = {k: _decode(v) for k, v in f.attrs.items()}
    try:
        attrs["classes"] = json.loads(attrs["classes"])
        attrs["config"] = json.loads(attrs["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(path, f"damaged ferbench store: bad classes/config attribute ({e})") from None
    _check_shapes(path, f, attrs)
    return attrs


def _check_shapes(path: Path, f: h5py.File, attrs: dict[str, Any]) -> None:
    """Every array's length against the counts the file states (a cut or short dataset is named, not read)."""
    def bad(what: str) -> DatasetError:
        return DatasetError(path, f"damaged ferbench store: {what}; run `ferbench prepare` again")

    def rows(name: str) -> int:
        return f[name].shape[0] if f[name].ndim else 0

    try:
        n_samples, n_frames = int(attrs["n_samples"]), int(attrs["n_frames"])
    except (KeyError, TypeError, ValueError):
        raise bad("missing or unreadable n_samples / n_frames attributes") from None
    per_sample = sorted({c.path for c in COLUMNS if c.path in f} | {f"samples/{k}" for k in f["samples"]})
    for name in per_sample:
        if f[name].ndim < 1 or f[name].shape[0] != n_samples:
            raise bad(f"/{name} has {rows(name)} rows but the file holds {n_samples} samples")
    for name in (a.name for a in FRAME_ARRAYS if a.name in f):
        if f[name].ndim < 1 or f[name].shape[0] != n_frames:
            raise bad(f"/{name} has {rows(name)} frames but the file holds {n_frames}")
    for c in COLUMNS:
        if c.width is not None and (f[c.path].ndim != 2 or (c.width == "states" and f[c.path].shape[1:] != c.row_shape(0))):
            raise bad("index tables of the wrong shape")
    if len(f[FAILURE_IDS]) != len(f[FAILURE_REASONS]):
        raise bad(f"/{FAILURE_IDS} and /{FAILURE_REASONS} differ in length")


def _check_rows(path: Path, samples: list[StoredSample], n_classes: int, n_frames: int) -> None:
    """Each sample's label, frame range and indices against the file (no row may point outside it)."""
    for s in samples:
        where = f"damaged ferbench store: sample '{s.id}' (row {s.row})"
        if s.label is not None and not 0 <= s.label < n_classes:
            raise DatasetError(path, f"{where} has label {s.label} outside the {n_classes} classes")
        if s.frame_count < 1 or s.frame_start < 0 or s.frame_start + s.frame_count > n_frames:
            raise DatasetError(path, f"{where} has frames {s.frame_start}..{s.frame_start + s.frame_count - 1} "
                                     f"outside /frames ({n_frames} frames)")
        for c in COLUMNS:
            idx = getattr(s, c.name) if c.width is not None else None
            if idx is not None and len(idx) and (np.min(idx) < 0 or np.max(idx) >= s.frame_count):
                raise DatasetError(path, f"{where}: its {c.name} index points outside its {s.frame_count} frames")
        if s.coverage is not None and not 0.0 <= s.coverage <= 1.0:
            raise DatasetError(path, f"{where} has coverage {s.coverage} outside 0..1")


class Store:
    """Read access to a finished store: attrs, the sample table, per-sample arrays, whole-file tensors.

    Keeps the HDF5 file open (read-only) until `close()` or the end of a `with` block.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_h5(self.path)
        try:
            self.attrs: dict[str, Any] = _check_schema(self.path, self._f)
            self.samples: list[StoredSample] = self._read_samples()
            _check_rows(self.path, self.samples, len(self.attrs["classes"]), int(self._f["frames"].shape[0]))
            ids, reasons = (self._f[name].asstr()[...].tolist() for name in (FAILURE_IDS, FAILURE_REASONS))
            self.failures: list[Issue] = [failure(sid, reason) for sid, reason in zip(ids, reasons)]
        except BaseException:
            self._f.close()
            raise
        self._by_id = {s.id: s for s in self.samples}
        self._chunks: ChunkIndex | bool | None = None  # `chunk_index`: not built yet / False: not usable
        self._chunks_lock = threading.Lock()
        au = self._f.get("aus")
        self.au_names: tuple[Any, ...] = tuple(json.loads(au.attrs["au_names"])) if au is not None else ()

    def _read_samples(self) -> list[StoredSample]:
        """One StoredSample per row, every field decoded by its column of the table."""
        raw = {c.name: c.read(self._f[c.path]) for c in COLUMNS if c.path in self._f}
        if "coverage" not in raw:  # schema 1: the same fraction, from the per-frame flags
            flags = self._f["flags"][...]
            raw["coverage"] = [coverage(flags[a : a + n]) for a, n in zip(raw["frame_start"], raw["frame_count"])]
        if "subject_source" not in raw:  # schema 1-2: not recorded
            raw["subject_source"] = [""] * len(raw["id"])
        out = []
        for i in range(len(raw["id"])):
            fields = {}
            for c in COLUMNS:
                try:
                    fields[c.name] = c.decode(raw[c.name][i])
                except ValueError:
                    raise DatasetError(self.path, f"damaged sample table: bad {c.name} in row {i}") from None
            out.append(StoredSample(**fields, row=i))
        return out

    # -- metadata ----------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The store schema version the file was written with (`READABLE_VERSIONS`)."""
        return int(self.attrs["schema_version"])

    @property
    def dataset(self) -> str:
        return str(self.attrs["dataset"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.attrs["classes"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.attrs["config"])

    @property
    def length(self) -> int:
        return int(self._f["index/clip"].shape[1])

    @property
    def n_frames(self) -> int:
        return int(self._f["frames"].shape[0])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self._f["frames"].shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, key: int | str) -> StoredSample:
        """A sample row by position or by id."""
        if isinstance(key, str):
            if key not in self._by_id:
                raise FerbenchError(f"{self.path}: no sample with id '{key}'")
            return self._by_id[key]
        return self.samples[key]

    # -- per-sample arrays -------------------------------------------------------------------------------
    def _span(self, key: int | str) -> slice:
        s = self.sample(key)
        return slice(s.frame_start, s.frame_start + s.frame_count)

    def native_frames(self, key: int | str) -> np.ndarray:
        """The sample's aligned frames at native length: uint8 (T_native, H, W, 3) (the clip index is not
        applied: see `frames(key, "clip")` for the fixed-length clip)."""
        return self._f["frames"][self._span(key)]

    def frames(self, key: int | str, index: str = "native") -> np.ndarray:
        """The sample's frames as stored (`native`), through the clip index (T), or the 5 state frames."""
        native = self.native_frames(key)
        if index == "native":
            return native
        rows = self._positions(self.sample(key), index)
        return native[rows]

    def landmarks(self, key: int | str) -> np.ndarray:
        return self._f["landmarks"][self._span(key)]

    def flags(self, key: int | str) -> np.ndarray:
        return self._f["flags"][self._span(key)]

    def source_frame(self, key: int | str) -> np.ndarray:
        """Each stored frame's number in the native data (file-name number or video frame index)."""
        return self._f["source_frame"][self._span(key)]

    def aus(self, key: int | str) -> np.ndarray | None:
        return self._f["aus"][self._span(key)] if "aus" in self._f else None

    def per_frame(self, name: str, frames: np.ndarray | None = None) -> np.ndarray | None:
        """A per-frame array of the whole file (`flags`, `source_frame`, `aus`, `landmarks`), or its rows at the
        increasing absolute frame numbers `frames`; None when the file has no such array (e.g. no AUs)."""
        names = [a.name for a in FRAME_ARRAYS if a.name != "frames"]
        if name not in names:
            raise ValueError(f"unknown per-frame array {name!r}; one of {', '.join(names)}")
        if name not in self._f:
            return None
        return self._f[name][...] if frames is None else self._f[name][frames]

    def _positions(self, s: StoredSample, index: str) -> np.ndarray:
        """The sample's frame positions (relative to its first frame) under the clip or states index."""
        _check_index(index)
        if index == "states" and s.states is None:
            raise FerbenchError(f"{self.path}: sample '{s.id}' has no expression-state index")
        return np.asarray(getattr(s, index), dtype=np.int64)

    # -- whole-file tensors ------------------------------------------------------------------------------
    def frame_table(self, index: str, rows: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """The absolute frame numbers `index` selects for the samples at `rows`: (n, T) for `clip`, (n, 5) for
        `states`; for `native` every frame of each sample in turn (F,) with `offsets` (n, 2) = [start, count]
        into that list (else None)."""
        _check_index(index)
        sel = [self.samples[i] for i in rows]
        if index == "native":
            counts = np.array([s.frame_count for s in sel], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if sel else counts
            absolute = (np.concatenate([np.arange(s.frame_start, s.frame_start + s.frame_count) for s in sel])
                        if sel else np.zeros(0, np.int64))
            return absolute.astype(np.int64), np.stack([starts, counts], 1) if sel else np.zeros((0, 2), np.int64)
        width = self.length if index == "clip" else 5
        if not sel:
            return np.zeros((0, width), np.int64), None
        return np.stack([s.frame_start + self._positions(s, index) for s in sel]).astype(np.int64), None

    def read_frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames at absolute numbers `frames` (increasing and distinct on the h5py path): uint8 (k, H, W, 3),
        reading only their chunks. Thread-safe, and threads read at once where the frames are in one-frame
        chunks (`ChunkIndex`: a positional read and an inflate per frame, outside HDF5's lock)."""
        frames = np.asarray(frames, dtype=np.int64)
        index = self.chunk_index()
        if index is not None:
            return index.read(frames)
        ds = self._f["frames"]
        out = np.empty((len(frames), *ds.shape[1:]), dtype=ds.dtype)
        if not len(frames):
            return out
        runs = np.split(np.arange(len(frames)), np.nonzero(np.diff(frames) != 1)[0] + 1)
        for run in runs:  # contiguous runs as plain slices (h5py's point selections are slow)
            a = int(frames[run[0]])
            out[run[0] : run[-1] + 1] = ds[a : a + len(run)]
        return out

    def chunk_index(self) -> ChunkIndex | None:
        """Where each frame's chunk lies in the file (built once, on first use), or None where the frames are
        not stored one per chunk, the file is not read through a plain file descriptor or the system has no
        positional read (Windows): then frames are read through h5py."""
        with self._chunks_lock:  # built once, whichever thread asks first
            if self._chunks is None:
                ds = self._f["frames"]
                usable = one_frame_chunks(ds) and self._f.driver == "sec2" and hasattr(os, "pread")  # not on Windows
                self._chunks = ChunkIndex(self.path, ds) if usable else False
        return self._chunks or None

    def load(self, device: Any = "cpu", index: str = "clip", samples: Iterable[int] | None = None) -> Loaded:
        """All (or the given) samples as uint8 torch tensors on `device`, channels first.

        `clip`: x (n, T, 3, H, W); `states`: x (n, 5, 3, H, W); `native`: x (F, 3, H, W) with `offsets`
        (n, 2) = [start, count] rows into x. The frames are read from disk in blocks of contiguous frames and
        gathered into x as they come (memory: x plus one block, not the whole file twice).
        """
        import torch

        rows = list(range(len(self.samples))) if samples is None else [int(i) for i in samples]
        sel = [self.samples[i] for i in rows]
        absolute, offsets = self.frame_table(index, rows)
        all_aus = self._f["aus"][...] if "aus" in self._f else None
        x = _gather_blocks(self._f["frames"], absolute, self.chunk_index())
        names = sorted({s.subject for s in sel})
        code = {name: i for i, name in enumerate(names)}
        return Loaded(
            x=torch.from_numpy(x).to(device),
            labels=torch.tensor([-1 if s.label is None else s.label for s in sel], dtype=torch.int64).to(device),
            subject_index=torch.tensor([code[s.subject] for s in sel], dtype=torch.int64).to(device),
            subject_names=names,
            subjects=[s.subject for s in sel],
            ids=[s.id for s in sel],
            index=index,
            offsets=None if offsets is None else torch.from_numpy(offsets).to(device),
            aus=None if all_aus is None else torch.from_numpy(np.ascontiguousarray(all_aus[absolute])).to(device),
        )

    def close(self) -> None:
        with self._chunks_lock:
            if self._chunks:
                self._chunks.close()
            self._chunks = False  # no index of a closed file
        self._f.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Frames read at once by `Store.load` (a block of 112x112 frames is ~150 MB).
LOAD_BLOCK = 4096


def _gather_blocks(ds: h5py.Dataset, absolute: np.ndarray, index: ChunkIndex | None = None) -> np.ndarray:
    """`ds[absolute]` channels first ((..., 3, H, W) uint8), read in blocks of `LOAD_BLOCK` contiguous frames
    that hold wanted frames (blocks without one are skipped): with `index`, only the wanted frames of a block,
    blocks read by several threads at once; else whole blocks through h5py."""
    h, w, c = ds.shape[1:]
    x = np.empty((*absolute.shape, c, h, w), dtype=ds.dtype)
    flat_idx, flat_x = absolute.reshape(-1), x.reshape(-1, c, h, w)
    if not flat_idx.size:
        return x
    order = np.argsort(flat_idx, kind="stable")
    sorted_idx = flat_idx[order]

    def gather(a: int) -> None:
        lo, hi = np.searchsorted(sorted_idx, [a, a + LOAD_BLOCK])
        if lo == hi:
            return
        if index is not None:
            flat_x[order[lo:hi]] = np.moveaxis(index.read(sorted_idx[lo:hi]), -1, -3)
            return
        block = ds[a : min(a + LOAD_BLOCK, ds.shape[0])]
        flat_x[order[lo:hi]] = np.moveaxis(block[sorted_idx[lo:hi] - a], -1, -3)

    starts = range(int(sorted_idx[0]) // LOAD_BLOCK * LOAD_BLOCK, int(sorted_idx[-1]) + 1, LOAD_BLOCK)
    if index is None or len(starts) == 1:
        for a in starts:
            gather(a)
        return x
    with ThreadPoolExecutor(read_threads(spare=0), thread_name_prefix="ferbench-load") as pool:  # disjoint rows
        list(pool.map(gather, starts))
    return x


def _check_index(index: str) -> None:
    if index not in INDEXES:
        raise FerbenchError(f"unknown index '{index}'; choose {', '.join(INDEXES[:-1])} or {INDEXES[-1]}")


def open_store(path: str | Path) -> Store:
    """Open a finished store for reading (schema-version checked; bad files raise a DatasetError naming them)."""
    return Store(path)
