"""The store's schema in one place: versions, the per-sample column table, the per-frame arrays, and the
records those tables fill.

`COLUMNS` lists every per-sample column once (its HDF5 path, dtype, width, where its value comes from and
how it is encoded for the file and decoded back); the writer's shards, the merge into the finished file,
the reader's checks and its `StoredSample` rows all walk that table, so a column is added or changed here
and nowhere else. `FRAME_ARRAYS` does the same for the per-frame datasets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 3
#: Older schema versions this reader still reads (version 1 lacks `samples/coverage`: computed from /flags;
#: versions 1-2 lack `samples/subject_source`: read as unknown).
READABLE_VERSIONS = (1, 2, 3)
FORMAT_NAME = "ferbench-store"

#: The frame selections a store serves (`Store.frames`, `Store.load`; a model card's `index` names the one
#: the model consumes): "clip" the fixed-length clip (T), "states" the five expression-state frames,
#: "native" every stored frame. (The store's other "index" is the `/index` group of position arrays behind
#: the first two; a sample's place in the file is its `row`.)
INDEXES = ("clip", "states", "native")
#: The five expression-state frames of `/index/states`, in kim2017's eq. 1 order.
STATE_NAMES = ("onset", "onset-apex", "apex", "apex-offset", "offset")
#: How every large dataset of a store is compressed (frames, per-frame arrays, augmented clips).
COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}
UTF8 = h5py.string_dtype("utf-8")


# --------------------------------------------------------------------------------------------- records
@dataclass
class SampleRecord:
    """What the store keeps about one sample besides its pixels (a `Sample` minus paths, plus its indices).

    `clip` (length T) and `states` (5) are frame positions into this sample's own frames (0-based).
    """

    id: str
    subject: str
    label: int | None = None
    clip: np.ndarray | Sequence[int] | None = None
    states: np.ndarray | Sequence[int] | None = None
    split: str | None = None
    mode: dict[str, str] = field(default_factory=dict)
    fps: float = 30.0
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    apex_estimated: bool = False
    coverage: float | None = None  # None = computed from the flags when written
    #: Where the adapter took the subject id from, where it says (folder: "csv" = subjects.csv, "name" = the
    #: clip name's prefix, a guess; mmi: "session.xml" or "file name"); None = the dataset's own layout.
    subject_source: str | None = None

    @classmethod
    def from_sample(cls, sample: Any, **overrides: Any) -> SampleRecord:
        """Copy the columns that come from a `ferbench.datasets.base.Sample` (duck-typed: the store does not
        import the adapters); `overrides` set clip/states and anything preprocessing changed (fps,
        onset/apex/offset after resampling, apex_estimated)."""
        kw = {c.name: getattr(sample, c.name) for c in COLUMNS if c.origin == "sample"}
        kw.update(overrides)
        return cls(**kw)


@dataclass
class StoredSample(SampleRecord):
    """A sample read back from a store: its record, its `row` in the file (0-based, rows sorted by id), and
    where its frames are in `/frames` (`frame_start`, `frame_count`)."""

    row: int = 0
    frame_start: int = 0
    frame_count: int = 0


# ---------------------------------------------------------------------------------------- column table
def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _text_or_none(v: str) -> str | None:
    return v or None


def _opt_int(v: int | None) -> int:
    return -1 if v is None else int(v)


def _none_if_negative(v: int) -> int | None:
    return None if v < 0 else v


def _json(v: Any) -> str:
    return json.dumps(dict(v or {}), sort_keys=True)


def _states(row: np.ndarray) -> np.ndarray | None:
    return None if (row < 0).any() else row


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Column:
    """One per-sample dataset of a finished store: one row per sample, rows sorted by id.

    `name` is the `SampleRecord` / `StoredSample` field and the key in a writer shard (an attribute, or a
    dataset for `width` columns); `origin` says who fills it: "sample" (copied from the adapter's Sample),
    "prepare" (computed by preprocessing), "layout" (where the sample's frames are: set by the merge).
    `encode` turns the record value into the stored one and `decode` the stored one back (for `width`
    columns the writer checks and encodes the positions itself). `width` is None for a scalar, "length"
    for T positions per row (T = the store's clip length), "states" for the five state positions; array
    rows of -1 mean "none". `since`: the first schema version that has the column.
    """

    path: str
    dtype: Any
    origin: str
    encode: Callable[[Any], Any] = _same
    decode: Callable[[Any], Any] = _same
    width: str | None = None
    since: int = 1
    required: bool = True  # record value needed (width columns; scalar ones always have a default)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]

    @property
    def is_text(self) -> bool:
        return self.dtype is UTF8

    def row_shape(self, length: int) -> tuple[int, ...]:
        """Shape of one row: () for a scalar, (T,) or (5,) for positions."""
        return () if self.width is None else (length,) if self.width == "length" else (len(STATE_NAMES),)

    def attrs(self, length: int) -> dict[str, Any]:
        """Attributes of the dataset in the finished file (what its positions mean)."""
        if self.width == "length":
            return {"length": length, "relative_to": "frame_start"}
        if self.width == "states":
            return {"names": json.dumps(list(STATE_NAMES)), "relative_to": "frame_start"}
        return {}

    def stored(self, values: list[Any], length: int) -> np.ndarray:
        """The column's values as the array written into the finished file."""
        if self.is_text:
            return np.array(values, dtype=object)
        if not values:
            return np.zeros((0, *self.row_shape(length)), self.dtype)
        return np.asarray(values, dtype=self.dtype)

    def read(self, ds: h5py.Dataset) -> list[Any]:
        """Every stored value of the column, as Python values (arrays for `width` columns), before `decode`."""
        if self.is_text:
            return ds.asstr()[...].tolist()
        data = ds[...]
        if self.width is not None:
            return list(data)
        kind = np.dtype(self.dtype).kind
        return data.astype(np.float64 if kind == "f" else np.int64).tolist()


COLUMNS: tuple[Column, ...] = (
    Column("samples/id", UTF8, "sample", encode=str, decode=str),
    Column("samples/subject", UTF8, "sample", encode=str, decode=str),
    Column("samples/split", UTF8, "sample", encode=_text, decode=_text_or_none),  # "" = none
    Column("samples/mode", UTF8, "sample", encode=_json, decode=json.loads),  # JSON object
    Column("samples/label", "i4", "sample", encode=_opt_int, decode=_none_if_negative),  # -1 = none
    Column("samples/fps", "f8", "sample", encode=float, decode=float),
    Column("samples/onset", "i4", "sample", encode=_opt_int, decode=_none_if_negative),
    Column("samples/apex", "i4", "sample", encode=_opt_int, decode=_none_if_negative),
    Column("samples/offset", "i4", "sample", encode=_opt_int, decode=_none_if_negative),
    Column("samples/apex_estimated", "u1", "sample", encode=lambda v: int(bool(v)), decode=bool),
    Column("samples/frame_start", "i8", "layout"),
    Column("samples/frame_count", "i4", "layout"),
    Column("samples/coverage", "f4", "prepare", encode=float, decode=float, since=2),
    Column("samples/subject_source", UTF8, "sample", encode=_text, decode=_text_or_none, since=3),  # "" = none
    Column("index/clip", "i4", "prepare", width="length"),
    Column("index/states", "i4", "prepare", decode=_states, width="states", required=False),
)
COLUMN = {c.name: c for c in COLUMNS}


# ---------------------------------------------------------------------------------------- frame arrays
@dataclass(frozen=True)
class FrameArray:
    """One per-frame dataset: every sample's frames back to back, `frame_start` / `frame_count` of its rows.

    `tail(h, w, n_aus)` is the shape of one frame's row; `au_only` arrays exist only in AU stores."""

    name: str
    dtype: Any
    tail: Callable[[int, int, int], tuple[int, ...]]
    au_only: bool = False


FRAME_ARRAYS: tuple[FrameArray, ...] = (
    FrameArray("frames", np.uint8, lambda h, w, a: (h, w, 3)),  # aligned RGB faces; chunks of one frame
    FrameArray("landmarks", np.float32, lambda h, w, a: (5, 2)),  # eyes, nose, mouth corners in crop pixels
    FrameArray("flags", np.uint8, lambda h, w, a: ()),  # ferbench.store.flags codes
    FrameArray("source_frame", np.int64, lambda h, w, a: ()),  # the frame's number in the native data
    FrameArray("aus", np.int8, lambda h, w, a: (a,), au_only=True),  # 1/0, -1 unknown
)

#: Where the excluded samples are listed (UTF-8 strings, sorted by id).
FAILURE_IDS, FAILURE_REASONS = "failures/id", "failures/reason"


def required_paths(version: int) -> tuple[str, ...]:
    """The datasets a file of this schema version must hold."""
    return (
        *(a.name for a in FRAME_ARRAYS if not a.au_only),
        *(c.path for c in COLUMNS if c.since <= version),
        FAILURE_IDS,
        FAILURE_REASONS,
    )
