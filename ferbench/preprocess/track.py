"""Per-sequence face tracking: detect on keyframes, interpolate between, re-detect where it matters.

Lab datasets (CK+, Oulu, MMI, CASME II, BP4D) barely move the head, so running the detector on every frame
spends most of `prepare` on answers already known. `track_sequence` detects on frame 0, every `every`-th
frame and the last frame, and linearly interpolates the landmarks in between. Intervals are densified
(every frame in them detected) where interpolation would be wrong: the face moved more than `drift`
inter-ocular distances between keyframes, a keyframe found no face, or the face found does not continue
the track. Frames where no face is found get landmarks from their neighbours and are flagged, so nothing is
silently invented. With several faces (AFEW), one face is followed: the largest at the start, then whichever
overlaps the track most (IoU), never simply the first or largest in each frame.

Two rules keep a track honest. A detection that no other frame confirms (the only one of its track segment
in a sequence of 3 or more frames: one false detection in a clip of sky) is not a face. Frames of different
sizes in one sequence are tracked as separate runs, each with its own detector (so the minimum face size
follows each frame's size): landmarks are never interpolated or copied across a size change unscaled.

Per-frame flags (uint8): 1 detected, 2 interpolated (between two detections, not examined), 3 filled
(examined, no matching face: landmarks from the neighbours), 0 none (only in a failed track).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ferbench.store.flags import DETECTED, FILLED, FLAG_NAMES, INTERPOLATED, NONE

from .align import align_face, warp_points
from .detect import Detector, Face, refine_face
from .frames import to_bgr_uint8

__all__ = [
    "NONE",
    "DETECTED",
    "INTERPOLATED",
    "FILLED",
    "FLAG_NAMES",
    "Track",
    "box_iou",
    "keyframes",
    "track_sequence",
    "align_sequence",
]



@dataclass
class Track:
    """Landmarks of one face through a sequence, or why there is none (`ok` False, `reason` says why)."""

    points: np.ndarray  # (T, 5, 2) float32, image pixels; NaN when not ok
    boxes: np.ndarray  # (T, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (T,) float32 detector score on detected frames, 0 elsewhere
    flags: np.ndarray  # (T,) uint8: DETECTED / INTERPOLATED / FILLED (NONE when not ok)
    n_calls: int  # full-frame detector calls made (refinement calls not counted)
    reason: str = ""  # empty when ok
    segments: np.ndarray | None = None  # (T,) int: track segment id; a new id after a re-acquisition

    @property
    def ok(self) -> bool:
        return not self.reason

    def __len__(self) -> int:
        return int(self.flags.shape[0])

    @property
    def n_detected(self) -> int:
        return int((self.flags == DETECTED).sum())

    @property
    def n_interpolated(self) -> int:
        return int((self.flags == INTERPOLATED).sum())

    @property
    def n_filled(self) -> int:
        return int((self.flags == FILLED).sum())

    def summary(self) -> dict[str, object]:
        """Counts for reports and the prepare summary."""
        return {"frames": len(self), "detected": self.n_detected, "interpolated": self.n_interpolated,
                "filled": self.n_filled, "detector_calls": self.n_calls, "ok": self.ok, "reason": self.reason}


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def keyframes(n_frames: int, every: int) -> list[int]:
    """Frames detected up front: 0, every, 2*every, ... and the last frame (so interpolation has an end)."""
    if n_frames <= 0:
        return []
    every = max(1, int(every))
    ks = list(range(0, n_frames, every))
    if ks[-1] != n_frames - 1:
        ks.append(n_frames - 1)
    return ks


def _drifted(a: Face, b: Face, drift: float) -> bool:
    """True when eyes or nose moved more than `drift` inter-ocular distances (interpolation unsafe)."""
    iod = max(a.eye_distance, 1e-6)
    move = np.linalg.norm(b.points[:3] - a.points[:3], axis=1).max()
    return bool(move > drift * iod)


class _Run(Sequence[np.ndarray]):
    """Frames [start, stop) of a sequence, indexed from 0 (a run of equal-size frames)."""

    def __init__(self, frames: Sequence[np.ndarray], start: int, stop: int):
        self.frames, self.start, self.stop = frames, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, t: int) -> np.ndarray:  # type: ignore[override]
        return self.frames[self.start + t]


def size_runs(sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int, tuple[int, int]]]:
    """(start, stop, (h, w)) for each run of consecutive frames of the same size."""
    runs: list[tuple[int, int, tuple[int, int]]] = []
    for t, hw in enumerate(sizes):
        hw = (int(hw[0]), int(hw[1]))
        if runs and runs[-1][2] == hw:
            runs[-1] = (runs[-1][0], t + 1, hw)
        else:
            runs.append((t, t + 1, hw))
    return runs


def track_sequence(
    frames: Sequence[np.ndarray],
    detector: Detector | Callable[[tuple[int, int]], Detector],
    every: int = 5,
    *,
    sizes: Sequence[tuple[int, int]] | None = None,
    drift: float = 0.3,
    min_iou: float = 0.3,
    reacquire_after: int = 10,
    refine: bool = True,
    smooth: float = 0.0,
) -> Track:
    """Track one face's 5 landmarks through `frames` (BGR uint8); see `_track_run` for the options.

    `sizes`: each frame's (height, width) where the sequence may mix sizes; each run of equal-size frames is
    tracked on its own (a size change forces a detection) with `detector(size)` when `detector` is a
    factory (the minimum face size is then taken per frame size). A run without a face takes the nearest
    run's landmarks scaled by the size ratio, flagged FILLED.
    """
    opts = dict(drift=drift, min_iou=min_iou, reacquire_after=reacquire_after, refine=refine, smooth=smooth)
    pick = (lambda hw: detector(hw)) if callable(detector) and not isinstance(detector, Detector) else (lambda hw: detector)
    n = len(frames)
    runs = size_runs(sizes) if sizes is not None and n else []
    if len(runs) <= 1:
        hw = runs[0][2] if runs else (tuple(frames[0].shape[:2]) if n else (0, 0))
        return _track_run(frames, pick(hw), every, **opts)
    parts = [(a, b, hw, _track_run(_Run(frames, a, b), pick(hw), every, **opts)) for a, b, hw in runs]
    calls = sum(p[3].n_calls for p in parts)
    good = [p for p in parts if p[3].ok]
    if not good:
        total = sum(int((p[3].flags == DETECTED).sum()) for p in parts)
        return Track(points=np.full((n, 5, 2), np.nan, np.float32), boxes=np.full((n, 4), np.nan, np.float32),
                     scores=np.zeros(n, np.float32), flags=np.zeros(n, np.uint8), n_calls=calls,
                     reason=f"no face found in any of the {n} frames ({len(runs)} runs of different frame sizes, "
                            f"{calls} detector calls, {total} detections)", segments=np.zeros(n, np.int32))
    points = np.zeros((n, 5, 2), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    flags = np.zeros(n, np.uint8)
    segments = np.zeros(n, np.int32)
    seg_base = 0
    for a, b, hw, tr in parts:
        if tr.ok:
            points[a:b], boxes[a:b], scores[a:b], flags[a:b] = tr.points, tr.boxes, tr.scores, tr.flags
            segments[a:b] = tr.segments + seg_base
            seg_base = int(segments[a:b].max()) + 1
            continue
        # no face in this run: the nearest face of another run, scaled by the frame-size ratio
        src_a, src_b, src_hw, src = min(good, key=lambda g: min(abs(g[0] - b), abs(g[1] - a)))
        k = (src_b - src_a - 1) if src_a < a else 0
        scale = np.array([hw[1] / src_hw[1], hw[0] / src_hw[0]], np.float32)
        points[a:b] = src.points[k] * scale
        boxes[a:b] = src.boxes[k] * np.tile(scale, 2)
        flags[a:b] = FILLED
        segments[a:b] = seg_base
        seg_base += 1
    return Track(points=points, boxes=boxes, scores=scores, flags=flags, n_calls=calls, segments=segments)


def _track_run(
    frames: Sequence[np.ndarray],
    detector: Detector,
    every: int = 5,
    *,
    drift: float = 0.3,
    min_iou: float = 0.3,
    reacquire_after: int = 10,
    refine: bool = True,
    smooth: float = 0.0,
) -> Track:
    """Track one face's 5 landmarks through `frames` (BGR uint8) with `detector`.

    every: keyframe stride (1 = detect every frame). drift: densify a keyframe interval when eyes/nose moved
    more than this many inter-ocular distances across it. min_iou: a detection continues the track when its
    box overlaps the last tracked box at least this much. reacquire_after: after this many frames without
    the tracked face, start again from the largest face (a shot change). refine: re-detect each accepted
    face upright (`refine_face`) for rotation-unbiased landmarks. smooth: Gaussian sigma in frames applied
    to the final landmarks within a track segment (0 = off; detected frames keep their exact detections).

    Never raises for a sequence without faces: returns a `Track` with `ok` False and the reason.
    """
    n = len(frames)
    nan_track = lambda reason, calls: Track(  # noqa: E731
        points=np.full((n, 5, 2), np.nan, np.float32), boxes=np.full((n, 4), np.nan, np.float32),
        scores=np.zeros(n, np.float32), flags=np.zeros(n, np.uint8), n_calls=calls, reason=reason,
        segments=np.zeros(n, np.int32))
    if n == 0:
        return nan_track("no frames to track", 0)

    examined: dict[int, list[Face]] = {}
    anchors: dict[int, Face] = {}
    new_segment: set[int] = set()  # anchors that start a new track segment (re-acquired)
    last: tuple[int, Face] | None = None

    def detect(t: int) -> list[Face]:
        if t not in examined:
            examined[t] = detector.detect(frames[t])
        return examined[t]

    def choose(t: int) -> tuple[Face | None, bool]:
        """The face at t that continues the track (or starts it), and whether that is a re-acquisition."""
        faces = detect(t)
        if not faces:
            return None, False
        if last is None:
            return max(faces, key=lambda f: (f.area, f.score)), False
        prev = last[1]
        ious = [box_iou(f.box, prev.box) for f in faces]
        i = int(np.argmax(ious))
        if ious[i] >= min_iou:
            return faces[i], False
        # Fast motion (no overlap any more): the face whose eye midpoint is within one inter-ocular distance
        # of the track's and whose size matches is still the same face; a neighbour's face is ~2+ away.
        iod = max(prev.eye_distance, 1e-6)
        mid = prev.points[:2].mean(0)
        near = [f for f in faces
                if np.linalg.norm(f.points[:2].mean(0) - mid) < iod and 0.67 < f.eye_distance / iod < 1.5]
        if near:
            return min(near, key=lambda f: float(np.linalg.norm(f.points[:2].mean(0) - mid))), False
        if t - last[0] > reacquire_after:
            return max(faces, key=lambda f: (f.area, f.score)), True
        return None, False

    def accept(t: int, face: Face, reacquired: bool) -> None:
        nonlocal last
        if refine:
            face = refine_face(detector, frames[t], face)
        anchors[t] = face
        if reacquired:
            new_segment.add(t)
        last = (t, face)

    prev_key: int | None = None
    prev_key_ok = False
    for b in keyframes(n, every):
        cand, reacq = choose(b)
        gap = [] if prev_key is None else list(range(prev_key + 1, b))
        need_dense = bool(gap) and (
            not prev_key_ok or cand is None or (last is not None and _drifted(last[1], cand, drift))
        )
        if need_dense:
            for t in gap:
                face, r = choose(t)
                if face is not None:
                    accept(t, face, r)
            cand, reacq = choose(b)  # re-associate against the densified track
        if cand is not None:
            accept(b, cand, reacq)
        prev_key, prev_key_ok = b, cand is not None

    n_calls = len(examined)
    if not anchors:
        return nan_track(f"no face found in any of the {n} frames ({n_calls} detector calls)", n_calls)

    # Segment id per anchor, then per-frame values.
    times = sorted(anchors)
    seg_of: dict[int, int] = {}
    seg = 0
    for t in times:
        if t in new_segment:
            seg += 1
        seg_of[t] = seg
    if n >= 3:  # a detection no other frame of its segment confirms is not a face (a false hit on the sky)
        per_seg: dict[int, int] = {}
        for t in times:
            per_seg[seg_of[t]] = per_seg.get(seg_of[t], 0) + 1
        isolated = [t for t in times if per_seg[seg_of[t]] == 1]
        if isolated:
            for t in isolated:
                del anchors[t]
            if not anchors:
                return nan_track(
                    f"no face found: face found on {len(isolated)} of {n} frames, never confirmed by another frame "
                    f"(an isolated detection is not a face; {n_calls} detector calls)", n_calls)
            times = sorted(anchors)
            remap = {s: i for i, s in enumerate(sorted({seg_of[t] for t in times}))}
            seg_of = {t: remap[seg_of[t]] for t in times}
    a_pts = np.stack([anchors[t].points for t in times]).astype(np.float64)
    a_box = np.stack([anchors[t].box for t in times]).astype(np.float64)

    points = np.zeros((n, 5, 2), np.float64)
    boxes = np.zeros((n, 4), np.float64)
    scores = np.zeros(n, np.float32)
    flags = np.zeros(n, np.uint8)
    segments = np.zeros(n, np.int32)
    tarr = np.asarray(times)
    for t in range(n):
        if t in anchors:
            points[t], boxes[t] = anchors[t].points, anchors[t].box
            scores[t], flags[t], segments[t] = anchors[t].score, DETECTED, seg_of[t]
            continue
        j = int(np.searchsorted(tarr, t))  # times[j-1] < t < times[j]
        lo = j - 1 if j > 0 else None
        hi = j if j < len(times) else None
        flags[t] = FILLED if t in examined else INTERPOLATED
        if lo is not None and hi is not None and seg_of[times[lo]] == seg_of[times[hi]]:
            w = (t - times[lo]) / float(times[hi] - times[lo])
            points[t] = (1 - w) * a_pts[lo] + w * a_pts[hi]
            boxes[t] = (1 - w) * a_box[lo] + w * a_box[hi]
            segments[t] = seg_of[times[lo]]
        else:  # at an end of the track or across a re-acquisition: copy the nearest detection
            if lo is None or (hi is not None and times[hi] - t < t - times[lo]):
                k = hi
            else:
                k = lo
            assert k is not None
            points[t], boxes[t], segments[t] = a_pts[k], a_box[k], seg_of[times[k]]
            flags[t] = FILLED

    if smooth > 0:
        points, boxes = _smooth(points, boxes, segments, flags, smooth)

    return Track(points=points.astype(np.float32), boxes=boxes.astype(np.float32), scores=scores, flags=flags,
                 n_calls=n_calls, segments=segments)


def _smooth(points: np.ndarray, boxes: np.ndarray, segments: np.ndarray, flags: np.ndarray,
            sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian temporal smoothing inside each segment, leaving detected frames as detected."""
    radius = max(1, int(round(3 * sigma)))
    kern = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    out_p, out_b = points.copy(), boxes.copy()
    for s in np.unique(segments):
        idx = np.flatnonzero(segments == s)
        if len(idx) < 3:
            continue
        for arr, out in ((points, out_p), (boxes, out_b)):
            x = arr[idx].reshape(len(idx), -1)
            pad = np.pad(x, ((radius, radius), (0, 0)), mode="edge")
            sm = np.stack([np.convolve(pad[:, c], kern / kern.sum(), mode="valid") for c in range(x.shape[1])], 1)
            keep = flags[idx] == DETECTED
            sm[keep] = x[keep]
            out[idx] = sm.reshape(arr[idx].shape)
    return out_p, out_b


def align_sequence(
    frames: Sequence[np.ndarray], track: Track, size: int = 64, template: str = "yu2018"
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops of the tracked face, (T, size, size, 3) uint8, and its 5 landmarks in crop pixels,
    (T, 5, 2) float32, one per frame of `track`.

    Raises ValueError for a failed track (the caller reports the sample as "no face" instead).
    """
    if not track.ok:
        raise ValueError(f"cannot align a failed track: {track.reason}")
    if len(frames) != len(track):
        raise ValueError(f"{len(frames)} frames but a track of {len(track)}")
    out = np.zeros((len(frames), size, size, 3), np.uint8)
    points = np.zeros((len(frames), 5, 2), np.float32)
    for t in range(len(frames)):
        frame = frames[t]
        img = frame if (frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3) else to_bgr_uint8(frame)
        out[t], matrix = align_face(img, track.points[t], size, template)
        points[t] = warp_points(track.points[t], matrix)
    return out, points
