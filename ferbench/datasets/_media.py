"""Small media helpers shared by dataset adapters: frame-name ordering, frame listing, AVI writing, video probing.

Kept generic on purpose: a dataset's own naming rules live in its module; only what two or more adapters
need the same way lives here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ferbench.datasets.base import IMAGE_SUFFIXES, is_junk

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str | Path) -> tuple:
    """Sort key that orders embedded numbers numerically: `img9.jpg` < `img10.jpg`, `999.jpg` < `1000.jpg`.

    Datasets name frames without zero padding (CASME II `img46.jpg`, BP4D `999.jpg` next to `1000.jpg`),
    so a plain string sort puts frame 10 before frame 9.
    """
    text = name.name if isinstance(name, Path) else str(name)
    parts = _DIGITS.split(text.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def frame_number(path: Path) -> int | None:
    """The last run of digits in a frame file's stem (`reg_img46` -> 46, `0999` -> 999), or None."""
    found = _DIGITS.findall(path.stem)
    return int(found[-1]) if found else None


def list_entries(folder: Path, skipped: list[Path], kind: str = "dir") -> list[Path]:
    """Sub-folders (`kind="dir"`) or files (`kind="file"`) of `folder` in natural order; OS junk met on the
    way (.DS_Store, Thumbs.db, *.lnk) is recorded in `skipped` instead of being returned."""
    out: list[Path] = []
    for p in folder.iterdir():
        if is_junk(p):
            skipped.append(p)
        elif (p.is_dir() if kind == "dir" else p.is_file()):
            out.append(p)
    return sorted(out, key=natural_key)


def list_frames(folder: Path, skipped: list[Path] | None = None) -> list[Path]:
    """Image files directly in `folder`, naturally sorted; junk files are appended to `skipped` if given."""
    frames: list[Path] = []
    for p in folder.iterdir():
        if is_junk(p):
            if skipped is not None:
                skipped.append(p)
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            frames.append(p)
    return sorted(frames, key=natural_key)


def write_image(path: Path, image: np.ndarray, quality: int = 92) -> None:
    """Write one frame (JPEG quality for .jpg); raise instead of OpenCV's silent False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: could not write the image")


def write_avi(path: Path, frames: Iterable[np.ndarray], fps: float = 25.0, fourcc: str = "MJPG") -> int:
    """Write BGR uint8 frames as an MJPG .avi (decodable by every OpenCV build; `fourcc="mp4v"` with an .mp4
    path writes MPEG-4 part 2); returns the frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: cv2.VideoWriter | None = None
    n = 0
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV could not open a {fourcc} video writer")
            writer.write(frame)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n


def probe_video(path: Path) -> tuple[int, float] | None:
    """(declared frame count, fps) from a video's header without decoding it, or None if it cannot be opened."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if n <= 0:
            return None
        return n, fps
    finally:
        cap.release()
