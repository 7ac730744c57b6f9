"""FERV39k (Wang et al., CVPR 2022; key wang2022): where its clips and its official train/test lists are read,
and its replica written.

Native layout, as distributed::

    2_ClipsforFaceCrop/Action/Happy/0267/*.jpg      # face crops per clip: <Scene>/<Emotion>/<4-digit id>/
    0_7_LabelClips/Interview/Happy/0227.mp4         # the original clips
    4_setups/All_scenes/train_All.csv               # the benchmark split: 31,088 train clips
    4_setups/All_scenes/test_All.csv                #                     7,847 test clips

Each list row is `<Scene>/<Emotion>/<NNNN> <Emotion>`: space-delimited, no header, the label a word (Happy, Sad,
Neutral, Angry, Surprise, Disgust, Fear). The clip id is the relative path (a 4-digit number is unique only
within its Scene/Emotion folder). There are 22 scene folders (Action, Argue, ... War); the scene is the
sample's mode (`mode.scene`); the 4 scenarios above them are encoded nowhere in the release, so not read.
The owners' files number no class; ferbench orders the classes as the field's loaders do (Happy 0 ... Fear 6,
zengqunzhao/Former-DFER and sunlicai/MAE-DFER), which changes no WAR or UAR.

Variants accepted, because public sources disagree: a first line that is not a clip row (a header, which
ECNU-Cross-Innovation-Lab/M3DFEL_replicate assumes and sunlicai/MAE-DFER's header-less read and exact counts
rule out) is skipped and named; frames are listed by natural sort (their names are not documented).
Face crops are read with no detector (`prepare` defaults to `--aligner none` where 2_ClipsforFaceCrop is
there); with only 0_7_LabelClips the videos go through the usual detect/align path.

Checked against: sunlicai/MAE-DFER preprocess/ferv39k.py (2_ClipsforFaceCrop, 4_setups/All_scenes/
{train,test}_All.csv, header=None, delimiter ' ', word labels) and saved/data/ferv39k/all_scenes/*.csv (31,088 /
7,847 rows); zengqunzhao/Former-DFER annotation/FERV39K_{train,test}.txt and dataloader/dataset_FERV39K.py
(paths, *.jpg frames); ECNU-Cross-Innovation-Lab/M3DFEL_replicate options.py and datasets/dataset_FERV39K.py.
Not verified: 0_7_LabelClips (uncited users' notes only) and the frame file names. No subject ids: each clip is
its own group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_frames, probe_video
from ferbench.datasets._wild import (NO_SUBJECTS, ListRead, ListRow, listed_clips, name_some, new_read, render_clip,
                                     write_frames, write_video)
from ferbench.datasets.base import VIDEO_SUFFIXES, DatasetAdapter, Sample, ScanResult
from ferbench.errors import DatasetError, FerbenchError

CLASSES: tuple[str, ...] = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
CANONICAL: dict[str, str] = {
    "Happy": "happiness", "Sad": "sadness", "Neutral": "neutral", "Angry": "anger", "Surprise": "surprise",
    "Disgust": "disgust", "Fear": "fear",
}
SCENES: tuple[str, ...] = (
    "Action", "Argue", "Business", "Conflict", "Contest", "Crime", "Crisis", "DailyLife", "ElegantArt", "Experiment",
    "History", "Interview", "Liveshow", "Medicine", "OfficialEvent", "ScholarReport", "School", "Social", "Speech",
    "Talkshow", "Terror", "War",
)
FACE_DIR = "2_ClipsforFaceCrop"
VIDEO_DIR = "0_7_LabelClips"
LIST_DIR = "4_setups/All_scenes"
LISTS: dict[str, str] = {"train": "train_All.csv", "test": "test_All.csv"}
FPS = 25.0  # nominal: the release states no rate; frames are read in order, never resampled
CROP = 112  # replica crop side (the release's crops vary in size)


def _read_list(path: Path, split: str, read: ListRead, notes: list[str]) -> None:
    """`<Scene>/<Emotion>/<NNNN> <Emotion>` rows; the folder's emotion must agree with the label."""
    if not path.is_file():
        raise DatasetError(path, f"split list not found; expected {LIST_DIR}/{LISTS['train']} and {LISTS['test']} "
                                 "under the root (rows `<Scene>/<Emotion>/<NNNN> <Emotion>`)")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(path, "not a UTF-8 text file; expected rows `<Scene>/<Emotion>/<NNNN> <Emotion>`") from None
    by_name = {c.lower(): c for c in CLASSES}
    for n, line in enumerate(lines, start=1):
        cells = line.split()
        if not cells:
            continue
        parts = cells[0].strip("/").split("/")
        if len(parts) != 3:
            if n == 1 and (len(cells) < 2 or cells[1].lower() not in by_name):
                notes.append(f"{path} line 1 {line.strip()!r} is not a clip row; read as a header and skipped")
                continue
            read.unreadable.append(DatasetError(path, f"line {n}: {line.strip()!r} names no clip; expected "
                                                      "`<Scene>/<Emotion>/<NNNN> <Emotion>` (e.g. Action/Happy/0267 Happy)"))
            continue
        clip = "/".join(parts)
        if len(cells) != 2:
            read.broken.append((clip, DatasetError(path, f"line {n}: {line.strip()!r} has {len(cells)} fields; expected "
                                                         "two separated by a space: `<Scene>/<Emotion>/<NNNN> <Emotion>`")))
            continue
        label = by_name.get(cells[1].lower())
        if label is None:
            read.broken.append((clip, DatasetError(path, f"line {n}: label {cells[1]!r} of clip {clip} is not one of "
                                                         f"the 7 classes ({', '.join(CLASSES)})")))
            continue
        if parts[1].lower() != label.lower():
            read.broken.append((clip, DatasetError(path, f"line {n}: clip {clip} lies in the {parts[1]} folder but "
                                                         f"is labelled {cells[1]}; expected the two to agree")))
            continue
        read.rows.append(ListRow(clip=clip, label=CLASSES.index(label), fold=split, role="test", file=path, line=n))


@register_dataset
class Ferv39kAdapter(DatasetAdapter):
    """FERV39k: one sample per listed clip; label and split (train/test) from 4_setups/All_scenes, scene = mode."""

    name = "ferv39k"
    title = "FERV39k (in the wild, 22 scenes, train/test)"
    obtain = ("the FERV39k owners (Wang et al., Fudan University; https://wangyanckxx.github.io/"
              "Proj_CVPR2022_FERV39k.html, a licence agreement)")
    root_hint = f"the FERV39k folder (holding {FACE_DIR}/ and 4_setups/)"
    classes = CLASSES
    layout = (f"{FACE_DIR}/<Scene>/<Emotion>/<NNNN>/*.jpg (face crops; or {VIDEO_DIR}/<Scene>/<Emotion>/<NNNN>.mp4) "
              f"+ {LIST_DIR}/{{train,test}}_All.csv (rows `<Scene>/<Emotion>/<NNNN> <Emotion>`, space, no header)")
    fps = FPS
    clip_length = 16  # the field samples 16 frames per clip (zhao2021, DFER-CLIP, MAE-DFER)
    min_face = 0.04
    phases = "unsegmented"
    emotions = tuple(CANONICAL[c] for c in CLASSES)

    def default_aligner(self, root: Path | None) -> str:
        """`none` where the face crops are there (read as they are), else `mtcnn` on the original clips."""
        return "none" if root is not None and (root / FACE_DIR).is_dir() else "mtcnn"

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        faces, videos = root / FACE_DIR, root / VIDEO_DIR
        crops = faces.is_dir()
        if not crops and not videos.is_dir():
            raise DatasetError(faces, f"no clips found; expected {FACE_DIR}/<Scene>/<Emotion>/<NNNN>/*.jpg "
                                      f"(or {VIDEO_DIR}/<Scene>/<Emotion>/<NNNN>.mp4) under the root")
        read = new_read()
        for split, name in LISTS.items():
            _read_list(root / LIST_DIR / name, split, read, result.notes)
        listed = listed_clips(read, result, unit="split")
        missing: list[str] = []
        for clip, row in listed.items():
            sample = self._sample(root, clip, row, crops, result.skipped)
            if sample is None:
                missing.append(clip)
            else:
                result.samples.append(sample)
        where = faces if crops else videos
        if missing:
            result.problems.append(f"{len(missing)} listed clip(s) have no readable {'frame folder' if crops else 'video'} "
                                   f"under {where}; not scanned: {name_some(missing)}")
        unknown = sorted({s.mode["scene"] for s in result.samples} - set(SCENES))
        if unknown:
            result.notes.append(f"scene folder(s) outside the release's 22: {', '.join(unknown)} (kept as mode.scene)")
        result.notes.append(NO_SUBJECTS.format(title="FERV39k"))
        result.notes.append(f"split from {LIST_DIR} (Sample.split = train or test; no validation set: carve one "
                            f"from train); scene folder = mode.scene; frames from {where.name}"
                            + (" (face crops: `prepare` reads them with no detector)" if crops else ""))
        return result

    def _sample(self, root: Path, clip: str, row: ListRow, crops: bool, skipped: list[Path]) -> Sample | None:
        scene = clip.split("/")[0]
        meta: dict[str, Any] = {"clip": clip, "subject_source": "clip"}
        common = dict(id=clip, dataset=self.name, subject=clip, label=row.label, split=row.fold, mode={"scene": scene})
        if crops:
            folder = root / FACE_DIR / clip
            frames = list_frames(folder, skipped) if folder.is_dir() else []
            return Sample(**common, frames=frames, fps=FPS, meta=meta) if frames else None
        videos = [root / VIDEO_DIR / f"{clip}{ext}" for ext in VIDEO_SUFFIXES]
        video = next((v for v in videos if v.is_file()), None)
        info = probe_video(video) if video else None
        if info is None:
            return None
        return Sample(**common, video=video, fps=info[1] or FPS, meta={**meta, "n_frames": info[0]})

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """The two lists and the clips: per class 3 x `subjects` train and `subjects` test clips (8-14 frames),
        spread over the scenes. Modes: `faces` (default: 2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/NN.jpg,
        112x112 crops) and/or `original` (0_7_LabelClips/<Scene>/<Emotion>/<NNNN>.mp4, 320x240 film frames).
        Rows as the release writes them: space-delimited, no header, word labels, in no sorted order."""
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator

        kinds = modes or ["faces"]
        unknown = [m for m in kinds if m not in ("faces", "original")]
        if unknown:
            raise FerbenchError(f"FERV39k replica modes are 'faces' and 'original', not {', '.join(unknown)}")
        out = Path(out)
        rng = np.random.default_rng([seed, 39])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        n_ids = max(6, 2 * subjects * len(CLASSES))
        numbers: dict[tuple[str, str], int] = {}
        rows: dict[str, list[str]] = {"train": [], "test": []}
        samples: list[Sample] = []
        plan = [(split, c) for c in CLASSES for split, k in (("train", 3 * subjects), ("test", subjects)) for _ in range(k)]
        for i, (split, cls) in enumerate(plan):
            scene = SCENES[int(rng.integers(len(SCENES)))]
            numbers[(scene, cls)] = numbers.get((scene, cls), int(rng.integers(1, 200))) + int(rng.integers(1, 9))
            clip = f"{scene}/{cls}/{numbers[(scene, cls)]:04d}"
            ident, n = anim.identity(int(rng.integers(n_ids))), int(rng.integers(8, 15))
            aus = CLASS_AUS[CANONICAL[cls]]
            common = dict(id=clip, dataset=self.name, subject=clip, label=CLASSES.index(cls), split=split,
                          mode={"scene": scene}, fps=FPS)
            sample = None
            if "original" in kinds:
                video = write_video(out / VIDEO_DIR / f"{clip}.mp4", render_clip(anim, ident, aus, n, (320, 240), rng, 0.62), FPS)
                sample = Sample(**common, video=video, meta={"clip": clip, "subject_source": "clip", "n_frames": n})
            if "faces" in kinds:
                frames = render_clip(anim, ident, aus, n, (CROP, CROP), rng, 1.0)
                paths = write_frames(out / FACE_DIR / clip, frames, [f"{t + 1:02d}.jpg" for t in range(n)])
                sample = Sample(**common, frames=paths, meta={"clip": clip, "subject_source": "clip"})
            rows[split].append(f"{clip} {cls}")
            samples.append(sample)
        for split, name in LISTS.items():
            order = rng.permutation(len(rows[split]))
            path = out / LIST_DIR / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(rows[split][i] + "\n" for i in order))
        return sorted(samples, key=lambda s: s.id)
