"""Temporal normalisation: a fixed-length index into a variable-length sequence.

Seed 002 (Yu et al., Neurocomputing 2018, Sec. 4.1 "Video normalization"): "we make each sequence into the
average length via either uniform sampling (for the sequences longer than the average) or replicating the
last frame (for the sequences shorter than the average)"; CK+ 18, Oulu-CASIA 22, MMI 22 after converting the
videos "by uniformly selecting 10 frames per second".

ferbench stores the aligned frames once at their native length and this normalisation only as an index
(`/index/clip` in the store), so variable-length models still read the native sequence.
"""

from __future__ import annotations

import re

import numpy as np

from ferbench.errors import FerbenchError

#: Fixed clip length T per dataset (key = normalised dataset name, see `default_length`).
#: CK+ 18 and Oulu-CASIA / MMI 22 are seed 002's values (MMI at 10 fps). The other datasets have no
#: fixed-length recipe in the seed papers (seed 003 feeds CASME II / MMI to a variable-length LSTM, seed 004
#: feeds AFEW to a variable-length LSTM, BP4D is frame-level AU detection), so they take 22, seed 002's
#: length for onset -> offset material: the fixed-length models (stc family, Table 2) are built for
#: 18/22-frame inputs and run on every dataset unchanged. For CASME II (200 fps, onset -> offset about
#: 30-100 frames) 22 uniform samples still cover the whole micro-expression; for AFEW (25 fps clips of
#: 1-5 s) 22 samples span the clip at about 5-10 fps; for BP4D the clip index is only for sequence models,
#: frame-level AU tasks read native frames and `/aus`. All are overridable (`prepare --length`).
DEFAULT_LENGTH: dict[str, int] = {
    "ck+": 18,
    "oulu-casia": 22,
    "mmi": 22,
    "casme2": 22,
    "afew": 22,
    "bp4d": 22,
    "folder": 22,
    "order": 22,
}

#: Spelling variants accepted by `default_length` (registry names, paper names).
_ALIASES = {
    "ckplus": "ck+",
    "ck": "ck+",
    "oulu": "oulu-casia",
    "oulucasia": "oulu-casia",
    "casmeii": "casme2",
    "casme": "casme2",
    "afewemotiw": "afew",
    "bp4dfera2015": "bp4d",
    "fera2015": "bp4d",
}


def default_length(dataset: str) -> int:
    """The fixed clip length T for a dataset name (`ck+`, `oulu`, `oulu-casia`, `CASME II`, ...)."""
    key = dataset.strip().lower()
    if key in DEFAULT_LENGTH:
        return DEFAULT_LENGTH[key]
    squashed = re.sub(r"[^a-z0-9+]", "", key)
    for cand in (squashed, squashed.replace("+", "plus")):
        if cand in DEFAULT_LENGTH:
            return DEFAULT_LENGTH[cand]
        if cand in _ALIASES:
            return DEFAULT_LENGTH[_ALIASES[cand]]
    raise FerbenchError(
        f"no default clip length for dataset '{dataset}'; pass one with --length "
        f"(defaults: {', '.join(f'{k} {v}' for k, v in DEFAULT_LENGTH.items())})"
    )


def normalise_length(n_frames: int, length: int) -> np.ndarray:
    """Indices (int64, shape (length,)) that turn an `n_frames` sequence into exactly `length` frames.

    Longer sequences are sampled uniformly over the whole span, always keeping the first and the last
    frame (index i -> round(i * (n - 1) / (length - 1)), halves rounded up so the result does not depend on
    floating-point banker's rounding); shorter ones are kept whole and padded by repeating the last frame,
    as seed 002 does; equal lengths give 0..n-1.
    """
    n, t = int(n_frames), int(length)
    if n < 1:
        raise FerbenchError(f"cannot normalise a sequence of {n} frames (need at least one frame)")
    if t < 1:
        raise FerbenchError(f"clip length must be at least 1 (got {t})")
    if n >= t:
        if t == 1:
            return np.zeros(1, dtype=np.int64)  # one frame from many: the first (the onset / neutral one)
        # exact rational arithmetic: floor((2*i*(n-1) + (t-1)) / (2*(t-1))) == round-half-up(i*(n-1)/(t-1))
        i = np.arange(t, dtype=np.int64)
        return (2 * i * (n - 1) + (t - 1)) // (2 * (t - 1))
    idx = np.arange(t, dtype=np.int64)
    return np.minimum(idx, n - 1)
