"""Fingerprints (sha256 hex) that decide whether a finished task record may be reused on a rerun.

A record is reused only when every fingerprint matches, so each one must change whenever what it stands for
changes: the data file's content (its sample table, indices, labels and pixels, not its mtime), the protocol
and the task's own fold list, the resolved model + recipe, and the code that turns data into predictions.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import ferbench
from ferbench.errors import DatasetError

#: Datasets of a store file whose content decides predictions (everything except landmarks/flags/failures).
_DATA_PARTS = ("samples", "index", "frames", "aus", "source_frame")
#: Packages whose source decides predictions; editing anything else (leaderboard, docs) does not rerun tasks.
_CODE_PARTS = ("harness", "models", "preprocess/augment.py", "protocols", "store", "metrics.py", "records.py")
_CHUNK = 1 << 24  # bytes read at a time while hashing frames


def hash_json(value: Any) -> str:
    """sha256 of a JSON value with sorted keys (stable across runs and processes)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash_dataset(h: Any, ds: h5py.Dataset) -> None:
    h.update(f"{ds.name}|{ds.dtype.str}|{ds.shape}".encode())
    if ds.dtype.kind == "O" or h5py.check_string_dtype(ds.dtype) is not None:
        h.update("\x1f".join(ds.asstr()[...].tolist()).encode("utf-8"))
        return
    if ds.ndim == 0 or ds.size == 0:
        h.update(np.ascontiguousarray(ds[...]).tobytes())
        return
    row = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
    step = max(1, _CHUNK // row)
    for i in range(0, ds.shape[0], step):
        h.update(np.ascontiguousarray(ds[i : i + step]).tobytes())


def _data_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for attr in ("dataset", "classes", "length"):
            h.update(f"{attr}={f.attrs.get(attr)!s}".encode())
        if "aus" in f:
            h.update(str(f["aus"].attrs.get("au_names")).encode())
        for part in _DATA_PARTS:
            if part not in f:
                continue
            obj = f[part]
            if isinstance(obj, h5py.Dataset):
                _hash_dataset(h, obj)
            else:
                for name in sorted(obj):
                    _hash_dataset(h, obj[name])
    return h.hexdigest()


_data_cache = lru_cache(maxsize=8)(_data_fingerprint)


def data_fingerprint(path: str | Path) -> str:
    """Content hash of a store's sample table, indices, AU labels and frames (cached per file version)."""
    p = Path(path).resolve()
    st = p.stat()
    try:
        return _data_cache(str(p), st.st_size, st.st_mtime_ns)
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(p, f"unreadable or truncated ferbench store ({e}); run `ferbench prepare` again") from None


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The ferbench version plus the source of the modules that turn data into predictions."""
    root = Path(ferbench.__file__).parent
    h = hashlib.sha256(f"ferbench {ferbench.__version__}".encode())
    for part in _CODE_PARTS:
        p = root / part
        if not p.exists():  # a part moved or renamed would silently drop out of the fingerprint
            raise RuntimeError(f"code fingerprint: {p} not found; update _CODE_PARTS")
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()
