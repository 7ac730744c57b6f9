"""Generic class-folder datasets (bring your own data): where `<root>/<class>/<clip>` layouts are read.

Layout::

    <root>/<class>/<clip>.avi            # a video (any of .avi .mp4 .mov .mkv ...)
    <root>/<class>/<clip>/<frames>.png   # or a folder of frames, naturally sorted (frame_2 before frame_10)
    <root>/subjects.csv                  # optional: columns clip,subject

Classes are the class folder names found, sorted, so they differ per dataset: `scan` sets them on the adapter
instance and in the ScanResult. The subject of a clip comes from `subjects.csv` (the `clip` cell may be the
clip name, its stem, or `<class>/<clip>`); clips it does not list take the clip-name prefix before the first
`_` (`P01_happy_2.avi` -> `P01`; a name without `_` is its own subject).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_frames, natural_key, probe_video, write_avi, write_image
from ferbench.datasets.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DatasetAdapter, Sample, ScanResult, is_junk
from ferbench.errors import DatasetError

SUBJECTS_CSV = "subjects.csv"
#: Class folders of the replica (what `ferbench synth folder` writes); a scan reports the folders it finds.
REPLICA_CLASSES: tuple[str, ...] = ("happy", "neutral", "sad", "surprise")
_CANONICAL = {"happy": "happiness", "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
#: Folder names -> canonical emotion (base.CANONICAL_EMOTIONS); other names stay as they are, lower case.
_SYNONYMS = {**_CANONICAL, "angry": "anger", "anger": "anger", "disgusted": "disgust", "disgust": "disgust",
             "fearful": "fear", "fear": "fear", "happiness": "happiness", "sadness": "sadness", "surprised": "surprise",
             "contempt": "contempt", "joy": "happiness"}


def _is_store_output(path: Path) -> bool:
    """ferbench's own output (`x.h5`, `x.h5.tmp/`, `x.h5.lock`, sidecars): never a clip or a class."""
    name = path.name.lower()
    return name.endswith((".h5", ".h5.tmp", ".h5.lock", ".failures.csv", ".qc.png")) or ".h5.tmp.new-" in name


def _holds_clip(folder: Path) -> bool:
    """True when `folder` holds at least one clip: a video file, or a sub-folder with image frames."""
    try:
        for p in folder.iterdir():
            if is_junk(p) or _is_store_output(p):
                continue
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                return True
            if p.is_dir() and p.name not in _JUNK_DIRS and any(
                q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()
            ):
                return True
    except OSError:
        return False
    return False
FRAME_SIZE = (320, 240)
_JUNK_DIRS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN"})


def read_subjects_csv(path: Path) -> dict[str, str]:
    """`clip,subject` rows -> {lower-case clip key: subject}; a missing column or empty subject -> DatasetError."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(path, f"unreadable CSV ({type(e).__name__}); "
                                 "expected a text file with header 'clip,subject'") from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "clip" not in header or "subject" not in header:
        raise DatasetError(path, "expected a header row 'clip,subject' (one row per clip: clip name, subject id)")
    ci, si = header.index("clip"), header.index("subject")
    out: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        clip = row[ci].strip() if ci < len(row) else ""
        subject = row[si].strip() if si < len(row) else ""
        if not clip or not subject:
            raise DatasetError(path, f"line {line}: expected a clip name and a subject id, got {row!r}")
        out[clip.replace("\\", "/").lower()] = subject
    return out


def subject_from_name(clip_name: str) -> str:
    """The clip-name prefix before the first `_` (`P01_happy_2` -> `P01`); the whole name when there is none."""
    return clip_name.split("_", 1)[0] or clip_name


@register_dataset
class FolderAdapter(DatasetAdapter):
    """Any `<root>/<class>/<clip>` tree: label = class folder, clip = video or frame folder, subject from CSV or name."""

    name = "folder"
    title = "Generic class folders (your own data)"
    obtain = "your own recordings: one folder per class, one video or frame folder per clip"
    root_hint = "a folder of class folders"
    classes: tuple[str, ...] = REPLICA_CLASSES  # replaced per instance by scan(): the class folders found
    layout = ("<root>/<class>/<clip>.avi or <root>/<class>/<clip>/<frames>; optional subjects.csv (clip,subject), "
              "else subject = clip-name prefix before the first '_'")
    fps = 25.0
    clip_length = 22
    min_face = 0.04  # your own footage: faces can be small
    phases = "unsegmented"

    @property  # type: ignore[override]
    def emotions(self) -> tuple[str, ...]:
        """The canonical emotion of each class folder found (`Happy/` -> happiness), or () when some class
        folder is not an emotion (then the classes are not emotions and cannot be mapped by name)."""
        names = tuple(_SYNONYMS.get(c.lower(), "") for c in self.classes)
        return names if names and all(names) else ()

    def __init__(self, subjects_csv: str | Path | None = None, fps: float = 25.0):
        self.subjects_csv = Path(subjects_csv) if subjects_csv else None
        self.frame_fps = fps  # for frame folders, which carry no rate of their own

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        csv_path = self.subjects_csv or root / SUBJECTS_CSV
        if self.subjects_csv and not csv_path.is_file():
            raise DatasetError(csv_path, "subjects CSV not found (expected a file with header 'clip,subject')")
        by_csv = read_subjects_csv(csv_path) if csv_path.is_file() else {}
        skipped: list[Path] = []
        class_dirs: list[Path] = []
        ignored: list[str] = []
        not_classes: list[str] = []
        for p in sorted(root.iterdir(), key=lambda q: q.name):
            if is_junk(p) or p.name in _JUNK_DIRS or (p.is_dir() and p.name.startswith(".")):
                skipped.append(p)
            elif p.is_dir() and not _is_store_output(p) and _holds_clip(p):
                class_dirs.append(p)
            elif p.is_dir():  # empty, or only ferbench output (`data/` after a prepare): not a class
                not_classes.append(p.name)
            elif p != csv_path:
                ignored.append(p.name)
        if not class_dirs:
            raise DatasetError(root, "no class folders; expected <root>/<class>/<clip>.avi "
                                     "or <root>/<class>/<clip>/<frames>")
        self.classes = tuple(d.name for d in class_dirs)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes, skipped=skipped)
        if not_classes:
            result.notes.append(f"folders without clips are not classes (empty, or ferbench output): {', '.join(not_classes)}")
        if ignored:
            result.notes.append(f"files at the root that are not class folders were ignored: {', '.join(ignored)}")
        used_keys: set[str] = set()
        from_name: list[str] = []
        for label, cdir in enumerate(class_dirs):
            n_before = len(result.samples)
            for clip in sorted(cdir.iterdir(), key=natural_key):
                if is_junk(clip) or clip.name in _JUNK_DIRS or _is_store_output(clip):
                    result.skipped.append(clip)
                    continue
                video: Path | None = None
                frames: list[Path] = []
                meta: dict[str, Any] = {"clip": clip.name}
                fps = self.frame_fps
                if clip.is_dir():
                    frames = list_frames(clip, result.skipped)
                    if not frames:
                        result.problems.append(f"{clip}: clip folder holds no images; not scanned")
                        continue
                elif clip.suffix.lower() in VIDEO_SUFFIXES:
                    info = probe_video(clip)
                    if info is None:
                        result.problems.append(f"{clip}: cannot open the video (zero-byte or corrupt); not scanned")
                        continue
                    video, meta["n_frames"] = clip, info[0]
                    fps = info[1] or self.fps
                elif clip.suffix.lower() in IMAGE_SUFFIXES:
                    result.problems.append(f"{clip}: loose image in a class folder; expected a clip folder of frames "
                                           f"or a video; ignored")
                    continue
                else:
                    result.problems.append(f"{clip}: neither a video nor a folder of frames; ignored")
                    continue
                stem = clip.stem if video else clip.name
                keys = [f"{cdir.name}/{clip.name}", f"{cdir.name}/{stem}", clip.name, stem]
                hit = next((k.lower() for k in keys if k.lower() in by_csv), None)
                if hit is not None:
                    subject, meta["subject_source"] = by_csv[hit], "csv"
                    used_keys.add(hit)
                else:
                    subject, meta["subject_source"] = subject_from_name(stem), "name"
                    from_name.append(f"{cdir.name}/{clip.name}")
                sid = f"{cdir.name}/{stem}"
                if any(s.id == sid for s in result.samples):  # x.avi beside x.mp4 or a folder x/
                    result.problems.append(f"{clip}: another clip in {cdir} is also named '{stem}'; its id is {cdir.name}/{clip.name}")
                    sid = f"{cdir.name}/{clip.name}"
                result.samples.append(Sample(
                    id=sid, dataset=self.name, subject=subject, label=label,
                    frames=frames, video=video, fps=fps, meta=meta,
                ))
            if len(result.samples) == n_before:
                result.problems.append(f"{cdir}: class folder holds no clips")
        unused = sorted(set(by_csv) - used_keys)
        if unused:
            result.problems.append(f"{csv_path.name} lists {len(unused)} clip(s) not found: {', '.join(unused[:10])}")
        if by_csv:
            result.notes.append(f"subjects from {csv_path.name} for {len(result.samples) - len(from_name)} clip(s)")
        if from_name:
            result.notes.append(f"subjects of {len(from_name)} clip(s) taken from the clip-name prefix before the first "
                                f"'_' (not in {SUBJECTS_CSV}): {', '.join(from_name[:10])}"
                                + (" ..." if len(from_name) > 10 else ""))
        result.notes.append(f"classes = the sorted class folder names: {', '.join(self.classes)}")
        return result

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Class folders mixing frame folders (`frame_1.png` .. `frame_12.png`) and .avi clips, plus subjects.csv.

        Quirks written on purpose: `subjects.csv` names clips whose file names do not carry the subject
        (`take_07.avi`), other clips are left out of it so the name prefix applies; a `.DS_Store` at the root and in
        a frame folder; a README at the root.
        """
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator, expression_curve

        out = Path(out)
        rng = np.random.default_rng([seed, 8])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        csv_rows: list[tuple[str, str]] = []
        samples: list[Sample] = []
        take = 0
        for s in range(subjects):
            subject = f"P{s + 1:02d}"
            ident = anim.identity(s)
            for label, cls in enumerate(REPLICA_CLASSES):
                n = int(rng.integers(10, 15))
                onset = int(rng.integers(1, 3))
                curve = expression_curve(n, onset, int(rng.integers(n - 4, n - 1)))
                frames = anim.render_clip(ident, CLASS_AUS[_CANONICAL[cls]], curve, FRAME_SIZE)
                as_video = (s + label) % 2 == 1
                listed = (s + label) % 3 == 0  # named take_NN and listed in subjects.csv
                if listed:
                    take += 1
                    stem = f"take_{take:02d}"
                    csv_rows.append((f"{stem}.avi" if as_video else stem, subject))
                else:
                    stem = f"{subject}_{cls}_{label + 1}"
                meta: dict[str, Any] = {}
                if as_video:
                    video = out / cls / f"{stem}.avi"
                    write_avi(video, frames, 25.0)
                    meta = {"clip": video.name, "n_frames": n}
                    paths: list[Path] = []
                else:
                    video = None
                    folder = out / cls / stem
                    paths = [folder / f"frame_{t + 1}.png" for t in range(n)]
                    for path, frame in zip(paths, frames):
                        write_image(path, frame)
                    meta = {"clip": stem}
                meta["subject_source"] = "csv" if listed else "name"
                samples.append(Sample(
                    id=f"{cls}/{stem}", dataset=self.name, subject=subject, label=label, frames=paths, video=video,
                    fps=25.0, meta=meta,
                ))
        with (out / SUBJECTS_CSV).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["clip", "subject"])
            w.writerows(csv_rows)
        (out / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(24))
        (out / "README.txt").write_text("Replica of a user's class-folder dataset (ferbench synth folder).\n")
        first_folder = next(s for s in samples if s.frames).frames[0].parent
        (first_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(24))
        samples.sort(key=lambda x: (x.label, natural_key(x.id.split("/", 1)[1])))
        return samples
