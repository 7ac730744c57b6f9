"""Decoding native frames into one pixel format: BGR uint8, HxWx3.

Datasets ship grey PNGs (CK+), colour JPEGs, occasional RGBA or 16-bit images and AVI videos; every later
stage (detector, aligner, store) sees only BGR uint8, so the conversions live here, once. Broken files are
reported as `DatasetError` naming the file instead of decoding to garbage or crashing a batch with an
OpenCV assertion.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
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
    "LazyFrames",
    "image_size",
]

#: Keep decoded frames of a sample in memory up to this size; beyond it (BP4D: 1392x1040 x hundreds of
#: frames) frames are decoded on demand with a small LRU, so memory stays bounded.
FRAME_CACHE_BYTES = 256 * 2**20
#: Videos are decoded whole (in one pass, resampled on the fly); one longer than this is refused by name
#: rather than exhausting a worker's memory.
VIDEO_BYTES_LIMIT = 4 * 2**30

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


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of a PNG or baseline/progressive JPEG from its header, without decoding the pixels;
    None when the header is not one of those (the caller then decodes the frame)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        i += 2 + length
    return None


def read_images(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Read an image sequence (one file per frame) in the given order."""
    return [read_image(p) for p in paths]


def resample_indices(n_frames: int, src_fps: float, target_fps: float | None) -> np.ndarray:
    """Source frame indices that sample a clip of `n_frames` at `src_fps` down to `target_fps`.

    Target time k/target_fps takes the source frame nearest to it (round(k * src_fps / target_fps)), from
    t=0 while inside the clip. No upsampling: if target_fps is None or >= src_fps, every frame is kept.
    Example: 25 fps -> 10 fps keeps frames 0, 3, 5, 8, 10, 13, 15, ... (MMI, yu2018; halves round up).
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
    max_bytes: float | None = None,
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
        if max_bytes is not None:  # refuse before decoding what would not fit in memory
            w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            kept = declared * min(1.0, (target_fps or src_fps) / src_fps)
            if kept * w * h * 3 > max_bytes:
                raise DatasetError(p, f"video too long to decode in memory ({declared} frames of {int(w)}x{int(h)}, "
                                      f"over {max_bytes / 2**30:.1f} GiB once decoded); cut it into clips")

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


class LazyFrames(Sequence[np.ndarray]):
    """A sample's frames (BGR uint8), decoded on first access and cached within a byte budget.

    The tracker touches keyframes first and the aligner every frame afterwards; caching makes that one
    decode per frame for lab datasets, while huge frames (BP4D) keep only a small LRU window in memory.
    An unreadable frame (e.g. a truncated JPEG) becomes a blank frame, so the tracker fills it from its
    neighbours and flags it, and the file name goes into `problems`.
    """

    def __init__(self, sample: Sample, target_fps: float | None):
        self.sample = sample
        self.problems: list[str] = []
        self.bad: set[int] = set()  # positions whose file could not be decoded
        self.decode_seconds = 0.0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._budget = FRAME_CACHE_BYTES
        if sample.frames:
            self.source_index = resample_indices(len(sample.frames), sample.fps, target_fps)
            self._video = None
        elif sample.video is not None:
            t0 = time.perf_counter()
            video = read_video(sample.video, target_fps, default_fps=sample.fps or 25.0, max_bytes=VIDEO_BYTES_LIMIT)
            self.decode_seconds += time.perf_counter() - t0
            self.source_index = video.indices
            self._video = video.frames
        else:
            raise DatasetError(Path(sample.id), "sample has neither frame files nor a video")
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.source_index)

    def size(self, t: int) -> tuple[int, int]:
        """(height, width) of frame t, from the file header where possible (no decode), else by decoding."""
        if self._video is None and t not in self._cache:
            hw = image_size(self.sample.frames[int(self.source_index[t])])
            if hw is not None and min(hw) > 0:
                return hw
        return tuple(self[t].shape[:2])  # type: ignore[return-value]

    def sizes(self) -> list[tuple[int, int]]:
        """Every frame's (height, width): a sequence may mix sizes (a resized or re-exported frame)."""
        return [self.size(t) for t in range(len(self))]

    def __getitem__(self, t: int) -> np.ndarray:  # type: ignore[override]
        if self._video is not None:
            return self._video[t]
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        path = self.sample.frames[int(self.source_index[t])]
        t0 = time.perf_counter()
        try:
            frame = read_image(path)
            self._shape = frame.shape
        except DatasetError as e:
            self.problems.append(str(e))
            self.bad.add(t)
            frame = np.zeros(self._shape or (64, 64, 3), np.uint8)
        self.decode_seconds += time.perf_counter() - t0
        self._cache[t] = frame
        while len(self._cache) > 2 and sum(f.nbytes for f in self._cache.values()) > self._budget:
            self._cache.popitem(last=False)
        return frame
