"""Tiny DFEW and MAFW roots written by hand in the owners' formats (fold lists as the releases write them, one
or two 8x8 frames per clip), for the adapter and protocol tests: independent of the replica writers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferbench.datasets.dfew import FOLDS as DFEW_FOLDS
from ferbench.datasets.mafw import CLASSES as MAFW_CLASSES
from ferbench.datasets.mafw import FOLDS as MAFW_FOLDS

DFEW_TEST = "EmoLabel_DataSplit/test(single-labeled)"
DFEW_TRAIN = "EmoLabel_DataSplit/train(single-labeled)"
#: Two clips per fold, as (video_name, 1-based label) rows of test(single-labeled)/set_k.csv.
DFEW_FIVE = {f"set_{k}": [(str(10 * k + 1), k), (str(10 * k + 2), k + 1)] for k in range(1, 6)}
MAFW_SINGLE = "Train & Test Set/single/no_caption"
#: Two clips per fold, as (id, class word) rows of set_k/test.txt.
MAFW_FIVE = {f"set_{k}": [(f"{100 * k + 1:05d}", MAFW_CLASSES[k]), (f"{100 * k + 2:05d}", MAFW_CLASSES[k + 5])]
             for k in range(1, 6)}
_TINY = np.full((8, 8, 3), 128, np.uint8)


def _frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), _TINY)


def build_dfew(root: Path, folds: dict, frames_dir: str = "Clip/clip_224x224",
               names=lambda clip, t: f"{clip}_{t:05d}.jpg", n: int = 2, train_dir: str = DFEW_TRAIN,
               lists: dict[str, str] | None = None) -> Path:
    """`folds` = {fold: [(video_name, label), ...]} as the test lists; the train lists are the other folds' rows
    (as in the release) unless `lists` overrides a file's text."""
    for rows in folds.values():
        for name, _ in rows:
            clip = f"{int(name):05d}"
            _frames(root / frames_dir / clip, [names(clip, t) for t in range(1, n + 1)])
    for fold in DFEW_FOLDS:
        test = folds.get(fold, [])
        train = [r for f, rows in folds.items() if f != fold for r in rows]
        for where, rows in ((DFEW_TEST, test), (train_dir, train)):
            path = root / where / f"{fold}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("video_name,label\n" + "".join(f"{v},{lab}\n" for v, lab in rows))
    for rel, text in (lists or {}).items():
        (root / rel).write_text(text)
    return root


def build_mafw(root: Path, folds: dict = MAFW_FIVE, top: str = "Train & Test Set", frames: str = "data/frames",
               lists: dict[str, str] | None = None) -> Path:
    """Test lists from `folds`, train lists the other folds' rows (last line without a newline); `lists`
    overrides a file's text."""
    for rows in folds.values():
        for clip, _ in rows:
            _frames(root / frames / clip, ["1.jpg"])
    for fold in MAFW_FOLDS:
        test = folds.get(fold, [])
        train = [r for f, rows in folds.items() if f != fold for r in rows]
        for role, rows in (("test", test), ("train", train)):
            path = root / top / "single/no_caption" / fold / f"{role}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(f"{c}.mp4 {w}" for c, w in rows))
    for rel, text in (lists or {}).items():
        (root / rel).write_text(text)
    return root
