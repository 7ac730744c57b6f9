"""Frames read straight from their chunks (`ferbench.store.chunks`): the same bytes h5py reads, in any order and
from several threads at once; a truncated file or a damaged chunk is an error naming the file, never a frame."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ferbench.errors import DatasetError
from ferbench.harness.sources import StreamedFrames
from ferbench.store import open_store
from ferbench.store.chunks import ChunkIndex

CPU = torch.device("cpu")


def frames_file(path: Path, n: int = 40, compression: str | None = "gzip", unwritten: int | None = None) -> np.ndarray:
    """/frames of `n` random 6x5 frames in one-frame chunks (frame `unwritten` never written); returns them."""
    data = np.random.default_rng(0).integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", shape=data.shape, dtype=np.uint8, chunks=(1, 6, 5, 3), compression=compression)
        for i in range(n):
            if i != unwritten:
                ds[i] = data[i]
    if unwritten is not None:
        data[unwritten] = 0
    return data


@pytest.mark.parametrize("compression", ["gzip", None])
def test_any_order_and_repeats_read_the_h5py_frames(tmp_path, compression):
    data = frames_file(tmp_path / "f.h5", compression=compression, unwritten=7)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        index = ChunkIndex(tmp_path / "f.h5", f["frames"])
        want = np.array([39, 0, 7, 7, 12, 0, 38])
        assert np.array_equal(index.read(want), data[want])
        for outside in (-1, 40):  # not numpy's wrap-around to the last frame
            with pytest.raises(IndexError):
                index.read(np.array([0, outside]))
        with ThreadPoolExecutor(4) as pool:  # threads share the descriptor: positional reads, no shared offset
            parts = list(pool.map(index.read, np.array_split(np.arange(40)[::-1], 8)))
        assert np.array_equal(np.concatenate(parts), data[::-1])


def test_a_file_truncated_while_open_is_refused_naming_it(tmp_path):
    """HDF5 refuses a truncated file when it opens it; one cut short while a run streams from it (another
    process rewriting it) is refused at the first frame past the new end, and at the next index built."""
    path = tmp_path / "f.h5"
    frames_file(path, n=200)
    with h5py.File(path, "r") as f:
        index = ChunkIndex(path, f["frames"])
        last = int(index.offset.max())
        with open(path, "r+b") as fh:
            fh.truncate(last + 4)  # the last chunk now ends past the end of the file
        assert index.read(np.array([0])).shape == (1, 6, 5, 3)
        with pytest.raises(DatasetError, match="truncated") as err:
            index.read(np.array([int(index.offset.argmax())]))
        assert str(path) in str(err.value)
        with pytest.raises(DatasetError, match="truncated file"):
            ChunkIndex(path, f["frames"])


def test_a_damaged_chunk_is_refused_naming_the_file_and_frame(tmp_path):
    path = tmp_path / "f.h5"
    data = frames_file(path)
    with h5py.File(path, "r") as f:
        info = f["frames"].id.get_chunk_info(5)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    with h5py.File(path, "r") as f:
        index = ChunkIndex(path, f["frames"])
        assert np.array_equal(index.read(np.array([4, 6])), data[[4, 6]])  # the others still read
        with pytest.raises(DatasetError, match="frame 5") as err:
            index.read(np.array([4, 5]))
    assert str(path) in str(err.value)


def test_a_layout_that_is_not_one_frame_per_chunk_is_read_through_h5py(tmp_path):
    from _harness_data import make_store

    path = make_store(tmp_path / "d.h5", subjects=2)
    with open_store(path) as s:
        want = s._f["frames"][...]
    with h5py.File(path, "r+") as f:  # the same frames in 4-frame chunks
        del f["frames"]
        f.create_dataset("frames", data=want, chunks=(4, *want.shape[1:]), compression="gzip")
    with open_store(path) as s:
        assert s.chunk_index() is None
        idx = np.arange(0, len(want), 3)
        assert np.array_equal(s.read_frames(idx), want[idx])


@pytest.mark.parametrize("readers", [1, 3])
def test_streamed_batches_do_not_depend_on_the_reader_threads(tmp_path, readers):
    from _harness_data import make_store

    path = make_store(tmp_path / "d.h5", subjects=3)
    with open_store(path) as s:
        rows = list(range(len(s.samples)))
        one = StreamedFrames(s, "clip", rows, CPU, readers=1)
        many = StreamedFrames(s, "clip", rows, CPU, readers=readers)
        pos = torch.tensor(rows[::-1] + rows[:3])
        frames = one._clip_frames(pos)[0]
        many_x = many._read(frames)
        assert many_x.is_contiguous() and torch.equal(one._read(frames), many_x)
        want = np.moveaxis(s._f["frames"][...], -1, -3)[frames]
        assert np.array_equal(many_x.numpy(), want)


@pytest.mark.parametrize("index", ["clip", "native"])
def test_load_in_threaded_blocks_reads_the_h5py_frames(tmp_path, monkeypatch, index):
    from _harness_data import make_store

    import ferbench.store.reader as reader

    monkeypatch.setattr(reader, "LOAD_BLOCK", 8)  # many blocks: several threads fill x at once
    path = make_store(tmp_path / "d.h5", subjects=3)
    with open_store(path) as s:
        assert s.chunk_index() is not None
        absolute = s.frame_table(index, list(range(len(s.samples))))[0]
        want = np.moveaxis(s._f["frames"][...], -1, -3)[absolute]
        assert np.array_equal(s.load(index=index).x.numpy(), want)


def test_a_closed_store_never_reads_through_a_reused_descriptor(tmp_path):
    """After close, the descriptor number may belong to another file: a stale reader must refuse, not read it."""
    data = frames_file(tmp_path / "f.h5", compression=None)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        index = ChunkIndex(tmp_path / "f.h5", f["frames"])
        assert np.array_equal(index.read(np.array([2])), data[[2]])
    index.close()
    with pytest.raises(DatasetError, match="closed"):
        index.read(np.array([2]))


def test_read_threads_follow_the_cores_and_the_environment(monkeypatch):
    from ferbench.errors import FerbenchError
    from ferbench.store.chunks import MAX_READ_THREADS, read_threads

    monkeypatch.delenv("FERBENCH_READ_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert read_threads() == max(1, min(MAX_READ_THREADS, cores - 1))  # a core left to the training
    assert read_threads(spare=0) == min(MAX_READ_THREADS, cores)  # the resident load: nothing else runs
    monkeypatch.setenv("FERBENCH_READ_THREADS", "7")
    assert read_threads() == 7
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FERBENCH_READ_THREADS", bad)
        with pytest.raises(FerbenchError, match="FERBENCH_READ_THREADS"):
            read_threads()
