"""Where a task's frames come from: one interface, two sources.

- `ResidentFrames`: the frames of one index loaded once onto the device (`Store.load`), batches gathered in
  memory. The fast path, used whenever the frames fit the task's memory budget (`ferbench.harness.memory`).
- `StreamedFrames`: batches read from the HDF5 file as they are needed, chunk by chunk (a stored frame is one
  chunk), by a prefetch thread that reads the next batches while the model trains on this one; the frames of
  one batch are read by up to `read_threads()` threads at once (`Store.read_frames` reads outside HDF5's
  lock and the GIL, `ferbench.store.chunks`). Memory: at most `PREFETCH_DEPTH` batches of uint8 frames beside
  the one in use, whatever the size of the file.

Both give the same uint8 batches for the same positions (the same frames, in the same order, with the same
padding), so augmentation (applied afterwards, on the caller's thread, with the caller's generator), batch
order and predictions do not depend on the source. Callers say which batches come next (`plan_clips`,
`plan_windows`) where they know it; a resident source ignores that, a streamed one starts reading them.
"""

from __future__ import annotations

import queue
import threading
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ferbench.errors import FerbenchError
from ferbench.store import Loaded, Store
from ferbench.store.chunks import read_threads

#: Batches a streamed source reads ahead of the one in use.
PREFETCH_DEPTH = 2
#: The fewest frames of a batch worth one more reader thread.
MIN_FRAMES_PER_READER = 32


class FrameSource(ABC):
    """The frames of one index of one data file for one task: uint8 batches by position (into `ids`)."""

    mode: str  # "resident" | "streamed"

    def __init__(self, path: object, index: str, ids: list[str], device: torch.device):
        self.path, self.index, self.ids, self.device = path, index, ids, device
        self._pos = {sid: i for i, sid in enumerate(ids)}

    def positions(self, ids: tuple[str, ...] | list[str]) -> torch.Tensor:
        """Positions of `ids` in this source (states: refuses samples without a states index)."""
        missing = [i for i in ids if i not in self._pos]
        if missing:
            why = "has no expression-state index" if self.index == "states" else "is not in the file"
            raise FerbenchError(f"{self.path}: sample {missing[0]!r} {why} ({len(missing)} such samples)")
        return torch.tensor([self._pos[i] for i in ids], dtype=torch.int64)

    @abstractmethod
    def gather_clips(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 3, H, W) uint8 clips on the device and their lengths (native index: right-padded by
        repeating each sample's last frame)."""

    @abstractmethod
    def gather_windows(self, pos: torch.Tensor, local: torch.Tensor, length: int) -> torch.Tensor:
        """(B, length, 3, H, W) uint8 windows ending at frame `local` of sample `pos` (native index); frames
        before a sample's first frame repeat its first frame."""

    @abstractmethod
    def unit_aus(self, pos: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """(B, A) int8 AU labels of frame `local` of sample `pos` (native index), on the device."""

    def plan_clips(self, batches: list[torch.Tensor]) -> None:
        """The `gather_clips` calls that come next, in order (a hint: other calls are still answered)."""

    def plan_windows(self, batches: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        """The `gather_windows` calls that come next, in order (a hint)."""


class ResidentFrames(FrameSource):
    """Frames loaded onto the device once; batches are index operations on that tensor."""

    mode = "resident"

    def __init__(self, path: object, data: Loaded):
        super().__init__(path, data.index, list(data.ids), data.x.device)
        self.data = data

    def gather_clips(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data, dev = self.data, self.data.x.device
        pos = pos.to(dev)
        if data.index != "native":
            x = data.x.index_select(0, pos)
            return x, torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=dev)
        starts, counts = data.offsets[pos, 0], data.offsets[pos, 1]
        steps = torch.arange(int(counts.max()), device=dev)
        idx = starts[:, None] + torch.minimum(steps[None, :], counts[:, None] - 1)
        return data.x[idx], counts

    def gather_windows(self, pos: torch.Tensor, local: torch.Tensor, length: int) -> torch.Tensor:
        dev = self.data.x.device
        starts = self.data.offsets[pos.to(dev), 0]
        return self.data.x[starts[:, None] + _window_steps(local.to(dev), length)]

    def unit_aus(self, pos: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        dev = self.data.x.device
        return self.data.aus[self.data.offsets[pos.to(dev), 0] + local.to(dev)]


def _window_steps(local: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) frame offsets, from a sample's first frame, of the windows ending at `local` (clamped at 0)."""
    return (local[:, None] - (length - 1) + torch.arange(length, device=local.device)[None, :]).clamp_min(0)


class StreamedFrames(FrameSource):
    """Frames read from the store per batch (only the chunks the batch needs), read ahead by a `Prefetcher`."""

    mode = "streamed"

    def __init__(self, store: Store, index: str, rows: list[int], device: torch.device,
                 depth: int = PREFETCH_DEPTH, readers: int | None = None):
        super().__init__(store.path, index, [store.samples[r].id for r in rows], device)
        self.store = store
        self.readers = max(1, readers if readers is not None else read_threads())
        self._readers_pool: ThreadPoolExecutor | None = None
        self.start = np.array([store.samples[r].frame_start for r in rows], dtype=np.int64)
        self.count = np.array([store.samples[r].frame_count for r in rows], dtype=np.int64)
        self.table = None if index == "native" else store.frame_table(index, rows)[0]
        self._aus: np.ndarray | None = None
        self.prefetch = Prefetcher(self._read, depth)

    # -- which frames a call needs (absolute frame numbers, as the resident source would gather them) ------
    def _clip_frames(self, pos: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = pos.cpu().numpy()
        if self.table is not None:
            return self.table[p], np.full(len(p), self.table.shape[1], np.int64)
        counts = self.count[p]
        steps = np.arange(int(counts.max()) if len(p) else 0)
        return self.start[p][:, None] + np.minimum(steps[None, :], counts[:, None] - 1), counts

    def _window_frames(self, pos: torch.Tensor, local: torch.Tensor, length: int) -> np.ndarray:
        return self.start[pos.cpu().numpy()][:, None] + _window_steps(local.cpu(), length).numpy()

    # -- reading -----------------------------------------------------------------------------------------
    def _read(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (*frames.shape, 3, H, W): each distinct frame read once, by `readers` threads at once (where
        the store reads outside HDF5's lock, `Store.chunk_index`); pinned for a fast copy to a GPU."""
        uniq, inverse = np.unique(frames, return_inverse=True)
        parts = np.array_split(uniq, min(self.readers, max(1, len(uniq) // MIN_FRAMES_PER_READER)))
        if len(parts) > 1:
            stored = np.concatenate(list(self._pool().map(self._read_distinct, parts)))
        else:
            stored = self._read_distinct(uniq)  # (k, H, W, 3)
        h, w, c = stored.shape[1:]
        # channels first and C-contiguous, as resident batches are; pinned (page-locked) for a GPU's copy
        x = torch.empty((*frames.shape, c, h, w), dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        np.take(np.moveaxis(stored, -1, -3), inverse.reshape(frames.shape), axis=0, out=x.numpy())  # one copy
        return x

    def _read_distinct(self, uniq: np.ndarray) -> np.ndarray:
        """(k, H, W, 3) frames at increasing absolute numbers `uniq`; a read error is one error naming the file."""
        try:
            return self.store.read_frames(uniq)
        except FerbenchError:  # the chunk reader's own (names the file and the frame)
            raise
        except (OSError, RuntimeError, ValueError, KeyError, zlib.error) as e:  # h5py's and zlib's read errors
            what = f"frames {uniq[0]}-{uniq[-1]}" if len(uniq) else "frames"
            raise FerbenchError(f"{self.path}: {what} could not be read while streaming ({type(e).__name__}: {e}); "
                                "the file was changed, truncated or damaged after this task opened it: prepare it "
                                "again (or restore it) and rerun") from e

    def _pool(self) -> ThreadPoolExecutor:
        if self._readers_pool is None:
            self._readers_pool = ThreadPoolExecutor(self.readers, thread_name_prefix="ferbench-read")
        return self._readers_pool

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True) if self.device.type == "cuda" else x

    def gather_clips(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self._clip_frames(pos)
        return self._to_device(self.prefetch.get(frames)), torch.from_numpy(lengths).to(self.device)

    def gather_windows(self, pos: torch.Tensor, local: torch.Tensor, length: int) -> torch.Tensor:
        return self._to_device(self.prefetch.get(self._window_frames(pos, local, length)))

    def unit_aus(self, pos: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        if self._aus is None:
            aus = self.store.per_frame("aus")  # one byte per frame and AU: small beside the frames
            if aus is None:
                raise FerbenchError(f"{self.path}: the file holds no AU labels")
            self._aus = aus
        frames = self.start[pos.cpu().numpy()] + local.cpu().numpy()
        return torch.from_numpy(np.ascontiguousarray(self._aus[frames])).to(self.device)

    def plan_clips(self, batches: list[torch.Tensor]) -> None:
        self.prefetch.schedule([self._clip_frames(b)[0] for b in batches])

    def plan_windows(self, batches: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        self.prefetch.schedule([self._window_frames(p, loc, length) for p, loc in batches])

    def stop(self) -> None:
        """Stop reading ahead (a task that ends before its planned batches, e.g. on a divergence or an error,
        leaves no reader thread behind)."""
        self.prefetch.cancel()
        if self._readers_pool is not None:
            self._readers_pool.shutdown(wait=True)
            self._readers_pool = None


class Prefetcher:
    """Reads scheduled requests in order on one background thread, at most `depth` results ahead of the
    caller; `get` hands them out in that order. A request that is not the next scheduled one cancels the
    schedule and is read on the caller's thread (the answer is the same either way).

    `held` / `peak`: bytes of results read but not yet handed out, now and at most (<= depth batches).
    """

    def __init__(self, read: Callable[[np.ndarray], torch.Tensor], depth: int = PREFETCH_DEPTH):
        if depth < 1:
            raise ValueError("prefetch depth must be at least 1")
        self._read, self.depth = read, depth
        self._pending: deque[np.ndarray] = deque()
        self._results: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.Semaphore(depth)
        self._lock = threading.Lock()
        self.held = 0
        self.peak = 0

    def schedule(self, requests: list[np.ndarray]) -> None:
        """Start reading `requests` (in this order) in the background, dropping any earlier schedule."""
        self.cancel()
        if not requests:
            return
        self._pending = deque(requests)
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.depth)
        self._results = queue.Queue()
        self._thread = threading.Thread(target=self._work, args=(list(requests), self._stop, self._slots,
                                                                 self._results), daemon=True,
                                        name="ferbench-prefetch")
        self._thread.start()

    def _work(self, requests: list[np.ndarray], stop: threading.Event, slots: threading.Semaphore,
              results: queue.Queue) -> None:
        for req in requests:
            while not slots.acquire(timeout=0.05):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                item: tuple[torch.Tensor | None, BaseException | None] = (self._read(req), None)
            except BaseException as e:  # handed to the caller by `get`
                item = (None, e)
            if item[0] is not None:
                self._account(item[0].nbytes)
            results.put(item)
            if item[1] is not None:
                return

    def _account(self, nbytes: int) -> None:
        with self._lock:
            self.held += nbytes
            self.peak = max(self.peak, self.held)

    def get(self, request: np.ndarray) -> torch.Tensor:
        """The frames of `request`: the prefetched result when it is the next scheduled one, else read now."""
        if self._pending and self._pending[0].shape == request.shape and np.array_equal(self._pending[0], request):
            self._pending.popleft()
            x, error = self._results.get()
            self._slots.release()
            if error is not None:
                self.cancel()
                raise error
            self._account(-x.nbytes)
            return x
        self.cancel()
        return self._read(request)

    def cancel(self) -> None:
        """Stop the background reads and drop what they read."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._pending.clear()
        self._results = queue.Queue()
        with self._lock:
            self.held = 0
