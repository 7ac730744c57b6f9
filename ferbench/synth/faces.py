"""Real faces that make expressions: the frame source for every dataset replica.

Replicas must hold faces a real detector finds and a model can learn from, without any licensed data.
We take the real photos the insightface package ships, put each face into a canonical 256x256 patch
(eyes level), and deform it with Action-Unit displacements of facial control points (brows, lids,
cheeks, nose, lips, chin) in the spirit of FACS. An expression class is a set of AU intensities
(`CLASS_AUS`); a frame is the patch warped by those intensities times a smooth time curve, shaded with
the AUs' appearance cues (mouth cavity and teeth, furrows, wrinkles, folds: `shade_aus`), composited
on a background at the dataset's frame size, with optional illumination, near-infrared look and yaw.

The 5 source landmarks were measured once with the default MTCNN detector (a test re-measures them),
so writing a replica needs no detector.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

#: (photo file, 5 landmarks: left eye, right eye, nose, mouth left, mouth right) as MTCNN finds them.
SOURCE_FACES: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    ("t1.jpg", ((86.9, 332.0), (130.3, 307.8), (121.8, 340.1), (115.6, 373.4), (148.8, 351.6))),
    ("t1.jpg", ((294.9, 202.4), (326.5, 183.6), (315.1, 215.9), (315.2, 236.9), (343.7, 223.2))),
    ("t1.jpg", ((492.9, 320.4), (541.0, 331.4), (508.2, 367.0), (484.1, 371.0), (530.4, 382.0))),
    ("t1.jpg", ((760.7, 396.5), (803.2, 400.2), (773.4, 432.1), (762.3, 439.7), (807.8, 443.0))),
    ("t1.jpg", ((918.8, 118.6), (953.7, 111.3), (925.9, 149.8), (933.0, 174.8), (961.2, 168.3))),
    ("t1.jpg", ((1149.5, 325.2), (1194.4, 321.4), (1164.9, 346.4), (1153.5, 368.3), (1198.6, 365.6))),
    ("Tom_Hanks_54745.png", ((35.8, 50.8), (73.3, 49.2), (61.3, 77.4), (35.1, 92.9), (64.8, 91.4))),
)

PATCH = 256  # canonical patch side (px)
FACE_HEIGHT = 0.62  # default face size in a rendered frame, fraction of the frame's shorter side
PATCH_EYES = ((88.0, 100.0), (168.0, 100.0))  # canonical eye centres: inter-ocular distance 80 px
IOD = PATCH_EYES[1][0] - PATCH_EYES[0][0]

#: Apex AU intensities (0..1) of each canonical expression, after the FACS prototypes (EMFACS).
#: A string key "R12"/"L12" is a unilateral AU (subject's right / left side only).
CLASS_AUS: dict[str, dict[int | str, float]] = {
    "neutral": {},
    "anger": {4: 1.0, 5: 0.6, 7: 0.8, 23: 1.0, 24: 0.6},
    "contempt": {"R12": 1.5, "R14": 1.0},
    "disgust": {9: 1.0, 10: 0.6, 15: 0.4, 4: 0.3},
    "fear": {1: 1.0, 2: 0.8, 4: 0.6, 5: 1.0, 20: 1.0, 25: 1.0},
    "happiness": {6: 1.0, 12: 1.0, 25: 0.4},
    "sadness": {1: 1.0, 4: 0.6, 15: 1.0, 17: 0.6},
    "surprise": {1: 1.0, 2: 1.0, 5: 0.8, 26: 1.0},
    "repression": {14: 1.0, 15: 0.6, 17: 1.0, 24: 0.6},
    "others": {4: 0.8, 10: 0.6, 20: 0.4},
}

# Control points in face units: x in inter-ocular distances from the eye midpoint (+ = image right),
# y in inter-ocular distances downward from the eye line. Names with L/R are mirrored pairs (L = image left).
_POINTS: dict[str, tuple[float, float]] = {
    "brow_in_L": (-0.22, -0.38), "brow_in_R": (0.22, -0.38),
    "brow_mid_L": (-0.50, -0.48), "brow_mid_R": (0.50, -0.48),
    "brow_out_L": (-0.80, -0.36), "brow_out_R": (0.80, -0.36),
    "lid_up_L": (-0.50, -0.12), "lid_up_R": (0.50, -0.12),
    "lid_lo_L": (-0.50, 0.10), "lid_lo_R": (0.50, 0.10),
    "cheek_L": (-0.62, 0.52), "cheek_R": (0.62, 0.52),
    "nose_wing_L": (-0.20, 0.52), "nose_wing_R": (0.20, 0.52),
    "lip_up": (0.0, 0.88), "lip_lo": (0.0, 1.12),
    "corner_L": (-0.42, 1.0), "corner_R": (0.42, 1.0),
    "chin": (0.0, 1.50), "jaw_L": (-0.75, 1.30), "jaw_R": (0.75, 1.30),
}
# Points that never move: eye centres and nose tip keep the detector's landmarks stable, plus a ring
# around the face so the deformation stays on the face.
_FIXED: tuple[tuple[float, float], ...] = (
    (-0.5, 0.0), (0.5, 0.0), (0.0, 0.45),
    *[(1.45 * np.cos(a), 0.55 + 1.55 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)],
)

# AU -> {control point: (dx, dy)} in face units; "out" on x means away from the face midline.
_AU_MOVES: dict[int, dict[str, tuple[float, float]]] = {
    1: {"brow_in": (0.0, -0.16), "brow_mid": (0.0, -0.06)},
    2: {"brow_out": (0.0, -0.16), "brow_mid": (0.0, -0.10)},
    4: {"brow_in": (-0.08, 0.12), "brow_mid": (-0.03, 0.08), "brow_out": (0.0, 0.03)},
    5: {"lid_up": (0.0, -0.07), "brow_mid": (0.0, -0.03)},
    6: {"cheek": (0.0, -0.12), "lid_lo": (0.0, -0.05), "corner": (0.02, -0.03)},
    7: {"lid_lo": (0.0, -0.06), "lid_up": (0.0, 0.03)},
    9: {"nose_wing": (0.0, -0.12), "lip_up": (0.0, -0.06), "brow_in": (-0.02, 0.06)},
    10: {"lip_up": (0.0, -0.12), "nose_wing": (0.0, -0.05), "corner": (0.0, -0.03)},
    12: {"corner": (0.12, -0.16), "cheek": (0.02, -0.05)},
    14: {"corner": (-0.07, -0.04), "cheek": (-0.02, 0.0)},
    15: {"corner": (0.0, 0.15), "lip_lo": (0.0, 0.03)},
    16: {"lip_lo": (0.0, 0.12), "corner": (0.0, 0.03)},
    17: {"chin": (0.0, -0.12), "lip_lo": (0.0, -0.08), "corner": (0.0, 0.03)},
    20: {"corner": (0.16, 0.03), "jaw": (0.03, 0.0)},
    23: {"lip_up": (0.0, 0.05), "lip_lo": (0.0, -0.05), "corner": (-0.06, 0.0)},
    24: {"lip_up": (0.0, 0.06), "lip_lo": (0.0, -0.07), "chin": (0.0, -0.03)},
    25: {"lip_lo": (0.0, 0.08)},
    26: {"lip_lo": (0.0, 0.18), "chin": (0.0, 0.26), "jaw": (0.0, 0.12), "corner": (0.0, 0.06)},
}
RENDERED_AUS: tuple[int, ...] = tuple(sorted(_AU_MOVES))

#: How far an AU of intensity 1 moves its points, relative to `_AU_MOVES`. Real CK+ apexes move the mouth
#: corners by about a third of the inter-ocular distance; at 1.0 a 32x32 crop saw 1-2 px and a linear
#: classifier on the apex frame reached 0.39 subject-disjoint. At 2.0 MTCNN missed 5 of 84 apex frames of
#: 6 subjects x 7 emotions (colour and grey), at 1.4 none (with face-shape offsets of sd 0.02 IOD).
AU_GAIN = 1.4
#: Default `intensity` (a multiplier on every AU; `ferbench synth --intensity` lowers it for harder replicas).
DEFAULT_INTENSITY = 1.0


def expression_curve(n_frames: int, onset: int, apex: int, offset: int | None = None) -> np.ndarray:
    """Expression intensity per frame: 0 before onset, smooth (cosine) rise to 1 at apex, fall to 0 at offset.

    With `offset=None` (neutral -> apex datasets such as CK+ and Oulu) the curve stays at 1 after the apex.
    """
    t = np.arange(n_frames, dtype=np.float64)
    curve = np.zeros(n_frames)
    rise = (t >= onset) & (t <= apex)
    span = max(apex - onset, 1)
    curve[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - onset) / span)
    if offset is None:
        curve[t > apex] = 1.0
    else:
        fall = (t > apex) & (t <= offset)
        span = max(offset - apex, 1)
        curve[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - apex) / span)
    if apex <= onset:
        curve[t >= onset] = 1.0 if offset is None else curve[t >= onset]
    return curve


@dataclass(frozen=True)
class Identity:
    """One replica subject: a real face (or a morph of two), mirrored or not, with its own face shape, colour,
    scale and expressiveness, so that subjects beyond the source photos are still distinct people."""

    index: int
    source: int
    flip: bool
    partner: int = 0  # second source face of a morph
    mix: float = 0.0  # morph weight of `partner` (0 = the source photo itself)
    shape: tuple[tuple[float, float], ...] = ()  # per control point (face units): this subject's face shape
    gain: float = 1.0  # brightness multiplier
    bias: float = 0.0  # brightness offset
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel BGR multipliers
    scale: float = 1.0  # face size relative to the frame default
    shift: tuple[float, float] = (0.0, 0.0)  # face centre offset, fraction of frame size
    expressiveness: float = 1.0  # per-subject AU intensity multiplier (CK+ subjects differ in intensity)
    background: tuple[tuple[int, int, int], tuple[int, int, int]] = ((128, 128, 128), (128, 128, 128))

    def face_square(self, size: tuple[int, int], face_height: float = FACE_HEIGHT) -> tuple[int, int, int]:
        """Where `FaceAnimator.render` puts this subject's face patch in a frame of `size` (width, height):
        (x, y, side) of the square, top-left corner; the replica writers place annotations with the same."""
        width, height = size
        side = max(16, int(round(min(width, height) * face_height * self.scale * PATCH / 200)))
        return int(width * (0.5 + self.shift[0])) - side // 2, int(height * (0.5 + self.shift[1])) - side // 2, side


def au_side(key: int | str) -> tuple[str | None, int]:
    """An AU key as (side, number): 12 -> (None, 12); "R12" / "L12" -> ("R" / "L", 12), a unilateral AU on
    the subject's right / left side (CLASS_AUS, the replica writers' AU codes)."""
    if isinstance(key, str) and key[:1].upper() in ("L", "R"):
        return key[0].upper(), int(key[1:])
    return None, int(key)


def au_numbers(aus: Iterable[int | str]) -> tuple[int, ...]:
    """The AU numbers of some AU keys, either side counted once, sorted ({"R12": 1, 12: 1, 4: 1} -> (4, 12))."""
    return tuple(sorted({au_side(k)[1] for k in aus}))


def au_key(side: str | None, au: int) -> int | str:
    """The AU key for `au` on one side ("R12") or both (12): the inverse of `au_side`."""
    return f"{side}{au}" if side else au


def mirror_au(key: int | str) -> int | str:
    """The same AU on the other side of the face (a bilateral AU is its own mirror)."""
    side, au = au_side(key)
    return au_key({"L": "R", "R": "L"}.get(side or ""), au)


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import insightface  # the package ships these photos; imported lazily (heavy)

    path = Path(insightface.__file__).parent / "data" / "images" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: insightface's sample photo is missing (reinstall insightface)")
    return image


@lru_cache(maxsize=None)
def canonical_patch(source: int) -> tuple[np.ndarray, np.ndarray]:
    """The source face warped so its eyes sit at PATCH_EYES in a PATCH x PATCH image, and its 5 points there."""
    name, pts = SOURCE_FACES[source]
    pts = np.asarray(pts, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(pts[:2], np.asarray(PATCH_EYES, dtype=np.float32))
    # Two points define a similarity exactly; estimateAffinePartial2D returns it (RANSAC is moot).
    patch = cv2.warpAffine(_photo(name), matrix, (PATCH, PATCH), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    moved = cv2.transform(pts[None], matrix)[0]
    return patch, moved


def _face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (eye midpoint) and unit axes (x along the eyes, y down) of a canonical patch, in pixels per face unit."""
    origin = (points[0] + points[1]) / 2
    ex = (points[1] - points[0]) / np.linalg.norm(points[1] - points[0])
    ey = np.array([-ex[1], ex[0]])
    return origin, ex * IOD, ey * IOD


def _control_points(points: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Movable control points of one face: generic positions snapped to its real mouth and nose."""
    origin, ax, ay = _face_frame(points)
    names, coords = [], []
    for name, (u, v) in _POINTS.items():
        p = origin + u * ax + v * ay
        if name == "corner_L":
            p = points[3]
        elif name == "corner_R":
            p = points[4]
        elif name in ("lip_up", "lip_lo"):
            mid = (points[3] + points[4]) / 2
            p = mid + (-0.12 if name == "lip_up" else 0.12) * ay
        names.append(name)
        coords.append(p)
    return names, np.asarray(coords, dtype=np.float64)


def _displacements(names: list[str], aus: Mapping[int | str, float], points: np.ndarray) -> np.ndarray:
    """Pixel displacement of each control point for the given AU intensities."""
    _, ax, ay = _face_frame(points)
    disp = np.zeros((len(names), 2))
    for au, weight in aus.items():
        side, au = au_side(mirror_au(au))  # control points are named by image side: the subject's right is image left
        moves = _AU_MOVES.get(int(au))
        if not moves or weight == 0:
            continue
        for i, name in enumerate(names):
            base, _, pside = name.rpartition("_")
            if pside not in ("L", "R"):
                base, pside = name, ""
            if base not in moves or (side and pside != side):
                continue
            dx, dy = moves[base]
            outward = -1.0 if pside == "L" else 1.0  # "out" means away from the midline
            disp[i] += AU_GAIN * weight * ((dx * outward if pside else 0.0) * ax + dy * ay)
    return disp


@lru_cache(maxsize=None)
def _rbf_system(source: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Control points, all RBF centres, and the factorised kernel for one source face (cached)."""
    _, points = canonical_patch(source)
    names, ctrl = _control_points(points)
    origin, ax, ay = _face_frame(points)
    fixed = np.asarray([origin + u * ax + v * ay for u, v in _FIXED])
    centres = np.vstack([ctrl, fixed])
    kernel = _kernel(centres, centres) + 1e-6 * np.eye(len(centres))
    return names, ctrl, centres, np.linalg.inv(kernel)


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sigma = 0.33 * IOD
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


_GRID_STEP = 8
_GRID = np.stack(np.meshgrid(np.arange(0, PATCH + 1, _GRID_STEP), np.arange(0, PATCH + 1, _GRID_STEP)), -1).reshape(-1, 2)


@lru_cache(maxsize=64)
def identity_patch(source: int, partner: int, mix: float) -> np.ndarray:
    """The canonical patch of a subject's face: the source photo, or a morph with `partner` (its photo warped
    onto the source's five landmarks, then cross-dissolved with weight `mix`)."""
    patch, points = canonical_patch(source)
    if mix <= 0 or partner == source:
        return patch
    other, other_pts = canonical_patch(partner)
    matrix, _ = cv2.estimateAffinePartial2D(other_pts.astype(np.float32), points.astype(np.float32))
    moved = cv2.warpAffine(other, matrix, (PATCH, PATCH), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(patch, 1.0 - mix, moved, mix, 0.0)


def warp_patch(source: int, aus: Mapping[int | str, float], base: np.ndarray | None = None,
               shape: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
    """The canonical patch of `source` (or `base`, a patch with the same landmarks) deformed by AU intensities
    plus a subject's static `shape` offsets of the control points (backward-mapped Gaussian-RBF warp)."""
    patch, points = canonical_patch(source)
    patch = patch if base is None else base
    if not any(aus.values()) and not shape:
        return patch.copy()
    names, ctrl, centres, kinv = _rbf_system(source)
    disp = np.zeros((len(centres), 2))
    disp[: len(ctrl)] = _displacements(names, aus, points)
    if shape:
        _, ax, ay = _face_frame(points)
        disp[: len(ctrl)] += np.asarray(shape)[:, :1] * ax + np.asarray(shape)[:, 1:] * ay
    # Backward map: output pixel p samples input at p - d(p); interpolating d at the moved points is
    # close enough for displacements this small and keeps one cached factorisation per face.
    weights = kinv @ disp
    field = _kernel(_GRID.astype(np.float64), centres) @ weights
    n = PATCH // _GRID_STEP + 1
    field = field.reshape(n, n, 2).astype(np.float32)
    field = cv2.resize(field, (PATCH, PATCH), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(PATCH, dtype=np.float32), np.arange(PATCH, dtype=np.float32))
    warped = cv2.remap(patch, xs - field[..., 0], ys - field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if not any(aus.values()):
        return warped
    moved = dict(zip(names, ctrl + disp[: len(ctrl)]))
    return shade_aus(warped, aus, moved, _face_frame(points))


#: Appearance cues per AU, beside the displacements: what a real face shows that point motion alone does not
#: (FACS describes them as "appearance changes"). Each is drawn with opacity = AU intensity (capped at 1) x its
#: `CUE_OPACITY`, so `--intensity` scales them with the motion. At 32x32 the 1-2 px displacements alone let a
#: linear classifier on single apex frames reach 0.52 (12 subjects, 3 subject-disjoint folds); with the cues 0.69.
_CAVITY_BGR = (40.0, 28.0, 70.0)  # open mouth: dark, reddish
_TEETH_BGR = (215.0, 225.0, 232.0)
_LINE_WIDTH = 0.1  # wrinkle and fold lines, in inter-ocular distances
#: Opacity of each cue at full intensity.
CUE_OPACITY = dict(cavity=0.85, teeth=1.0, furrow=0.55, forehead=0.45, nose=0.5, fold=0.55, crow=0.45, dimple=0.55,
                   marionette=0.5, chin=0.4, press=0.5)


def _au_weights(aus: Mapping[int | str, float]) -> dict[tuple[str, int], float]:
    """AU intensities by (image side "L"/"R", AU): a bilateral AU counts on both sides (as in `_displacements`)."""
    out: dict[tuple[str, int], float] = {}
    for key, weight in aus.items():
        side, au = au_side(mirror_au(key))  # subject's right is image left
        for s in ((side,) if side else ("L", "R")):
            out[(s, au)] = out.get((s, au), 0.0) + float(weight)
    return out


def shade_aus(patch: np.ndarray, aus: Mapping[int | str, float], moved: Mapping[str, np.ndarray],
              frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Draw the appearance cues of `aus` on a warped canonical patch: an open mouth's dark cavity (AU25/26) with
    teeth when the lips are drawn up (AU10/12), brow furrows (AU4), forehead lines (AU1/2), nose wrinkles (AU9),
    nasolabial folds (AU10/12), crow's feet (AU6), dimples (AU14), marionette lines (AU15), a dimpled chin
    (AU17) and a pressed lip line (AU23/24). `moved` holds the control points after the warp (pixels)."""
    w = _au_weights(aus)

    def a(au: int, side: str | None = None) -> float:
        sides = (side,) if side else ("L", "R")
        return min(1.0, max(w.get((s, au), 0.0) for s in sides))

    origin, ax, ay = frame
    at = lambda u, v: origin + u * ax + v * ay  # noqa: E731 - face units -> pixels
    dark = np.zeros(patch.shape[:2], np.float32)
    light = np.zeros(patch.shape[:2], np.float32)
    thick = max(2, int(round(IOD * _LINE_WIDTH)))

    def line(img: np.ndarray, p: np.ndarray, q: np.ndarray, alpha: float, t: int = thick) -> None:
        if alpha > 0:
            cv2.line(img, tuple(int(round(c)) for c in p), tuple(int(round(c)) for c in q), float(alpha), t, cv2.LINE_AA)

    # mouth: the lips part by the AU25/26 weights; the cavity fills the gap between the moved lip points
    opening = min(1.0, a(25) * 0.6 + a(26))
    if opening > 0:
        up, lo, cl, cr = moved["lip_up"], moved["lip_lo"], moved["corner_L"], moved["corner_R"]
        centre = (up + lo) / 2 + 0.04 * ay
        half_w = 0.36 * np.linalg.norm(cr - cl)
        half_h = max(2.0, 0.5 * np.linalg.norm(lo - up)) * (0.4 + 0.6 * opening)
        cavity = np.zeros_like(dark)
        cv2.ellipse(cavity, (int(centre[0]), int(centre[1])), (int(half_w), int(half_h)), 0, 0, 360, 1.0, -1)
        teeth = max(a(12), a(10))
        if teeth > 0:  # upper teeth: the top half of the opening turns light
            band = np.zeros_like(dark)
            cv2.ellipse(band, (int(centre[0]), int(centre[1] - 0.35 * half_h)), (int(half_w * 0.85), int(half_h * 0.55)),
                        0, 0, 360, 1.0, -1)
            light = np.maximum(light, band * cavity * CUE_OPACITY["teeth"] * teeth * opening)
            cavity = cavity * (1 - band * teeth)
        dark = np.maximum(dark, cavity * CUE_OPACITY["cavity"] * opening)
    # brows and forehead
    line(dark, at(-0.09, -0.40) + (moved["brow_in_L"] - at(-0.22, -0.38)) * 0.5, at(-0.07, -0.16), CUE_OPACITY["furrow"] * a(4))
    line(dark, at(0.09, -0.40) + (moved["brow_in_R"] - at(0.22, -0.38)) * 0.5, at(0.07, -0.16), CUE_OPACITY["furrow"] * a(4))
    for v in (-0.72, -0.86):
        for side, sign in (("L", -1), ("R", 1)):
            alpha = CUE_OPACITY["forehead"] * max(a(1, side), a(2, side))
            line(dark, at(sign * 0.05, v), at(sign * 0.55, v + 0.03), alpha)
    # nose wrinkles (AU9) and nasolabial folds (AU10/AU12, per side)
    for v in (0.12, 0.22, 0.32):
        line(dark, at(-0.12, v), at(0.12, v), CUE_OPACITY["nose"] * a(9))
    for side in ("L", "R"):
        fold = max(a(12, side), a(10, side), 0.5 * a(6, side), 0.7 * a(9, side))
        wing, corner = moved[f"nose_wing_{side}"], moved[f"corner_{side}"]
        outward = np.sign(corner[0] - wing[0]) or 1.0
        line(dark, wing + outward * 0.06 * ax, corner + outward * 0.10 * ax, CUE_OPACITY["fold"] * fold)
        eye_out = at(outward * 0.78, 0.0)  # crow's feet at the outer eye corner
        for dv in (-0.07, 0.0, 0.07):
            line(dark, eye_out, eye_out + outward * 0.14 * ax + dv * 1.5 * ay, CUE_OPACITY["crow"] * a(6, side))
        dimple = corner + outward * 0.08 * ax
        cv2.circle(dark, (int(dimple[0]), int(dimple[1])), thick + 1, CUE_OPACITY["dimple"] * a(14, side), -1)
        line(dark, corner + 0.04 * ay, corner + outward * 0.04 * ax + 0.32 * ay,
             CUE_OPACITY["marionette"] * a(15, side))
    chin = moved["chin"]
    for du in (-0.12, 0.0, 0.12):
        spot = chin + du * ax - 0.12 * ay
        cv2.circle(dark, (int(spot[0]), int(spot[1])), thick, CUE_OPACITY["chin"] * a(17), -1)
    line(dark, moved["corner_L"], moved["corner_R"], CUE_OPACITY["press"] * max(a(23), a(24)), thick + 1)
    if not dark.any() and not light.any():
        return patch
    dark = cv2.GaussianBlur(dark, (0, 0), IOD / 60)[..., None]
    light = cv2.GaussianBlur(light, (0, 0), IOD / 80)[..., None]
    out = patch.astype(np.float32)
    out = out * (1 - dark) + np.asarray(_CAVITY_BGR, np.float32) * dark  # folds and cavity: dark, reddish
    out = out * (1 - light) + np.asarray(_TEETH_BGR, np.float32) * light
    return np.clip(out, 0, 255).astype(patch.dtype)


@lru_cache(maxsize=8)
def _mask(side: int) -> np.ndarray:
    """Feathered ellipse over the face region of a (resized) canonical patch."""
    mask = np.zeros((PATCH, PATCH), np.float32)
    cv2.ellipse(mask, (PATCH // 2, int(PATCH * 0.53)), (int(PATCH * 0.40), int(PATCH * 0.49)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), PATCH * 0.04)
    return cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)[..., None]


class FaceAnimator:
    """Renders frames of replica subjects making expressions; deterministic for a given seed."""

    n_sources = len(SOURCE_FACES)

    def __init__(self, seed: int = 0, intensity: float = DEFAULT_INTENSITY):
        if not 0 < intensity <= 3:
            raise ValueError(f"intensity must lie in (0, 3], got {intensity}")
        self.seed = seed
        self.intensity = float(intensity)

    def identity(self, index: int) -> Identity:
        """Subject `index`: a real source face for the first `n_sources` subjects, a morph of two source faces
        after that (a different pair or weight for each), each with its own face shape, colour and look."""
        rng = np.random.default_rng([self.seed, index, 7])
        source = index % self.n_sources
        lap = index // self.n_sources
        flip = bool(lap % 2)
        partner, mix = source, 0.0
        if lap:
            partner = (source + 1 + (lap - 1 + index) % (self.n_sources - 1)) % self.n_sources
            mix = float(rng.uniform(0.3, 0.6))
        names = list(_POINTS)
        shape = []
        base = {}
        for name in names:  # symmetric face-shape offsets: a pair moves as mirror images
            stem, _, side = name.rpartition("_")
            key = stem if side in ("L", "R") else name
            if key not in base:
                base[key] = rng.normal(0.0, 0.02, 2)  # 0.035 made MTCNN miss some apex frames
            dx, dy = base[key]
            shape.append((float(-dx if side == "L" else dx), float(dy)))
        bg = tuple(tuple(int(c) for c in rng.integers(40, 200, 3)) for _ in range(2))
        return Identity(
            index=index,
            source=source,
            flip=flip,
            partner=partner,
            mix=mix,
            shape=tuple(shape),
            gain=float(rng.uniform(0.85, 1.15)),
            bias=float(rng.uniform(-12, 12)),
            tint=tuple(float(x) for x in rng.uniform(0.85, 1.15, 3)),
            scale=float(rng.uniform(0.92, 1.08)),
            shift=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.04, 0.04))),
            expressiveness=float(rng.uniform(0.8, 1.2)),
            background=bg,  # type: ignore[arg-type]
        )

    def render(
        self,
        ident: Identity,
        aus: Mapping[int | str, float] | None = None,
        size: tuple[int, int] = (640, 480),
        illumination: str = "strong",
        nir: bool = False,
        yaw: float = 0.0,
        grey: bool = False,
        face_height: float = FACE_HEIGHT,
    ) -> np.ndarray:
        """One BGR uint8 frame of `size` (width, height) with the subject showing `aus` (AU -> intensity)."""
        width, height = size
        scaled = {k: v * ident.expressiveness * self.intensity for k, v in (aus or {}).items()}
        if ident.flip:  # mirror the face, and swap unilateral AUs so "R12" stays on the subject's right
            scaled = {mirror_au(k): v for k, v in scaled.items()}
        patch = warp_patch(ident.source, scaled, identity_patch(ident.source, ident.partner, ident.mix), ident.shape)
        if ident.flip:
            patch = cv2.flip(patch, 1)
        patch = np.clip(patch.astype(np.float32) * np.asarray(ident.tint, np.float32) * ident.gain + ident.bias, 0, 255)
        cx, cy, side = ident.face_square(size, face_height)
        face = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA if side < PATCH else cv2.INTER_CUBIC)
        mask = _mask(side)
        if yaw:
            face, mask = _yaw(face, mask, yaw)
        frame = self._background(ident, width, height)
        _paste(frame, face, mask, cx, cy)
        frame = _illuminate(frame, illumination)
        if nir or grey:
            g = cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
            if nir:  # near-infrared look: grey, flat albedo, high contrast
                g = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(g)
            return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        return np.clip(frame, 0, 255).astype(np.uint8)

    def render_clip(
        self, ident: Identity, aus: Mapping[int | str, float], curve: np.ndarray, size: tuple[int, int] = (640, 480),
        levels: int = 48, **kwargs
    ) -> list[np.ndarray]:
        """Frames of one sequence: AU intensities scaled by `curve[t]` (see `expression_curve`).

        `curve` is rounded to `levels` steps and each step is rendered once, so the long neutral stretches of
        seconds-long clips cost one render (a step of 1/48 moves a point by well under a pixel at 64x64)."""
        cache: dict[float, np.ndarray] = {}
        out = []
        for c in np.asarray(curve, dtype=np.float64):
            q = round(float(c) * levels) / levels
            if q not in cache:
                cache[q] = self.render(ident, {k: v * q for k, v in aus.items()}, size, **kwargs)
            out.append(cache[q].copy())
        return out

    def render_frames(
        self, ident: Identity, intensities: np.ndarray | list[Mapping[int | str, float]], size: tuple[int, int] = (640, 480),
        **kwargs
    ) -> list[np.ndarray]:
        """Frames from a per-frame list of AU intensity maps (for sequences whose AUs start at different times)."""
        return [self.render(ident, dict(aus), size, **kwargs) for aus in intensities]

    def render_no_face(self, size: tuple[int, int] = (640, 480), seed: int = 0) -> np.ndarray:
        """A frame with scenery but no face (AFEW clips have such frames)."""
        width, height = size
        rng = np.random.default_rng([self.seed, seed, 11])
        frame = _gradient(width, height, tuple(rng.integers(30, 220, 3)), tuple(rng.integers(30, 220, 3)))
        for _ in range(6):  # a few shapes so it is not a flat image
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(frame, (x, y), (x + int(rng.integers(10, width // 3)), y + int(rng.integers(10, height // 3))),
                          tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        return frame.astype(np.uint8)

    def _background(self, ident: Identity, width: int, height: int) -> np.ndarray:
        return _gradient(width, height, ident.background[0], ident.background[1]).astype(np.float32)


def _gradient(width: int, height: int, c0, c1) -> np.ndarray:
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    col = np.asarray(c0, np.float32) * (1 - t) + np.asarray(c1, np.float32) * t
    return np.broadcast_to(col, (height, width, 3)).copy()


def _paste(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend `face` into `frame` at (x, y), clipping at the frame border."""
    h, w = face.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    f = face[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - m) + f * m


def _yaw(face: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Approximate a head turn: foreshorten horizontally with a perspective warp toward one side."""
    side = face.shape[0]
    k = np.sin(np.radians(abs(degrees))) * 0.5
    src = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    if degrees > 0:
        dst = np.float32([[0, 0], [side * (1 - k), side * k * 0.3], [side * (1 - k), side * (1 - k * 0.3)], [0, side]])
    else:
        dst = np.float32([[side * k, side * k * 0.3], [side, 0], [side, side], [side * k, side * (1 - k * 0.3)]])
    h = cv2.getPerspectiveTransform(src, dst)
    face = cv2.warpPerspective(face, h, (side, side), borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(mask, h, (side, side))[..., None]
    return face, mask


def _illuminate(frame: np.ndarray, illumination: str) -> np.ndarray:
    """Oulu-CASIA's three lighting conditions: normal (strong), weak and dark."""
    kind = illumination.lower()
    if kind == "strong":
        return frame
    h, w = frame.shape[:2]
    ramp = np.linspace(1.0, 0.55, w, dtype=np.float32)[None, :, None]  # light from one side
    if kind == "weak":
        return frame * 0.55 * ramp + 8
    if kind == "dark":
        return frame * 0.40 * ramp + 4
    raise ValueError(f"illumination must be strong, weak or dark, not {illumination!r}")
