"""CK+ (Extended Cohn-Kanade): where CK+ emotion labels, FACS codes and landmarks are parsed, and its replica.

Native layout, as the CK+ zips unpack beside each other under one root::

    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png   (640x490 or 640x480, grey or colour)
    Emotion/S005/001/S005_001_00000011_emotion.txt      one float, e.g. "   3.0000000e+00" (label of the last frame)
    FACS/S005/001/S005_001_00000011_facs.txt            lines "AU intensity", e.g. "   1.0000000e+00   3.0000000e+00"
    Landmarks/S005/001/S005_001_00000001_landmarks.txt  68 lines "x y", e.g. "   2.5900000e+02   2.7400000e+02"

Rules: a sequence runs neutral -> apex, so onset = 0, apex = the last frame, no offset. A sequence without an
emotion file (or with an empty Emotion folder) is unlabelled. The class list keeps CK+'s own codes as indices
(0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happiness, 6 sadness, 7 surprise), so label 3 is
disgust; the real labels use 1-7 only (327 sequences). The six-class subset used by most papers (309
sequences, no contempt) is chosen by the protocols, not here. CK+ publishes no frame rate; 30 fps is assumed
and the scan says so.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_entries, list_frames
from ferbench.datasets.base import DatasetAdapter, Sample, ScanResult, is_junk
from ferbench.errors import DatasetError, FerbenchError

#: CK+ emotion codes in order, so that a code is its class index.
CLASSES: tuple[str, ...] = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
FPS = 30.0  # not published by CK+; assumed
IMAGES, EMOTION, FACS, LANDMARKS = "cohn-kanade-images", "Emotion", "FACS", "Landmarks"
N_LANDMARKS = 68


def _numbers(path: Path, line: str, expected: str) -> list[float]:
    try:
        return [float(tok) for tok in line.split()]
    except ValueError:
        raise DatasetError(path, expected) from None


def read_emotion(path: Path) -> int:
    """The emotion code in a CK+ `*_emotion.txt` (one float such as `   3.0000000e+00`), checked to be 0-7."""
    expected = "expected one number such as '3.0000000e+00' (CK+ emotion code 0-7)"
    values = _numbers(path, path.read_text(errors="replace"), expected)
    if len(values) != 1 or not values[0].is_integer() or not 0 <= values[0] < len(CLASSES):
        raise DatasetError(path, expected)
    return int(values[0])


def read_facs(path: Path) -> dict[int, float]:
    """AU -> intensity from a CK+ `*_facs.txt` (lines of two floats; intensity 0 means coded without intensity)."""
    expected = "expected lines of two numbers 'AU intensity' such as '1.0000000e+00   3.0000000e+00' (CK+ FACS file)"
    codes: dict[int, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        values = _numbers(path, line, expected)
        if len(values) != 2 or not values[0].is_integer() or values[0] <= 0:
            raise DatasetError(path, expected)
        codes[int(values[0])] = values[1]
    return codes


def read_landmarks(path: Path) -> np.ndarray:
    """The 68 (x, y) points of one frame from a CK+ `*_landmarks.txt`, as a (68, 2) float32 array."""
    expected = f"expected {N_LANDMARKS} lines of two numbers 'x y' such as '2.5900000e+02   2.7400000e+02' (CK+ landmarks)"
    rows = [_numbers(path, line, expected) for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(rows) != N_LANDMARKS or any(len(r) != 2 for r in rows):
        raise DatasetError(path, expected)
    return np.asarray(rows, dtype=np.float32)


def _one_file(folder: Path, suffix: str, skipped: list[Path]) -> Path | None:
    """The single `*<suffix>` file of a per-sequence annotation folder, None if the folder is absent or empty."""
    if not folder.is_dir():
        return None
    found = []
    for p in folder.iterdir():
        if is_junk(p):
            skipped.append(p)
        elif p.name.endswith(suffix):
            found.append(p)
    if len(found) > 1:
        raise DatasetError(folder, f"expected at most one *{suffix} file, found {len(found)}")
    return found[0] if found else None


@register_dataset
class CKPlus(DatasetAdapter):
    name = "ck+"
    title = "Extended Cohn-Kanade (CK+)"
    obtain = "its owners at the University of Pittsburgh / Carnegie Mellon University (the CK+ request form on Jeffrey Cohn's site, jeffcohn.net/Resources; a signed licence agreement)"
    classes = CLASSES
    layout = (
        "cohn-kanade-images/S005/001/S005_001_00000011.png; Emotion/S005/001/S005_001_00000011_emotion.txt "
        "(one float 0-7, labels the last frame; none = unlabelled); optional FACS/.../*_facs.txt and "
        "Landmarks/.../*_landmarks.txt"
    )
    fps = FPS
    clip_length = 18  # yu2018
    phases = "neutral-apex"
    emotions = CLASSES  # CK+'s own names are the canonical ones

    def scan(self, root: Path) -> ScanResult:
        """Read every sequence under `cohn-kanade-images`, with its emotion code, FACS codes and landmark files."""
        root = Path(root)
        base = root.parent if root.name == IMAGES else root  # accept the image folder itself as the root
        images = base / IMAGES
        if not images.is_dir():
            raise DatasetError(images, "expected the CK+ image folder 'cohn-kanade-images' (from extended-cohn-kanade-images.zip) under the root")
        emotion = base / EMOTION
        if not emotion.is_dir():
            raise DatasetError(emotion, "expected the CK+ 'Emotion' label folder (from Emotion_labels.zip) beside cohn-kanade-images")
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        for subject_dir in list_entries(images, result.skipped):
            for seq_dir in result.read_each(subject_dir.name, lambda: list_entries(subject_dir, result.skipped)) or []:
                sample = result.read_each(f"{subject_dir.name}_{seq_dir.name}",
                                          lambda: self._read_sequence(base, subject_dir.name, seq_dir, result))
                if sample is not None:
                    result.samples.append(sample)
        self._notes(base, result)
        return result

    def _read_sequence(self, base: Path, subject: str, seq_dir: Path, result: ScanResult) -> Sample | None:
        frames = list_frames(seq_dir, result.skipped)
        if not frames:
            result.problems.append(f"{seq_dir}: no image frames; sequence left out")
            return None
        rel = Path(subject) / seq_dir.name
        label = None
        emotion_file = _one_file(base / EMOTION / rel, "_emotion.txt", result.skipped)
        if emotion_file is not None:
            label = read_emotion(emotion_file)
            if emotion_file.name != f"{frames[-1].stem}_emotion.txt":
                result.problems.append(f"{emotion_file}: names a frame other than the last one ({frames[-1].name}); label kept")
        facs_file = _one_file(base / FACS / rel, "_facs.txt", result.skipped)
        landmarks = [base / LANDMARKS / rel / f"{f.stem}_landmarks.txt" for f in frames]
        present = sum(p.is_file() for p in landmarks)
        if present not in (0, len(frames)):
            result.problems.append(f"{base / LANDMARKS / rel}: landmarks for {present} of {len(frames)} frames; none used")
        return Sample(
            id=f"{subject}_{seq_dir.name}",
            dataset=self.name,
            subject=subject,
            label=label,
            frames=frames,
            fps=FPS,
            onset=0,
            apex=len(frames) - 1,
            offset=None,
            au_intensity=read_facs(facs_file) if facs_file else {},
            landmarks=landmarks if present == len(frames) else [],
        )

    @staticmethod
    def _notes(base: Path, result: ScanResult) -> None:
        samples = result.samples
        labelled = [s for s in samples if s.label is not None]
        six = sum(s.label not in (0, 2) for s in labelled)
        result.notes.append(
            f"{len(samples)} sequences, {len(labelled)} labelled ({six} in the six-class subset without contempt); "
            f"the real CK+ has 593 / 327 / 309"
        )
        result.notes.append(f"CK+ publishes no frame rate; {FPS:g} fps assumed")
        for folder, what, n in (
            (FACS, "FACS codes", sum(bool(s.au_intensity) for s in samples)),
            (LANDMARKS, "landmarks", sum(bool(s.landmarks) for s in samples)),
        ):
            if not (base / folder).is_dir():
                result.notes.append(f"no {folder} folder: sequences have no {what}")
            else:
                result.notes.append(f"{what} for {n} of {len(samples)} sequences")

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """CK+ layout with animated faces: per subject one sequence per labelled class plus one unlabelled.

        Quirks written on purpose: `.DS_Store` files, an empty Emotion folder (unlabelled), a FACS AU coded with
        intensity 0, grey single-channel PNGs (every third subject from the second) and 640x480 frames (every
        third subject from the third). Landmark files hold a neutral 68-point template placed on the rendered face
        (they do not follow the expression).
        """
        if modes:
            raise FerbenchError("CK+ has no modes of variation; leave out --modes")
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator, expression_curve

        out = Path(out)
        anim = FaceAnimator(seed=seed, intensity=intensity)
        rng = np.random.default_rng([seed, 0xC4])
        samples: list[Sample] = []
        for i in range(subjects):
            subject = f"S{5 + 7 * i:03d}"
            ident = anim.identity(i)
            size = (640, 480) if i % 3 == 2 else (640, 490)
            grey = i % 3 == 1
            plan: list[tuple[int | None, dict]] = [(code, CLASS_AUS[name]) for code, name in enumerate(CLASSES) if code > 0]
            plan.append((None, _UNLABELLED_AUS[i % len(_UNLABELLED_AUS)]))
            order = rng.permutation(len(plan))  # sequence numbers must not give the label away
            for k, j in enumerate(order, start=1):
                code, aus = plan[j]
                seq = f"{k:03d}"
                n = ckplus_length(rng)
                rel = Path(subject) / seq
                frames = []
                clip = anim.render_clip(ident, aus, expression_curve(n, 0, n - 1), size, grey=grey)
                (out / IMAGES / rel).mkdir(parents=True, exist_ok=True)
                (out / LANDMARKS / rel).mkdir(parents=True, exist_ok=True)
                points = _landmark_text(ident, size)
                for t, image in enumerate(clip, start=1):
                    frame = out / IMAGES / rel / f"{subject}_{seq}_{t:08d}.png"
                    cv2.imwrite(str(frame), image[..., 0] if grey else image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                    (out / LANDMARKS / rel / f"{frame.stem}_landmarks.txt").write_text(points)
                    frames.append(frame)
                peak = frames[-1].stem
                facs = _facs_codes(aus)
                (out / FACS / rel).mkdir(parents=True, exist_ok=True)
                (out / FACS / rel / f"{peak}_facs.txt").write_text(
                    "".join(f"{au:16.7e}{v:16.7e}\n" for au, v in facs.items())
                )
                if code is not None:
                    (out / EMOTION / rel).mkdir(parents=True, exist_ok=True)
                    (out / EMOTION / rel / f"{peak}_emotion.txt").write_text(f"{code:16.7e}\n")
                elif i == 0:  # an empty Emotion folder (with the .DS_Store macOS leaves there): unlabelled
                    (out / EMOTION / rel).mkdir(parents=True, exist_ok=True)
                    (out / EMOTION / rel / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
                samples.append(
                    Sample(
                        id=f"{subject}_{seq}", dataset=self.name, subject=subject, label=code, frames=frames, fps=FPS,
                        onset=0, apex=n - 1, offset=None, au_intensity=facs,
                        landmarks=[out / LANDMARKS / rel / f"{f.stem}_landmarks.txt" for f in frames],
                    )
                )
            if i == 0:
                (out / IMAGES / subject / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        return samples


def ckplus_length(rng: np.random.Generator) -> int:
    """A replica sequence length drawn like real CK+ (10 to 60 frames, most between 12 and 25, mean about 18),
    capped at 30 so replicas stay quick to prepare."""
    return int(np.clip(round(rng.lognormal(np.log(16.0), 0.3)), 10, 30))


#: AU patterns of CK+'s non-emotion sequences (posed single AUs and combinations): written without a label.
_UNLABELLED_AUS: tuple[dict[int, float], ...] = ({1: 1.0, 2: 1.0}, {4: 0.9, 7: 0.7}, {25: 1.0, 26: 0.7}, {10: 0.8, 17: 0.8})


def _facs_codes(aus: dict) -> dict[int, float]:
    """FACS file content for rendered AU intensities: A-E as 1-5; AU 25 coded without intensity (0) as CK+ often does."""
    from ferbench.synth.faces import au_side

    codes: dict[int, float] = {}
    for key, value in aus.items():
        _, au = au_side(key)  # unilateral "R12" is AU 12 in CK+'s FACS files
        codes[au] = 0.0 if au == 25 else float(min(5, max(1, round(value * 4))))
    return dict(sorted(codes.items()))


# Neutral 68-point template (iBUG order) in face units: x in inter-ocular distances from the eye midpoint,
# y in inter-ocular distances below the eye line (the convention of ferbench.synth.faces).
_JAW = [(0.95 * np.cos(a), 0.05 + 1.5 * np.sin(a)) for a in np.linspace(np.pi, 0, 17)]
_BROWS = [(-0.85 + 0.1625 * k, -0.38 - 0.1 * np.sin(np.pi * k / 4)) for k in range(5)]
_TEMPLATE = np.asarray(
    _JAW
    + _BROWS
    + [(-x, y) for x, y in reversed(_BROWS)]
    + [(0.0, -0.05), (0.0, 0.12), (0.0, 0.28), (0.0, 0.45)]
    + [(-0.2, 0.55), (-0.1, 0.58), (0.0, 0.6), (0.1, 0.58), (0.2, 0.55)]
    + [(-0.72, 0), (-0.58, -0.08), (-0.42, -0.08), (-0.28, 0), (-0.42, 0.08), (-0.58, 0.08)]
    + [(0.28, 0), (0.42, -0.08), (0.58, -0.08), (0.72, 0), (0.58, 0.08), (0.42, 0.08)]
    + [(-0.42, 1.0), (-0.25, 0.92), (-0.1, 0.88), (0, 0.9), (0.1, 0.88), (0.25, 0.92), (0.42, 1.0),
       (0.25, 1.1), (0.1, 1.14), (0, 1.15), (-0.1, 1.14), (-0.25, 1.1)]
    + [(-0.35, 1.0), (-0.1, 0.97), (0, 0.97), (0.1, 0.97), (0.35, 1.0), (0.1, 1.03), (0, 1.03), (-0.1, 1.03)],
    dtype=np.float64,
)


def _landmark_text(ident, size: tuple[int, int]) -> str:
    """A CK+ landmark file for the neutral template placed where FaceAnimator.render puts the face."""
    from ferbench.synth.faces import IOD, PATCH, PATCH_EYES

    x0, y0, side = ident.face_square(size)
    mid_x = (PATCH_EYES[0][0] + PATCH_EYES[1][0]) / 2
    px = mid_x + IOD * _TEMPLATE[:, 0]
    if ident.flip:
        px = PATCH - px
    py = PATCH_EYES[0][1] + IOD * _TEMPLATE[:, 1]
    pts = np.stack([x0 + px * side / PATCH, y0 + py * side / PATCH], axis=1)
    return "".join(f"{x:16.7e}{y:16.7e}\n" for x, y in np.round(pts, 1))
