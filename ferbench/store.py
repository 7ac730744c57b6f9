"""The ferbench HDF5 store: one self-describing, versioned file per dataset and preprocessing config.

Layout of a finished file (schema version 2; every string is UTF-8, no pickles anywhere, SPEC 8)::

    /                      attrs: format="ferbench-store", schema_version=1, dataset, classes (JSON list),
                                  config (JSON object, includes "length" = T), aligner, ferbench_version,
                                  source_root, created (ISO 8601 UTC), n_samples, n_frames, length
    /frames                uint8   (F, H, W, 3)  aligned RGB faces, every sample's native frames back to back;
                                   chunks of one frame, gzip level 4
    /landmarks             float32 (F, 5, 2)     5 points (eyes, nose, mouth corners) in aligned-crop pixels
    /flags                 uint8   (F,)          FLAG_* codes; attr `meanings` (JSON {code: name})
    /source_frame          int64   (F,)          each frame's number in the native data (the number in its file
                                                 name, e.g. BP4D 2440 or CK+ 11, or its index in the video), to
                                                 join with outside label files and undo frame-rate resampling
    /aus                   int8    (F, n_aus)    1/0, -1 unknown; attr `au_names` (JSON) -- only for AU datasets
    /samples/<column>      one 1-D dataset per column, one row per sample, rows sorted by id:
                           id, subject, split ("" = none), mode (JSON object): UTF-8 strings;
                           label int32 (-1 = none), frame_start int64, frame_count int32, fps float64,
                           onset/apex/offset int32 (-1 = none), apex_estimated uint8 (0/1),
                           coverage float32 (fraction of the sample's frames where the tracked face was found:
                           detected or interpolated between two detections; schema 2, computed from /flags when
                           a version-1 file is read)
    /index/clip            int32 (n, T)  temporal normalisation, frame positions relative to frame_start
    /index/states          int32 (n, 5)  expression-state frames (onset, onset-apex, apex, apex-offset,
                                         offset), relative to frame_start; -1 rows = none
    /failures/id, /failures/reason   UTF-8 strings: samples excluded (e.g. no face), sorted by id

Writing (`StoreWriter`) is crash-safe by construction rather than by flushing one big HDF5 file (HDF5
gives no guarantee that a file killed between flushes can be reopened): the temporary output
`<path>.tmp/` is a folder holding `manifest.json` (the identity of the run) and one small HDF5 shard per
finished sample, written as `*.part` and renamed into place only once complete (SPEC 2 allows "per-worker
shards merged at the end"). A killed run therefore leaves only whole, readable shards plus at most one
`*.part`, which a resume deletes; `done_ids` lists the finished samples. `finalize()` copies the shards
in sorted-id order into `<path>.tmp/final.h5.part` (frames chunk by chunk, still compressed) and renames
it to `<path>` atomically, so the same input and config give the same arrays whatever the arrival order.
`<path>.lock` (pid + host, created with O_CREAT|O_EXCL and held with flock) refuses a second writer.
Each shard (and each recorded failure) carries its sample's input fingerprint, so a resume can tell a
finished sample from one whose input changed since (`fingerprints`). Every write error (OSError, or the
RuntimeError h5py raises on a full disk) becomes one `StoreIOError` naming the file; finished shards stay.

Reading (`Store`) checks the file's consistency, not only its presence: column lengths against
`n_samples`, per-frame arrays against `n_frames`, labels within the class list, each sample's frame range
inside `/frames` and its indices inside its frames; a damaged file is one DatasetError naming what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import ferbench
from ferbench.errors import DatasetError, FerbenchError

try:
    import fcntl
except ImportError:  # not POSIX: the pid check alone decides whether a lock is stale
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 2
#: Older schema versions this reader still reads (version 1 lacks `samples/coverage`: computed from /flags).
READABLE_VERSIONS = (1, 2)
FORMAT_NAME = "ferbench-store"

#: Per-frame face flags (`/flags`): how the frame's landmarks were obtained.
FLAG_NONE = 0  # not set by the pipeline
FLAG_DETECTED = 1  # face and landmarks found by the detector on this frame
FLAG_INTERPOLATED = 2  # landmarks tracked/interpolated between detections
FLAG_FILLED = 3  # no face found: frame filled from a neighbour
FLAG_MEANINGS = {FLAG_NONE: "none", FLAG_DETECTED: "detected", FLAG_INTERPOLATED: "interpolated", FLAG_FILLED: "filled"}

STATE_NAMES = ("onset", "onset-apex", "apex", "apex-offset", "offset")
_STR = h5py.string_dtype("utf-8")
_FRAME_COMPRESSION = {"compression": "gzip", "compression_opts": 4}
_STRING_COLUMNS = ("id", "subject", "split", "mode")
_INT_COLUMNS = {
    "label": "i4",
    "frame_start": "i8",
    "frame_count": "i4",
    "onset": "i4",
    "apex": "i4",
    "offset": "i4",
    "apex_estimated": "u1",
}


# --------------------------------------------------------------------------------------------- records
@dataclass
class SampleRecord:
    """What the store keeps about one sample besides its pixels (a `Sample` minus paths, plus its indices).

    `clip` (length T) and `states` (5) are frame positions into this sample's own frames (0-based).
    """

    id: str
    subject: str
    label: int | None = None
    clip: np.ndarray | Sequence[int] | None = None
    states: np.ndarray | Sequence[int] | None = None
    split: str | None = None
    mode: dict[str, str] = field(default_factory=dict)
    fps: float = 30.0
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    apex_estimated: bool = False
    coverage: float | None = None  # None = computed from the flags when written

    @classmethod
    def from_sample(cls, sample: Any, **overrides: Any) -> SampleRecord:
        """Copy the fields of a `ferbench.datasets.base.Sample` (duck-typed: the store does not import the
        adapters); `overrides` set clip/states and anything preprocessing changed (fps, onset/apex/offset
        after resampling, apex_estimated)."""
        kw = {
            name: getattr(sample, name)
            for name in ("id", "subject", "label", "split", "mode", "fps", "onset", "apex", "offset", "apex_estimated")
        }
        kw.update(overrides)
        return cls(**kw)


class StoreIOError(FerbenchError):
    """Writing the store failed (full disk, permissions, a vanished folder); finished shards are kept."""


@contextlib.contextmanager
def _io_errors(what: str, path: Path, keep: Path | None = None):
    """Turn OSError and h5py's RuntimeError (raised for ENOSPC and other HDF5 write failures) into one
    StoreIOError line naming the file and what to do.

    While the block runs, the errors h5py reports from object destructors on a failing disk ("Exception
    ignored in ObjectID.__dealloc__", one per open object) are held back: the failure is reported once, as
    one line; after a successful block they are passed on unchanged."""
    held: list[Any] = []
    previous, stderr = sys.unraisablehook, sys.stderr
    sys.unraisablehook, sys.stderr = held.append, io.StringIO()  # h5py prints some of them to stderr itself
    try:
        yield
    except (OSError, RuntimeError) as e:
        gc.collect()  # let h5py's half-closed objects go now, while their complaints are held back
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0] if str(e) else type(e).__name__
        if "errno = 28" in str(e) or getattr(e, "errno", None) == errno.ENOSPC:
            reason = "no space left on device"
        elif "errno = 13" in str(e) or getattr(e, "errno", None) == errno.EACCES:
            reason = "permission denied"
        kept = f"; finished samples are kept in {keep}, rerun the same command to resume" if keep else ""
        held.clear()
        sys.stderr = io.StringIO()
        raise StoreIOError(f"{path}: cannot {what} ({reason}){kept}") from None
    finally:
        printed, sys.stderr, sys.unraisablehook = sys.stderr.getvalue(), stderr, previous
        stderr.write(printed)
        for unraisable in held:
            previous(unraisable)


@dataclass
class StoredSample(SampleRecord):
    """A sample row read back from a store: its record plus where its frames are (`frame_start`, `frame_count`)."""

    index: int = 0
    frame_start: int = 0
    frame_count: int = 0


@dataclass
class Loaded:
    """A whole store (or a subset) as torch tensors on one device (see `Store.load`)."""

    x: Any  # torch.Tensor: clip (n,T,3,H,W) | states (n,5,3,H,W) | native (F,3,H,W), uint8
    labels: Any  # (n,) int64, -1 = none
    subject_index: Any  # (n,) int64 into `subject_names`
    subject_names: list[str]
    subjects: list[str]
    ids: list[str]
    index: str
    offsets: Any = None  # native only: (n, 2) int64 [start, count] into x
    aus: Any = None  # int8, frame-aligned with x ((n,T,A) / (n,5,A) / (F,A)) where the store has AUs


# ------------------------------------------------------------------------------------------------ lock
def _pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _WriteLock:
    """`<output>.lock`: created with O_CREAT|O_EXCL, holds "pid host", and is flock'ed while held.

    The flock is released by the kernel when the holder dies, so a leftover lock is recognised as stale
    without trusting the pid alone; a lock whose pid is alive on this host is never taken over.
    """

    def __init__(self, path: Path, target: Path):
        self.path, self.target = path, target
        self.fd: int | None = None

    def _refuse(self, pid: str, host: str) -> FerbenchError:
        where = f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"
        return FerbenchError(
            f"another ferbench prepare is writing {self.target} ({where}); wait for it to finish "
            f"(if no such process exists, delete {self.path})"
        )

    @staticmethod
    def _read(fd: int) -> tuple[str, str]:
        os.lseek(fd, 0, os.SEEK_SET)
        parts = os.read(fd, 4096).decode("utf-8", "replace").split()
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")

    def _take_over(self) -> int | None:
        """An existing lock file: return its fd (flock'ed) if stale, None to retry creating, else raise."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise self._refuse(*self._read(fd)) from None
            st = os.fstat(fd)
            try:
                cur = os.stat(self.path)
            except FileNotFoundError:
                os.close(fd)
                return None
            if (st.st_ino, st.st_dev) != (cur.st_ino, cur.st_dev):  # replaced meanwhile
                os.close(fd)
                return None
            pid, host = self._read(fd)
            if not pid and time.time() - st.st_mtime < 10:  # its creator has not written its pid yet
                raise self._refuse("?", "")
            if host and host != socket.gethostname():
                raise self._refuse(pid, host)
            if pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
                raise self._refuse(pid, host)
            return fd  # stale (holder dead): ours now
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # our own new file; a prober holds it for microseconds at most
            except FileExistsError:
                fd = self._take_over()
                if fd is None:
                    continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise FerbenchError(f"could not take the lock {self.path}; another process keeps replacing it")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


# ---------------------------------------------------------------------------------------------- writer
def _shard_name(sample_id: str) -> str:
    """A safe, collision-free file name for a sample id (ids may hold any character)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)[:80]
    return f"{safe}-{hashlib.sha1(sample_id.encode()).hexdigest()[:12]}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _coverage(flags: np.ndarray) -> float:
    """Fraction of frames whose face the track found (detected, or interpolated between two detections)."""
    fl = np.asarray(flags)
    return float(np.isin(fl, (FLAG_DETECTED, FLAG_INTERPOLATED)).mean()) if fl.size else 0.0


def _opt(v: int | None) -> int:
    return -1 if v is None else int(v)


def _jsonable(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise FerbenchError(f"{what} must be JSON-serialisable for the store ({e})") from None


class StoreWriter:
    """Streams finished samples into `<path>.tmp/` in any order, resumes after a kill, and `finalize()`s
    into `<path>` (sorted by sample id, atomic rename).

    A leftover `<path>.tmp/` from an identical run (same dataset, classes, config, aligner, AU names,
    source root, schema) is resumed: `done_ids` / `failed_ids` say what to skip. A leftover from a different
    run is refused with a message (never silently thrown away) unless `restart=True`, which deletes it.
    An existing `<path>` is refused unless `overwrite=True` (it stays in place until the new file is
    complete). Call `finalize()` on success; `close()` (or leaving a `with` block) keeps the temp for resume.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dataset: str,
        classes: Sequence[str],
        config: dict[str, Any],
        aligner: str = "",
        source_root: str | Path = "",
        au_names: Sequence[int | str] | None = None,
        overwrite: bool = False,
        restart: bool = False,
        durable: bool = True,
    ):
        self.path = Path(path)
        self.tmp_dir = Path(f"{self.path}.tmp")
        self.lock_path = Path(f"{self.path}.lock")
        self.dataset, self.classes, self.config = dataset, tuple(classes), dict(config)
        self.aligner, self.source_root = aligner, str(source_root)
        self.au_names = tuple(au_names) if au_names else None
        self.durable = durable
        length = self.config.get("length")
        if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 1:
            raise FerbenchError(f"store config needs the clip length as config['length'] (a positive int); got {length!r}")
        self.length = int(length)
        self.identity = {
            "schema_version": SCHEMA_VERSION,
            "dataset": dataset,
            "classes": list(self.classes),
            "config": self.config,
            "aligner": aligner,
            "au_names": list(self.au_names) if self.au_names else None,
            "source_root": self.source_root,
        }
        self._identity_json = _jsonable(self.identity, "the store config")
        self.done_ids: set[str] = set()
        self.failed_ids: dict[str, str] = {}
        self.sample_warnings: dict[str, list[str]] = {}  # per finished sample, including resumed ones
        self.fingerprints: dict[str, str] = {}  # per finished sample (written or failed): its input fingerprint
        self.resumed = False
        self.notes: list[str] = []
        self._counts: dict[str, int] = {}
        self._hw: tuple[int, int] | None = None
        self._open = False
        if self.path.is_dir():
            raise FerbenchError(f"{self.path} is a folder; expected the path of the .h5 file to write")
        with _io_errors("create the output folder", self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not overwrite:
            raise FerbenchError(f"{self.path} already exists; pass --overwrite to replace it")
        self._lock = _WriteLock(self.lock_path, self.path)
        with _io_errors("take the write lock", self.lock_path):
            self._lock.acquire()
        try:
            with _io_errors("prepare the temp folder", self.tmp_dir):
                self._open_tmp(restart)
        except BaseException:
            self._lock.release()
            raise
        self._open = True

    # -- temp folder -----------------------------------------------------------------------------------
    @property
    def _shards(self) -> Path:
        return self.tmp_dir / "shards"

    @property
    def _fails(self) -> Path:
        return self.tmp_dir / "failures"

    def _open_tmp(self, restart: bool) -> None:
        if self.tmp_dir.exists() or self.tmp_dir.is_symlink():
            if restart:
                self._wipe_tmp()
            else:
                self._resume()
                return
        staging = Path(f"{self.tmp_dir}.new-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "shards").mkdir(parents=True)
        (staging / "failures").mkdir()
        (staging / "manifest.json").write_text(json.dumps(self.identity, sort_keys=True, indent=1))
        os.rename(staging, self.tmp_dir)  # the temp folder appears complete with its manifest, or not at all

    def _wipe_tmp(self) -> None:
        if self.tmp_dir.is_dir() and not self.tmp_dir.is_symlink():
            shutil.rmtree(self.tmp_dir)
        else:
            self.tmp_dir.unlink()

    def _resume(self) -> None:
        manifest = self.tmp_dir / "manifest.json"
        try:
            found = json.loads(manifest.read_text())
        except (OSError, ValueError):
            raise FerbenchError(
                f"{self.tmp_dir} is not a ferbench temp folder (no readable manifest.json); "
                "delete it or pass --restart"
            ) from None
        if _jsonable(found, "manifest") != self._identity_json:
            diff = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
            raise FerbenchError(
                f"{self.tmp_dir} holds an interrupted run with a different configuration "
                f"(differs in: {', '.join(diff)}); rerun with the same options to resume it, "
                "or pass --restart to delete it and start over"
            )
        self.resumed = True
        for d in (self._shards, self._fails):
            d.mkdir(exist_ok=True)
            for part in d.glob("*.part"):  # a sample half-written when the run was killed
                part.unlink()
        for shard in sorted(self._shards.glob("*.h5")):
            try:
                with h5py.File(shard, "r") as f:
                    sid = str(f.attrs["id"])
                    n, h, w = f["frames"].shape[:3]
                    warned = json.loads(f.attrs.get("warnings", "[]"))
                    fingerprint = str(f.attrs.get("fingerprint", ""))
            except (OSError, KeyError, RuntimeError, ValueError) as e:
                self.notes.append(f"discarded unreadable shard {shard.name} ({e}); its sample will be redone")
                shard.unlink()
                continue
            self.done_ids.add(sid)
            self._counts[sid] = int(n)
            self.fingerprints[sid] = fingerprint
            if warned:
                self.sample_warnings[sid] = warned
            self._hw = self._hw or (int(h), int(w))
        for fail in sorted(self._fails.glob("*.json")):
            try:
                obj = json.loads(fail.read_text())
                self.failed_ids[str(obj["id"])] = str(obj["reason"])
                self.fingerprints[str(obj["id"])] = str(obj.get("fingerprint", ""))
            except (OSError, ValueError, KeyError):
                fail.unlink()

    def discard(self, sample_ids: Iterable[str]) -> None:
        """Forget finished samples (written or failed), e.g. ones a resumed run no longer finds in its input,
        so `finalize()` does not carry them into the file."""
        self._check_open()
        for sid in set(sample_ids):
            for folder, suffix in ((self._shards, ".h5"), (self._fails, ".json")):
                (folder / f"{_shard_name(sid)}{suffix}").unlink(missing_ok=True)
            self.done_ids.discard(sid)
            self.failed_ids.pop(sid, None)
            self.sample_warnings.pop(sid, None)
            self.fingerprints.pop(sid, None)
            self._counts.pop(sid, None)

    @property
    def finished_ids(self) -> set[str]:
        """Samples a resumed run must skip: written ones and recorded failures."""
        return self.done_ids | set(self.failed_ids)

    def _check_open(self) -> None:
        if not self._open:
            raise FerbenchError(f"the writer for {self.path} is closed")

    def _atomic_write(self, final: Path, write: Any, what: str) -> None:
        """Write `final` through `<final>.part` and a rename; a failed write leaves no part file behind.

        One fsync per file (its data, before the rename), not of the folder after it: a crash can then lose
        a rename, never a file's contents, and a lost shard is only a sample the resume does again. The
        merged file (`finalize`) still syncs its folder, so a published file survives a crash."""
        part = final.with_name(final.name + ".part")
        try:
            with _io_errors(what, self.path, keep=self.tmp_dir):
                write(part)
                if self.durable:
                    _fsync_path(part)
                os.replace(part, final)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise

    # -- adding ----------------------------------------------------------------------------------------
    def add(
        self,
        record: SampleRecord,
        frames: np.ndarray,
        landmarks: np.ndarray,
        flags: np.ndarray,
        aus: np.ndarray | None = None,
        source_frame: np.ndarray | None = None,
        warnings: Sequence[str] = (),
        fingerprint: str = "",
    ) -> None:
        """Write one finished sample: frames (k,H,W,3) uint8, landmarks (k,5,2), flags (k,), aus (k,n_aus),
        source_frame (k,) native frame numbers (default 0..k-1); `warnings` (e.g. repaired frames) are kept
        with the sample so a resumed run can still report them (`sample_warnings`).

        The sample counts as done only once its shard is complete on disk (renamed from `.part`).
        """
        self._check_open()
        sid = str(record.id)
        if sid in self.done_ids or sid in self.failed_ids:
            raise FerbenchError(f"sample '{sid}' was already written to {self.tmp_dir}")
        fr = np.asarray(frames)
        if fr.dtype != np.uint8 or fr.ndim != 4 or fr.shape[3] != 3 or 0 in fr.shape:
            raise FerbenchError(f"sample '{sid}': frames must be uint8 (k, H, W, 3) with k >= 1; got {fr.dtype} {fr.shape}")
        k, h, w = fr.shape[:3]
        if self._hw is not None and (h, w) != self._hw:
            raise FerbenchError(f"sample '{sid}': frames are {h}x{w} but earlier samples are {self._hw[0]}x{self._hw[1]}")
        lm = np.asarray(landmarks, dtype=np.float32)
        if lm.shape != (k, 5, 2):
            raise FerbenchError(f"sample '{sid}': landmarks must be ({k}, 5, 2); got {lm.shape}")
        fl = np.asarray(flags)
        if fl.shape != (k,) or (fl.size and (fl.min() < 0 or fl.max() > 255)):
            raise FerbenchError(f"sample '{sid}': flags must be {k} codes in 0..255; got shape {fl.shape}")
        fl = fl.astype(np.uint8)
        au_arr = None
        if self.au_names:
            au_arr = np.full((k, len(self.au_names)), -1, np.int8) if aus is None else np.asarray(aus)
            if au_arr.shape != (k, len(self.au_names)):
                raise FerbenchError(f"sample '{sid}': aus must be ({k}, {len(self.au_names)}); got {au_arr.shape}")
            au_arr = au_arr.astype(np.int8)
        elif aus is not None:
            raise FerbenchError(f"sample '{sid}': AU labels given but the store was opened without au_names")
        src_frame = np.arange(k, dtype=np.int64) if source_frame is None else np.asarray(source_frame, np.int64)
        if src_frame.shape != (k,):
            raise FerbenchError(f"sample '{sid}': source_frame must be ({k},); got {src_frame.shape}")
        clip = self._index(sid, "clip", record.clip, self.length, k, required=True)
        states = self._index(sid, "states", record.states, 5, k, required=False)
        coverage = _coverage(fl) if record.coverage is None else float(record.coverage)
        if not 0.0 <= coverage <= 1.0:
            raise FerbenchError(f"sample '{sid}': coverage must be a fraction in 0..1; got {coverage}")

        def write(part: Path) -> None:
            # The shard is built in memory and written with plain file I/O: a full disk is then one clean
            # OSError, never HDF5 left holding a half-written file (which crashes the interpreter at exit).
            image = io.BytesIO()
            with h5py.File(image, "w") as f:
                fill(f)
            with open(part, "wb") as fh:
                fh.write(image.getbuffer())

        def fill(f: h5py.File) -> None:
            f.create_dataset("frames", data=fr, chunks=(1, h, w, 3), **_FRAME_COMPRESSION)
            f.create_dataset("landmarks", data=lm)
            f.create_dataset("flags", data=fl)
            f.create_dataset("source_frame", data=src_frame)
            if au_arr is not None:
                f.create_dataset("aus", data=au_arr)
            f.create_dataset("clip", data=clip)
            f.create_dataset("states", data=states)
            a = f.attrs
            a["id"], a["subject"] = sid, str(record.subject)
            a["label"] = _opt(record.label)
            a["split"] = record.split or ""
            a["mode"] = _jsonable(dict(record.mode or {}), f"sample '{sid}' mode")
            a["fps"] = float(record.fps)
            a["onset"], a["apex"], a["offset"] = _opt(record.onset), _opt(record.apex), _opt(record.offset)
            a["apex_estimated"] = int(bool(record.apex_estimated))
            a["coverage"] = coverage
            a["warnings"] = json.dumps(list(warnings))
            a["fingerprint"] = str(fingerprint)

        self._atomic_write(self._shards / f"{_shard_name(sid)}.h5", write, f"write sample '{sid}'")
        self.done_ids.add(sid)
        self.fingerprints[sid] = str(fingerprint)
        self._counts[sid] = k
        self._hw = (h, w)
        if warnings:
            self.sample_warnings[sid] = list(warnings)

    @staticmethod
    def _index(sid: str, name: str, value: Any, size: int, k: int, required: bool) -> np.ndarray:
        if value is None:
            if required:
                raise FerbenchError(f"sample '{sid}': record.{name} (the {name} index) is required")
            return np.full(size, -1, np.int32)
        arr = np.asarray(value)
        if arr.shape != (size,) or not np.issubdtype(arr.dtype, np.integer):
            raise FerbenchError(f"sample '{sid}': {name} index must be {size} integers; got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= k:
            raise FerbenchError(f"sample '{sid}': {name} index {arr.tolist()} points outside its {k} frames")
        return arr.astype(np.int32)

    def add_failure(self, sample_id: str, reason: str, fingerprint: str = "") -> None:
        """Record a sample excluded from the file (e.g. no face in any frame) so it is reported, not lost."""
        self._check_open()
        sid = str(sample_id)
        if sid in self.done_ids:
            raise FerbenchError(f"sample '{sid}' was already written; it cannot also be a failure")
        payload = json.dumps({"id": sid, "reason": str(reason), "fingerprint": str(fingerprint)})
        self._atomic_write(self._fails / f"{_shard_name(sid)}.json", lambda p: p.write_text(payload),
                           f"record the failure of sample '{sid}'")
        self.failed_ids[sid] = str(reason)
        self.fingerprints[sid] = str(fingerprint)

    # -- finishing -------------------------------------------------------------------------------------
    def finalize(self, before_publish: Callable[[Path], None] | None = None) -> Path:
        """Merge the shards sorted by sample id into `<path>` (atomic rename), delete the temp, drop the lock.

        `before_publish(part)` runs on the complete merged file before it is renamed into place (sidecars,
        checks, extra datasets): if it fails, or the process dies during it, `<path>` is untouched and the
        shards stay for a resume.
        """
        self._check_open()
        part = self.tmp_dir / "final.h5.part"
        try:
            with _io_errors("write the merged file", self.path, keep=self.tmp_dir):
                self._check_space()
                self._merge(part)
            if before_publish is not None:
                before_publish(part)
            with _io_errors("rename the merged file into place", self.path, keep=self.tmp_dir):
                if self.durable:
                    _fsync_path(part)
                os.replace(part, self.path)
                if self.durable:
                    _fsync_path(self.path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.close()
        return self.path

    def _check_space(self) -> None:
        """Refuse to merge onto a disk without room for the merged file (about the shards' total size): HDF5
        failing mid-write is reported, but the library can be left unstable; a plain check first is safer."""
        need = sum(p.stat().st_size for p in self._shards.glob("*.h5")) + (1 << 20)
        free = shutil.disk_usage(self.tmp_dir).free
        if free < need:
            raise OSError(errno.ENOSPC, f"need about {need / 2**20:.1f} MiB to merge, {free / 2**20:.1f} MiB free")

    def _merge(self, part: Path) -> None:
        """Write every shard, sorted by id, into one store file at `part`."""
        ids = sorted(self.done_ids)
        n = len(ids)
        counts = np.array([self._counts[i] for i in ids], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
        total = int(counts.sum())
        h, w = self._hw or self._size_from_config()
        n_aus = len(self.au_names) if self.au_names else 0
        cols: dict[str, list[Any]] = {c: [] for c in (*_STRING_COLUMNS, *_INT_COLUMNS, "fps", "coverage")}
        clip_idx = np.zeros((n, self.length), np.int32)
        state_idx = np.zeros((n, 5), np.int32)
        with h5py.File(part, "w") as out:
            chunked = total > 0 and h > 0 and w > 0
            frames = out.create_dataset(
                "frames", shape=(total, h, w, 3), dtype=np.uint8,
                **({"chunks": (1, h, w, 3), **_FRAME_COMPRESSION} if chunked else {}),
            )
            comp = {"compression": "gzip", "compression_opts": 4} if total else {}
            lms = out.create_dataset("landmarks", shape=(total, 5, 2), dtype=np.float32, **comp)
            flg = out.create_dataset("flags", shape=(total,), dtype=np.uint8, **comp)
            flg.attrs["meanings"] = json.dumps({str(k): v for k, v in FLAG_MEANINGS.items()})
            srcf = out.create_dataset("source_frame", shape=(total,), dtype=np.int64, **comp)
            au_ds = None
            if self.au_names:
                au_ds = out.create_dataset("aus", shape=(total, n_aus), dtype=np.int8, **comp)
                au_ds.attrs["au_names"] = json.dumps(list(self.au_names))
                au_ds.attrs["unknown"] = -1
            for row, sid in enumerate(ids):
                s0, k = int(starts[row]), int(counts[row])
                with h5py.File(self._shards / f"{_shard_name(sid)}.h5", "r") as sh:
                    src = sh["frames"]
                    for j in range(k):  # compressed chunks copied as they are: no decode/re-encode
                        mask, chunk = src.id.read_direct_chunk((j, 0, 0, 0))
                        frames.id.write_direct_chunk((s0 + j, 0, 0, 0), chunk, mask)
                    lms[s0 : s0 + k] = sh["landmarks"][...]
                    flg[s0 : s0 + k] = sh["flags"][...]
                    srcf[s0 : s0 + k] = sh["source_frame"][...]
                    if au_ds is not None:
                        au_ds[s0 : s0 + k] = sh["aus"][...]
                    clip_idx[row] = sh["clip"][...]
                    state_idx[row] = sh["states"][...]
                    a = sh.attrs
                    for c in ("id", "subject", "split", "mode"):
                        cols[c].append(str(a[c]))
                    for c in ("label", "onset", "apex", "offset", "apex_estimated"):
                        cols[c].append(int(a[c]))
                    cols["fps"].append(float(a["fps"]))
                    cols["coverage"].append(float(a["coverage"]) if "coverage" in a else _coverage(sh["flags"][...]))
                cols["frame_start"].append(s0)
                cols["frame_count"].append(k)
            grp = out.create_group("samples")
            for c in _STRING_COLUMNS:
                grp.create_dataset(c, data=np.array(cols[c], dtype=object), dtype=_STR)
            for c, dt in _INT_COLUMNS.items():
                grp.create_dataset(c, data=np.array(cols[c], dtype=dt))
            grp.create_dataset("fps", data=np.array(cols["fps"], dtype=np.float64))
            grp.create_dataset("coverage", data=np.array(cols["coverage"], dtype=np.float32))
            idx = out.create_group("index")
            ci = idx.create_dataset("clip", data=clip_idx)
            ci.attrs["length"] = self.length
            ci.attrs["relative_to"] = "frame_start"
            si = idx.create_dataset("states", data=state_idx)
            si.attrs["names"] = json.dumps(list(STATE_NAMES))
            si.attrs["relative_to"] = "frame_start"
            fails = sorted(self.failed_ids.items())
            fg = out.create_group("failures")
            fg.create_dataset("id", data=np.array([f[0] for f in fails], dtype=object), dtype=_STR)
            fg.create_dataset("reason", data=np.array([f[1] for f in fails], dtype=object), dtype=_STR)
            at = out.attrs
            at["format"] = FORMAT_NAME
            at["schema_version"] = SCHEMA_VERSION
            at["dataset"] = self.dataset
            at["classes"] = json.dumps(list(self.classes))
            at["config"] = json.dumps(self.config, sort_keys=True)
            at["aligner"] = self.aligner
            at["ferbench_version"] = ferbench.__version__
            at["source_root"] = self.source_root
            at["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            at["n_samples"], at["n_frames"], at["length"] = n, total, self.length

    def _size_from_config(self) -> tuple[int, int]:
        """Frame size for a store with no frames at all (every sample failed): config 'size' or 0x0."""
        size = self.config.get("size")
        if isinstance(size, int):
            return size, size
        if isinstance(size, (list, tuple)) and len(size) >= 2:
            return int(size[0]), int(size[1])
        return 0, 0

    def close(self) -> None:
        """Release the lock; an unfinished temp folder stays for a later resume."""
        if self._open:
            self._open = False
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- reader
_REQUIRED = (
    "frames", "landmarks", "flags", "source_frame", "samples/id", "samples/subject", "samples/label", "samples/frame_start",
    "samples/frame_count", "samples/split", "samples/mode", "samples/fps", "samples/onset", "samples/apex",
    "samples/offset", "samples/apex_estimated", "index/clip", "index/states", "failures/id", "failures/reason",
)


def _decode(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v


def _open_h5(path: Path) -> h5py.File:
    """Open a store file for reading, turning every way it can be wrong into a DatasetError naming it."""
    if not path.exists():
        raise DatasetError(path, "file not found (expected a ferbench store written by `ferbench prepare`)")
    if path.is_dir():
        raise DatasetError(path, "is a folder (expected a ferbench .h5 store)")
    if path.stat().st_size == 0:
        raise DatasetError(path, "empty file (0 bytes), not a ferbench store; delete it and run `ferbench prepare` again")
    if not h5py.is_hdf5(str(path)):
        raise DatasetError(path, "not an HDF5 file (expected a ferbench store written by `ferbench prepare`)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(path, f"unreadable or truncated HDF5 file ({e}); run `ferbench prepare` again") from None


def _check_schema(path: Path, f: h5py.File) -> dict[str, Any]:
    if "schema_version" not in f.attrs:
        raise DatasetError(path, "HDF5 file without a ferbench schema_version attribute (not a ferbench store)")
    try:
        version = int(f.attrs["schema_version"])
    except (TypeError, ValueError):
        raise DatasetError(path, f"unreadable schema_version {f.attrs['schema_version']!r}") from None
    if version not in READABLE_VERSIONS:
        fix = "upgrade ferbench" if version > SCHEMA_VERSION else "re-run `ferbench prepare` to rebuild it"
        raise DatasetError(
            path,
            f"store schema version {version}, but ferbench {ferbench.__version__} reads schema version "
            f"{SCHEMA_VERSION} (and {', '.join(map(str, READABLE_VERSIONS[:-1]))}); {fix}",
        )
    required = _REQUIRED + (("samples/coverage",) if version >= 2 else ())
    missing = [name for name in required if name not in f]
    if missing:
        raise DatasetError(path, f"damaged ferbench store: missing {', '.join('/' + m for m in missing)}")
    attrs = {k: _decode(v) for k, v in f.attrs.items()}
    try:
        attrs["classes"] = json.loads(attrs["classes"])
        attrs["config"] = json.loads(attrs["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(path, f"damaged ferbench store: bad classes/config attribute ({e})") from None
    _check_shapes(path, f, attrs)
    return attrs


def _check_shapes(path: Path, f: h5py.File, attrs: dict[str, Any]) -> None:
    """Every array's length against the counts the file states (a cut or short dataset is named, not read)."""
    def bad(what: str) -> DatasetError:
        return DatasetError(path, f"damaged ferbench store: {what}; run `ferbench prepare` again")

    try:
        n_samples, n_frames = int(attrs["n_samples"]), int(attrs["n_frames"])
    except (KeyError, TypeError, ValueError):
        raise bad("missing or unreadable n_samples / n_frames attributes") from None
    columns = [k for k in f["samples"].keys()]
    for name in [f"samples/{c}" for c in columns] + ["index/clip", "index/states"]:
        if f[name].ndim < 1 or f[name].shape[0] != n_samples:
            raise bad(f"/{name} has {f[name].shape[0] if f[name].ndim else 0} rows but the file holds {n_samples} samples")
    per_frame = ["frames", "landmarks", "flags", "source_frame"] + (["aus"] if "aus" in f else [])
    for name in per_frame:
        if f[name].ndim < 1 or f[name].shape[0] != n_frames:
            raise bad(f"/{name} has {f[name].shape[0] if f[name].ndim else 0} frames but the file holds {n_frames}")
    if f["index/clip"].ndim != 2 or f["index/states"].shape[1:] != (5,):
        raise bad("index tables of the wrong shape")
    if len(f["failures/id"]) != len(f["failures/reason"]):
        raise bad("/failures/id and /failures/reason differ in length")


def _check_rows(path: Path, samples: list[StoredSample], n_classes: int, n_frames: int) -> None:
    """Each sample's label, frame range and indices against the file (no row may point outside it)."""
    for s in samples:
        where = f"damaged ferbench store: sample '{s.id}' (row {s.index})"
        if s.label is not None and not 0 <= s.label < n_classes:
            raise DatasetError(path, f"{where} has label {s.label} outside the {n_classes} classes")
        if s.frame_count < 1 or s.frame_start < 0 or s.frame_start + s.frame_count > n_frames:
            raise DatasetError(path, f"{where} has frames {s.frame_start}..{s.frame_start + s.frame_count - 1} "
                                     f"outside /frames ({n_frames} frames)")
        for name, idx in (("clip", s.clip), ("states", s.states)):
            if idx is not None and len(idx) and (np.min(idx) < 0 or np.max(idx) >= s.frame_count):
                raise DatasetError(path, f"{where}: its {name} index points outside its {s.frame_count} frames")
        if s.coverage is not None and not 0.0 <= s.coverage <= 1.0:
            raise DatasetError(path, f"{where} has coverage {s.coverage} outside 0..1")


class Store:
    """Read access to a finished store: attrs, the sample table, per-sample arrays, whole-file tensors.

    Keeps the HDF5 file open (read-only) until `close()` or the end of a `with` block.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_h5(self.path)
        try:
            self.attrs: dict[str, Any] = _check_schema(self.path, self._f)
            self.samples: list[StoredSample] = self._read_samples()
            _check_rows(self.path, self.samples, len(self.attrs["classes"]), int(self._f["frames"].shape[0]))
            self.failures: list[tuple[str, str]] = list(
                zip(self._f["failures/id"].asstr()[...].tolist(), self._f["failures/reason"].asstr()[...].tolist())
            )
        except BaseException:
            self._f.close()
            raise
        self._by_id = {s.id: s for s in self.samples}
        au = self._f.get("aus")
        self.au_names: tuple[Any, ...] = tuple(json.loads(au.attrs["au_names"])) if au is not None else ()

    def _read_samples(self) -> list[StoredSample]:
        g, idx = self._f["samples"], self._f["index"]
        strs = {c: g[c].asstr()[...].tolist() for c in _STRING_COLUMNS}
        ints = {c: g[c][...].astype(np.int64).tolist() for c in _INT_COLUMNS}
        fps = g["fps"][...].tolist()
        clip, states = idx["clip"][...], idx["states"][...]
        if "coverage" in g:
            coverage = g["coverage"][...].astype(np.float64).tolist()
        else:  # schema 1: the same fraction, from the per-frame flags
            flags = self._f["flags"][...]
            coverage = [_coverage(flags[a : a + c]) for a, c in zip(ints["frame_start"], ints["frame_count"])]
        none = lambda v: None if v < 0 else v  # noqa: E731
        out = []
        for i in range(len(strs["id"])):
            try:
                mode = json.loads(strs["mode"][i])
            except ValueError:
                raise DatasetError(self.path, f"damaged sample table: bad mode JSON in row {i}") from None
            st = states[i]
            out.append(
                StoredSample(
                    id=strs["id"][i], subject=strs["subject"][i], label=none(ints["label"][i]),
                    clip=clip[i], states=None if (st < 0).any() else st, split=strs["split"][i] or None,
                    mode=mode, fps=fps[i], onset=none(ints["onset"][i]), apex=none(ints["apex"][i]),
                    offset=none(ints["offset"][i]), apex_estimated=bool(ints["apex_estimated"][i]),
                    index=i, frame_start=ints["frame_start"][i], frame_count=ints["frame_count"][i],
                    coverage=coverage[i],
                )
            )
        return out

    # -- metadata ----------------------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return str(self.attrs["dataset"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.attrs["classes"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.attrs["config"])

    @property
    def length(self) -> int:
        return int(self._f["index/clip"].shape[1])

    @property
    def n_frames(self) -> int:
        return int(self._f["frames"].shape[0])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self._f["frames"].shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, key: int | str) -> StoredSample:
        """A sample row by position or by id."""
        if isinstance(key, str):
            if key not in self._by_id:
                raise FerbenchError(f"{self.path}: no sample with id '{key}'")
            return self._by_id[key]
        return self.samples[key]

    # -- per-sample arrays -------------------------------------------------------------------------------
    def _span(self, key: int | str) -> slice:
        s = self.sample(key)
        return slice(s.frame_start, s.frame_start + s.frame_count)

    def native_frames(self, key: int | str) -> np.ndarray:
        """The sample's aligned frames at native length: uint8 (T_native, H, W, 3) (the clip index is not
        applied: see `frames(key, "clip")` for the fixed-length clip)."""
        return self._f["frames"][self._span(key)]

    def frames(self, key: int | str, index: str = "native") -> np.ndarray:
        """The sample's frames as stored (`native`), through the clip index (T), or the 5 state frames."""
        native = self.native_frames(key)
        if index == "native":
            return native
        rows = self._rows(self.sample(key), index)
        return native[rows]

    def landmarks(self, key: int | str) -> np.ndarray:
        return self._f["landmarks"][self._span(key)]

    def flags(self, key: int | str) -> np.ndarray:
        return self._f["flags"][self._span(key)]

    def source_frame(self, key: int | str) -> np.ndarray:
        """Each stored frame's number in the native data (file-name number or video frame index)."""
        return self._f["source_frame"][self._span(key)]

    def aus(self, key: int | str) -> np.ndarray | None:
        return self._f["aus"][self._span(key)] if "aus" in self._f else None

    def _rows(self, s: StoredSample, index: str) -> np.ndarray:
        if index == "clip":
            return np.asarray(s.clip, dtype=np.int64)
        if index == "states":
            if s.states is None:
                raise FerbenchError(f"{self.path}: sample '{s.id}' has no expression-state index")
            return np.asarray(s.states, dtype=np.int64)
        raise FerbenchError(f"unknown index '{index}'; choose native, clip or states")

    # -- whole-file tensors ------------------------------------------------------------------------------
    def load(self, device: Any = "cpu", index: str = "clip", samples: Iterable[int] | None = None) -> Loaded:
        """All (or the given) samples as uint8 torch tensors on `device`, channels first.

        `clip`: x (n, T, 3, H, W); `states`: x (n, 5, 3, H, W); `native`: x (F, 3, H, W) with `offsets`
        (n, 2) = [start, count] rows into x. The frames are read from disk once, then gathered in memory.
        """
        import torch

        if index not in ("clip", "states", "native"):
            raise FerbenchError(f"unknown index '{index}'; choose native, clip or states")
        rows = list(range(len(self.samples))) if samples is None else [int(i) for i in samples]
        sel = [self.samples[i] for i in rows]
        all_frames = self._f["frames"][...]
        all_aus = self._f["aus"][...] if "aus" in self._f else None
        if index == "native":
            absolute = np.concatenate([np.arange(s.frame_start, s.frame_start + s.frame_count) for s in sel]) if sel else np.zeros(0, np.int64)
            counts = np.array([s.frame_count for s in sel], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if sel else counts
            offsets = torch.from_numpy(np.stack([starts, counts], 1).astype(np.int64) if sel else np.zeros((0, 2), np.int64))
        else:
            width = self.length if index == "clip" else 5
            absolute = (
                np.stack([s.frame_start + self._rows(s, index) for s in sel]) if sel else np.zeros((0, width), np.int64)
            )
            offsets = None
        x = np.ascontiguousarray(np.moveaxis(all_frames[absolute], -1, -3))  # (..., 3, H, W)
        names = sorted({s.subject for s in sel})
        code = {name: i for i, name in enumerate(names)}
        return Loaded(
            x=torch.from_numpy(x).to(device),
            labels=torch.tensor([-1 if s.label is None else s.label for s in sel], dtype=torch.int64).to(device),
            subject_index=torch.tensor([code[s.subject] for s in sel], dtype=torch.int64).to(device),
            subject_names=names,
            subjects=[s.subject for s in sel],
            ids=[s.id for s in sel],
            index=index,
            offsets=None if offsets is None else offsets.to(device),
            aus=None if all_aus is None else torch.from_numpy(np.ascontiguousarray(all_aus[absolute])).to(device),
        )

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | Path) -> Store:
    """Open a finished store for reading (schema-version checked; bad files raise a DatasetError naming them)."""
    return Store(path)


def inspect(path: str | Path) -> dict[str, Any]:
    """What a store holds, as the JSON-friendly dict `ferbench inspect --json` prints."""
    with open_store(path) as st:
        f = st._f
        counts = {name: 0 for name in st.classes}
        for s in st.samples:
            if s.label is not None and 0 <= s.label < len(st.classes):
                counts[st.classes[s.label]] += 1
        flags = f["flags"][...]
        if st.n_frames:  # the last frame's chunk is where a cut file fails: read it now, not in a training run
            try:
                f["frames"][st.n_frames - 1]
            except (OSError, RuntimeError) as e:
                raise DatasetError(st.path, f"damaged ferbench store: /frames unreadable ({e}); run `ferbench prepare` again") from None
        flag_counts = {FLAG_MEANINGS.get(int(c), str(int(c))): int((flags == c).sum()) for c in np.unique(flags)}
        shapes = {name: list(f[name].shape) for name in ("frames", "landmarks", "flags", "source_frame", "aus", "index/clip", "index/states") if name in f}
        splits: dict[str, int] = {}
        for s in st.samples:
            splits[s.split or ""] = splits.get(s.split or "", 0) + 1
        return {
            "path": str(st.path),
            "dataset": st.dataset,
            "schema_version": int(st.attrs["schema_version"]),
            "ferbench_version": st.attrs.get("ferbench_version"),
            "created": st.attrs.get("created"),
            "aligner": st.attrs.get("aligner"),
            "source_root": st.attrs.get("source_root"),
            "samples": len(st.samples),
            "frames": st.n_frames,
            "labelled": sum(s.label is not None for s in st.samples),
            "classes": counts,
            "subjects": len({s.subject for s in st.samples}),
            "splits": splits,
            "length": st.length,
            "shapes": shapes,
            "config": st.config,
            "au_names": list(st.au_names),
            "flags": flag_counts,
            "apex_estimated": sum(s.apex_estimated for s in st.samples),
            "coverage": {
                "min": round(min((s.coverage for s in st.samples), default=0.0), 4),
                "mean": round(float(np.mean([s.coverage for s in st.samples])) if st.samples else 0.0, 4),
                "partial": {s.id: round(s.coverage, 4) for s in st.samples if s.coverage < 1.0},
            },
            "failures": [{"id": i, "reason": r} for i, r in st.failures],
        }
