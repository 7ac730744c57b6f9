"""Decoding native frames into one pixel format: BGR uint8, HxWx3.

Datasets ship grey PNGs (CK+), colour JPEGs, occasional RGBA or 16-bit images and AVI videos; every later
stage (detector, aligner, store) sees only BGR uint8, so the conversions live here, once. Broken files are
reported as `DatasetError` naming the file instead of decoding to garbage or crashing a batch with an
OpenCV assertion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from ferbench.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from ferbench.datasets.base import Sample

__all__ = [
    "Video",
    "to_bgr_uint8",
    "read_image",
    "read_images",
    "resample_indices",
    "read_video",
    "load_sample_frames",
]

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert any decoded image (grey, grey+alpha, BGR, BGRA; uint8/uint16/float) to BGR uint8.

    16-bit data is scaled by 255/65535 (full range), floats in [0, 1] are scaled by 255, other floats are
    clipped to [0, 255]. Alpha is dropped (dataset frames are opaque; a transparent border stays its colour).
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")

    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype == np.int16:
        img = np.round(np.clip(img.astype(np.float32), 0, 32767) * (255.0 / 32767.0)).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        f = img.astype(np.float32)
        finite = f[np.isfinite(f)]
        if finite.size and float(finite.max()) <= 1.0 and float(finite.min()) >= 0.0:
            f = f * 255.0
        img = np.round(np.clip(np.nan_to_num(f), 0, 255)).astype(np.uint8)
    else:
        img = np.clip(img, 0, 255).astype(np.uint8)

    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    channels = img.shape[2]
    if channels == 3:
        return np.ascontiguousarray(img)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if channels == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2BGR)
    raise ValueError(f"expected 1-4 channels, got {channels}")


def _check_complete(path: Path, data: bytes) -> None:
    """Catch truncated JPEG/PNG files that a decoder might still half-decode (grey bottom rows)."""
    suffix = path.suffix.lower()
    if data[:2] == b"\xff\xd8" or suffix in _JPEG_SUFFIXES:
        if data[:2] != b"\xff\xd8":
            raise DatasetError(path, "not a JPEG file (no start-of-image marker FF D8); re-export or replace it")
        # Some writers pad after the end-of-image marker; ignore trailing zero/whitespace bytes.
        if not data.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
            raise DatasetError(
                path, "truncated JPEG (no end-of-image marker FF D9); the copy is incomplete, copy the file again"
            )
    elif data[:8] == _PNG_SIGNATURE:
        if b"IEND" not in data[-64:]:
            raise DatasetError(path, "truncated PNG (no IEND chunk at the end); the copy is incomplete, copy it again")


def read_image(path: str | Path) -> np.ndarray:
    """Read one frame file as BGR uint8, raising `DatasetError` (naming the file) if it is unusable.

    Decodes from bytes with `cv2.imdecode(..., IMREAD_UNCHANGED)` so non-ASCII paths work and bit depth and
    alpha are seen (then normalised by `to_bgr_uint8`).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(p, "expected an image file here, but it does not exist") from None
    except IsADirectoryError:
        raise DatasetError(p, "expected an image file, found a folder") from None
    except OSError as exc:
        raise DatasetError(p, f"could not read the image file ({exc.strerror or exc})") from None
    if not data:
        raise DatasetError(p, "zero-byte image file (empty); the copy is incomplete, copy the file again")
    _check_complete(p, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DatasetError(p, "unreadable or corrupt image (OpenCV could not decode it); expected PNG/JPEG/BMP/TIFF")
    try:
        return to_bgr_uint8(img)
    except ValueError as exc:
        raise DatasetError(p, f"unsupported image layout: {exc}") from None


def read_images(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Read an image sequence (one file per frame) in the given order."""
    return [read_image(p) for p in paths]


def resample_indices(n_frames: int, src_fps: float, target_fps: float | None) -> np.ndarray:
    """Source frame indices that sample a clip of `n_frames` at `src_fps` down to `target_fps`.

    Target time k/target_fps takes the source frame nearest to it (round(k * src_fps / target_fps)), from
    t=0 while inside the clip. No upsampling: if target_fps is None or >= src_fps, every frame is kept.
    Example: 25 fps -> 10 fps keeps frames 0, 3, 5, 8, 10, 13, 15, ... (MMI, seed 002; halves round up).
    """
    n = int(n_frames)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if target_fps is None or src_fps is None or src_fps <= 0 or target_fps >= src_fps:
        return np.arange(n, dtype=np.int64)
    if target_fps <= 0:
        raise ValueError(f"target fps must be positive, got {target_fps}")
    ratio = float(src_fps) / float(target_fps)
    k = np.arange(int(math.ceil(n / ratio)) + 1)
    idx = np.floor(k * ratio + 0.5).astype(np.int64)
    return idx[idx < n]


@dataclass
class Video:
    """Decoded frames of one video, with where they came from in the source stream."""

    frames: list[np.ndarray]
    fps: float  # fps of the returned frames (target fps when resampled, else the source fps)
    src_fps: float
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # source frame numbers
    declared_frames: int = 0  # frame count from the container header (may be 0 when unknown)

    def __len__(self) -> int:
        return len(self.frames)


def read_video(
    path: str | Path,
    target_fps: float | None = None,
    *,
    default_fps: float = 25.0,
    allow_truncated: bool = False,
) -> Video:
    """Decode a video into BGR uint8 frames, optionally resampled to `target_fps` by timestamps.

    Frames are selected while streaming (index i kept when it is the nearest source frame to some target
    time, see `resample_indices`), so memory holds only the kept frames. Raises `DatasetError` naming the
    file for missing, zero-byte, undecodable and (unless `allow_truncated`) truncated videos, i.e. ones
    that decode clearly fewer frames than their header declares.
    """
    p = Path(path)
    if not p.exists():
        raise DatasetError(p, "expected a video file here, but it does not exist")
    if p.is_dir():
        raise DatasetError(p, "expected a video file, found a folder")
    if p.stat().st_size == 0:
        raise DatasetError(p, "zero-byte video file (empty); the copy is incomplete, copy the file again")

    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise DatasetError(p, "unreadable or corrupt video (OpenCV/FFmpeg could not open it); expected e.g. AVI/MP4")
        src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(src_fps) or src_fps <= 0 or src_fps > 1000:
            src_fps = float(default_fps)
        declared = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        declared = int(declared) if math.isfinite(declared) and declared > 0 else 0

        resample = target_fps is not None and target_fps < src_fps
        ratio = src_fps / float(target_fps) if resample else 1.0
        frames: list[np.ndarray] = []
        kept: list[int] = []
        k, next_idx, i = 0, 0, 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if i == next_idx:
                frames.append(to_bgr_uint8(frame))
                kept.append(i)
                k += 1
                next_idx = int(math.floor(k * ratio + 0.5))
            i += 1
    finally:
        cap.release()

    if i == 0:
        raise DatasetError(p, "video has no decodable frames (corrupt or unsupported codec); expected e.g. AVI/MP4")
    if declared and not allow_truncated and i < declared - max(2, int(0.05 * declared)):
        raise DatasetError(
            p, f"truncated video: decoded only {i} of the {declared} frames its header declares; copy the file again"
        )
    return Video(
        frames=frames,
        fps=float(target_fps) if resample else src_fps,
        src_fps=src_fps,
        indices=np.asarray(kept, dtype=np.int64),
        declared_frames=declared,
    )


def load_sample_frames(sample: "Sample", target_fps: float | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of a `Sample` (image files or a video) as BGR uint8, plus the native frame index of each.

    Image sequences are resampled with `resample_indices` using `sample.fps`, videos by their own fps.
    """
    if sample.frames:
        idx = resample_indices(len(sample.frames), sample.fps, target_fps)
        return [read_image(sample.frames[j]) for j in idx], idx
    if sample.video is not None:
        v = read_video(sample.video, target_fps, default_fps=sample.fps or 25.0)
        return v.frames, v.indices
    raise DatasetError(Path(sample.id), "sample has neither frame files nor a video")
