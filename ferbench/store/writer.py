"""`StoreWriter`: finished samples streamed into `<path>.tmp/` shards in any order, resumable after a kill,
merged by `finalize()` into `<path>` sorted by sample id (atomic rename).

What each shard and the merged file hold comes from the tables in `schema` (`COLUMNS`, `FRAME_ARRAYS`):
this module only decides when and where they are written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import ferbench
from ferbench.errors import FerbenchError
from ferbench.issues import REPAIRED, RESUME, Issue, failure

from ._io import fsync_path, io_errors
from ferbench.lock import WriteLock
from .flags import FLAG_NAMES, coverage
from .schema import (
    COLUMN,
    COLUMNS,
    COMPRESSION,
    FAILURE_IDS,
    FAILURE_REASONS,
    FORMAT_NAME,
    FRAME_ARRAYS,
    SCHEMA_VERSION,
    UTF8,
    Column,
    SampleRecord,
)


def _shard_name(sample_id: str) -> str:
    """A safe, collision-free file name for a sample id (ids may hold any character)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)[:80]
    return f"{safe}-{hashlib.sha1(sample_id.encode()).hexdigest()[:12]}"


def _jsonable(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise FerbenchError(f"{what} must be JSON-serialisable for the store ({e})") from None


def _shard_warnings(sid: str, stored: str) -> list[Issue]:
    """A shard's warnings attribute back as records (a shard from an older ferbench holds "id: reason" text)."""
    return [Issue.from_dict(w) if isinstance(w, dict) else Issue(sid, REPAIRED, str(w).removeprefix(f"{sid}: "))
            for w in json.loads(stored)]


class StoreWriter:
    """Streams finished samples into `<path>.tmp/` in any order, resumes after a kill, and `finalize()`s
    into `<path>` (sorted by sample id, atomic rename).

    A leftover `<path>.tmp/` from an identical run (same dataset, classes, config, aligner, AU names,
    source root, schema) is resumed: `finished_ids` (`done_ids` written, `failed` recorded failures) say
    what to skip. A leftover from a different run is refused with a message (never silently thrown away)
    unless `restart=True`, which deletes it. An existing `<path>` is refused unless `overwrite=True` (it
    stays in place until the new file is complete). Call `finalize()` on success; `close()` (or leaving a
    `with` block) keeps the temp for resume.
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
        self.failed: dict[str, Issue] = {}  # per recorded failure (kind EXCLUDED), including resumed ones
        self.sample_warnings: dict[str, list[Issue]] = {}  # per finished sample, including resumed ones
        self.fingerprints: dict[str, str] = {}  # per finished sample (written or failed): its input fingerprint
        self.resumed = False
        self.notes: list[Issue] = []  # what resuming did (kind RESUME)
        self._counts: dict[str, int] = {}
        self._hw: tuple[int, int] | None = None
        self._open = False
        if self.path.is_dir():
            raise FerbenchError(f"{self.path} is a folder; expected the path of the .h5 file to write")
        with io_errors("create the output folder", self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not overwrite:
            raise FerbenchError(f"{self.path} already exists; pass --overwrite to replace it")
        self._lock = WriteLock(self.lock_path, self.path)
        with io_errors("take the write lock", self.lock_path):
            self._lock.acquire()
        try:
            with io_errors("prepare the temp folder", self.tmp_dir):
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
                    warned = _shard_warnings(sid, f.attrs.get("warnings", "[]"))
                    fingerprint = str(f.attrs.get("fingerprint", ""))
            except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
                self.notes.append(Issue("", RESUME, f"discarded unreadable shard {shard.name} ({e}); its sample will be redone"))
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
                self.failed[str(obj["id"])] = failure(obj["id"], obj["reason"])
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
            self.failed.pop(sid, None)
            self.sample_warnings.pop(sid, None)
            self.fingerprints.pop(sid, None)
            self._counts.pop(sid, None)

    @property
    def failed_ids(self) -> set[str]:
        """Samples recorded as failures."""
        return set(self.failed)

    @property
    def failures(self) -> list[Issue]:
        """The recorded failures, sorted by sample id (as the finished file lists them)."""
        return [self.failed[sid] for sid in sorted(self.failed)]

    @property
    def finished_ids(self) -> set[str]:
        """Samples a resumed run must skip: written ones and recorded failures."""
        return self.done_ids | set(self.failed)

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
            with io_errors(what, self.path, keep=self.tmp_dir):
                write(part)
                if self.durable:
                    fsync_path(part)
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
        warnings: Sequence[Issue] = (),
        fingerprint: str = "",
    ) -> None:
        """Write one finished sample: frames (k,H,W,3) uint8, landmarks (k,5,2), flags (k,), aus (k,n_aus),
        source_frame (k,) native frame numbers (default 0..k-1); `warnings` (e.g. repaired frames) are kept
        with the sample so a resumed run can still report them (`sample_warnings`).

        The sample counts as done only once its shard is complete on disk (renamed from `.part`).
        """
        self._check_open()
        sid = str(record.id)
        if sid in self.done_ids or sid in self.failed:
            raise FerbenchError(f"sample '{sid}' was already written to {self.tmp_dir}")
        arrays = self._frame_arrays(sid, frames, landmarks, flags, aus, source_frame)
        k, h, w = arrays["frames"].shape[:3]
        if record.coverage is None:
            record = dataclasses.replace(record, coverage=coverage(arrays["flags"]))
        if not 0.0 <= float(record.coverage) <= 1.0:
            raise FerbenchError(f"sample '{sid}': coverage must be a fraction in 0..1; got {record.coverage}")
        values = {c.name: self._encode(sid, c, getattr(record, c.name), k) for c in COLUMNS if c.origin != "layout"}
        issues = list(warnings)
        notes = {"warnings": json.dumps([i.to_dict() for i in issues]), "fingerprint": str(fingerprint)}

        def write(part: Path) -> None:
            # The shard is built in memory and written with plain file I/O: a full disk is then one clean
            # OSError, never HDF5 left holding a half-written file (which crashes the interpreter at exit).
            image = io.BytesIO()
            with h5py.File(image, "w") as f:
                for name, data in arrays.items():
                    extra = {"chunks": (1, h, w, 3), **COMPRESSION} if name == "frames" else {}
                    f.create_dataset(name, data=data, **extra)
                for name, value in values.items():
                    if COLUMN[name].width is None:
                        f.attrs[name] = value
                    else:
                        f.create_dataset(name, data=value)
                f.attrs.update(notes)
            with open(part, "wb") as fh:
                fh.write(image.getbuffer())

        self._atomic_write(self._shards / f"{_shard_name(sid)}.h5", write, f"write sample '{sid}'")
        self.done_ids.add(sid)
        self.fingerprints[sid] = str(fingerprint)
        self._counts[sid] = k
        self._hw = (h, w)
        if issues:
            self.sample_warnings[sid] = issues

    def _frame_arrays(self, sid: str, frames: np.ndarray, landmarks: np.ndarray, flags: np.ndarray,
                      aus: np.ndarray | None, source_frame: np.ndarray | None) -> dict[str, np.ndarray]:
        """The sample's per-frame arrays, checked and in their stored dtypes (keys: FRAME_ARRAYS names)."""
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
        src_frame = np.arange(k, dtype=np.int64) if source_frame is None else np.asarray(source_frame, np.int64)
        if src_frame.shape != (k,):
            raise FerbenchError(f"sample '{sid}': source_frame must be ({k},); got {src_frame.shape}")
        out = {"frames": fr, "landmarks": lm, "flags": fl, "source_frame": src_frame}
        if self.au_names:
            au_arr = np.full((k, len(self.au_names)), -1, np.int8) if aus is None else np.asarray(aus)
            if au_arr.shape != (k, len(self.au_names)):
                raise FerbenchError(f"sample '{sid}': aus must be ({k}, {len(self.au_names)}); got {au_arr.shape}")
            out["aus"] = au_arr
        elif aus is not None:
            raise FerbenchError(f"sample '{sid}': AU labels given but the store was opened without au_names")
        return {a.name: out[a.name].astype(a.dtype, copy=False) for a in FRAME_ARRAYS if a.name in out}

    def _encode(self, sid: str, column: Column, value: Any, k: int) -> Any:
        """A record value as stored: positions checked against the sample's k frames, scalars encoded."""
        if column.width is None:
            try:
                return column.encode(value)
            except (TypeError, ValueError) as e:
                raise FerbenchError(f"sample '{sid}' {column.name} must be JSON-serialisable for the store ({e})"
                                    if column.name == "mode" else f"sample '{sid}': bad {column.name} {value!r} ({e})") from None
        (size,) = column.row_shape(self.length)
        if value is None:
            if column.required:
                raise FerbenchError(f"sample '{sid}': record.{column.name} (the {column.name} index) is required")
            return np.full(size, -1, np.int32)
        arr = np.asarray(value)
        if arr.shape != (size,) or not np.issubdtype(arr.dtype, np.integer):
            raise FerbenchError(f"sample '{sid}': {column.name} index must be {size} integers; got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= k:
            raise FerbenchError(f"sample '{sid}': {column.name} index {arr.tolist()} points outside its {k} frames")
        return arr.astype(column.dtype)

    def add_failure(self, sample_id: str, reason: str, fingerprint: str = "") -> None:
        """Record a sample excluded from the file (e.g. no face in any frame) so it is reported, not lost."""
        self._check_open()
        record = failure(sample_id, reason)
        sid = record.sample
        if sid in self.done_ids:
            raise FerbenchError(f"sample '{sid}' was already written; it cannot also be a failure")
        payload = json.dumps({"id": sid, "reason": record.reason, "fingerprint": str(fingerprint)})
        self._atomic_write(self._fails / f"{_shard_name(sid)}.json", lambda p: p.write_text(payload),
                           f"record the failure of sample '{sid}'")
        self.failed[sid] = record
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
            with io_errors("write the merged file", self.path, keep=self.tmp_dir):
                self._check_space()
                self._merge(part)
            if before_publish is not None:
                before_publish(part)
            with io_errors("rename the merged file into place", self.path, keep=self.tmp_dir):
                if self.durable:
                    fsync_path(part)
                os.replace(part, self.path)
                if self.durable:
                    fsync_path(self.path.parent)
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
        counts = np.array([self._counts[i] for i in ids], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if ids else np.zeros(0, np.int64)
        total = int(counts.sum())
        h, w = self._hw or self._size_from_config()
        n_aus = len(self.au_names) if self.au_names else 0
        values: dict[str, list[Any]] = {c.name: [] for c in COLUMNS}
        with h5py.File(part, "w") as out:
            per_frame = {a.name: out.create_dataset(a.name, shape=(total, *a.tail(h, w, n_aus)), dtype=a.dtype,
                                                    **self._layout(a.name, total, h, w))
                         for a in FRAME_ARRAYS if not a.au_only or self.au_names}
            per_frame["flags"].attrs["meanings"] = json.dumps({str(k): v for k, v in FLAG_NAMES.items()})
            if "aus" in per_frame:
                per_frame["aus"].attrs["au_names"] = json.dumps(list(self.au_names or ()))
                per_frame["aus"].attrs["unknown"] = -1
            for row, sid in enumerate(ids):
                s0, k = int(starts[row]), int(counts[row])
                with h5py.File(self._shards / f"{_shard_name(sid)}.h5", "r") as sh:
                    src = sh["frames"]
                    for j in range(k):  # compressed chunks copied as they are: no decode/re-encode
                        mask, chunk = src.id.read_direct_chunk((j, 0, 0, 0))
                        per_frame["frames"].id.write_direct_chunk((s0 + j, 0, 0, 0), chunk, mask)
                    for name, ds in per_frame.items():
                        if name != "frames":
                            ds[s0 : s0 + k] = sh[name][...]
                    layout = {"frame_start": s0, "frame_count": k}
                    for c in COLUMNS:
                        values[c.name].append(layout[c.name] if c.origin == "layout" else self._shard_value(sh, c))
            for c in COLUMNS:
                ds = out.create_dataset(c.path, data=c.stored(values[c.name], self.length),
                                        **({"dtype": UTF8} if c.is_text else {}))
                ds.attrs.update(c.attrs(self.length))
            fails = self.failures
            out.create_dataset(FAILURE_IDS, data=np.array([f.sample for f in fails], dtype=object), dtype=UTF8)
            out.create_dataset(FAILURE_REASONS, data=np.array([f.reason for f in fails], dtype=object), dtype=UTF8)
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
            at["n_samples"], at["n_frames"], at["length"] = len(ids), total, self.length

    @staticmethod
    def _layout(name: str, total: int, h: int, w: int) -> dict[str, Any]:
        """Chunking and compression of a per-frame dataset: frames in chunks of one frame."""
        if not total:
            return {}
        if name == "frames":
            return {"chunks": (1, h, w, 3), **COMPRESSION} if h > 0 and w > 0 else {}
        return dict(COMPRESSION)

    @staticmethod
    def _shard_value(shard: h5py.File, column: Column) -> Any:
        """A column's value in a shard (coverage of a shard from before schema 2: from its flags)."""
        if column.width is not None:
            return shard[column.name][...]
        if column.name not in shard.attrs and column.name == "coverage":
            return coverage(shard["flags"][...])
        value = shard.attrs[column.name]
        return str(value) if column.is_text else value

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

