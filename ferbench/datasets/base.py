"""The `Sample` record every dataset adapter produces, and the adapter interface.

A `Sample` is the one shape native data takes inside ferbench: everything downstream (preprocessing,
protocols, the store) reads samples, never a dataset's folder layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferbench.errors import DatasetError

#: Files that operating systems drop into dataset folders; adapters skip and count them.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
JUNK_SUFFIXES = (".lnk",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".wmv", ".mpg", ".mpeg")


#: `DatasetAdapter.phases` values.
PHASES_RISING, PHASES_FULL, PHASES_NONE = "neutral-apex", "onset-apex-offset", "unsegmented"
#: The emotion vocabulary `DatasetAdapter.emotions` draws from (six basic emotions, neutral, contempt,
#: CASME II's micro-expression classes and MAFW's four compound-affect classes).
CANONICAL_EMOTIONS = frozenset({
    "neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "repression", "others",
    "anxiety", "helplessness", "disappointment",
})


def is_junk(path: Path) -> bool:
    """True for OS clutter (.DS_Store, Thumbs.db, Windows shortcuts) that adapters must ignore."""
    return path.name in JUNK_NAMES or path.suffix.lower() in JUNK_SUFFIXES or path.name.startswith("._")


@dataclass
class Sample:
    """One native sequence (or clip), as read from a dataset's own layout.

    Frame indices (onset/apex/offset) are 0-based positions into `frames` (or into the decoded video).
    `aus` is a per-frame AU occurrence matrix (frames x len(au_names)), int8 with 1/0 and -1 = unknown.
    `au_intensity` holds sequence-level FACS codes where a dataset gives them (CK+ FACS files, CASME II).
    """

    id: str
    dataset: str
    subject: str
    label: int | None
    frames: list[Path] = field(default_factory=list)
    video: Path | None = None
    fps: float = 30.0
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    apex_estimated: bool = False
    aus: np.ndarray | None = None
    au_names: tuple[int, ...] = ()
    au_intensity: dict[int, float] = field(default_factory=dict)
    landmarks: list[Path] = field(default_factory=list)
    split: str | None = None
    mode: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def subject_source(self) -> str | None:
        """Where the adapter took `subject` from, where it says (`meta["subject_source"]`); kept in the store."""
        value = self.meta.get("subject_source")
        return None if value is None else str(value)

    @property
    def n_frames(self) -> int | None:
        """Number of frames when known without decoding (image sequences, or AU-coded segments)."""
        if self.frames:
            return len(self.frames)
        if self.aus is not None:
            return int(self.aus.shape[0])
        return self.meta.get("n_frames")

    def fingerprint(self) -> str:
        """A digest of everything `prepare` reads for this sample: its annotations and label, and each media
        file's path, size and modification time. A resumed run reuses a finished sample only while this is
        unchanged (a label corrected between an interrupted run and its rerun is redone, not kept)."""
        def stat(p: Path) -> list[Any]:
            try:
                st = p.stat()
                return [str(p), st.st_size, st.st_mtime_ns]
            except OSError:
                return [str(p), None, None]

        digest = {
            "id": self.id, "subject": self.subject, "label": self.label, "fps": self.fps,
            "onset": self.onset, "apex": self.apex, "offset": self.offset, "apex_estimated": self.apex_estimated,
            "split": self.split, "mode": self.mode, "au_names": [str(a) for a in self.au_names],
            "aus": None if self.aus is None else hashlib.sha1(np.ascontiguousarray(self.aus, np.int8).tobytes()).hexdigest(),
            "aus_shape": None if self.aus is None else list(np.shape(self.aus)),
            "media": [stat(p) for p in self.frames] + ([stat(self.video)] if self.video else []),
        }
        return hashlib.sha1(json.dumps(digest, sort_keys=True, default=str).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings, arrays as lists) for reports and tests."""
        out = dataclasses.asdict(self)
        out["frames"] = [str(p) for p in self.frames]
        out["landmarks"] = [str(p) for p in self.landmarks]
        out["video"] = str(self.video) if self.video else None
        out["aus"] = self.aus.tolist() if self.aus is not None else None
        return out


@dataclass
class ScanResult:
    """What an adapter found under a root: samples, junk it skipped, and non-fatal problems."""

    dataset: str
    root: Path
    classes: tuple[str, ...]
    samples: list[Sample] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Samples found but unreadable (a garbage label file, two label files, an unreadable folder):
    #: (sample id, reason). `prepare` records them as excluded; one bad sample never stops a scan.
    excluded: list[tuple[str, str]] = field(default_factory=list)
    #: The DatasetErrors behind `excluded` (a scan that found nothing readable raises the first).
    errors: list[DatasetError] = field(default_factory=list, repr=False, compare=False)

    def read_each(self, sample_id: str, read: Callable[[], Sample | None]) -> Sample | None:
        """Run one sample's reader; a DatasetError or OSError excludes that sample (named, with its reason)
        instead of aborting the whole scan."""
        try:
            return read()
        except DatasetError as e:
            self.excluded.append((sample_id, str(e)))
            self.errors.append(e)
        except OSError as e:
            error = DatasetError(e.filename or sample_id, f"unreadable ({e.strerror or e})")
            self.excluded.append((sample_id, str(error)))
            self.errors.append(error)
        return None

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for s in self.samples:
            if s.label is not None:
                counts[self.classes[s.label]] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """The `ferbench scan --json` object."""
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "samples": len(self.samples),
            "labelled": sum(s.label is not None for s in self.samples),
            "unlabelled": sum(s.label is None for s in self.samples),
            "classes": self.class_counts(),
            "subjects": len({s.subject for s in self.samples}),
            "frames": sum(s.n_frames or 0 for s in self.samples),
            "skipped": len(self.skipped),
            "problems": list(self.problems),
            "notes": list(self.notes),
            "excluded": [{"id": i, "reason": r} for i, r in self.excluded],
        }


def strict_int(path: Path, where: str, cell: Any, expected: str) -> int:
    """A numeric cell that must hold an integer: `3`, `3.0` and `3.0000000e+00` are 3; `1.9`, `inf`, `nan`
    and text raise a DatasetError naming the file, the place and what was expected (never truncated)."""
    text = str(cell).strip()
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(path, f"{where} cell {text!r} is not a number; expected {expected}") from None
    if not math.isfinite(value) or not value.is_integer():
        raise DatasetError(path, f"{where} cell {text!r} is not an integer; expected {expected}")
    return int(value)


class DatasetAdapter:
    """Reads one dataset's native layout into `Sample`s and writes a miniature replica of that layout.

    Subclasses set the class attributes and implement `scan` and `write_replica`; one file per dataset
    keeps a format's knowledge in one place.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    layout: ClassVar[str]  # one-paragraph description of the native layout, shown by `ferbench datasets`
    obtain: ClassVar[str] = "its owners"  # where the dataset is obtained (its owners' site, as text)
    fps: ClassVar[float]
    # Preprocessing defaults that belong to the dataset (read by `PrepareConfig.resolved` and by the tests).
    #: Fixed clip length T of the temporal normalisation (yu2018: CK+ 18, Oulu-CASIA / MMI 22). Datasets
    #: without a fixed-length recipe in the papers take 22, yu2018's length for onset -> offset material.
    clip_length: ClassVar[int] = 22
    #: Frame rate every sample is resampled to before anything else; None = keep the native rate.
    target_fps: ClassVar[float | None] = None
    #: Smallest face the detector searches for, as a fraction of the frame's shorter side. Lab datasets film
    #: one face filling a good part of the frame, so 10% skips the costly fine pyramid levels.
    min_face: ClassVar[float] = 0.1
    #: How a sequence runs: PHASES_RISING (neutral -> apex: CK+, Oulu-CASIA), PHASES_FULL (onset -> apex ->
    #: offset: MMI, CASME II) or PHASES_NONE (unsegmented clips: AFEW, BP4D, folders).
    phases: ClassVar[str] = "unsegmented"
    #: Canonical emotion name of each class, in class order (CANONICAL_EMOTIONS vocabulary), so cross-dataset
    #: protocols can map classes by name; () where classes are not emotions (BP4D).
    emotions: ClassVar[tuple[str, ...]] = ()
    #: What the root folder should be, for the message when it does not exist.
    root_hint: ClassVar[str] = "an existing folder"

    def default_aligner(self, root: Path | None) -> str:
        """The `prepare --aligner` this root needs when none is given: "mtcnn" (detect and align), or "none"
        where the release under `root` ships face crops that the adapter reads (no detector runs on them)."""
        return "mtcnn"

    def check_root(self, root: str | Path) -> Path:
        """The dataset root as a Path, or a DatasetError naming it when it is not an existing folder (checked
        once, by `ferbench.datasets.scan`, before `scan` reads it)."""
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetError(path, f"dataset root not found (expected {self.root_hint})")
        return path

    def scan(self, root: Path) -> ScanResult:
        """Read an existing dataset root (see `check_root`) into samples."""
        raise NotImplementedError

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Write a miniature native-layout copy under `out`; return the samples exactly as written."""
        raise NotImplementedError
