"""Frames read straight from their chunks' bytes: where each one-frame chunk of `/frames` lies in the file.

A store keeps each frame in its own chunk (deflated). Reading one through h5py costs a chunk-index lookup under
h5py's global lock (~10 us, growing with the number of chunks) before the inflate; a streamed epoch reads every
frame it trains on, so that lookup and that lock (no two reader threads can be inside HDF5 at once) bound how
fast frames stream. `ChunkIndex` asks HDF5 once for every chunk's byte offset, size and filter mask
(`H5Dchunk_iter`), then reads a frame with one positional read (`os.pread`) of the HDF5 file's own descriptor and
one `zlib` inflate: both release the GIL, so several threads read at once and none waits on HDF5.

Only files whose frames are in one-frame chunks, deflated or not and with no other filter, qualify
(`one_frame_chunks`); any other layout is read through h5py. Every chunk is checked as it is read: a chunk
that lies past the end of the file (a truncated file), or that does not inflate to exactly one frame, is a
`DatasetError` naming the file, never a wrong frame.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from ferbench.errors import DatasetError, FerbenchError


#: What to do about a chunk that cannot be read.
AGAIN = "the file was changed or damaged after it was written: prepare it again (or restore it) and rerun"
#: Threads that read chunks at once (a streamed batch, a block of `Store.load`), at most.
MAX_READ_THREADS = 4


def read_threads(spare: int = 1) -> int:
    """Reader threads: `$FERBENCH_READ_THREADS` where set (a whole number >= 1: a shared node's share), else the
    cores this process may use less `spare` (left to the training the reads feed: on 2 cores, one reader thread
    gave a 16% shorter streamed epoch than two), at least 1 and at most `MAX_READ_THREADS`."""
    given = os.environ.get("FERBENCH_READ_THREADS", "").strip()
    if given:
        if not (given.isascii() and given.isdigit()) or int(given) < 1:  # str.isdigit passes "²", which int refuses
            raise FerbenchError(f"FERBENCH_READ_THREADS must be a whole number >= 1; got {given!r}")
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_READ_THREADS, cores - spare))


def one_frame_chunks(ds: h5py.Dataset) -> bool:
    """Chunks of one frame, deflated or not, with no other filter: readable chunk by chunk with zlib."""
    return (ds.chunks == (1, *ds.shape[1:]) and ds.compression in (None, "gzip") and not ds.shuffle
            and not ds.fletcher32 and ds.scaleoffset is None)


class ChunkIndex:
    """Byte offset, stored size and filter mask of every one-frame chunk of a frames dataset.

    Memory: 17 bytes per frame (a million frames: 17 MB), whatever the frame size.

    >>> import tempfile, numpy as np, h5py
    >>> path = tempfile.mkdtemp() + "/f.h5"
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("frames", data=np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3),
    ...                          chunks=(1, 2, 2, 3), compression="gzip")
    >>> f = h5py.File(path, "r")
    >>> index = ChunkIndex(path, f["frames"])
    >>> bool((index.read(np.array([3, 1])) == f["frames"][[1, 3]][::-1]).all())
    True
    """

    def __init__(self, path: str | Path, ds: h5py.Dataset):
        if not one_frame_chunks(ds):
            raise ValueError(f"{path}: frames are not stored one frame per chunk")
        self.path = Path(path)
        self.frame_shape: tuple[int, ...] = tuple(ds.shape[1:])
        self.dtype = ds.dtype
        self.frame_bytes = int(np.prod(self.frame_shape)) * ds.dtype.itemsize
        self.deflated = ds.compression == "gzip"
        n = int(ds.shape[0])
        self.offset = np.full(n, -1, dtype=np.int64)  # -1: chunk never written (reads as the fill value)
        self.size = np.zeros(n, dtype=np.int32)
        self.raw = np.zeros(n, dtype=bool)  # filter skipped for this chunk: stored as is
        self.fill = np.zeros(self.frame_shape, dtype=self.dtype)
        if ds.fillvalue:
            self.fill[...] = ds.fillvalue

        def visit(info: h5py.h5d.StoreInfo) -> None:
            i = info.chunk_offset[0]
            self.offset[i], self.size[i], self.raw[i] = info.byte_offset, info.size, bool(info.filter_mask & 1)

        ds.id.chunk_iter(visit)
        self._fd = ds.file.id.get_vfd_handle()  # the descriptor HDF5 itself reads: the same file, not a path
        self._end = os.fstat(self._fd).st_size
        bad = np.nonzero((self.offset >= 0) & (self.offset + self.size > self._end))[0]
        if len(bad):
            raise DatasetError(self.path, f"truncated file: the chunk of frame {int(bad[0])} lies past its end "
                                          f"({len(bad)} such frames); run `ferbench prepare` again")

    def close(self) -> None:
        """Forget the descriptor (the store closes it): a later read is an error, never a read of whatever file
        the system gives that descriptor number next."""
        self._fd = -1

    def read(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames at absolute numbers `frames` (any order, repeats allowed): (k, *frame_shape). Thread-safe."""
        if self._fd < 0:
            raise DatasetError(self.path, "was closed; reopen it to read its frames")
        frames = np.asarray(frames, dtype=np.int64)
        if len(frames) and (frames.min() < 0 or frames.max() >= len(self.offset)):  # never numpy's wrap-around
            raise IndexError(f"{self.path}: frame numbers must lie in 0..{len(self.offset) - 1}")
        if out is None:
            out = np.empty((len(frames), *self.frame_shape), dtype=self.dtype)
        if not len(frames):
            return out  # (0, *frame_shape), as h5py's path gives (numpy cannot reshape 0 rows to (0, -1))
        flat = out.reshape(len(frames), -1).view(np.uint8)
        offsets, sizes, raw = self.offset[frames].tolist(), self.size[frames].tolist(), self.raw[frames].tolist()
        for i, (at, size, as_is) in enumerate(zip(offsets, sizes, raw)):
            if at < 0:
                out[i] = self.fill
                continue
            data = os.pread(self._fd, size, at)
            if len(data) == size and self.deflated and not as_is:
                try:
                    data = zlib.decompress(data, 15, self.frame_bytes)
                except zlib.error as e:
                    raise DatasetError(self.path, f"frame {int(frames[i])} could not be read: its chunk is damaged "
                                                  f"({e}); {AGAIN}") from None
            if len(data) != self.frame_bytes:
                raise DatasetError(self.path, f"frame {int(frames[i])} could not be read: its chunk is truncated or "
                                              f"damaged ({len(data)} bytes where a frame has {self.frame_bytes}); "
                                              f"{AGAIN}")
            flat[i] = np.frombuffer(data, dtype=np.uint8)
        return out
