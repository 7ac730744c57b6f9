"""Temporal normalisation: a fixed-length index into a variable-length sequence.

yu2018 (Yu et al., Neurocomputing 2018, Sec. 4.1 "Video normalization"): "we make each sequence into the
average length via either uniform sampling (for the sequences longer than the average) or replicating the
last frame (for the sequences shorter than the average)"; CK+ 18, Oulu-CASIA 22, MMI 22 after converting the
videos "by uniformly selecting 10 frames per second".

The fixed length T of each dataset travels with its adapter (`DatasetAdapter.clip_length`: CK+ 18,
Oulu-CASIA and MMI 22); `prepare --length` overrides it.

ferbench stores the aligned frames once at their native length and this normalisation only as an index
(`/index/clip` in the store), so variable-length models still read the native sequence.
"""

from __future__ import annotations

import numpy as np

from ferbench.errors import FerbenchError


def normalise_length(n_frames: int, length: int) -> np.ndarray:
    """Indices (int64, shape (length,)) that turn an `n_frames` sequence into exactly `length` frames.

    Longer sequences are sampled uniformly over the whole span, always keeping the first and the last
    frame (index i -> round(i * (n - 1) / (length - 1)), halves rounded up so the result does not depend on
    floating-point banker's rounding); shorter ones are kept whole and padded by repeating the last frame,
    as yu2018 does; equal lengths give 0..n-1.
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
