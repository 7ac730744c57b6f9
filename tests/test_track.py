"""Keyframe tracking with the real MTCNN on sequences built from real photos (t1.jpg).

The detector is wrapped only to count how often it runs on whole frames; every call still runs MTCNN.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest

from ferbench.preprocess.detect import Detector, Face, get_detector
from ferbench.preprocess.track import (
    DETECTED,
    FILLED,
    INTERPOLATED,
    NONE,
    FaceTracker,
    align_sequence,
    interpolate_track,
    keyframes,
    track_sequence,
)

IMAGES = Path(os.path.dirname(insightface.__file__)) / "data" / "images"


class CountingDetector(Detector):
    """The real detector, counting calls on full frames (refinement runs on small upright views)."""

    def __init__(self, inner: Detector, frame_shape: tuple[int, ...]):
        self.inner, self.frame_shape, self.calls = inner, frame_shape, 0

    def detect(self, image: np.ndarray) -> list[Face]:
        if image.shape == self.frame_shape:
            self.calls += 1
        return self.inner.detect(image)


@pytest.fixture(scope="module")
def mtcnn() -> Detector:
    return get_detector("mtcnn")


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return cv2.imread(str(IMAGES / "t1.jpg"))


T = 20


@pytest.fixture(scope="module")
def moving(t1: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """320x240 window of t1 around one face, translated smoothly (sub-pixel) over 20 frames."""
    base = t1[200:440, 380:700]
    shifts = np.array([(0.9 * t + 3 * np.sin(np.pi * t / T), 0.4 * t) for t in range(T)])
    frames = [
        cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), (320, 240), borderMode=cv2.BORDER_REFLECT)
        for dx, dy in shifts
    ]
    return frames, shifts


@pytest.fixture(scope="module")
def per_frame(mtcnn: Detector, moving: tuple[list[np.ndarray], np.ndarray]):
    """The reference: the same detector (with the same refinement) run on every whole frame."""
    tr = track_sequence(moving[0], mtcnn, every=1, follow=False)
    assert tr.ok and tr.n_detected == T and tr.n_calls == T
    return tr


def _eye_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, :2] - b[:, :2], axis=2).max(axis=1)


def test_keyframes() -> None:
    assert keyframes(20, 5) == [0, 5, 10, 15, 19]
    assert keyframes(1, 5) == [0] and keyframes(0, 5) == [] and keyframes(4, 1) == [0, 1, 2, 3]
    # a last interval shorter than half the stride merges into the one before: one detection fewer
    assert keyframes(8, 5) == [0, 7] and keyframes(17, 5) == [0, 5, 10, 16] and keyframes(6, 5) == [0, 5]
    assert keyframes(9, 5) == [0, 5, 8] and keyframes(4, 2) == [0, 2, 3]
    for n in range(1, 60):  # never an interval longer than 1.5 strides, always both ends
        ks = keyframes(n, 5)
        assert ks[0] == 0 and ks[-1] == n - 1 and max(np.diff(ks), default=0) <= 7


def test_interpolate_track_is_a_pure_function_of_its_anchors() -> None:
    """Anchors at frames 2, 5 (segment 0) and 9 (segment 1) of 12 frames; the detector also looked at 3."""
    times = np.array([2, 5, 9])
    pts = np.stack([np.full((5, 2), v, np.float64) for v in (10.0, 40.0, 100.0)])
    boxes = np.array([[0, 0, 10, 10], [3, 3, 13, 13], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    segs = np.array([0, 0, 1])
    args = (times.copy(), pts.copy(), boxes.copy(), scores.copy(), segs.copy())
    points, bx, sc, flags, seg = interpolate_track(12, *args, examined={2, 3, 5, 9})
    for a, b in zip(args, (times, pts, boxes, scores, segs)):
        assert np.array_equal(a, b)  # inputs untouched
    assert points.shape == (12, 5, 2) and bx.shape == (12, 4) and flags.dtype == np.uint8
    assert list(flags) == [FILLED, FILLED, DETECTED, FILLED, INTERPOLATED, DETECTED,
                           FILLED, FILLED, FILLED, DETECTED, FILLED, FILLED]
    # between two anchors of one segment: linear (frame 3 examined without a match: same value, flag FILLED)
    np.testing.assert_allclose(points[3], 20.0) and np.testing.assert_allclose(points[4], 30.0)
    np.testing.assert_allclose(bx[4], [2, 2, 12, 12])
    # ends and the segment change: the nearest anchor, the earlier one on a tie (frame 7 is 2 from 5 and 9)
    assert [points[t, 0, 0] for t in (0, 1, 6, 7, 8, 10, 11)] == [10, 10, 40, 40, 100, 100, 100]
    assert list(seg) == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert list(sc) == pytest.approx([0, 0, 0.9, 0, 0, 0.8, 0, 0, 0, 0.7, 0, 0])
    # the same call gives the same arrays; an unsorted or out-of-range anchor list is refused
    assert np.array_equal(interpolate_track(12, *args, examined={2, 3, 5, 9})[0], points)
    with pytest.raises(ValueError, match="increasing"):
        interpolate_track(12, np.array([5, 2]), pts[:2], boxes[:2], scores[:2], segs[:2])
    with pytest.raises(ValueError):
        interpolate_track(4, times, pts, boxes, scores, segs)


def test_tracker_keeps_its_state_and_detects_only_the_keyframes(mtcnn, moving, per_frame) -> None:
    """An 8-frame sequence (a short CK+ one): keyframes 0 and 7 only; frame 0 is detected on the whole frame,
    frame 7's face is found where frame 0's was (one O-Net call); landmarks still within MTCNN's own noise
    of detecting every whole frame. Without following, frame 7 is a second full-frame detection."""
    frames = moving[0][:8]
    tracker = FaceTracker(frames, mtcnn, every=5)
    tr = tracker.run()
    assert tr.ok and tr.n_calls == 1 and tracker.followed == {7}
    assert sorted(tracker.examined) == sorted(tracker.anchors) == [0, 7] and tracker.last[0] == 7
    assert FaceTracker(frames, mtcnn, every=5, follow=False).run().n_calls == 2
    assert list(tr.flags) == [DETECTED] + [INTERPOLATED] * 6 + [DETECTED]
    err = _eye_err(tr.points, per_frame.points[:8])
    assert err.max() < 3.5 and err.mean() < 1.5, err


def test_keyframe_tracking_matches_per_frame_detection(mtcnn, moving, per_frame) -> None:
    frames, shifts = moving
    counter = CountingDetector(mtcnn, frames[0].shape)
    tr = track_sequence(frames, counter, every=5)
    assert tr.ok
    assert counter.calls == tr.n_calls == 5  # keyframes 0, 5, 10, 15, 19: T/k (+ the last frame)
    assert list(np.flatnonzero(tr.flags == DETECTED)) == [0, 5, 10, 15, 19]
    assert np.all(tr.flags[[1, 2, 3, 4, 6, 16, 18]] == INTERPOLATED)
    vs_detector = _eye_err(tr.points, per_frame.points)
    truth = tr.points[0][None] + shifts[:, None, :]  # the known translation of frame 0's landmarks
    vs_truth = _eye_err(tr.points, truth)
    print(f"\ntracked vs per-frame eyes px: max {vs_detector.max():.2f} mean {vs_detector.mean():.2f}; "
          f"vs true motion: max {vs_truth.max():.2f} (inter-ocular {np.linalg.norm(truth[0, 1] - truth[0, 0]):.0f})")
    assert vs_detector.max() < 3.5 and vs_detector.mean() < 1.5
    assert vs_truth.max() < 3.0  # dominated by MTCNN's own error at the keyframes (~6% of the eye distance)
    assert tr.points.shape == (T, 5, 2) and tr.boxes.shape == (T, 4) and tr.flags.dtype == np.uint8


def test_sudden_move_is_redetected(mtcnn, moving, per_frame) -> None:
    """A 40 px jump between keyframes: the interval is detected frame by frame instead of interpolated."""
    frames, _ = moving
    jump = [f if i < 8 else np.roll(f, 40, axis=1) for i, f in enumerate(frames)]
    ref = per_frame.points.copy()
    ref[8:, :, 0] += 40
    tr = track_sequence(jump, mtcnn, every=5)
    # every frame of the interval examined (followed where it was, or detected on the whole frame)
    assert tr.ok and np.all(tr.flags[5:11] == DETECTED) and tr.n_calls >= 2
    assert _eye_err(tr.points, ref).max() < 3.5
    # the re-detection is what makes it right: without it the interpolated frames are far off
    blind = track_sequence(jump, mtcnn, every=5, drift=1e9)
    assert _eye_err(blind.points, ref).max() > 15


def test_blank_frames_are_filled_and_flagged(mtcnn, moving, per_frame) -> None:
    frames, _ = moving
    grey = np.full_like(frames[0], 128)
    seq = [grey if 8 <= i <= 10 else f for i, f in enumerate(frames)]
    tr = track_sequence(seq, mtcnn, every=5)
    assert tr.ok and tr.n_filled == 3
    assert np.all(tr.flags[8:11] == FILLED)
    assert np.all(tr.flags[[0, 5, 7, 11, 15, 19]] == DETECTED)  # around the gap, frames were examined
    # filled landmarks come from the neighbours (frames 7 and 11), so they follow the face's motion
    assert _eye_err(tr.points[8:11], per_frame.points[8:11]).max() < 3.5
    assert np.isfinite(tr.points).all()
    crops, points = align_sequence(seq, tr)
    assert crops.shape == (T, 64, 64, 3) and crops.dtype == np.uint8 and points.shape == (T, 5, 2)
    # the landmarks come back in crop pixels: the eyes sit on the template's eye positions in every frame
    from ferbench.preprocess.align import template_points

    assert np.abs(points[:, :2] - template_points("yu2018", 64)).max() < 0.5


def test_sequence_without_faces_reports_no_face(mtcnn) -> None:
    blank = [np.full((240, 320, 3), v, np.uint8) for v in (0, 40, 80, 120, 160, 200)]
    tr = track_sequence(blank, mtcnn, every=5)  # no exception
    assert not tr.ok and "no face" in tr.reason and "6 frames" in tr.reason
    assert np.all(tr.flags == NONE) and tr.n_detected == 0 and tr.n_calls == 6
    with pytest.raises(ValueError, match="no face"):
        align_sequence(blank, tr)
    assert not track_sequence([], mtcnn).ok


def test_two_faces_one_track(mtcnn, t1: np.ndarray) -> None:
    """Two people cross the frame and swap sizes: the track stays on the one it started with (the larger
    at the start), although by the end the other is larger and on the side where the first began."""
    a_src, b_src = t1[240:440, 440:600], t1[235:425, 30:195]
    n = 16
    frames, rects_a = [], []
    k = 0.6  # scene scale (keeps the test fast; faces stay 50-150 px)
    for t in range(n):
        w = t / (n - 1)
        a = cv2.resize(a_src, None, fx=k * (1.25 - 0.5 * w), fy=k * (1.25 - 0.5 * w))
        b = cv2.resize(b_src, None, fx=k * (0.75 + 0.5 * w), fy=k * (0.75 + 0.5 * w))
        canvas = np.full((252, 384, 3), 60, np.uint8)
        ax, ay = int(k * (20 + 380 * w)), 6
        bx, by = int(k * (440 - 380 * w)), 252 - b.shape[0] - 3
        canvas[ay : ay + a.shape[0], ax : ax + a.shape[1]] = a
        canvas[by : by + b.shape[0], bx : bx + b.shape[1]] = b
        frames.append(canvas)
        rects_a.append((ax, ay, ax + a.shape[1], ay + a.shape[0]))
    first, last = mtcnn.detect(frames[0]), mtcnn.detect(frames[-1])
    assert len(first) == 2 and len(last) == 2
    # the scene really swaps: person A is the larger face at the start and the smaller at the end
    in_a = lambda f, r: r[0] < f.points[:2, 0].mean() < r[2] and r[1] < f.points[:2, 1].mean() < r[3]  # noqa: E731
    assert in_a(max(first, key=lambda f: f.area), rects_a[0])
    assert not in_a(max(last, key=lambda f: f.area), rects_a[-1])

    tr = track_sequence(frames, mtcnn, every=5)
    assert tr.ok and tr.n_filled == 0 and set(tr.segments.tolist()) == {0}
    for t in range(n):
        x, y = tr.points[t, :2].mean(0)
        r = rects_a[t]
        assert r[0] < x < r[2] and r[1] < y < r[3], f"frame {t}: track left person A"


def test_size_runs_split_a_sequence_at_every_size_change() -> None:
    from ferbench.preprocess.track import size_runs

    sizes = [(240, 320)] * 3 + [(120, 160)] + [(240, 320)] * 2
    assert size_runs(sizes) == [(0, 3, (240, 320)), (3, 4, (120, 160)), (4, 6, (240, 320))]
    assert size_runs([]) == [] and size_runs([(5, 5)]) == [(0, 1, (5, 5))]
