"""Frame decoding: every input format becomes BGR uint8 with the right pixels; broken files name themselves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferbench.datasets.base import Sample
from ferbench.errors import DatasetError
from ferbench.preprocess.frames import (
    LazyFrames,
    read_image,
    read_video,
    resample_indices,
    to_bgr_uint8,
)


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR image whose three channels differ, so channel swaps and drops are visible."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], axis=2).astype(np.uint8)


def test_grey_png_becomes_bgr(tmp_path: Path) -> None:
    grey = _gradient()[:, :, 0]
    p = tmp_path / "grey.png"
    cv2.imwrite(str(p), grey)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_rgba_png_drops_alpha_keeps_colours(tmp_path: Path) -> None:
    bgr = _gradient()
    alpha = np.full(bgr.shape[:2], 77, np.uint8)
    p = tmp_path / "rgba.png"
    cv2.imwrite(str(p), np.dstack([bgr, alpha]))
    assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[2] == 4  # really written with alpha
    out = read_image(p)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("colour", [False, True])
def test_16bit_images_scale_to_uint8(tmp_path: Path, suffix: str, colour: bool) -> None:
    img8 = _gradient() if colour else _gradient()[:, :, 1]
    img16 = img8.astype(np.uint16) * 257  # full-range 16-bit version of the same picture
    p = tmp_path / f"deep{suffix}"
    assert cv2.imwrite(str(p), img16)
    assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    expected = img8 if colour else np.dstack([img8] * 3)
    np.testing.assert_array_equal(out, expected)


def test_to_bgr_uint8_floats_and_grey_alpha() -> None:
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = to_bgr_uint8(f)
    assert out.shape == (3, 4, 3) and out[0, 0, 0] == 0 and out[-1, -1, 2] == 255
    ga = np.dstack([np.full((2, 2), 9, np.uint8), np.full((2, 2), 200, np.uint8)])  # grey + alpha
    np.testing.assert_array_equal(to_bgr_uint8(ga), np.full((2, 2, 3), 9, np.uint8))


def test_jpeg_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "ok.jpg"
    cv2.imwrite(str(p), _gradient(), [cv2.IMWRITE_JPEG_QUALITY, 98])
    out = read_image(p)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - _gradient().astype(int)).mean() < 6


def test_zero_byte_image_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "S005_001_00000001.jpg"
    p.write_bytes(b"")
    with pytest.raises(DatasetError) as ei:
        read_image(p)
    assert ei.value.path == p and p.name in str(ei.value) and "zero-byte" in str(ei.value)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", np.tile(_gradient(), (4, 4, 1)))
    data = buf.tobytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as ei:
        read_image(p)
    assert p.name in str(ei.value) and "truncated" in str(ei.value)
    # a JPEG that ends with only trailing padding after FF D9 is fine
    q = tmp_path / "padded.jpg"
    q.write_bytes(data + b"\x00\x00")
    assert read_image(q).shape == (192, 256, 3)


def test_truncated_png_and_missing_and_garbage(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".png", _gradient())
    data = buf.tobytes()
    p = tmp_path / "half.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="half.png"):
        read_image(p)
    with pytest.raises(DatasetError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    g = tmp_path / "garbage.bmp"
    g.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="garbage.bmp"):
        read_image(g)


def _write_video(path: Path, n: int = 30, fps: float = 25.0) -> None:
    """An MJPG AVI whose frame i has brightness 8*i, so decoded frames can be identified."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((48, 64, 3), 8 * i, np.uint8))
    w.release()


def _frame_ids(frames: list[np.ndarray]) -> list[int]:
    return [int(round(float(f.mean()) / 8)) for f in frames]


def test_video_decode_and_resample(tmp_path: Path) -> None:
    p = tmp_path / "S001.avi"
    _write_video(p, 30, 25.0)
    v = read_video(p)
    assert len(v) == 30 and v.src_fps == pytest.approx(25.0)
    assert v.frames[0].dtype == np.uint8 and v.frames[0].shape == (48, 64, 3)
    assert _frame_ids(v.frames) == list(range(30))

    v10 = read_video(p, target_fps=10)
    assert v10.fps == 10 and list(v10.indices) == list(resample_indices(30, 25, 10))
    assert _frame_ids(v10.frames) == list(v10.indices)  # the frames really are those source frames
    # each kept frame is the source frame nearest to its target time k / 10 s
    times = np.arange(len(v10)) / 10.0
    assert np.all(np.abs(v10.indices / 25.0 - times) <= 0.5 / 25.0 + 1e-9)
    assert len(v10) == 12  # 1.2 s at 10 fps


def test_resample_indices_rules() -> None:
    assert list(resample_indices(5, 10, 10)) == [0, 1, 2, 3, 4]  # no upsampling
    assert list(resample_indices(5, 10, None)) == [0, 1, 2, 3, 4]
    assert list(resample_indices(0, 25, 10)) == []
    idx = resample_indices(250, 25, 10)  # 10 s
    assert len(idx) == 100 and set(np.diff(idx)) <= {2, 3}
    assert list(resample_indices(9, 30, 10)) == [0, 3, 6]


def test_zero_byte_and_garbage_video(tmp_path: Path) -> None:
    z = tmp_path / "empty.avi"
    z.write_bytes(b"")
    with pytest.raises(DatasetError) as ei:
        read_video(z)
    assert ei.value.path == z and "zero-byte" in str(ei.value)
    g = tmp_path / "noise.avi"
    g.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(DatasetError) as ei:
        read_video(g)
    assert "noise.avi" in str(ei.value)


def test_truncated_video(tmp_path: Path) -> None:
    p = tmp_path / "full.avi"
    _write_video(p, 30)
    data = p.read_bytes()
    t = tmp_path / "cut.avi"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cut.avi.*truncated"):
        read_video(t)
    partial = read_video(t, allow_truncated=True)
    assert 0 < len(partial) < 30 and _frame_ids(partial.frames) == list(range(len(partial)))


def test_lazy_frames_resample_and_repair_unreadable_files(tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        p = tmp_path / f"img{i:03d}.png"
        cv2.imwrite(str(p), np.full((8, 8), 8 * i, np.uint8))
        paths.append(p)
    paths[5].write_bytes(paths[5].read_bytes()[:20])  # truncated PNG, kept at 10 fps
    frames = LazyFrames(Sample(id="x", dataset="test", subject="1", label=0, frames=paths, fps=25.0), target_fps=10)
    assert list(frames.source_index) == [0, 3, 5, 8] and len(frames) == 4
    assert _frame_ids([frames[0], frames[1], frames[3]]) == [0, 3, 8] and frames[0].shape == (8, 8, 3)
    assert not frames[2].any() and frames.bad == {2}  # the broken file: a blank frame, recorded by name
    assert len(frames.problems) == 1 and "img005.png" in frames.problems[0]


def test_video_too_long_for_memory_is_refused_by_name(tmp_path: Path) -> None:
    p = tmp_path / "long.avi"
    _write_video(p, 30)
    read_video(p, max_bytes=30 * 64 * 48 * 3)  # exactly fits
    with pytest.raises(DatasetError, match="long.avi.*too long"):
        read_video(p, max_bytes=10 * 64 * 48 * 3)
    read_video(p, target_fps=10, max_bytes=13 * 64 * 48 * 3)  # resampling 25 -> 10 fps keeps 12 frames
