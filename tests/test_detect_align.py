"""The real MTCNN on real photos, and the similarity alignment it drives (no mocks anywhere).

Photos: insightface ships t1.jpg (six people, several tilted or turned heads) and Tom_Hanks_54745.png (a
112x112 crop already aligned to the ArcFace template, which gives an independent check of landmark order
and coordinates).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest

from ferbench.errors import FerbenchError
from ferbench.preprocess.align import (
    ARCFACE_112,
    align_face,
    estimate_similarity,
    template_points,
    warp_points,
)
from ferbench.preprocess.detect import (
    Face,
    MTCNNDetector,
    get_detector,
    insightface_pack_dir,
    refine_face,
)

IMAGES = Path(os.path.dirname(insightface.__file__)) / "data" / "images"


@pytest.fixture(scope="module")
def mtcnn() -> MTCNNDetector:
    det = get_detector("mtcnn")
    assert isinstance(det, MTCNNDetector)
    return det


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return cv2.imread(str(IMAGES / "t1.jpg"))


@pytest.fixture(scope="module")
def hanks() -> np.ndarray:
    return cv2.imread(str(IMAGES / "Tom_Hanks_54745.png"))


@pytest.fixture(scope="module")
def t1_faces(mtcnn: MTCNNDetector, t1: np.ndarray) -> list[Face]:
    return mtcnn.detect(t1)


def yaw_proxy(face: Face) -> float:
    """Nose offset from the eye midpoint along the eye line, in inter-ocular distances (0 = frontal)."""
    p = face.points
    e = p[1] - p[0]
    return float((p[2] - (p[0] + p[1]) / 2) @ e / (e @ e))


def test_t1_six_faces(t1_faces: list[Face], t1: np.ndarray) -> None:
    assert len(t1_faces) == 6
    scores = [f.score for f in t1_faces]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.9
    h, w = t1.shape[:2]
    centres = []
    for f in t1_faces:
        assert f.box.shape == (4,) and f.points.shape == (5, 2) and f.box.dtype == np.float64
        x1, y1, x2, y2 = f.box
        # the five points lie inside their own box, eyes above the mouth, image-left eye first
        assert np.all((f.points[:, 0] > x1 - 2) & (f.points[:, 0] < x2 + 2))
        assert np.all((f.points[:, 1] > y1 - 2) & (f.points[:, 1] < y2 + 2))
        assert f.points[:2, 1].mean() < f.points[3:, 1].mean()
        assert f.points[0, 0] < f.points[1, 0]
        assert 30 < f.eye_distance < 60  # t1's faces are ~100-120 px wide
        centres.append(f.box.reshape(2, 2).mean(0))
    # six different people, not six boxes on one face
    c = np.array(centres)
    d = np.linalg.norm(c[:, None] - c[None], axis=2) + np.eye(6) * 1e9
    assert d.min() > 100
    assert 0 < c[:, 0].min() and c[:, 0].max() < w and c[:, 1].max() < h


def test_tom_hanks_landmarks_match_arcface_alignment(mtcnn: MTCNNDetector, hanks: np.ndarray) -> None:
    """The photo was aligned to the ArcFace template: detected eyes must sit on the template's eyes."""
    faces = mtcnn.detect(hanks)
    assert len(faces) == 1
    err = np.linalg.norm(faces[0].points[:2] - ARCFACE_112[:2], axis=1)
    assert err.max() < 4.0, err  # measured ~2.5 px on a 112 px crop


def test_grey_blank_and_tiny_inputs(mtcnn: MTCNNDetector, t1: np.ndarray) -> None:
    grey = cv2.cvtColor(t1, cv2.COLOR_BGR2GRAY)
    assert len(mtcnn.detect(grey)) == 6  # 2-D grey frames (CK+) are accepted
    assert mtcnn.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert mtcnn.detect(np.zeros((6, 6, 3), np.uint8)) == []


def test_estimate_similarity_recovers_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = np.deg2rad(23.0), 1.7, np.array([12.0, -30.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + t
    m = estimate_similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    # two points determine it exactly, and mirrored points are never fitted with a reflection
    m2 = estimate_similarity(src[:2], dst[:2])
    np.testing.assert_allclose(warp_points(src[:2], m2), dst[:2], atol=1e-9)
    mir = dst * np.array([-1.0, 1.0])
    assert np.linalg.det(estimate_similarity(src, mir)[:, :2]) > 0
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((2, 2)), dst[:2])


def test_align_face_puts_pixels_where_the_template_says() -> None:
    """Pure geometry: two bright dots as 'eyes' in a rotated layout land on the template's eye pixels."""
    img = np.zeros((300, 400, 3), np.uint8)
    eyes = np.array([[150.0, 120.0], [230.0, 170.0]])  # tilted ~32 degrees, 94 px apart
    for x, y in eyes:
        cv2.circle(img, (int(x), int(y)), 6, (255, 255, 255), -1)
    for size in (64, 112):
        crop, m = align_face(img, eyes, size=size, template="yu2018")
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        np.testing.assert_allclose(warp_points(eyes, m), template_points("yu2018", size), atol=1e-9)
        mask = (crop[:, :, 0] > 60).astype(np.uint8)
        n, _, _, cents = cv2.connectedComponentsWithStats(mask)
        assert n == 3  # background + two dots
        found = sorted(map(tuple, cents[1:]))
        np.testing.assert_allclose(found, template_points("yu2018", size), atol=0.35)
    with pytest.raises(ValueError, match="unknown alignment template"):
        align_face(img, eyes, template="nope")


def _redetect_eyes(det: MTCNNDetector, crop: np.ndarray) -> np.ndarray:
    """MTCNN on the aligned crop itself, eyes mapped back to crop pixels.

    A face filling a 64 px frame is not found reliably as is, so the crop is upscaled and zero-padded;
    MTCNN's answer on such a small face moves by 1-3 px with the framing, so the median over six framings
    (3x/4x/5x, pad 1/4 or 1/2) is taken: that measures the crop, not the detector's jitter.
    """
    found = []
    for up in (3, 4, 5):
        big = cv2.resize(crop, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
        for frac in (0.25, 0.5):
            pad = int(big.shape[0] * frac)
            padded = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            faces = det.detect(padded)
            if not faces:
                continue
            centre = np.array(padded.shape[1::-1]) / 2.0
            f = min(faces, key=lambda f: float(np.linalg.norm(f.points[:2].mean(0) - centre)))
            found.append((f.points[:2] - pad + 0.5) / up - 0.5)
    assert len(found) >= 3, "the face is not found again in the aligned crop"
    return np.median(np.stack(found), axis=0)


@pytest.mark.parametrize("template,size,tol", [("yu2018", 64, 2.0), ("arcface", 64, 2.0)])
def test_aligned_crop_eyes_on_template(
    mtcnn: MTCNNDetector, t1_faces: list[Face], hanks: np.ndarray, t1: np.ndarray, template: str, size: int,
    tol: float,
) -> None:
    """Detect (+ upright refinement) -> align -> run MTCNN again on the output: eyes within 2 px of where
    the alignment put them (yu2018: the template's eyes) at 64x64 for every non-profile face. t1's profile face
    (nose half an eye distance off the eye midpoint) is excluded and only reported: MTCNN guesses its
    hidden eye differently at every framing."""
    cases = [(t1, f) for f in t1_faces] + [(hanks, mtcnn.detect(hanks)[0])]
    tpl = template_points(template, size)[:2]
    errors, profile = [], []
    for img, face in cases:
        is_profile = abs(yaw_proxy(face)) > 0.35
        face = refine_face(mtcnn, img, face)
        crop, m = align_face(img, face.points, size=size, template=template)
        # where the alignment put the eyes: the template's eyes for yu2018 (exact two-point fit); for the
        # five-point arcface fit, the least-squares compromise (eyes are off the template by its residual)
        target = warp_points(face.points[:2], m)
        if template == "yu2018":
            np.testing.assert_allclose(target, tpl, atol=1e-6)
        err = float(np.linalg.norm(_redetect_eyes(mtcnn, crop) - target, axis=1).max())
        (profile if is_profile else errors).append(err)
    print(f"\n{template}@{size}: eye error px per face {np.round(errors, 2).tolist()}, profile {np.round(profile, 2)}")
    assert len(errors) == 6 and len(profile) == 1
    assert max(errors) < tol, errors


def test_refinement_fixes_tilted_face(mtcnn: MTCNNDetector, t1: np.ndarray, t1_faces: list[Face]) -> None:
    """t1's tilted head: raw MTCNN eyes land ~5 px off after alignment; after refinement < 2 px."""
    tilted = max(t1_faces, key=lambda f: abs(np.degrees(np.arctan2(*(f.points[1] - f.points[0])[::-1]))))
    angle = abs(np.degrees(np.arctan2(*(tilted.points[1] - tilted.points[0])[::-1])))
    assert angle > 20
    tpl = template_points("yu2018", 64)
    raw_crop, _ = align_face(t1, tilted.points)
    ref_crop, _ = align_face(t1, refine_face(mtcnn, t1, tilted).points)
    raw = np.linalg.norm(_redetect_eyes(mtcnn, raw_crop) - tpl, axis=1).max()
    ref = np.linalg.norm(_redetect_eyes(mtcnn, ref_crop) - tpl, axis=1).max()
    assert ref < 2.0 and raw > ref + 2.0, (raw, ref)


def test_none_detector_is_a_resize(t1: np.ndarray) -> None:
    det = get_detector("none")
    square = cv2.resize(t1[100:500, 300:700], (200, 200), interpolation=cv2.INTER_AREA)
    faces = det.detect(square)
    assert len(faces) == 1 and faces[0].score == 1.0
    np.testing.assert_allclose(faces[0].box, [0, 0, 200, 200])
    crop, m = align_face(square, faces[0].points, size=64)
    # pure scale about pixel centres, exactly cv2.resize's mapping u = s * (x + 0.5) - 0.5
    np.testing.assert_allclose(m, [[0.32, 0, 0.16 - 0.5], [0, 0.32, 0.16 - 0.5]], atol=1e-9)
    ref = cv2.resize(square, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(crop.astype(int) - ref.astype(int)).mean() < 4
    # a rectangle is letterboxed (zero-padded to a square), aspect ratio kept
    rect = square[:, 50:150]  # 200 high, 100 wide
    crop, m = align_face(rect, det.detect(rect)[0].points, size=64)
    assert abs(m[0, 0] - 0.32) < 1e-9 and crop[:, :14].max() == 0 and crop[:, 50:].max() == 0
    assert crop[:, 18:46].mean() > 40
    # the arcface variant uses all five template points
    det5 = get_detector("none", template="arcface")
    crop5, m5 = align_face(square, det5.detect(square)[0].points, size=112, template="arcface")
    np.testing.assert_allclose(m5, [[0.56, 0, 0.28 - 0.5], [0, 0.56, 0.28 - 0.5]], atol=1e-9)


def test_get_detector_caches_and_rejects_unknown(mtcnn: MTCNNDetector) -> None:
    assert get_detector("mtcnn") is mtcnn and get_detector("MTCNN") is mtcnn
    assert get_detector("mtcnn", min_face_size=40) is not mtcnn
    with pytest.raises(FerbenchError, match="unknown face detector 'retina'.*mtcnn, insightface, none"):
        get_detector("retina")


def test_insightface_missing_pack_says_how_to_install_offline(tmp_path: Path) -> None:
    root = tmp_path / "ifroot"
    with pytest.raises(FerbenchError) as ei:
        get_detector("insightface", pack="buffalo_l", root=str(root))
    msg = str(ei.value)
    pack_dir = insightface_pack_dir("buffalo_l", root)
    assert str(pack_dir) in msg and "buffalo_l.zip" in msg and "unzip" in msg and "never downloads" in msg
    assert str(pack_dir / "det_10g.onnx") in msg
    assert not root.exists()  # nothing was downloaded or created

    # an empty folder, and a pack unzipped one level too deep, get told what is wrong
    pack_dir.mkdir(parents=True)
    with pytest.raises(FerbenchError, match="has no .onnx files"):
        get_detector("insightface", pack="buffalo_l", root=str(root))
    (pack_dir / "buffalo_l").mkdir()
    (pack_dir / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    with pytest.raises(FerbenchError, match="one folder too deep"):
        get_detector("insightface", pack="buffalo_l", root=str(root))
    assert sorted(p.name for p in root.rglob("*")) == ["buffalo_l", "buffalo_l", "det_10g.onnx", "models"]


def test_downscaled_detection_as_prepare_runs_it(mtcnn: MTCNNDetector, t1: np.ndarray, t1_faces: list[Face]) -> None:
    """prepare detects on the frame shrunk so that its minimum face is 24 px (t1: 1280 -> 350 wide), then
    refines each face at full resolution: the same six faces, landmarks within a small fraction of the eye
    distance of full-frame detection, and the eyes of the aligned crops as accurate as the full-frame path
    (the test above: under 2 px at 64x64)."""
    from ferbench.preprocess.pipeline import PrepareConfig, detector_for

    det = detector_for(PrepareConfig().resolved("ck+"), t1.shape)
    assert isinstance(det, MTCNNDetector) and det.max_side is not None and det.max_side < t1.shape[1] / 3
    small = det.detect(t1)
    assert len(small) == len(t1_faces) == 6
    errors, profile = [], []
    for face in t1_faces:
        iod = face.eye_distance
        match = min(small, key=lambda s: float(np.linalg.norm(s.points[:2].mean(0) - face.points[:2].mean(0))))
        assert np.linalg.norm(match.points[:2].mean(0) - face.points[:2].mean(0)) < 0.3 * iod  # raw, at 1/3.7 scale
        assert 0.8 < match.eye_distance / iod < 1.25
        refined, reference = refine_face(mtcnn, t1, match), refine_face(mtcnn, t1, face)
        assert np.linalg.norm(refined.points[:2] - reference.points[:2], axis=1).max() < 0.12 * iod
        crop, m = align_face(t1, refined.points)
        err = float(np.linalg.norm(_redetect_eyes(mtcnn, crop) - warp_points(refined.points[:2], m), axis=1).max())
        (profile if abs(yaw_proxy(face)) > 0.35 else errors).append(err)
    print(f"\ndownscaled detection + refinement, yu2018@64: eye error px per face {np.round(errors, 2).tolist()}, "
          f"profile {np.round(profile, 2)}")
    assert len(errors) == 5 and max(errors) < 2.0, errors


def test_anti_alias_blur_of_the_sampled_region_only(t1: np.ndarray, t1_faces: list[Face]) -> None:
    """align_face blurs only the pixels the crop reads: the crop equals warping the whole blurred frame
    (up to rounding of the warp's fixed-point coordinates); a face shrunk more than 4x is area-reduced
    first, within about one grey level of the whole-frame path."""
    from ferbench.preprocess.align import sampled_region

    def whole_frame(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
        sigma = (1.0 / float(np.sqrt(abs(np.linalg.det(m[:, :2])))) - 1.0) / 2.0
        return cv2.warpAffine(cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma), m, (size, size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))

    for face in t1_faces:
        crop, m = align_face(t1, face.points, 64)
        ref = whole_frame(t1, m, 64)
        diff = np.abs(crop.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.002
        x0, y0, x1, y1 = sampled_region(m, 64, t1.shape)
        assert (x1 - x0) * (y1 - y0) < 0.05 * t1.shape[0] * t1.shape[1]  # a small part of the frame
    # a face 5x larger (like BP4D's 1040x1392 close-ups): shrunk about 10x into the crop
    face = t1_faces[0]
    x, y = face.points[:2].mean(0).astype(int)
    big = cv2.resize(t1[max(0, y - 90) : y + 110, max(0, x - 100) : x + 100], None, fx=5, fy=5,
                     interpolation=cv2.INTER_CUBIC)
    pts = (face.points - [max(0, x - 100), max(0, y - 90)]) * 5 + 2
    crop, m = align_face(big, pts, 64)
    diff = np.abs(crop.astype(int) - whole_frame(big, m, 64))
    assert np.sqrt(abs(np.linalg.det(m[:, :2]))) < 0.25
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 10, (diff.mean(), diff.max())


def test_onet_on_a_known_box(mtcnn: MTCNNDetector, hanks: np.ndarray) -> None:
    """Refinement runs only O-Net on the box where the face is known to be: on the ArcFace-aligned photo it
    finds the template's eyes as the whole cascade does; on an empty view it finds nothing (the caller then
    falls back to the cascade)."""
    full = mtcnn.detect(hanks)[0]
    box = full.box
    found = mtcnn.landmarks_in_box(hanks, (box[:2] + box[2:]) / 2, float(max(box[2] - box[0], box[3] - box[1])))
    assert found is not None and found.score > 0.7
    assert np.linalg.norm(found.points[:2] - ARCFACE_112[:2], axis=1).max() < 4.0
    assert np.linalg.norm(found.points - full.points, axis=1).max() < 3.0
    assert mtcnn.landmarks_in_box(np.zeros((192, 192, 3), np.uint8), np.array([96.0, 96.0]), 90.0) is None
