"""BP4D-Spontaneous (and its FERA 2015 subset): where its AU occurrence CSVs are parsed and its replica written.

Native layout::

    Sequences(2D+3D)/F001/T1/2440.jpg      # 1040 wide x 1392 high, 25 fps; names are frame numbers, 4 digits
                                           # (3 digits below 1000); the frames may also sit directly in the root
    AUCoding/AU_OCC/F001_T1.csv            # header row "0,1,2,...,99": column "0" = frame number, then one
                                           # column per AU number; cells 0/1, 9 = unknown

Only the AU-coded segment of each task is listed in its CSV, so a sample is one subject-task whose frames are
the coded frames found on disk; frames outside the coded segment are not part of it. BP4D is frame-level
multi-label AU detection: samples carry `aus` (frames x 12, -1 where the CSV says 9) and no class label.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import natural_key, write_image
from ferbench.datasets.base import IMAGE_SUFFIXES, DatasetAdapter, Sample, ScanResult, is_junk, strict_int
from ferbench.errors import DatasetError

#: The 12 AUs of the FERA 2015 / 3-fold BP4D protocols, in column order of `Sample.aus`.
AU_NAMES: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
UNKNOWN = 9  # the CSVs' "not coded" value; stored as -1 in Sample.aus
SEQUENCE_DIRS = ("Sequences(2D+3D)", "BP4D-training")  # release folder names; else frames sit in the root
AU_DIR = ("AUCoding", "AU_OCC")
FPS = 25.0
FRAME_SIZE = (1040, 1392)  # (width, height): portrait frames
_CSV_NAME = re.compile(r"^([FM]\d{3})_(T\d+)$", re.IGNORECASE)
_SUBJECT = re.compile(r"^[FM]\d{3}$", re.IGNORECASE)
_TASK = re.compile(r"^T\d+$", re.IGNORECASE)


def read_au_csv(path: Path) -> tuple[list[int], np.ndarray]:
    """Frame numbers and an int8 (frames x 12) occurrence matrix (1/0, -1 where the CSV says 9), sorted by frame.

    The header row names the columns: "0" is the frame number, "N" is AU N (1..99).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(path, f"unreadable AU CSV ({type(e).__name__}); "
                                 "expected a text CSV with header '0,1,2,...'") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(path, "empty AU CSV; expected a header row '0,1,2,...,99' and one row per coded frame")
    header = [c.strip() for c in rows[0]]

    def column(name: str) -> int | None:
        for i, h in enumerate(header):
            try:
                if float(h) == float(name):
                    return i
            except ValueError:
                continue
        return None

    frame_col = column("0")
    au_cols = [column(str(au)) for au in AU_NAMES]
    missing = [str(au) for au, c in zip(AU_NAMES, au_cols) if c is None]
    if frame_col is None or missing:
        what = "frame column '0'" if frame_col is None else f"AU column(s) {', '.join(missing)}"
        raise DatasetError(path, f"header has no {what}; expected a header row '0,1,2,...,99' (column 0 = frame number, "
                                 f"then one column per AU number)")
    numbers: list[int] = []
    occ = np.zeros((len(rows) - 1, len(AU_NAMES)), dtype=np.int8)
    for r, row in enumerate(rows[1:]):
        line = r + 2
        cell = row[frame_col] if frame_col < len(row) else ""
        numbers.append(strict_int(path, f"line {line}: column '0'", cell, "an integer frame number"))
        for j, (au, c) in enumerate(zip(AU_NAMES, au_cols)):
            cell = row[c].strip() if c is not None and c < len(row) else ""
            value = strict_int(path, f"line {line}: AU {au}", cell, "0, 1 or 9 (unknown)")
            if value not in (0, 1, UNKNOWN):
                raise DatasetError(path, f"line {line}: AU {au} cell {cell!r}; expected 0, 1 or 9 (unknown)")
            occ[r, j] = -1 if value == UNKNOWN else value
    order = np.argsort(numbers, kind="stable")
    numbers = [numbers[i] for i in order]
    if len(set(numbers)) != len(numbers):
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        raise DatasetError(path, f"frame(s) {', '.join(map(str, dup[:5]))} listed twice; expected one row per frame")
    return numbers, occ[order]


def _frames_by_number(folder: Path, skipped: list[Path], problems: list[str]) -> dict[int, Path]:
    """{frame number: path} for the numbered images of a task folder (`2440.jpg`, `999.jpg`, `0999.jpg`)."""
    found: dict[int, Path] = {}
    for p in sorted(folder.iterdir(), key=natural_key):
        if is_junk(p):
            skipped.append(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit():
            n = int(p.stem)
            if n in found:
                problems.append(f"{folder}: frame {n} exists twice ({found[n].name}, {p.name}); used {found[n].name}")
                continue
            found[n] = p
    return found


@register_dataset
class BP4DAdapter(DatasetAdapter):
    """BP4D: one sample per AU-coded subject-task, frames = coded frames on disk, per-frame AU occurrence."""

    name = "bp4d"
    title = "BP4D-Spontaneous (AU occurrence; FERA 2015 subset)"
    obtain = "Binghamton University (Lijun Yin's BP4D-Spontaneous page at cs.binghamton.edu; a licence agreement)"
    root_hint = "the BP4D folder"
    classes: tuple[str, ...] = ()
    layout = ("[Sequences(2D+3D)/]F001/T1/2440.jpg (3-4 digit frame numbers) + AUCoding/AU_OCC/F001_T1.csv "
              "(column 0 = frame, AU columns 0/1, 9 = unknown)")
    fps = FPS
    clip_length = 22  # only for sequence models; frame-level AU tasks read native frames and /aus
    phases = "unsegmented"
    emotions: tuple[str, ...] = ()  # AU occurrence, no emotion classes

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        au_dir = root.joinpath(*AU_DIR)
        if not au_dir.is_dir():
            raise DatasetError(au_dir, "AU occurrence folder not found; expected AUCoding/AU_OCC/F001_T1.csv files "
                                       "under the dataset root")
        seq_base = next((root / d for d in SEQUENCE_DIRS if (root / d).is_dir()), root)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        csvs: list[tuple[str, str, Path]] = []
        for p in sorted(au_dir.iterdir(), key=natural_key):
            m = _CSV_NAME.match(p.stem)
            if is_junk(p):
                result.skipped.append(p)
            elif p.suffix.lower() == ".csv" and m:
                csvs.append((m.group(1).upper(), m.group(2).upper(), p))
            else:
                result.problems.append(f"{p}: not an AU file (expected F001_T1.csv); ignored")
        if not csvs:
            raise DatasetError(au_dir, "no AU CSV files; expected files such as F001_T1.csv")

        coded: set[tuple[str, str]] = set()
        unknown_cells = 0
        uncoded_total = 0
        for subject, task, path in csvs:
            coded.add((subject, task))
            parsed = result.read_each(f"{subject}_{task}", lambda: read_au_csv(path))
            if parsed is None:
                continue
            numbers, occ = parsed
            folder = seq_base / subject / task
            if not folder.is_dir():
                result.problems.append(f"{path.name}: frames folder {folder} not found; sample not scanned")
                continue
            on_disk = _frames_by_number(folder, result.skipped, result.problems)
            keep = [i for i, n in enumerate(numbers) if n in on_disk]
            missing = [n for n in numbers if n not in on_disk]
            if missing:
                result.problems.append(f"{subject}_{task}: {len(missing)} coded frame(s) missing in {folder}: "
                                       + ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else ""))
            if not keep:
                result.problems.append(f"{subject}_{task}: none of the {len(numbers)} coded frames exist; "
                                       "sample not scanned")
                continue
            kept_numbers = [numbers[i] for i in keep]
            aus = occ[keep]
            uncoded = len(set(on_disk) - set(numbers))
            uncoded_total += uncoded
            unknown_cells += int((aus == -1).sum())
            result.samples.append(Sample(
                id=f"{subject}_{task}", dataset=self.name, subject=subject, label=None,
                frames=[on_disk[n] for n in kept_numbers], fps=self.fps, aus=aus, au_names=AU_NAMES,
                meta={"task": task, "frame_numbers": kept_numbers, "au_csv": str(path),
                      "missing_coded_frames": missing, "uncoded_frames_on_disk": uncoded},
            ))
        if seq_base.is_dir():
            not_coded = sorted(
                f"{s.name}/{t.name}" for s in seq_base.iterdir() if s.is_dir() and _SUBJECT.match(s.name)
                for t in s.iterdir() if t.is_dir() and _TASK.match(t.name) and (s.name.upper(), t.name.upper()) not in coded
            )
            if not_coded:
                result.problems.append(f"{len(not_coded)} task folder(s) have no AU CSV and were not scanned: "
                                       + ", ".join(not_coded[:20]))
        result.notes.append("frame-level multi-label AU detection: label None, AUs in Sample.aus (frames x 12) for "
                            f"AUs {', '.join(map(str, AU_NAMES))}; 9 = unknown is stored as -1 ({unknown_cells} cells)")
        result.notes.append(f"frames = the AU-coded segment of each task; {uncoded_total} uncoded frame(s) on disk are "
                            f"not part of any sample; frames read from {seq_base}")
        return result

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Sequences(2D+3D)/ frames driven by per-frame AU labels + AUCoding/AU_OCC CSVs (header 0..99, some 9s).

        Quirks written on purpose: uncoded frames before/after each coded segment, a task whose frame names cross
        from 3 to 4 digits (993.jpg ... 1004.jpg), one coded frame missing on disk, a Thumbs.db.
        """
        from ferbench.synth.faces import FaceAnimator

        out = Path(out)
        rng = np.random.default_rng([seed, 4])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        au_dir = out.joinpath(*AU_DIR)
        au_dir.mkdir(parents=True, exist_ok=True)
        seq_base = out / SEQUENCE_DIRS[0]
        samples: list[Sample] = []
        names = _subject_names(subjects)
        plan = [(s, name, f"T{(2 * s + k) % 8 + 1}") for s, name in enumerate(names) for k in range(2)]
        for i, (s, subject, task) in enumerate(plan):
            ident = anim.identity(s)
            n_coded = int(rng.integers(8, 12))
            before, after = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            if i == 2:
                start = 993 - before  # names cross 999 -> 1000: 3- and 4-digit files in one folder
            else:
                start = int(rng.integers(1000, 3000))
            truth = _au_truth(task, n_coded, rng)
            labels = truth.astype(np.int8)
            mask = rng.random(labels.shape) < 0.04
            mask[int(rng.integers(n_coded)), int(rng.integers(len(AU_NAMES)))] = True  # at least one 9 per CSV
            labels[mask] = -1
            folder = seq_base / subject / task
            folder.mkdir(parents=True, exist_ok=True)
            numbers = list(range(start, start + before + n_coded + after))
            coded_numbers = numbers[before : before + n_coded]
            drop = coded_numbers[n_coded // 2] if i == len(plan) - 1 else None  # coded but missing on disk
            for j, number in enumerate(numbers):
                if number == drop:
                    continue
                c = j - before
                active = {au: 1.0 for au, on in zip(AU_NAMES, truth[c]) if on} if 0 <= c < n_coded else {}
                frame = anim.render(ident, active, FRAME_SIZE)
                write_image(folder / f"{number}.jpg", frame)
            _write_au_csv(au_dir / f"{subject}_{task}.csv", coded_numbers, labels)
            keep = [k for k, n in enumerate(coded_numbers) if n != drop]
            samples.append(Sample(
                id=f"{subject}_{task}", dataset=self.name, subject=subject, label=None,
                frames=[folder / f"{coded_numbers[k]}.jpg" for k in keep], fps=self.fps, aus=labels[keep],
                au_names=AU_NAMES,
                meta={"task": task, "frame_numbers": [coded_numbers[k] for k in keep],
                      "au_csv": str(au_dir / f"{subject}_{task}.csv"),
                      "missing_coded_frames": [drop] if drop is not None else [],
                      "uncoded_frames_on_disk": before + after},
            ))
        (seq_base / plan[0][1] / plan[0][2] / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
        samples.sort(key=lambda x: natural_key(f"{x.subject}_{x.meta['task']}"))
        return samples


# ---------------------------------------------------------------------- replica helpers
#: AUs each BP4D task tends to elicit (T1 happy interview, T2 sad video, T3 surprise, T4 embarrassment,
#: T5 fear, T6 pain, T7 anger, T8 disgust); the replica's per-frame AU labels are drawn around these.
_TASK_AUS: dict[str, tuple[int, ...]] = {
    "T1": (6, 12, 10), "T2": (1, 4, 15, 17), "T3": (1, 2, 12), "T4": (12, 14, 24),
    "T5": (1, 2, 4, 7), "T6": (4, 6, 7, 10), "T7": (4, 7, 23, 24), "T8": (4, 10, 15, 17),
}


def _subject_names(n: int) -> list[str]:
    """F001, M001, F002, M002, ...: BP4D's female/male subject ids."""
    return [f"{'FM'[s % 2]}{s // 2 + 1:03d}" for s in range(n)]


def _au_truth(task: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame AU occurrence (n x 12, bool): each task AU is on over its own window, plus a stray AU sometimes."""
    truth = np.zeros((n, len(AU_NAMES)), dtype=bool)
    aus = list(_TASK_AUS[task])
    if rng.random() < 0.5:
        aus.append(int(rng.choice(AU_NAMES)))
    for au in aus:
        a = int(rng.integers(0, max(1, n // 2)))
        b = int(rng.integers(min(n, a + 2), n + 1))
        truth[a:b, AU_NAMES.index(au)] = True
    return truth


def _write_au_csv(path: Path, numbers: list[int], labels: np.ndarray) -> None:
    """An AU_OCC CSV as distributed: header 0..99, frame number first, 9 in every column not coded."""
    lookup = {au: j for j, au in enumerate(AU_NAMES)}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(range(100))
        for number, row in zip(numbers, labels):
            cells: list[Any] = [number]
            for au in range(1, 100):
                v = int(row[lookup[au]]) if au in lookup else UNKNOWN
                cells.append(UNKNOWN if v == -1 else v)
            w.writerow(cells)
