"""`ferbench prepare`: a native dataset -> one aligned, indexed HDF5 file, with the samples spread over dask.

The walk of one sample (`process_sample`, runs on a dask worker): decode frames lazily -> track one face
(detect on keyframes, interpolate between) -> similarity-align each frame -> temporal-normalisation and
expression-state indices. Workers return small arrays (T x 64 x 64 x 3); the one writer in this process
streams them into the store as they complete, with a bounded number of samples in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferbench.datasets import get_dataset, scan
from ferbench.datasets._media import frame_number
from ferbench.datasets.base import Sample
from ferbench.errors import DatasetError, FerbenchError
from ferbench.preprocess.augment import get_preset, materialize, params_tensor
from ferbench.preprocess.detect import Detector, get_detector
from ferbench.preprocess.frames import LazyFrames
from ferbench.preprocess.states import expression_states
from ferbench.preprocess.temporal import default_length, normalise_length
from ferbench.preprocess.track import align_sequence, track_sequence
from ferbench.store import FLAG_FILLED, FLAG_MEANINGS, SampleRecord, StoreWriter

#: Frame rate each dataset is resampled to before anything else (yu2018: MMI "10 frames per second").
DEFAULT_TARGET_FPS: dict[str, float] = {"mmi": 10.0}
#: Smallest face MTCNN searches for, as a fraction of the frame's shorter side. Lab datasets film one face
#: filling a good part of the frame (CK+ faces are ~250 of 490 px), so 10% skips the costly fine pyramid levels;
#: AFEW is cut from films, where faces can be small.
DEFAULT_MIN_FACE: dict[str, float] = {"afew": 0.04, "folder": 0.04}
@dataclass(frozen=True)
class PrepareConfig:
    """Everything that changes the arrays in the output file (it is stored in the file's attrs)."""

    aligner: str = "mtcnn"
    size: int = 64
    template: str = "yu2018"
    length: int | None = None  # fixed clip length T; None = the dataset's default (CK+ 18, Oulu/MMI 22)
    detect_every: int = 5
    target_fps: float | None = None  # None = the dataset's default (MMI 10 fps), else native
    min_face: float | None = None  # smallest face searched, fraction of the frame's shorter side (MTCNN);
    # None = the dataset's default (DEFAULT_MIN_FACE)

    def resolved(self, dataset: str) -> PrepareConfig:
        """The config with dataset defaults filled in, as written to the file."""
        length = self.length or default_length(dataset)
        fps = self.target_fps if self.target_fps is not None else DEFAULT_TARGET_FPS.get(dataset)
        min_face = self.min_face if self.min_face is not None else DEFAULT_MIN_FACE.get(dataset, 0.1)
        return dataclasses.replace(self, length=length, target_fps=fps, min_face=min_face)


@dataclass
class SampleResult:
    """What a worker sends back for one sample: aligned frames and indices, or why it failed."""

    id: str
    record: SampleRecord | None = None
    frames: np.ndarray | None = None  # (k, size, size, 3) uint8 RGB
    landmarks: np.ndarray | None = None  # (k, 5, 2) in crop pixels
    flags: np.ndarray | None = None
    aus: np.ndarray | None = None
    au_names: tuple[int, ...] = ()
    source_frame: np.ndarray | None = None  # (k,) native frame numbers
    failure: str = ""
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class PrepareSummary:
    """The end-of-run report (`ferbench prepare` prints it; `--json` prints it as is)."""

    dataset: str
    out: str
    samples: int = 0
    written: int = 0
    resumed: int = 0
    failed: int = 0
    frames: int = 0
    faces_detected: int = 0
    frames_interpolated: int = 0
    frames_filled: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    contact_sheet: str = ""
    failures_csv: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detector_for(config: PrepareConfig, frame_shape: tuple[int, ...], threads: int | None = None) -> Detector:
    """The configured detector; MTCNN skips pyramid levels for faces smaller than `min_face` of the frame
    (fewer, larger levels: several times faster on lab video, where faces fill a good part of the frame).
    `threads` caps onnxruntime's threads, so N worker processes on N cores do not oversubscribe them."""
    if config.aligner == "mtcnn":
        return get_detector("mtcnn", min_face_size=max(20, int(config.min_face * min(frame_shape[:2]))), threads=threads)
    return _plain_detector(config)


def _plain_detector(config: PrepareConfig) -> Detector:
    """Detectors without per-frame options; `none` places its points on the chosen template (plain resize)."""
    if config.aligner == "none":
        return get_detector("none", template=config.template)
    return get_detector(config.aligner)


def _position(source_index: np.ndarray, native: int | None) -> int | None:
    """Where native frame `native` landed after resampling (nearest kept frame)."""
    if native is None:
        return None
    return int(np.abs(source_index - native).argmin())


def process_sample(
    sample: Sample, config: PrepareConfig, detector: Detector | None = None, threads: int | None = None
) -> SampleResult:
    """Decode, track, align and index one sample. Never raises for bad data: failures come back as text.

    `threads`: compute threads the detector may use in this process (None = its default, all cores).
    """
    try:
        return _process(sample, config, detector, threads)
    except Exception as e:  # bad data must not stop a run of thousands: report it against the sample
        return SampleResult(id=sample.id, failure=f"{type(e).__name__}: {e}" if not isinstance(e, FerbenchError) else str(e))


def _process(sample: Sample, config: PrepareConfig, detector: Detector | None, threads: int | None) -> SampleResult:
    t_start = time.perf_counter()
    result = SampleResult(id=sample.id)
    try:
        frames = LazyFrames(sample, config.target_fps)
    except DatasetError as e:
        result.failure = str(e)
        return result
    if len(frames) == 0:
        result.failure = "no frames"
        return result
    detector = detector or detector_for(config, frames[0].shape, threads)
    t_track, decoded = time.perf_counter(), frames.decode_seconds
    track = track_sequence(frames, detector, every=config.detect_every)
    detect_seconds = time.perf_counter() - t_track - (frames.decode_seconds - decoded)
    if not track.ok:
        result.failure = track.reason if "no face" in track.reason else f"no face track in {len(frames)} frames: {track.reason}"
        result.timings = {"decode": frames.decode_seconds, "detect": detect_seconds}
        return result

    t_align = time.perf_counter()
    k = len(frames)
    crops, points = align_sequence(frames, track, config.size, config.template)
    crops = np.ascontiguousarray(crops[..., ::-1])  # BGR -> RGB, the store's pixel order
    align_seconds = time.perf_counter() - t_align
    flags = track.flags.copy()
    _fill_unreadable(crops, points, flags, frames.bad)
    result.warnings = [f"{sample.id}: {p} (frame filled from neighbours)" for p in frames.problems]

    idx = frames.source_index
    onset, apex, offset = (_position(idx, v) for v in (sample.onset, sample.apex, sample.offset))
    states, estimated = expression_states(
        k, onset, apex, offset, rising=sample.apex is not None and sample.offset is None, frames=crops
    )
    result.record = SampleRecord.from_sample(
        sample,
        clip=_clip_index(k, config.length, onset, offset),
        states=states,
        fps=float(config.target_fps) if config.target_fps and config.target_fps < sample.fps else sample.fps,
        onset=onset,  # as annotated (None stays None: the state index holds the defaults)
        apex=int(states[2]),  # annotated, or estimated (then apex_estimated is set)
        offset=offset,
        apex_estimated=estimated or sample.apex_estimated,
    )
    result.frames, result.landmarks, result.flags = crops, points, flags
    result.source_frame = _native_numbers(sample, idx)
    if sample.aus is not None:  # rows past the AU matrix (a video longer than its header said) are unknown
        aus = np.asarray(sample.aus)
        rows = np.full((k, aus.shape[1]), -1, np.int8)
        inside = idx < len(aus)
        rows[inside] = aus[idx[inside]]
        result.aus, result.au_names = rows, tuple(sample.au_names)
    total = time.perf_counter() - t_start
    result.timings = {
        "decode": frames.decode_seconds,
        "detect": detect_seconds,
        "align": align_seconds,
        "total": total,
    }
    result.counts = {"frames": k, **{name: int((flags == code).sum()) for code, name in FLAG_MEANINGS.items() if code}}
    return result


def _native_numbers(sample: Sample, positions: np.ndarray) -> np.ndarray:
    """Native frame numbers of the kept frames: the number in each frame's file name where every frame has one
    (CK+ `..._00000011.png` -> 11, BP4D `2440.jpg`, CASME II `img46.jpg`), else the position (video frames)."""
    if sample.frames:
        numbers = [frame_number(Path(p)) for p in sample.frames]
        if all(n is not None for n in numbers):
            return np.asarray(numbers, np.int64)[positions]
    return np.asarray(positions, np.int64)


def _clip_index(n_frames: int, length: int, onset: int | None, offset: int | None) -> np.ndarray:
    """The fixed-length clip over the annotated onset -> offset segment where there is one (CASME II, MMI
    with AU markers: "sequences used onset -> offset"), else over the whole sequence (yu2018)."""
    if onset is not None and offset is not None and offset > onset:
        return onset + normalise_length(offset - onset + 1, length)
    return normalise_length(n_frames, length)


def _au_union(samples: Sequence[Sample]) -> tuple[int, ...] | None:
    """All AU numbers any sample codes (BP4D: the same 12 everywhere; MMI: each session its own few)."""
    names = sorted({au for s in samples for au in s.au_names}, key=lambda a: (str(type(a)), a))
    return tuple(names) or None


def _to_columns(aus: np.ndarray | None, names: Sequence[int], columns: Sequence[int]) -> np.ndarray | None:
    """A sample's AU matrix spread onto the file's AU columns.

    A sample with AU coding lists the AUs that occur (MMI's AU marker files), so an AU it does not list is
    absent (0); a sample without AU coding (aus None) is unknown (-1) throughout.
    """
    if aus is None:
        return None
    out = np.zeros((aus.shape[0], len(columns)), np.int8)
    for j, name in enumerate(names):
        out[:, columns.index(name)] = aus[:, j]
    return out


def _fill_unreadable(crops: np.ndarray, points: np.ndarray, flags: np.ndarray, bad: set[int]) -> None:
    """Replace frames whose file could not be decoded by their nearest readable neighbour, flagged FILLED."""
    good = np.array([t for t in range(len(crops)) if t not in bad])
    if not bad or good.size == 0:
        return
    for t in sorted(bad):
        src = int(good[np.abs(good - t).argmin()])
        crops[t], points[t], flags[t] = crops[src], points[src], FLAG_FILLED


def default_output(dataset: str) -> Path:
    """`data/<dataset>.h5` in the current folder (the CLI default)."""
    return Path("data") / f"{dataset}.h5"


def _open_client(workers: int | None, scheduler: str | None):
    """A dask client: the given scheduler, or a local cluster of `workers` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise FerbenchError(f"cannot reach the dask scheduler at {scheduler} ({e}); start one with `dask scheduler`") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    return Client(cluster), cluster


def _run_tasks(
    todo: list[Sample], config: PrepareConfig, workers: int | None, scheduler: str | None
):
    """Yield `SampleResult`s as they complete: in-process when workers == 0, else on dask."""
    if workers == 0 and not scheduler:
        for sample in todo:
            yield process_sample(sample, config)
        return
    from dask.distributed import as_completed

    client, cluster = _open_client(workers, scheduler)
    try:
        n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
        window = 2 * n_workers  # samples in flight: bounds memory on both sides
        # Our own local workers share this machine's cores; a remote cluster's workers know their own.
        threads = max(1, (os.cpu_count() or 1) // n_workers) if cluster is not None else None
        pending = iter(todo)

        ids = {}

        def submit(sample: Sample):
            future = client.submit(process_sample, sample, config, threads=threads, pure=False)
            ids[future.key] = sample.id
            return future

        stream = as_completed([submit(s) for s in _take(pending, window)])
        for future in stream:
            try:
                result = future.result()
            except Exception as e:  # the worker died (e.g. out of memory): report the sample, keep going
                result = SampleResult(id=ids[future.key], failure=f"worker failed: {type(e).__name__}: {e}")
            future.release()
            for s in _take(pending, 1):
                stream.add(submit(s))
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _take(iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(iterator))
        except StopIteration:
            break
    return out


def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path | None = None,
    config: PrepareConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    restart: bool = False,
    materialize_augmentation: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareSummary:
    """Turn a native dataset folder into one HDF5 file (the Python form of `ferbench prepare`).

    workers: local dask worker processes (None = one per core; 0 = in this process, no dask).
    scheduler: address of an existing dask.distributed scheduler (overrides `workers`).
    materialize_augmentation: also write every clip under every transform of this preset
        (`stc-nlstm` 14x, `kim2017` 150x) as `/augmented/<preset>`, for tools outside ferbench.
    progress: called with (done, total) after each sample.
    A killed run resumes where it stopped; a second run on the same output is refused while one runs.
    """
    t0 = time.perf_counter()
    if materialize_augmentation:
        get_preset(materialize_augmentation)  # fail on a bad preset name before any work
    adapter = get_dataset(dataset)
    found = scan(dataset, root)
    cfg = (config or PrepareConfig()).resolved(adapter.name)
    if cfg.aligner != "mtcnn":
        _plain_detector(cfg)  # a missing model pack or unknown aligner fails here, before any work
    if not found.samples:
        raise FerbenchError(f"{root}: no {adapter.name} samples found, nothing to prepare (see `ferbench scan {adapter.name} --root ...`)")
    out = Path(out) if out else default_output(adapter.name)
    au_names = _au_union(found.samples)
    writer = StoreWriter(
        out,
        dataset=adapter.name,
        classes=found.classes,
        config=asdict(cfg),
        aligner=cfg.aligner,
        source_root=str(Path(root).resolve()),
        au_names=au_names,
        overwrite=overwrite,
        restart=restart,
    )
    summary = PrepareSummary(dataset=adapter.name, out=str(out), samples=len(found.samples))
    summary.warnings.extend(f"scan: {problem}" for problem in found.problems)
    timings: dict[str, float] = {}
    try:
        stale = (writer.done_ids | set(writer.failed_ids)) - {s.id for s in found.samples}
        if stale:  # a resumed run whose input lost samples: keep the file true to the current input
            writer.discard(stale)
            summary.warnings.append(f"resume: dropped {len(stale)} sample(s) no longer in {root}: {', '.join(sorted(stale)[:5])}")
        summary.warnings.extend(f"resume: {note}" for note in writer.notes)
        summary.warnings.extend(w for ws in writer.sample_warnings.values() for w in ws)  # from the earlier run
        finished = writer.done_ids | set(writer.failed_ids)
        summary.resumed = len(finished)
        todo = [s for s in found.samples if s.id not in finished]
        done = len(finished)
        if progress:
            progress(done, len(found.samples))
        for result in _run_tasks(todo, cfg, workers, scheduler):
            if result.failure:
                writer.add_failure(result.id, result.failure)
            else:
                aus = _to_columns(result.aus, result.au_names, au_names) if au_names else None
                writer.add(result.record, result.frames, result.landmarks, result.flags, aus, result.source_frame,
                           warnings=result.warnings)
                summary.written += 1
                summary.frames += result.counts.get("frames", 0)
                summary.faces_detected += result.counts.get("detected", 0)
                summary.frames_interpolated += result.counts.get("interpolated", 0)
                summary.frames_filled += result.counts.get("filled", 0)
            summary.warnings.extend(result.warnings)
            for key, value in result.timings.items():
                timings[key] = timings.get(key, 0.0) + value
            done += 1
            if progress:
                progress(done, len(found.samples))
        failures = dict(writer.failed_ids)
        t_write = time.perf_counter()
        final = writer.finalize()
        timings["write"] = time.perf_counter() - t_write
    finally:
        writer.close()
    if materialize_augmentation:
        write_augmented(final, materialize_augmentation)
    summary.failed = len(failures)
    summary.failures = [{"id": k, "reason": v} for k, v in sorted(failures.items())]
    summary.timings = {k: round(v, 3) for k, v in timings.items()}
    summary.contact_sheet = str(write_contact_sheet(final))
    summary.failures_csv = str(write_failures_csv(final, summary.failures, summary.warnings))
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summary


def write_augmented(h5_path: Path, preset: str) -> None:
    """Add `/augmented/<preset>`: every clip (T frames) under every transform of the preset, uint8
    (n * K, T, H, W, 3), clip-major, with the transform parameters as an attribute.

    Written into a copy that replaces the file only when complete, so an interrupted run leaves the
    prepared file as it was.
    """
    import shutil

    import h5py
    import torch

    from ferbench.store import open_store

    params = params_tensor(preset)
    tmp = Path(f"{h5_path}.aug.part")
    shutil.copyfile(h5_path, tmp)
    with open_store(h5_path) as store, h5py.File(tmp, "a") as f:
        n, k, t = len(store), params.shape[0], store.length
        h, w, c = store.frame_shape
        name = f"augmented/{preset}"
        if name in f:
            del f[name]
        ds = f.create_dataset(name, (n * k, t, h, w, c), np.uint8, chunks=(1, 1, h, w, c), compression="gzip", compression_opts=4)
        ds.attrs["params"] = json.dumps(params.tolist())
        ds.attrs["param_names"] = json.dumps(["flip", "angle", "tx", "ty", "scale"])
        ds.attrs["order"] = "row i*K + j = sample i (sorted by id) under transform j"
        for i in range(n):
            clip = torch.from_numpy(store.frames(i, "clip")).permute(0, 3, 1, 2)[None].float()
            out = materialize(clip, params).round().clamp(0, 255).to(torch.uint8)
            ds[i * k : (i + 1) * k] = out.permute(0, 1, 3, 4, 2).numpy()
    os.replace(tmp, h5_path)


def _sidecar(h5_path: Path, suffix: str) -> Path:
    return h5_path.with_name(h5_path.stem + suffix)


def write_failures_csv(h5_path: Path, failures: list[dict[str, str]], warnings: list[str]) -> Path:
    """`<name>.failures.csv`: every excluded sample and every repaired frame, by name."""
    path = _sidecar(Path(h5_path), ".failures.csv")
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "kind", "reason"])
        for f in failures:
            w.writerow([f["id"], "excluded", f["reason"]])
        for warning in warnings:
            sid, _, reason = warning.partition(": ")
            kind = {"scan": "scan problem", "resume": "resume"}.get(sid)
            w.writerow(["", kind, reason] if kind else [sid, "frame repaired", reason])
    return path


def write_contact_sheet(h5_path: Path, columns: int = 10, max_samples: int = 60) -> Path:
    """`<name>.qc.png`: onset and apex crops of the first samples, side by side, for a quick visual check."""
    from ferbench.store import open_store

    path = _sidecar(Path(h5_path), ".qc.png")
    with open_store(h5_path) as store:
        tiles = []
        for i, s in enumerate(store.samples[:max_samples]):
            frames = store.frames(i)
            pair = np.hstack([frames[s.states[0]], frames[s.states[2]]]) if s.states is not None else frames[-1]
            tiles.append(cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    if not tiles:
        tiles = [np.zeros((64, 128, 3), np.uint8)]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + 4), min(columns, len(tiles)) * (w + 4), 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w] = tile
    cv2.imwrite(str(path), sheet)
    return path
