"""DFEW (Jiang et al., ACM MM 2020; key jiang2020): where its clips and its EmoLabel_DataSplit fold lists are read,
and its replica written.

Native layout, as distributed::

    Clip/clip_224x224/00001/00001_00001.jpg ...     # face crops (224x224) per clip, 5-digit clip ids
    Clip/clip_224x224_16f/00001/1.jpg ... 16.jpg    # the same faces time-interpolated to 16 frames
    Clip/original/00001.mp4                          # the raw film clips
    EmoLabel_DataSplit/train(single-labeled)/set_1.csv ... set_5.csv
    EmoLabel_DataSplit/test(single-labeled)/set_1.csv ... set_5.csv
    Annotation/annotation.xlsx                       # 7-way votes per clip (not needed: single-label protocol)

Each fold file is a comma-separated CSV with a header row naming `video_name` and `label` (further columns are
ignored); `video_name` is the clip number without zero padding (`1` = clip `00001`), `label` is 1-based:
1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear. The 11,697 single-labelled clips are
split into 5 folds; each fold's train list is the other four folds' test lists. A sample's `split` is the fold
whose test list holds it (`set_1` ... `set_5`); nothing is re-drawn.

Variants accepted, because public sources disagree (RESEARCH notes of issue #30):
- `train(single-labeled)` (every loader) or `train(single_labeled)` (the release README's zip name);
- `Clip/clip_224x224/<id>` (zengqunzhao/DFER-CLIP annotation/preprocess_annotation.py) or the nested
  `Clip/clip_224x224/clip_224x224/<id>` (ECNU-Cross-Innovation-Lab/M3DFEL_replicate datasets/dataset_DFEW.py);
- frame names `<id>_<5-digit frame>.jpg` (jiangxingxun/DFEW README.md; a copy of the release README) or
  `1.jpg ... 16.jpg` in `clip_224x224_16f` (JyBmegan/dfew-expression-trajectory-annotation
  app/frame_source.py): frames are listed by natural sort, never plain string order (`10.jpg` after `9.jpg`).
Face crops are read with no detector (`prepare` defaults to `--aligner none` when `clip_224x224` or
`clip_224x224_16f` is there); with only `Clip/original` the videos go through the usual detect/align path.

Checked against: zengqunzhao/DFER-CLIP annotation/preprocess_annotation.py (the EmoLabel_DataSplit/**/*.csv
path, columns video_name/label, label - 1, zfill(5), Clip/clip_224x224/<id>/*.jpg); sunlicai/MAE-DFER
preprocess/dfew.py (the train/test(single-labeled)/set_k.csv paths, columns, f'{v:05d}', label - 1);
ECNU-Cross-Innovation-Lab/M3DFEL_replicate datasets/dataset_DFEW.py (header row, comma, column order);
jiangxingxun/DFEW README.md (class order 1..7, WAR/UAR); per-fold sizes 9356/2341 ... 9361/2336 as in
zengqunzhao/Former-DFER annotation/DFEW_set_{1..5}_{train,test}.txt. Not verified: the exact header line
byte for byte, and `Clip/original/XXXXX.mp4` (one uncited copy of the release README only).
DFEW has no subject ids: each clip is its own group.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_frames, probe_video
from ferbench.datasets._wild import (NO_SUBJECTS, ListRead, ListRow, clips_on_disk, listed_clips, name_some, new_read,
                                     render_clip, unique_ids, write_frames, write_video)
from ferbench.datasets.base import VIDEO_SUFFIXES, DatasetAdapter, Sample, ScanResult, strict_int
from ferbench.errors import DatasetError, FerbenchError

#: Class k is the fold files' label k + 1 (the owners' order).
CLASSES: tuple[str, ...] = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
CANONICAL: dict[str, str] = {
    "Happy": "happiness", "Sad": "sadness", "Neutral": "neutral", "Angry": "anger", "Surprise": "surprise",
    "Disgust": "disgust", "Fear": "fear",
}
SPLIT_DIR = "EmoLabel_DataSplit"
#: (folder as every loader names it, the release README's zip spelling)
LIST_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train(single-labeled)", "train(single_labeled)"),
    "test": ("test(single-labeled)", "test(single_labeled)"),
}
FOLDS: tuple[str, ...] = tuple(f"set_{k}" for k in range(1, 6))
HEADER: tuple[str, str] = ("video_name", "label")
FACE_DIRS: tuple[str, ...] = ("clip_224x224", "clip_224x224_16f")  # in order of preference
VIDEO_DIR = "original"
FPS = 25.0  # nominal: the release states no rate; frames are read in order, never resampled (target_fps None)
CROP = 224


def _find_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (parent / name).is_dir():
            return parent / name
    return None


def face_dir(root: Path) -> Path | None:
    """The face-crop folder holding one folder per clip (nested `clip_224x224/clip_224x224` accepted), or None."""
    for name in FACE_DIRS:
        base = root / "Clip" / name
        if (base / name).is_dir():
            return base / name
        if base.is_dir():
            return base
    return None


def _read_list(path: Path, fold: str, role: str, read: ListRead) -> None:
    """One fold file: header naming video_name and label, then `<clip number>,<1..7>` rows."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(path, "not a UTF-8 text file; expected a CSV with the header video_name,label") from None
    lines = list(csv.reader(io.StringIO(text)))
    head = [c.strip().lower() for c in lines[0]] if lines else []
    if not all(h in head for h in HEADER):
        raise DatasetError(path, f"header {','.join(lines[0]) if lines else '(empty file)'!r}: expected a header row "
                                 "naming the columns video_name and label (e.g. video_name,label)")
    iv, il = head.index("video_name"), head.index("label")
    for n, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        name = cells[iv].strip() if len(cells) > iv else ""
        stem = Path(name).stem if Path(name).suffix.lower() in VIDEO_SUFFIXES else name
        if not stem.isdigit():
            read.unreadable.append(DatasetError(path, f"line {n}: {','.join(cells)!r} names no clip; expected "
                                                      "<clip number>,<label 1-7> (e.g. 1,2)"))
            continue
        clip = f"{int(stem):05d}"
        if len(cells) <= il or not cells[il].strip():
            read.broken.append((clip, DatasetError(path, f"line {n}: clip {clip} has no label; expected a label 1-7")))
            continue
        try:
            label = strict_int(path, f"line {n} label", cells[il], "a label 1-7 (1 Happy ... 7 Fear)")
        except DatasetError as e:
            read.broken.append((clip, e))
            continue
        if not 1 <= label <= len(CLASSES):
            read.broken.append((clip, DatasetError(path, f"line {n}: label {label} of clip {clip} is outside 1-7 "
                                                         "(1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear)")))
            continue
        read.rows.append(ListRow(clip=clip, label=label - 1, fold=fold, role=role, file=path, line=n))


def read_fold_lists(root: Path, problems: list[str]) -> tuple[ListRead, list[str]]:
    """Every row of the ten fold files and the folds whose train list was read. The five test lists are
    required; a missing train list is named (its fold's training clips are then the other folds' test clips)."""
    base = root / SPLIT_DIR
    test_dir = _find_dir(base, LIST_DIRS["test"])
    if test_dir is None:
        raise DatasetError(base / LIST_DIRS["test"][0], "fold lists not found; expected EmoLabel_DataSplit/"
                                                        "test(single-labeled)/set_1.csv ... set_5.csv and "
                                                        "train(single-labeled)/set_1.csv ... under the root")
    train_dir = _find_dir(base, LIST_DIRS["train"])
    read, with_train = new_read(), []
    for fold in FOLDS:
        test = test_dir / f"{fold}.csv"
        if not test.is_file():
            raise DatasetError(test, f"fold list not found; expected the test list of each fold, {FOLDS[0]}.csv ... "
                                     f"{FOLDS[-1]}.csv, in {test_dir.name}")
        _read_list(test, fold, "test", read)
        train = train_dir / f"{fold}.csv" if train_dir else base / LIST_DIRS["train"][0] / f"{fold}.csv"
        if train.is_file():
            _read_list(train, fold, "train", read)
            with_train.append(fold)
        else:
            problems.append(f"{train}: train list not found; {fold} trains on the other folds' test clips "
                            "(what the release's train lists hold)")
    return read, with_train


@register_dataset
class DfewAdapter(DatasetAdapter):
    """DFEW: one sample per single-labelled clip; label and fold from EmoLabel_DataSplit, group = clip id."""

    name = "dfew"
    title = "DFEW (in the wild, 5 folds)"
    obtain = ("the DFEW owners (Jiang et al., Southeast University; https://dfew-dataset.github.io, a signed "
              "licence agreement)")
    root_hint = "the DFEW folder (holding Clip/ and EmoLabel_DataSplit/)"
    classes = CLASSES
    layout = ("Clip/clip_224x224/<5-digit id>/<id>_<frame>.jpg (face crops; or Clip/clip_224x224_16f/<id>/1.jpg..16.jpg, "
              "or Clip/original/<id>.mp4) + EmoLabel_DataSplit/{train,test}(single-labeled)/set_1..5.csv "
              "(header video_name,label; label 1-7 = Happy Sad Neutral Angry Surprise Disgust Fear)")
    fps = FPS
    clip_length = 16  # the field samples 16 frames per clip (zhao2021 8 segments x 2; DFER-CLIP, MAE-DFER 16)
    min_face = 0.04  # film clips: faces can be small (only used on Clip/original)
    phases = "unsegmented"
    emotions = tuple(CANONICAL[c] for c in CLASSES)

    def default_aligner(self, root: Path | None) -> str:
        """`none` where the face crops are there (read as they are), else `mtcnn` on the original clips."""
        return "none" if root is not None and face_dir(root) is not None else "mtcnn"

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        faces, videos = face_dir(root), root / "Clip" / VIDEO_DIR
        if faces is None and not videos.is_dir():
            raise DatasetError(root / "Clip" / FACE_DIRS[0], "no clips found; expected Clip/clip_224x224/<id>/*.jpg "
                                                             "(or clip_224x224_16f/, or Clip/original/<id>.mp4) under the root")
        read, with_train = read_fold_lists(root, result.problems)
        listed = listed_clips(read, result, with_train)
        on_disk = clips_on_disk(faces, videos, result.skipped)
        missing, empty = [], []
        for clip, row in listed.items():
            media = on_disk.get(clip)
            sample = None if media is None else self._sample(clip, row, media, faces is not None, result.skipped)
            if sample is None:
                (missing if media is None else empty).append(clip)
            else:
                result.samples.append(sample)
        where = faces if faces is not None else videos
        if missing:
            result.problems.append(f"{len(missing)} listed clip(s) have no {'folder' if faces else 'video'} in {where}; "
                                   f"not scanned: {name_some(missing)}")
        if empty:
            result.problems.append(f"{len(empty)} clip(s) in {where} hold no readable frames; not scanned: {name_some(empty)}")
        unlisted = sorted(set(on_disk) - {r.clip for r in read.rows} - {c for c, _ in read.broken})
        if unlisted:
            result.notes.append(f"{len(unlisted)} clip(s) in {where} are in no fold list (the release's clips that are "
                                f"not single-labelled); not scanned: {name_some(unlisted)}")
        result.notes.append(NO_SUBJECTS.format(title="DFEW"))
        result.notes.append(f"folds from {SPLIT_DIR} (Sample.split = the set_k whose test list holds the clip); "
                            f"frames from {where.relative_to(root)}"
                            + (" (face crops: `prepare` reads them with no detector)" if faces else ""))
        return result

    def _sample(self, clip: str, row: ListRow, media: Path, crops: bool, skipped: list[Path]) -> Sample | None:
        meta: dict[str, Any] = {"clip": clip, "subject_source": "clip"}
        if crops:
            frames = list_frames(media, skipped)
            if not frames:
                return None
            return Sample(id=clip, dataset=self.name, subject=clip, label=row.label, frames=frames, fps=FPS,
                          split=row.fold, meta=meta)
        info = probe_video(media)
        if info is None:
            return None
        meta["n_frames"] = info[0]
        return Sample(id=clip, dataset=self.name, subject=clip, label=row.label, video=media, fps=info[1] or FPS,
                      split=row.fold, meta=meta)

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """The ten fold lists and the clips of `subjects` clips per class per fold (8-14 frames each).

        Modes: `faces` (default: Clip/clip_224x224/<id>/<id>_<frame>.jpg, 224x224 crops) and/or `original`
        (Clip/original/<id>.mp4 film frames, 320x240, where a detector must find the face). Written as the
        release has it: unpadded clip numbers and 1-based labels under a video_name,label header, rows in
        clip order, train lists = the other folds' test clips, and two clips on disk that no list names
        (DFEW's non-single-labelled clips)."""
        from ferbench.synth.faces import FaceAnimator

        kinds = modes or ["faces"]
        unknown = [m for m in kinds if m not in ("faces", "original")]
        if unknown:
            raise FerbenchError(f"DFEW replica modes are 'faces' and 'original', not {', '.join(unknown)}")
        out = Path(out)
        rng = np.random.default_rng([seed, 20])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        plan = [(fold, c) for fold in FOLDS for c in range(len(CLASSES)) for _ in range(subjects)]
        ids = unique_ids(rng, len(plan) + 2, 1, 16372)
        n_ids = max(6, 2 * subjects * len(CLASSES))  # a pool of actors, each in several clips
        samples: list[Sample] = []
        for number, item in zip(ids, plan + [None, None]):
            clip = f"{number:05d}"
            cls = item[1] if item else int(rng.integers(len(CLASSES)))
            ident = anim.identity(int(rng.integers(n_ids)))
            n = int(rng.integers(8, 15))
            sample = self._write_clip(out, clip, item, cls, ident, n, kinds, anim, rng)
            if sample is not None:
                samples.append(sample)
        for fold in FOLDS:
            test = sorted((int(s.id), s.label) for s in samples if s.split == fold)
            train = sorted((int(s.id), s.label) for s in samples if s.split != fold)
            for role, rows in (("test", test), ("train", train)):
                path = out / SPLIT_DIR / LIST_DIRS[role][0] / f"{fold}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("video_name,label\n" + "".join(f"{v},{label + 1}\n" for v, label in rows))
        return sorted(samples, key=lambda s: s.id)

    def _write_clip(self, out: Path, clip: str, item: tuple[str, int] | None, cls: int, ident, n: int,
                    kinds: list[str], anim, rng: np.random.Generator) -> Sample | None:
        """Write one clip in every requested form; the sample as a scan reads it back (None: listed nowhere)."""
        from ferbench.synth.faces import CLASS_AUS

        aus = CLASS_AUS[CANONICAL[CLASSES[cls]]]
        sample = None
        meta: dict[str, Any] = {"clip": clip, "subject_source": "clip"}
        if "original" in kinds:
            video = write_video(out / "Clip" / VIDEO_DIR / f"{clip}.mp4",
                                render_clip(anim, ident, aus, n, (320, 240), rng, 0.62), FPS)
            if item:
                sample = Sample(id=clip, dataset=self.name, subject=clip, label=cls, video=video, fps=FPS,
                                split=item[0], meta={**meta, "n_frames": n})
        if "faces" in kinds:
            frames = render_clip(anim, ident, aus, n, (CROP, CROP), rng, 1.0)
            paths = write_frames(out / "Clip" / FACE_DIRS[0] / clip, frames, [f"{clip}_{t + 1:05d}.jpg" for t in range(n)])
            if item:  # crops win over the videos, as in a scan
                sample = Sample(id=clip, dataset=self.name, subject=clip, label=cls, frames=paths, fps=FPS,
                                split=item[0], meta=meta)
        return sample
