"""MAFW (Liu et al., ACM MM 2022; key liu2022): where its clips and its single-label 5-fold lists are read, and
its replica written.

Native layout, as distributed::

    data/clips/00025.mp4                             # 10,045 clips, 5-digit ids (not contiguous: up to 20098)
    data/frames/00025/...                            # the owners' frames of each clip
    Labels/...                                       # annotation, descriptive text, multi/single sets (not needed)
    Train & Test Set/single/no_caption/set_1/train.txt, test.txt ... set_5/   # the 11-class single-label folds
    Train & Test Set/compound/...                    # the 43-class compound protocol (not read)

Each list row is `<id>.mp4 <class>`: space-delimited, no header, a lower-case class word, the last line often
without a newline. The 9,172 single-labelled clips are split into 5 folds; each fold's train list is the other
folds' test lists. A sample's `split` is the fold whose test list holds it (`set_1` ... `set_5`); nothing is
re-drawn. Classes in the owners' order (the paper's Table 3): anger, disgust, fear, happiness, neutral,
sadness, surprise, contempt, anxiety, helplessness, disappointment (DFER-CLIP numbers them happiness-first;
no WAR or UAR depends on it).

Variants accepted, because public sources disagree: the list folder `Train & Test Set` (sunlicai/HiCMAE
preprocess/mafw_av.py) or a renamed `split` (sunlicai/MAE-DFER preprocess/mafw.py); frames in `data/frames`
(the owners, MAE-DFER, HiCMAE) or face crops in `data/faces` (zengqunzhao/DFER-CLIP's lists; not part of the
owners' preview, so probably made by its users). Whether `data/frames` holds full frames or aligned faces is
not documented: ferbench detects and aligns them (pass `--aligner none` if your copy holds crops); `data/faces`
alone is read with no detector, and `data/clips` alone through the usual detect/align path. Frame names are
not documented: frames are listed by natural sort.

Checked against: the owners' MAFW-database/MAFW README.md and its content preview images (clips, frames,
Train & Test Set/{single,compound}) and academics/MAFW_final.pdf (9,172 single-labelled clips, Table 3 class
counts, section 5.1 5-fold protocol and UAR/WAR); sunlicai/HiCMAE preprocess/mafw_av.py (`Train & Test Set/
single/no_caption/set_k/{train,test}.txt`, header=None, delimiter ' ', `00025.mp4 anger`); sunlicai/MAE-DFER
preprocess/mafw.py and saved/data/mafw/single/split0{1..5} (fold sizes 7333/1839 ... 7341/1831).
MAFW has no subject ids: each clip is its own group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_frames, probe_video
from ferbench.datasets._wild import (NO_SUBJECTS, ListRead, ListRow, clips_on_disk, listed_clips, name_some, new_read,
                                     render_clip, unique_ids, write_frames, write_video)
from ferbench.datasets.base import DatasetAdapter, Sample, ScanResult
from ferbench.errors import DatasetError, FerbenchError

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
                            "anxiety", "helplessness", "disappointment")
LIST_TOPS: tuple[str, ...] = ("Train & Test Set", "split")
SINGLE = "single/no_caption"
FOLDS: tuple[str, ...] = tuple(f"set_{k}" for k in range(1, 6))
FRAME_DIRS: tuple[str, ...] = ("data/frames", "data/faces")  # owners' frames first; user-made crops second
VIDEO_DIR = "data/clips"
FPS = 25.0  # nominal: the release states no rate; frames are read in order, never resampled
FRAME_SIZE = (160, 120)  # replica frames (the release's size is not documented)
#: Replica apex action units of MAFW's classes outside `synth.faces.CLASS_AUS`: distinct FACS-style
#: combinations (anxiety: brows raised and drawn together, lids tight, lips stretched and pressed;
#: helplessness: inner brows up, corners down, jaw dropped; disappointment: corners down, chin raised, lips pressed).
EXTRA_AUS: dict[str, dict[int | str, float]] = {
    "anxiety": {1: 0.6, 4: 0.8, 7: 0.6, 20: 0.6, 24: 0.5},
    "helplessness": {1: 1.0, 15: 0.6, 26: 0.6},
    "disappointment": {15: 0.8, 17: 1.0, 24: 0.8},
}


def list_dir(root: Path) -> Path | None:
    """`<top>/single/no_caption` (top: `Train & Test Set`, or a renamed `split`), or None."""
    for top in LIST_TOPS:
        if (root / top / SINGLE).is_dir():
            return root / top / SINGLE
    return None


def frame_dir(root: Path) -> Path | None:
    return next((root / d for d in FRAME_DIRS if (root / d).is_dir()), None)


def _read_list(path: Path, fold: str, role: str, read: ListRead) -> None:
    """`<id>.mp4 <class>` rows (any number of spaces; a missing final newline is fine)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(path, "not a UTF-8 text file; expected rows `<id>.mp4 <class>`") from None
    for n, line in enumerate(lines, start=1):
        cells = line.split()
        if not cells:
            continue
        stem = Path(cells[0]).stem
        if not stem.isdigit():
            read.unreadable.append(DatasetError(path, f"line {n}: {line.strip()!r} names no clip; expected "
                                                      "`<id>.mp4 <class>` (e.g. 00025.mp4 anger)"))
            continue
        if len(cells) != 2:
            read.broken.append((stem, DatasetError(path, f"line {n}: {line.strip()!r} has {len(cells)} fields; "
                                                         "expected two separated by a space: `<id>.mp4 <class>`")))
            continue
        word = cells[1].lower()
        if word not in CLASSES:
            read.broken.append((stem, DatasetError(path, f"line {n}: label {cells[1]!r} of clip {stem} is not one "
                                                         f"of the 11 classes ({', '.join(CLASSES)})")))
            continue
        read.rows.append(ListRow(clip=stem, label=CLASSES.index(word), fold=fold, role=role, file=path, line=n))


@register_dataset
class MafwAdapter(DatasetAdapter):
    """MAFW: one sample per single-labelled clip; label and fold from the single/no_caption lists, group = clip."""

    name = "mafw"
    title = "MAFW (in the wild, 11 classes, 5 folds)"
    obtain = ("the MAFW owners (Liu et al.; https://mafw-database.github.io/MAFW, a signed licence agreement "
              "for academic use)")
    root_hint = "the MAFW folder (holding data/ and Train & Test Set/)"
    classes = CLASSES
    layout = ("data/frames/<5-digit id>/<frames> (or data/faces/<id>/, or data/clips/<id>.mp4) + "
              "Train & Test Set/single/no_caption/set_1..5/{train,test}.txt (rows `<id>.mp4 <class>`, "
              "space, no header, lower-case class)")
    fps = FPS
    clip_length = 16  # the field samples 16 frames per clip (MAE-DFER, DFER-CLIP)
    min_face = 0.04
    phases = "unsegmented"
    emotions = CLASSES

    def default_aligner(self, root: Path | None) -> str:
        """`none` only where user-made face crops (data/faces) are all there is; the owners' frames and clips
        are detected and aligned (whether data/frames holds crops is not documented)."""
        found = None if root is None else frame_dir(root)
        return "none" if found is not None and found.name == "faces" else "mtcnn"

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        frames_at, videos = frame_dir(root), root / VIDEO_DIR
        if frames_at is None and not videos.is_dir():
            raise DatasetError(root / FRAME_DIRS[0], "no clips found; expected data/frames/<id>/ (or data/faces/<id>/, "
                                                     "or data/clips/<id>.mp4) under the root")
        lists = list_dir(root)
        if lists is None:
            raise DatasetError(root / LIST_TOPS[0] / SINGLE, "fold lists not found; expected Train & Test Set/single/"
                                                             "no_caption/set_1/train.txt, test.txt ... set_5/ under the root")
        read, with_train = new_read(), []
        for fold in FOLDS:
            test, train = lists / fold / "test.txt", lists / fold / "train.txt"
            if not test.is_file():
                raise DatasetError(test, f"fold list not found; expected {fold}/test.txt (and train.txt) for each "
                                         f"fold {FOLDS[0]} ... {FOLDS[-1]} in {lists}")
            _read_list(test, fold, "test", read)
            if train.is_file():
                _read_list(train, fold, "train", read)
                with_train.append(fold)
            else:
                result.problems.append(f"{train}: train list not found; {fold} trains on the other folds' test clips")
        listed = listed_clips(read, result, with_train)
        on_disk = clips_on_disk(frames_at, videos, result.skipped)
        missing = []
        for clip, row in listed.items():
            sample = self._sample(clip, row, on_disk.get(clip), frames_at is not None, result.skipped)
            if sample is None:
                missing.append(clip)
            else:
                result.samples.append(sample)
        where = frames_at if frames_at is not None else videos
        if missing:
            result.problems.append(f"{len(missing)} listed clip(s) have no readable {'frames' if frames_at else 'video'} "
                                   f"in {where}; not scanned: {name_some(missing)}")
        unlisted = sorted(set(on_disk) - {r.clip for r in read.rows} - {c for c, _ in read.broken})
        if unlisted:
            result.notes.append(f"{len(unlisted)} clip(s) in {where} are in no single-label fold list (MAFW's "
                                f"multi-label clips); not scanned: {name_some(unlisted)}")
        result.notes.append(NO_SUBJECTS.format(title="MAFW"))
        result.notes.append(f"folds from {lists.relative_to(root)} (Sample.split = the set_k whose test list holds "
                            f"the clip); frames from {where.relative_to(root)}")
        return result

    def _sample(self, clip: str, row: ListRow, media: Path | None, frames: bool, skipped: list[Path]) -> Sample | None:
        if media is None:
            return None
        meta: dict[str, Any] = {"clip": clip, "subject_source": "clip"}
        common = dict(id=clip, dataset=self.name, subject=clip, label=row.label, split=row.fold)
        if frames:
            paths = list_frames(media, skipped)
            return Sample(**common, frames=paths, fps=FPS, meta=meta) if paths else None
        info = probe_video(media)
        return None if info is None else Sample(**common, video=media, fps=info[1] or FPS,
                                                meta={**meta, "n_frames": info[0]})

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """The ten fold lists and `subjects` clips per class per fold (8-14 frames), plus two clips that no
        single-label list names (MAFW's multi-label clips). Modes: `frames` (default: data/frames/<id>/NNNNN.jpg,
        160x120 film frames) and/or `clips` (data/clips/<id>.mp4). Rows as the release writes them:
        `<id>.mp4 <class>`, in clip order, the last line without a newline."""
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator

        kinds = modes or ["frames"]
        unknown = [m for m in kinds if m not in ("frames", "clips")]
        if unknown:
            raise FerbenchError(f"MAFW replica modes are 'frames' and 'clips', not {', '.join(unknown)}")
        out = Path(out)
        rng = np.random.default_rng([seed, 22])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        plan = [(fold, c) for fold in FOLDS for c in range(len(CLASSES)) for _ in range(subjects)]
        ids = unique_ids(rng, len(plan) + 2, 1, 20098)
        n_ids = max(6, 2 * subjects * len(CLASSES))
        samples: list[Sample] = []
        for number, item in zip(ids, plan + [None, None]):
            clip = f"{number:05d}"
            cls = item[1] if item else int(rng.integers(len(CLASSES)))
            aus = {**CLASS_AUS, **EXTRA_AUS}[CLASSES[cls]]
            ident, n = anim.identity(int(rng.integers(n_ids))), int(rng.integers(8, 15))
            frames = render_clip(anim, ident, aus, n, FRAME_SIZE, rng, 0.62)
            common = dict(id=clip, dataset=self.name, subject=clip, label=cls, split=item[0] if item else None, fps=FPS)
            sample = None
            if "clips" in kinds:
                video = write_video(out / VIDEO_DIR / f"{clip}.mp4", frames, FPS)
                sample = Sample(**common, video=video, meta={"clip": clip, "subject_source": "clip", "n_frames": n})
            if "frames" in kinds:
                paths = write_frames(out / FRAME_DIRS[0] / clip, frames, [f"{t + 1:05d}.jpg" for t in range(n)])
                sample = Sample(**common, frames=paths, meta={"clip": clip, "subject_source": "clip"})
            if item:
                samples.append(sample)
        samples.sort(key=lambda s: s.id)
        for fold in FOLDS:
            for role in ("test", "train"):
                rows = [f"{s.id}.mp4 {CLASSES[s.label]}" for s in samples if (s.split == fold) == (role == "test")]
                path = out / LIST_TOPS[0] / SINGLE / fold / f"{role}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(rows))  # the last line has no newline, as in the release's lists
        return samples
