"""The `Sample` record every dataset adapter produces, and the adapter interface.

A `Sample` is the one shape native data takes inside ferbench: everything downstream (preprocessing,
protocols, the store) reads samples, never a dataset's folder layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

#: Files that operating systems drop into dataset folders; adapters skip and count them.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
JUNK_SUFFIXES = (".lnk",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".wmv", ".mpg", ".mpeg")


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
    def n_frames(self) -> int | None:
        """Number of frames when known without decoding (image sequences, or AU-coded segments)."""
        if self.frames:
            return len(self.frames)
        if self.aus is not None:
            return int(self.aus.shape[0])
        return self.meta.get("n_frames")

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
        }


class DatasetAdapter:
    """Reads one dataset's native layout into `Sample`s and writes a miniature replica of that layout.

    Subclasses set the class attributes and implement `scan` and `write_replica`; one file per dataset
    keeps a format's knowledge in one place.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    layout: ClassVar[str]  # one-paragraph description of the native layout, shown by `ferbench datasets`
    fps: ClassVar[float]

    def scan(self, root: Path) -> ScanResult:
        raise NotImplementedError

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Write a miniature native-layout copy under `out`; return the samples exactly as written."""
        raise NotImplementedError
