"""Per-sequence face tracking: detect on keyframes, interpolate between, re-detect where it matters.

Lab datasets (CK+, Oulu, MMI, CASME II, BP4D) barely move the head, so running the detector on every frame
spends most of `prepare` on answers already known. `track_sequence` detects on frame 0, every `every`-th
frame and the last frame, and linearly interpolates the landmarks in between. Intervals are densified
(every frame in them detected) where interpolation would be wrong: the face moved more than `drift`
inter-ocular distances between keyframes, a keyframe found no face, or the face found does not continue
the track. Frames where no face is found get landmarks from their neighbours and are flagged, so nothing is
silently invented. With several faces (AFEW), one face is followed: the largest at the start, then whichever
overlaps the track most (IoU), never simply the first or largest in each frame. Once the track has a face,
a frame is first searched where the face was (`follow_face`, one O-Net call on the upright view) and the
whole frame only where it is not found there within `drift`.

`FaceTracker` holds one sequence's walk (what was examined, the anchors, the last face); the per-frame
values come from its anchors through `interpolate_track`, a pure function.

Two rules keep a track honest. A detection that no other frame confirms (the only one of its track segment
in a sequence of 3 or more frames: one false detection in a clip of sky) is not a face. Frames of different
sizes in one sequence are tracked as separate runs, each with its own detector (so the minimum face size
follows each frame's size): landmarks are never interpolated or copied across a size change unscaled.

Per-frame flags (uint8): 1 detected, 2 interpolated (between two detections, not examined), 3 filled
(examined, no matching face: landmarks from the neighbours), 0 none (only in a failed track).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ferbench.store.flags import DETECTED, FILLED, FLAG_NAMES, INTERPOLATED, NONE

from .align import align_face, warp_points
from .detect import Detector, Face, follow_face, refine_face
from .frames import to_bgr_uint8

__all__ = [
    "NONE",
    "DETECTED",
    "INTERPOLATED",
    "FILLED",
    "FLAG_NAMES",
    "Track",
    "FaceTracker",
    "interpolate_track",
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
    n_calls: int  # full-frame detector calls made (refinement and followed-face calls not counted)
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
    """Frames detected up front: 0, every, 2*every, ... and the last frame (so interpolation has an end).

    A last interval shorter than half the stride is merged into the one before (keyframes 0, 5, 7 of an
    8-frame sequence become 0, 7): no interval is longer than 1.5 strides, and short sequences (CK+
    averages 17 frames) spend one detection fewer. The drift check still densifies any interval in which
    the face moved."""
    if n_frames <= 0:
        return []
    every = max(1, int(every))
    ks = list(range(0, n_frames, every))
    last = n_frames - 1
    if ks[-1] != last:
        if len(ks) > 1 and 2 * (last - ks[-1]) < every:
            ks[-1] = last
        else:
            ks.append(last)
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
    follow: bool = True,
) -> Track:
    """Track one face's 5 landmarks through `frames` (BGR uint8); see `FaceTracker` for the options.

    `sizes`: each frame's (height, width) where the sequence may mix sizes; each run of equal-size frames is
    tracked on its own (a size change forces a detection) with `detector(size)` when `detector` is a
    factory (the minimum face size is then taken per frame size). A run without a face takes the nearest
    run's landmarks scaled by the size ratio, flagged FILLED.
    """
    opts = dict(drift=drift, min_iou=min_iou, reacquire_after=reacquire_after, refine=refine, smooth=smooth,
                follow=follow)
    pick = (lambda hw: detector(hw)) if callable(detector) and not isinstance(detector, Detector) else (lambda hw: detector)
    n = len(frames)
    runs = size_runs(sizes) if sizes is not None and n else []
    if len(runs) <= 1:
        hw = runs[0][2] if runs else (tuple(frames[0].shape[:2]) if n else (0, 0))
        return FaceTracker(frames, pick(hw), every, **opts).run()
    parts = [(a, b, hw, FaceTracker(_Run(frames, a, b), pick(hw), every, **opts).run()) for a, b, hw in runs]
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


class FaceTracker:
    """Tracks one face's 5 landmarks through `frames` (BGR uint8, equal sizes) with `detector`: detect on
    keyframes, densify an interval where interpolation would be wrong, then `interpolate_track`.

    every: keyframe stride (1 = detect every frame). drift: densify a keyframe interval when eyes/nose moved
    more than this many inter-ocular distances across it. min_iou: a detection continues the track when its
    box overlaps the last tracked box at least this much. reacquire_after: after this many frames without
    the tracked face, start again from the largest face (a shot change). refine: re-detect each accepted
    face upright (`refine_face`) for rotation-unbiased landmarks. smooth: Gaussian sigma in frames applied
    to the final landmarks within a track segment (0 = off; detected frames keep their exact detections).
    follow: once the track has a face, look for it first where it was (`follow_face`: O-Net alone on the
    upright view, the landmarks `refine` would give, one network call) and run the full-frame detector only
    where it is not found within `drift` (moved, gone, or a new face); MTCNN with `refine` only.

    One tracker follows one sequence (`run()` once); its state is what the detector found so far.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        detector: Detector,
        every: int = 5,
        *,
        drift: float = 0.3,
        min_iou: float = 0.3,
        reacquire_after: int = 10,
        refine: bool = True,
        smooth: float = 0.0,
        follow: bool = True,
    ):
        self.frames, self.detector, self.every = frames, detector, every
        self.drift, self.min_iou, self.reacquire_after = drift, min_iou, reacquire_after
        self.refine, self.smooth, self.follow = refine, smooth, follow
        self.examined: dict[int, list[Face]] = {}  # frame -> faces the detector found there
        self.followed: set[int] = set()  # frames whose face was found where the track was (already upright)
        self.full_calls = 0  # full-frame detections
        self.anchors: dict[int, Face] = {}  # frame -> the tracked face accepted there
        self.new_segment: set[int] = set()  # anchors that start a new track segment (re-acquired)
        self.last: tuple[int, Face] | None = None  # the latest accepted (frame, face)

    # -- detection and association -------------------------------------------------------------------
    def detect(self, t: int) -> list[Face]:
        """The faces at frame t (looked at once per frame): the tracked face where it was (`follow_face`,
        one network call, when `refine` and the face moved less than `drift`), else a full-frame detection."""
        if t not in self.examined:
            face = None
            if self.follow and self.refine and self.last is not None:
                face = follow_face(self.detector, self.frames[t], self.last[1], max_move=self.drift)
            if face is not None:
                self.examined[t] = [face]
                self.followed.add(t)
            else:
                self.examined[t] = self.detector.detect(self.frames[t])
                self.full_calls += 1
        return self.examined[t]

    def choose(self, t: int) -> tuple[Face | None, bool]:
        """The face at t that continues the track (or starts it), and whether that is a re-acquisition."""
        faces = self.detect(t)
        if not faces:
            return None, False
        if self.last is None:
            return max(faces, key=lambda f: (f.area, f.score)), False
        prev = self.last[1]
        ious = [box_iou(f.box, prev.box) for f in faces]
        i = int(np.argmax(ious))
        if ious[i] >= self.min_iou:
            return faces[i], False
        # Fast motion (no overlap any more): the face whose eye midpoint is within one inter-ocular distance
        # of the track's and whose size matches is still the same face; a neighbour's face is ~2+ away.
        iod = max(prev.eye_distance, 1e-6)
        mid = prev.points[:2].mean(0)
        near = [f for f in faces
                if np.linalg.norm(f.points[:2].mean(0) - mid) < iod and 0.67 < f.eye_distance / iod < 1.5]
        if near:
            return min(near, key=lambda f: float(np.linalg.norm(f.points[:2].mean(0) - mid))), False
        if t - self.last[0] > self.reacquire_after:
            return max(faces, key=lambda f: (f.area, f.score)), True
        return None, False

    def accept(self, t: int, face: Face, reacquired: bool) -> None:
        """Make `face` the track's anchor at frame t (refined upright first when `refine`)."""
        if self.refine and t not in self.followed:  # a followed face was found upright already
            face = refine_face(self.detector, self.frames[t], face)
        self.anchors[t] = face
        if reacquired:
            self.new_segment.add(t)
        self.last = (t, face)

    # -- the walk --------------------------------------------------------------------------------------
    def run(self) -> Track:
        """Detect on the keyframes (densifying where needed), drop unconfirmed detections, interpolate.
        Never raises for a sequence without faces: returns a `Track` with `ok` False and the reason."""
        n = len(self.frames)
        if n == 0:
            return _failed_track(0, "no frames to track", 0)
        prev_key: int | None = None
        prev_key_ok = False
        for b in keyframes(n, self.every):
            cand, reacq = self.choose(b)
            gap = [] if prev_key is None else list(range(prev_key + 1, b))
            need_dense = bool(gap) and (
                not prev_key_ok or cand is None or (self.last is not None and _drifted(self.last[1], cand, self.drift))
            )
            if need_dense:
                for t in gap:
                    face, r = self.choose(t)
                    if face is not None:
                        self.accept(t, face, r)
                cand, reacq = self.choose(b)  # re-associate against the densified track
            if cand is not None:
                self.accept(b, cand, reacq)
            prev_key, prev_key_ok = b, cand is not None

        n_calls = self.full_calls
        if not self.anchors:
            return _failed_track(n, f"no face found in any of the {n} frames ({n_calls} detector calls)", n_calls)
        seg_of = self._segments()
        if n >= 3:  # a detection no other frame of its segment confirms is not a face (a false hit on the sky)
            isolated = _isolated(seg_of)
            for t in isolated:
                del self.anchors[t], seg_of[t]
            if not self.anchors:
                return _failed_track(
                    n, f"no face found: face found on {len(isolated)} of {n} frames, never confirmed by another "
                       f"frame (an isolated detection is not a face; {n_calls} detector calls)", n_calls)
            remap = {s: i for i, s in enumerate(sorted(set(seg_of.values())))}
            seg_of = {t: remap[s] for t, s in seg_of.items()}
        times = sorted(self.anchors)
        points, boxes, scores, flags, segments = interpolate_track(
            n,
            np.asarray(times),
            np.stack([self.anchors[t].points for t in times]),
            np.stack([self.anchors[t].box for t in times]),
            np.asarray([self.anchors[t].score for t in times]),
            np.asarray([seg_of[t] for t in times]),
            examined=self.examined.keys(),
        )
        if self.smooth > 0:
            points, boxes = _smooth(points, boxes, segments, flags, self.smooth)
        return Track(points=points.astype(np.float32), boxes=boxes.astype(np.float32), scores=scores, flags=flags,
                     n_calls=n_calls, segments=segments)

    def _segments(self) -> dict[int, int]:
        """Track segment id of each anchor: a new id at each re-acquisition."""
        seg_of: dict[int, int] = {}
        seg = 0
        for t in sorted(self.anchors):
            if t in self.new_segment:
                seg += 1
            seg_of[t] = seg
        return seg_of


def _isolated(seg_of: dict[int, int]) -> list[int]:
    """Anchors alone in their segment (no other frame confirms them)."""
    counts: dict[int, int] = {}
    for s in seg_of.values():
        counts[s] = counts.get(s, 0) + 1
    return [t for t, s in seg_of.items() if counts[s] == 1]


def _failed_track(n: int, reason: str, calls: int) -> Track:
    """A track without a face: NaN landmarks, flags NONE, and the reason."""
    return Track(points=np.full((n, 5, 2), np.nan, np.float32), boxes=np.full((n, 4), np.nan, np.float32),
                 scores=np.zeros(n, np.float32), flags=np.zeros(n, np.uint8), n_calls=calls, reason=reason,
                 segments=np.zeros(n, np.int32))


def interpolate_track(
    n: int,
    times: np.ndarray,
    points: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    segments: np.ndarray,
    examined: Collection[int] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame landmarks of a track from its anchors (a pure function of its inputs).

    times: (k,) sorted frames with a detected face; points (k, 5, 2), boxes (k, 4), scores (k,) there;
    segments (k,): track segment of each anchor. examined: frames the detector looked at.
    Returns per frame of 0..n-1: points (n, 5, 2) and boxes (n, 4) float64, scores (n,) float32,
    flags (n,) uint8, segments (n,) int32. An anchor frame is DETECTED with its own values; a frame between
    two anchors of one segment is linearly interpolated (INTERPOLATED, or FILLED when the detector examined
    it and found no matching face); a frame before the first anchor, after the last, or between two segments
    copies the nearest anchor (FILLED; the earlier one on a tie).
    """
    times = np.asarray(times, np.int64)
    k = len(times)
    if k == 0 or not (np.diff(times) > 0).all() or times[0] < 0 or times[-1] >= n:
        raise ValueError(f"need 1 or more strictly increasing anchor frames within 0..{n - 1}, got {times.tolist()}")
    a_pts = np.asarray(points, np.float64).reshape(k, 5, 2)
    a_box = np.asarray(boxes, np.float64).reshape(k, 4)
    a_seg = np.asarray(segments, np.int64).reshape(k)
    t = np.arange(n)
    hi = np.clip(np.searchsorted(times, t, side="left"), 0, k - 1)  # first anchor at or after t (or the last)
    lo = np.clip(np.searchsorted(times, t, side="right") - 1, 0, k - 1)  # last anchor at or before t (or the first)
    between = (times[lo] < t) & (t < times[hi]) & (a_seg[lo] == a_seg[hi])
    span = np.maximum(times[hi] - times[lo], 1)
    w = np.where(between, (t - times[lo]) / span, 0.0)
    # outside an interpolable interval: the nearest anchor (the earlier one on a tie)
    nearest = np.where(times[hi] - t < t - times[lo], hi, lo)
    nearest = np.where(times[lo] > t, hi, np.where(times[hi] < t, lo, nearest))
    src_lo = np.where(between, lo, nearest)
    src_hi = np.where(between, hi, nearest)
    out_pts = (1 - w)[:, None, None] * a_pts[src_lo] + w[:, None, None] * a_pts[src_hi]
    out_box = (1 - w)[:, None] * a_box[src_lo] + w[:, None] * a_box[src_hi]
    out_seg = a_seg[src_lo].astype(np.int32)
    flags = np.where(between, INTERPOLATED, FILLED).astype(np.uint8)
    seen = np.zeros(n, bool)
    seen[[e for e in examined if 0 <= e < n]] = True
    flags[between & seen] = FILLED
    out_scores = np.zeros(n, np.float32)
    flags[times], out_scores[times] = DETECTED, np.asarray(scores, np.float32).reshape(k)
    out_pts[times], out_box[times], out_seg[times] = a_pts, a_box, a_seg
    return out_pts, out_box, out_scores, flags, out_seg


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
