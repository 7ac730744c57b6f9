"""AFEW (Acted Facial Expressions in the Wild, EmotiW): where its split/class folders are read and its replica written.

Native layout::

    Train_AFEW/Angry/000046280.avi                       # 720x576 movie clips with audio, class = folder
    Val_AFEW/Happy/001234560.avi
    Test_AFEW/002345670.avi                              # test labels are not public: no class folders
    Train_AFEW/AlignedFaces_LBPTOP_Points/Faces/000046280/    # optional organiser-aligned faces per clip
    Val_AFEW/AlignedFaces_LBPTOP_Points_Val/Faces/...

The split is fixed (train/val/test). Clips are cut from movies: several faces, head pose, frames without a
face. AFEW has no subject ids, so the clip id is the group (see the scan notes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_frames, natural_key, probe_video, write_avi, write_image
from ferbench.datasets.base import VIDEO_SUFFIXES, DatasetAdapter, Sample, ScanResult, is_junk
from ferbench.errors import DatasetError

CLASSES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
#: AFEW class -> the face animator's canonical expression.
CANONICAL: dict[str, str] = {
    "Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
    "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise",
}
SPLIT_DIRS: dict[str, str] = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}
ALIGNED_PREFIX = "AlignedFaces_LBPTOP_Points"
FPS = 25.0
FRAME_SIZE = (720, 576)


def _aligned_faces(folders: list[Path]) -> dict[str, Path]:
    """{clip id: aligned-face folder} from `AlignedFaces_LBPTOP_Points*/Faces/<clipid>/` trees (first wins)."""
    found: dict[str, Path] = {}
    for top in folders:
        faces = top / "Faces" if (top / "Faces").is_dir() else top
        for clip in sorted(faces.iterdir()):
            if clip.is_dir() and clip.name not in found:
                found[clip.name] = clip
    return found


@register_dataset
class AfewAdapter(DatasetAdapter):
    """AFEW: one sample per clip; label = class folder, split = Train/Val/Test folder, group = clip id."""

    name = "afew"
    title = "AFEW (EmotiW, in the wild)"
    obtain = "the EmotiW challenge organisers (Abhinav Dhall et al.; a licence agreement from the organisers)"
    root_hint = "the AFEW folder"
    classes = CLASSES
    layout = ("Train_AFEW/<Class>/<clipid>.avi, Val_AFEW/<Class>/..., Test_AFEW/<clipid>.avi (unlabelled); "
              "optional AlignedFaces_LBPTOP_Points*/Faces/<clipid>/")
    fps = FPS
    clip_length = 22  # 22 samples span a 1-5 s clip at about 5-10 fps
    min_face = 0.04  # cut from films: faces can be small
    phases = "unsegmented"
    emotions = tuple(CANONICAL[c] for c in CLASSES)

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
        splits = {split: by_lower[d.lower()] for split, d in SPLIT_DIRS.items() if d.lower() in by_lower}
        if not splits:
            raise DatasetError(root / SPLIT_DIRS["train"], "no AFEW split folder; expected Train_AFEW/<Class>/<clipid>.avi, "
                                                           "Val_AFEW/<Class>/... and/or Test_AFEW/ under the root")
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        result.skipped.extend(p for p in root.iterdir() if is_junk(p))
        root_aligned = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(ALIGNED_PREFIX))
        class_of = {c.lower(): c for c in CLASSES}
        seen: set[str] = set()
        unreadable: list[str] = []
        n_aligned = 0
        for split, split_dir in splits.items():
            entries = sorted(split_dir.iterdir(), key=natural_key)
            aligned = _aligned_faces([p for p in entries if p.is_dir() and p.name.startswith(ALIGNED_PREFIX)] + root_aligned)
            clips: list[tuple[str | None, Path]] = []
            for entry in entries:
                if is_junk(entry):
                    result.skipped.append(entry)
                elif entry.is_dir() and entry.name.startswith(ALIGNED_PREFIX):
                    continue
                elif entry.is_dir() and entry.name.lower() in class_of:
                    for clip in sorted(entry.iterdir(), key=natural_key):
                        if is_junk(clip):
                            result.skipped.append(clip)
                        elif clip.is_file() and clip.suffix.lower() in VIDEO_SUFFIXES:
                            clips.append((class_of[entry.name.lower()], clip))
                        else:
                            result.problems.append(f"{clip}: not a video clip (expected <clipid>.avi); ignored")
                elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
                    clips.append((None, entry))
                    if split != "test":
                        result.problems.append(f"{entry}: clip outside a class folder in {split_dir.name}; kept unlabelled")
                else:
                    result.problems.append(f"{entry}: not a class folder ({', '.join(CLASSES)}) or clip; ignored")
            for cls, clip in clips:
                info = probe_video(clip)
                if info is None:
                    unreadable.append(str(clip))
                    continue
                n_frames, fps = info
                clip_id = clip.stem
                sid = clip_id if clip_id not in seen else f"{split}/{clip_id}"
                if sid != clip_id:
                    result.problems.append(f"{clip}: clip id {clip_id} appears twice; this one is named {sid}")
                seen.add(sid)
                meta: dict[str, Any] = {"clip": clip_id, "n_frames": n_frames, "class_folder": cls}
                if clip_id in aligned:
                    meta["aligned_faces"] = str(aligned[clip_id])
                    n_aligned += 1
                result.samples.append(Sample(
                    id=sid, dataset=self.name, subject=clip_id, label=CLASSES.index(cls) if cls else None,
                    video=clip, fps=fps or self.fps, split=split, meta=meta,
                ))
        if unreadable:
            result.problems.append(f"{len(unreadable)} clip(s) cannot be opened (zero-byte or corrupt video) and were "
                                   f"not scanned: " + ", ".join(unreadable[:10]))
        result.notes.append("AFEW has no subject ids: each clip is its own group (subject = clip id). Clips are cut "
                            "from movies and one actor can appear in several clips, so use the fixed Train/Val split "
                            "(Sample.split) rather than subject-grouped folds")
        n_test = sum(s.split == "test" and s.label is None for s in result.samples)
        if n_test:
            result.notes.append(f"{n_test} test clip(s) are unlabelled (EmotiW test labels are not public)")
        result.notes.append(f"organiser-aligned faces found for {n_aligned} clip(s) (Sample.meta['aligned_faces']); "
                            "audio tracks are ignored")
        return result

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Train/Val class folders and an unlabelled Test folder of MJPG .avi clips (720x576, 25 fps, 1-2 s).

        In-the-wild quirks written on purpose: head yaw per clip, two people side by side in some clips, a few
        face-less frames (scene cuts) in some clips, one clip with no face at all, aligned faces for a few clips,
        a Thumbs.db. `subjects` scales the clips per class (train: max(1, subjects - 1), val: max(1, subjects // 2)).
        """
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator, expression_curve

        out = Path(out)
        rng = np.random.default_rng([seed, 6])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        n_ids = max(4, 2 * subjects)
        used_ids: set[str] = set()
        plan: list[tuple[str, str | None, int]] = []  # (split, class or None for test, k-th clip of that class)
        for split, per_class in (("train", max(1, subjects - 1)), ("val", max(1, subjects // 2))):
            plan += [(split, c, k) for c in CLASSES for k in range(per_class)]
        plan += [("test", None, k) for k in range(2)]
        samples: list[Sample] = []
        for i, (split, cls, k) in enumerate(plan):
            while True:
                clip_id = f"{int(rng.integers(1, 10**8)):09d}"
                if clip_id not in used_ids:
                    used_ids.add(clip_id)
                    break
            expr = CANONICAL[cls] if cls else CANONICAL[CLASSES[int(rng.integers(len(CLASSES)))]]
            n = int(rng.integers(25, 39)) if i % 5 else int(rng.integers(39, 51))  # 1-2 s, mostly short
            onset = int(rng.integers(0, n // 4))
            apex = int(rng.integers(n // 2, 3 * n // 4))
            offset = None if rng.random() < 0.5 else int(rng.integers(apex + 1, n))
            levels = np.round(expression_curve(n, onset, apex, offset) * 6) / 6  # 7 levels: each rendered once
            ident = anim.identity(int(rng.integers(n_ids)))
            other = anim.identity(int(rng.integers(n_ids, 2 * n_ids)))
            yaw = float(rng.uniform(-30, 30))
            two_faces = i % 4 == 1
            no_face = split == "train" and cls == "Neutral" and k == 0  # a clip where no face is ever visible
            cut = 0 if no_face else (int(rng.integers(2, 5)) if i % 3 == 0 else 0)  # face-less frames after a cut
            cache: dict[float, np.ndarray] = {}

            def frame_at(t: int) -> np.ndarray:
                if no_face or t < cut:
                    if -1.0 not in cache:
                        cache[-1.0] = anim.render_no_face(FRAME_SIZE, seed=seed * 1000 + i)
                    return cache[-1.0]
                level = float(levels[t])
                if level not in cache:
                    aus = {au: v * level for au, v in CLASS_AUS[expr].items()}
                    if two_faces:  # the labelled person on the left, someone neutral on the right
                        half = (FRAME_SIZE[0] // 2, FRAME_SIZE[1])
                        cache[level] = np.hstack([anim.render(ident, aus, half, yaw=yaw),
                                                  anim.render(other, {}, half, yaw=-yaw / 2)])
                    else:
                        cache[level] = anim.render(ident, aus, FRAME_SIZE, yaw=yaw)
                return cache[level]

            split_dir = out / SPLIT_DIRS[split]
            video = (split_dir / cls / f"{clip_id}.avi") if cls else (split_dir / f"{clip_id}.avi")
            write_avi(video, (frame_at(t) for t in range(n)), FPS)
            meta: dict[str, Any] = {"clip": clip_id, "n_frames": n, "class_folder": cls}
            if split != "test" and k == 0 and cls in ("Happy", "Sad", "Surprise") and not no_face:
                aligned_top = split_dir / (ALIGNED_PREFIX if split == "train" else f"{ALIGNED_PREFIX}_Val")
                folder = aligned_top / "Faces" / clip_id
                for t in range(cut, n, 2):
                    aus = {au: v * float(levels[t]) for au, v in CLASS_AUS[expr].items()}
                    write_image(folder / f"{t + 1:03d}.png", anim.render(ident, aus, (128, 128), face_height=1.0))
                meta["aligned_faces"] = str(folder)
            samples.append(Sample(
                id=clip_id, dataset=self.name, subject=clip_id, label=CLASSES.index(cls) if cls else None,
                video=video, fps=FPS, split=split, meta=meta,
            ))
        (out / SPLIT_DIRS["train"] / CLASSES[0] / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
        order = {s: i for i, s in enumerate(SPLIT_DIRS)}
        samples.sort(key=lambda s: (order[s.split or "test"], s.meta["class_folder"] or "", natural_key(s.id)))
        return samples


def aligned_face_frames(sample: Sample) -> list[Path]:
    """The organiser-aligned face images of a clip, naturally sorted (empty when the clip has none)."""
    folder = sample.meta.get("aligned_faces")
    return list_frames(Path(folder)) if folder else []
