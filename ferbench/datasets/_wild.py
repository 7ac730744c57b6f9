"""What the in-the-wild benchmarks DFEW, FERV39k and MAFW share: their owners' split lists read row by row,
reconciled clip by clip, and the replica's clip renderer.

Each release says which fold (or split) a clip belongs to in list files of its own format; the adapters parse
those into `ListRow`s (one per listed clip) and `reconcile` decides, for every clip, the one list that holds it
as a test clip, or why it cannot be used: in two test lists, in no test list, labelled differently by two
lists, in the train and the test list of one fold, missing from another fold's train list, or on a malformed
row. Nothing is re-drawn: the fold a sample carries (`Sample.split`) is the owners' own.
None of the three has subject ids, so each clip is its own group.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from ferbench.datasets._media import write_avi, write_image
from ferbench.errors import DatasetError

if TYPE_CHECKING:
    from ferbench.datasets.base import ScanResult

#: The note every scan of these datasets carries (no subject ids; what the leakage check then means).
NO_SUBJECTS = ("{title} has no subject ids: each clip is its own group (subject = clip id), so the protocols' "
               "leakage check is per clip (no clip on both sides of a fold); one actor may still appear in "
               "several clips, as in the owners' own folds")


@dataclass(frozen=True)
class ListRow:
    """One clip as one split list gives it: `fold` names the list pair (DFEW/MAFW `set_3`; FERV39k `train`
    or `test`), `role` says which side of that fold the list is (`train` or `test`)."""

    clip: str
    label: int
    fold: str
    role: str
    file: Path
    line: int

    def where(self) -> str:
        return f"{self.file} line {self.line}"


@dataclass
class ListRead:
    """What the list files hold: good rows, rows that name a clip but are broken (clip, error), and rows that
    name no readable clip at all (error: they are named in the scan's problems)."""

    rows: list[ListRow]
    broken: list[tuple[str, DatasetError]]
    unreadable: list[DatasetError]


def new_read() -> ListRead:
    return ListRead(rows=[], broken=[], unreadable=[])


def reconcile(read: ListRead, train_lists: Iterable[str] = (),
              unit: str = "fold") -> tuple[dict[str, ListRow], list[tuple[str, DatasetError]]]:
    """{clip: the row of the one test list that holds it} for every consistently listed clip, and (clip, error)
    for every other listed clip. `train_lists`: the folds whose train list was read; a clip must then be in
    the train list of every one of them except its own test fold (the releases' train lists are exactly the
    complement of their test lists), else the lists disagree and the clip is not used. `unit`: what one test
    list stands for in the messages (`fold`; FERV39k's lists are a `split`)."""
    by_clip: dict[str, list[ListRow]] = defaultdict(list)
    for row in read.rows:
        by_clip[row.clip].append(row)
    broken = dict(read.broken[::-1])  # the first error of a clip wins
    ok: dict[str, ListRow] = {}
    excluded: list[tuple[str, DatasetError]] = []
    for clip in sorted(set(by_clip) | set(broken)):
        if clip in broken:
            excluded.append((clip, broken[clip]))
            continue
        error = _why_unusable(clip, by_clip[clip], set(train_lists), unit)
        if error is None:
            ok[clip] = next(r for r in by_clip[clip] if r.role == "test")
        else:
            excluded.append((clip, error))
    return ok, excluded


def listed_clips(read: ListRead, result: "ScanResult", train_lists: Iterable[str] = (),
                 unit: str = "fold") -> dict[str, ListRow]:
    """`reconcile` into a scan: unreadable lists become problems, every clip the lists make unusable is excluded
    with its error; returns the consistently listed clips."""
    result.problems.extend(str(e) for e in read.unreadable)
    listed, excluded = reconcile(read, train_lists, unit)
    for clip, error in excluded:
        result.excluded.append((clip, str(error)))
        result.errors.append(error)
    return listed


def clips_on_disk(frames_at: Path | None, videos: Path, skipped: list[Path]) -> dict[str, Path]:
    """{clip id: its frame folder} under `frames_at`, or {clip id: its video} under `videos` where the release
    ships no frames (junk named in `skipped`)."""
    from ferbench.datasets._media import list_entries
    from ferbench.datasets.base import VIDEO_SUFFIXES

    if frames_at is not None:
        return {p.name: p for p in list_entries(frames_at, skipped, "dir")}
    return {p.stem: p for p in list_entries(videos, skipped, "file") if p.suffix.lower() in VIDEO_SUFFIXES}


def _places(rows: list[ListRow]) -> str:
    return "; ".join(r.where() for r in rows)


def _why_unusable(clip: str, rows: list[ListRow], train_lists: set[str], unit: str = "fold") -> DatasetError | None:
    """Why a clip's rows do not give it exactly one fold (None: they do)."""
    tests = [r for r in rows if r.role == "test"]
    trains = [r for r in rows if r.role == "train"]
    if not tests:
        return DatasetError(rows[0].file, f"clip {clip} is in no test list, so in no fold (listed only in: "
                                          f"{_places(rows)}); expected exactly one test list to hold it")
    if len({r.file for r in tests}) == 1 and len(tests) > 1:  # one list naming it twice
        return DatasetError(tests[1].file, f"clip {clip} is listed {len(tests)} times in this list (lines "
                                           f"{', '.join(str(r.line) for r in tests)}); expected once")
    if len(tests) > 1:
        lists = "test lists" if unit == "fold" else f"{unit} lists"
        return DatasetError(tests[1].file, f"clip {clip} is in {len(tests)} {lists} ({_places(tests)}); "
                                           f"expected exactly one {unit}")
    labels = sorted({r.label for r in rows})
    if len(labels) > 1:
        return DatasetError(rows[0].file, f"clip {clip} has different labels in the lists ({_places(rows)}); "
                                          "expected one label")
    fold = tests[0].fold
    same = [r for r in trains if r.fold == fold]
    if same:
        return DatasetError(same[0].file, f"clip {clip} is in both the train and the test list of {fold} "
                                          f"({_places(same + tests)}): it would leak")
    seen = [r.fold for r in trains]
    twice = sorted({f for f in seen if seen.count(f) > 1})
    if twice:
        return DatasetError(trains[0].file, f"clip {clip} is listed twice in the train list of {twice[0]} "
                                            f"({_places([r for r in trains if r.fold == twice[0]])})")
    missing = sorted(f for f in train_lists if f != fold and f not in seen)
    if missing:
        return DatasetError(tests[0].file, f"clip {clip} (test clip of {fold}, {tests[0].where()}) is missing from "
                                           f"the train list of {', '.join(missing)}: the lists disagree on its "
                                           "training folds (expected each train list to be the other folds' test clips)")
    return None


def name_some(items: list[str], limit: int = 10) -> str:
    """`a, b, c` or `a, b, ... (N in all)`: long lists named without flooding the scan report."""
    head = ", ".join(items[:limit])
    return head if len(items) <= limit else f"{head}, ... ({len(items)} in all)"


def unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """`n` distinct integers from [low, high], in drawing order (release ids are not contiguous)."""
    return [int(v) for v in rng.choice(np.arange(low, high + 1), size=n, replace=False)]


def render_clip(anim, ident, aus: Mapping[int | str, float], n: int, size: tuple[int, int],
                rng: np.random.Generator, face_height: float) -> list[np.ndarray]:
    """The frames of one replica clip cut from a film: the expression rises from a random onset to an apex in
    the second half and is held (clips of these releases are cut around the expression)."""
    from ferbench.synth.faces import expression_curve

    onset = int(rng.integers(0, max(1, n // 3)))
    apex = int(rng.integers(max(onset + 1, n // 2), n))
    curve = expression_curve(n, onset, apex)
    return anim.render_clip(ident, aus, curve, size, levels=4, face_height=face_height)


def write_frames(folder: Path, frames: list[np.ndarray], names: list[str]) -> list[Path]:
    """Write a clip as image files named `names` (in order) under `folder`; return their paths."""
    paths = [folder / name for name in names]
    for path, frame in zip(paths, frames):
        write_image(path, frame)
    return paths


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write a clip as an .mp4 (MPEG-4 part 2, what every OpenCV build writes) or, for .avi, MJPG."""
    fourcc = "mp4v" if path.suffix.lower() == ".mp4" else "MJPG"
    write_avi(path, frames, fps, fourcc=fourcc)
    return path
