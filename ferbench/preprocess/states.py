"""Representative expression-state frames (kim2017: Kim et al., IEEE TAFFC 2017, section 2.2.1, eq. 1).

Eq. 1 selects five frames per sequence: t = [t_on, (t_on + t_apex)/2, t_apex, (t_apex + t_off)/2, t_off]
("onset, onset-to-apex transition, apex, apex-to-offset transition and offset"), with t_on, t_apex, t_off
"provided by the ground truth". The midpoints are floored (the paper does not say how to round a half).

Where the apex is not annotated (MMI, some CASME II rows) ferbench estimates it. kim2017 measures the
change between frames with normalized cross-correlation (NCC, Lewis 1995, its ref. [40]) "of each frame with
respect to the apex frame", because expression intensity "can be measured by calculating correlation between
features of the reference frame and other frames". We invert that measurement: with the onset (neutral)
frame as the reference, the apex is the frame whose NCC with the onset frame is lowest, i.e. the frame
that has changed the most.

Neutral -> apex datasets (CK+, Oulu-CASIA) have no offset: sequences end at the apex, the fall was never
recorded. Repeating the apex for the two post-apex states would give three identical frames with three
different state labels (kim2017's E3 would be asked to tell a frame from itself). ferbench instead takes the
two post-apex states from the rise, at the expression intensity the fall would pass through: with onset
t_on = first frame, apex t_apex = last frame and r = t_apex - t_on,

    [t_on, t_on + r // 2, t_apex, t_on + (3 * r) // 4, t_on + r // 4]
     onset  onset->apex   apex    "apex->offset"        "offset"

so the state order keeps its meaning along the intensity axis (offset nearest neutral, apex->offset
transition between the midpoint and the apex), state 2 is the apex, and the five frames are distinct
whenever r >= 4 (five frames or more; shorter sequences cannot have five distinct frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferbench.errors import FerbenchError
from ferbench.store import STATE_NAMES  # the five state names, in eq. 1 order (`/index/states` attr `names`)

__all__ = ["STATE_NAMES", "estimate_apex", "expression_states", "ncc", "rising_state_indices", "state_indices"]


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation of two equally shaped images (all channels), in [-1, 1].

    Zero-mean and unit-norm, so a global change of brightness or contrast does not count as change
    (the robustness kim2017 cites NCC for). Two flat images count as identical (1.0) when equal, else 0.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise FerbenchError(f"NCC needs equally shaped frames (got {np.shape(a)} and {np.shape(b)})")
    x = x - x.mean()
    y = y - y.mean()
    nx, ny = float(np.sqrt(x @ x)), float(np.sqrt(y @ y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if (nx == 0.0 and ny == 0.0 and np.array_equal(np.asarray(a), np.asarray(b))) else 0.0
    return float(x @ y / (nx * ny))


def estimate_apex(frames: np.ndarray | Sequence[np.ndarray], onset: int = 0, offset: int | None = None) -> int:
    """Index of the frame in [onset, offset] least correlated (lowest NCC) with the onset frame.

    `frames`: (N, H, W[, C]) array or a sequence of equally shaped images; `offset` defaults to the last
    frame. Ties go to the earliest frame, so the answer is deterministic.
    """
    n = len(frames)
    if n == 0:
        raise FerbenchError("cannot estimate the apex of an empty sequence")
    off = n - 1 if offset is None else int(offset)
    on = int(onset)
    if not 0 <= on <= off < n:
        raise FerbenchError(f"apex search range onset={on}, offset={off} is outside the sequence (0..{n - 1})")
    ref = frames[on]
    scores = np.array([ncc(ref, frames[t]) for t in range(on, off + 1)])
    return on + int(np.argmin(scores))


def state_indices(onset: int, apex: int, offset: int) -> np.ndarray:
    """Eq. 1 of kim2017 from the three key frames: [on, (on+apex)//2, apex, (apex+off)//2, off] (int64)."""
    on, ap, off = int(onset), int(apex), int(offset)
    if not on <= ap <= off:
        raise FerbenchError(f"expression states need onset <= apex <= offset (got {on}, {ap}, {off})")
    return np.array([on, (on + ap) // 2, ap, (ap + off) // 2, off], dtype=np.int64)


def rising_state_indices(onset: int, apex: int) -> np.ndarray:
    """The five states of a neutral -> apex sequence (no offset recorded); see the module docstring."""
    on, ap = int(onset), int(apex)
    if not on <= ap:
        raise FerbenchError(f"expression states need onset <= apex (got {on}, {ap})")
    r = ap - on
    return np.array([on, on + r // 2, ap, on + (3 * r) // 4, on + r // 4], dtype=np.int64)


def expression_states(
    n_frames: int,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    *,
    rising: bool = False,
    frames: np.ndarray | Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, bool]:
    """Five state-frame indices for one sequence, and whether the apex was estimated.

    - annotated (CASME II): the given onset/apex/offset;
    - `rising=True` (CK+, Oulu-CASIA: neutral -> apex, no offset): onset defaults to 0, apex to the last
      frame, and the two post-apex states come from the rise (`rising_state_indices`, module docstring);
      an explicitly given offset is used as annotated;
    - otherwise (MMI: onset = first frame, offset = last frame) a missing onset/offset defaults to the first
      / last frame and a missing apex is estimated with `estimate_apex` on `frames` (required then).
    Indices are positions in the sequence as stored (after any frame-rate resampling).
    """
    n = int(n_frames)
    if n < 1:
        raise FerbenchError(f"cannot pick expression states from {n} frames")
    for name, v in (("onset", onset), ("apex", apex), ("offset", offset)):
        if v is not None and not 0 <= int(v) < n:
            raise FerbenchError(f"{name} frame {v} is outside the sequence (0..{n - 1})")
    on = 0 if onset is None else int(onset)
    estimated = False
    if rising:
        ap = n - 1 if apex is None else int(apex)
        if offset is None:
            return rising_state_indices(on, ap), estimated
        off = int(offset)
    else:
        off = n - 1 if offset is None else int(offset)
        if apex is None:
            if frames is None:
                raise FerbenchError("the apex is not annotated: pass the frames so it can be estimated")
            if len(frames) != n:
                raise FerbenchError(f"got {len(frames)} frames for a sequence of {n}")
            ap = estimate_apex(frames, on, off)
            estimated = True
        else:
            ap = int(apex)
    return state_indices(on, ap, off), estimated
