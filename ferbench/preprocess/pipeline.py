"""`ferbench prepare`: a native dataset -> one aligned, indexed HDF5 file, with the samples spread over dask.

The walk of one sample (`process_sample`, runs on a dask worker): decode frames lazily -> track one face
(detect on keyframes, interpolate between) -> similarity-align each frame -> temporal-normalisation and
expression-state indices. Workers return small arrays (T x 64 x 64 x 3); the one writer in this process
streams them into the store as they complete, with a bounded number of samples in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferbench.atomic import atomic_write
from ferbench.cluster import check_scheduler, dask_client
from ferbench.datasets import get_dataset, scan
from ferbench.datasets._media import frame_number
from ferbench.datasets.base import DatasetAdapter, Sample
from ferbench.errors import DatasetError, FerbenchError
from ferbench.issues import PARTLY_COVERED, REPAIRED, RESIZED, RESUME, SCAN, Issue, failures_json
from ferbench.paths import require_folder
from ferbench.preprocess.align import TEMPLATES
from ferbench.preprocess.detect import DETECTORS, Detector, get_detector
from ferbench.preprocess.frames import LazyFrames
from ferbench.preprocess.states import expression_states
from ferbench.preprocess.temporal import normalise_length
from ferbench.preprocess.track import align_sequence, size_runs, track_sequence
from ferbench.store import COMPRESSION, FLAG_DETECTED, FLAG_FILLED, FLAG_INTERPOLATED, FLAG_MEANINGS, SampleRecord, StoreWriter
from ferbench.store.flags import face_found
from ferbench.threads import COMPUTE_THREADS, ThreadLimits, compute_threads

#: Bounds of the options: beyond them a run would only waste hours or write an empty file.
MAX_SIZE = 1024
MAX_LENGTH = 10_000
MAX_DETECT_EVERY = 10_000
#: A sample whose face is found on less than this fraction of its frames is excluded (`--min-coverage`);
#: one found on less than PARTIAL_COVERAGE of them is kept and named in the warnings.
DEFAULT_MIN_COVERAGE = 0.5
PARTIAL_COVERAGE = 0.9


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that changes the arrays in the output file (it is stored in the file's attrs).

    `None` fields take the dataset's defaults (`DatasetAdapter.clip_length`, `.target_fps`, `.min_face`, and
    `.default_aligner(root)`: "none" where the release ships face crops, else "mtcnn").
    """

    aligner: str | None = None
    size: int = 64
    template: str = "yu2018"
    length: int | None = None  # fixed clip length T; None = the adapter's clip_length (CK+ 18, Oulu/MMI 22)
    detect_every: int = 5
    target_fps: float | None = None  # None = the adapter's target_fps (MMI 10 fps), else native
    min_face: float | None = None  # smallest face searched, fraction of the frame's shorter side (MTCNN)
    min_coverage: float = DEFAULT_MIN_COVERAGE  # fraction of frames with a tracked face a sample needs

    def check(self) -> PrepareConfig:
        """Refuse any option out of range with one line naming it (before any work starts)."""
        def bad(option: str, value: Any, expected: str) -> FerbenchError:
            return FerbenchError(f"{option} {value!r}: expected {expected}")

        if self.aligner not in DETECTORS:
            raise bad("--aligner", self.aligner, f"one of {', '.join(DETECTORS)}")
        if self.template not in TEMPLATES:
            raise bad("--template", self.template, f"one of {', '.join(TEMPLATES)}")
        checks = (
            ("--size", self.size, 16, MAX_SIZE, int),
            ("--length", self.length, 1, MAX_LENGTH, int),
            ("--detect-every", self.detect_every, 1, MAX_DETECT_EVERY, int),
        )
        for option, value, lo, hi, kind in checks:
            if value is None and option == "--length":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise bad(option, value, f"an integer from {lo} to {hi}")
        for option, value, lo, hi, optional in (
            ("--target-fps", self.target_fps, 0.0, 1000.0, True),
            ("--min-face", self.min_face, 0.0, 1.0, True),
            ("--min-coverage", self.min_coverage, 0.0, 1.0, False),
        ):
            if value is None and optional:
                continue
            ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)
            strict_low = option != "--min-coverage"
            if not ok or value > hi or (value <= lo if strict_low else value < lo):
                raise bad(option, value, f"a number {'above' if strict_low else 'from'} {lo:g} {'and at most' if strict_low else 'to'} {hi:g}")
        return self

    def resolved(self, dataset: str | DatasetAdapter, root: str | Path | None = None) -> PrepareConfig:
        """The config with the dataset's defaults filled in (from its adapter and, for the aligner, what the
        release under `root` holds), as written to the file."""
        adapter = get_dataset(dataset) if isinstance(dataset, str) else dataset
        length = self.length or adapter.clip_length
        fps = self.target_fps if self.target_fps is not None else adapter.target_fps
        min_face = self.min_face if self.min_face is not None else adapter.min_face
        aligner = self.aligner or adapter.default_aligner(None if root is None else Path(root).expanduser())
        return dataclasses.replace(self, aligner=aligner, length=length, target_fps=fps, min_face=min_face).check()


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
    failure: str = ""  # why the sample is excluded ("" = it is not)
    warnings: list[Issue] = field(default_factory=list)
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
    redone: int = 0  # finished in an interrupted run, but their input changed since: done again
    failed: int = 0
    frames: int = 0
    faces_detected: int = 0
    frames_interpolated: int = 0
    frames_filled: int = 0
    seconds: float = 0.0
    failures: list[Issue] = field(default_factory=list)  # kind EXCLUDED, sorted by sample id
    warnings: list[Issue] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    contact_sheet: str = ""
    failures_csv: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON: failures as {id, reason} rows, warnings as the lines a person reads."""
        return {**asdict(self), "failures": failures_json(self.failures), "warnings": [str(w) for w in self.warnings]}


#: MTCNN detects on the frame downscaled so that the smallest face searched (`min_face`) is this many pixels:
#: the detection only has to find the face, `refine_face` then re-detects its landmarks at full resolution.
DETECT_FACE_PX = 24


def detector_for(config: PrepareConfig, frame_shape: tuple[int, ...], threads: int | None = None) -> Detector:
    """The configured detector; MTCNN skips pyramid levels for faces smaller than `min_face` of the frame
    (fewer, larger levels: several times faster on lab video, where faces fill a good part of the frame),
    and searches a copy of the frame downscaled so that `min_face` is DETECT_FACE_PX pixels (on a 640x490
    CK+ frame: 314 px wide; 2.5x faster, the same faces found, landmarks after refinement within MTCNN's own
    noise, see tests/test_detect_align.py). `threads`: onnxruntime intra-op threads (None = one,
    `ferbench.threads.COMPUTE_THREADS`: parallelism comes from worker processes)."""
    if config.aligner == "mtcnn":
        min_face = max(20, int(config.min_face * min(frame_shape[:2])))
        side = max(frame_shape[:2])
        max_side = -(-side * DETECT_FACE_PX // min_face) if min_face > DETECT_FACE_PX else None
        return get_detector("mtcnn", min_face_size=min_face, threads=threads or COMPUTE_THREADS, max_side=max_side)
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

    `threads`: onnxruntime threads of the detector (None = `ferbench.threads.COMPUTE_THREADS`, one).
    """
    try:
        return _process(sample, config, detector, threads)
    except Exception as e:  # bad data must not stop a run of thousands: report it against the sample
        return SampleResult(id=sample.id, failure=f"{type(e).__name__}: {e}" if not isinstance(e, FerbenchError) else str(e))


def _process(sample: Sample, config: PrepareConfig, detector: Detector | None, threads: int | None) -> SampleResult:
    """One sample: decode and track one face (`_track`), align and check the face coverage (`_align`), then the
    store record with its clip and state indices (`_fill_record`). A failure is set on the result, not raised."""
    t_start = time.perf_counter()
    result = SampleResult(id=sample.id)
    tracked = _track(sample, config, detector, threads, result)
    if tracked is None:
        return result
    frames, track, detect_seconds = tracked
    aligned = _align(sample, config, frames, track, detect_seconds, result)
    if aligned is None:
        return result
    crops, points, flags, coverage = aligned
    _fill_record(result, sample, config, frames, crops, points, flags, coverage)
    result.timings["total"] = time.perf_counter() - t_start
    result.counts = {"frames": len(frames),
                     **{name: int((flags == code).sum()) for code, name in FLAG_MEANINGS.items() if code}}
    return result


def _track(sample: Sample, config: PrepareConfig, detector: Detector | None, threads: int | None,
           result: SampleResult) -> tuple[LazyFrames, Any, float] | None:
    """(frames, face track, detection seconds); None, with `result.failure`, when there is no frame or no face."""
    try:
        frames = LazyFrames(sample, config.target_fps)
    except DatasetError as e:
        result.failure = str(e)
        return None
    if len(frames) == 0:
        result.failure = "no frames"
        return None
    t_track, decoded = time.perf_counter(), frames.decode_seconds
    sizes = frames.sizes()
    for a, _, hw in size_runs(sizes)[1:]:  # a frame of another size is detected on its own, and named
        result.warnings.append(Issue(sample.id, RESIZED, f"{_frame_name(sample, frames, a)} is {hw[1]}x{hw[0]}, the frame "
                                     f"before it {sizes[a - 1][1]}x{sizes[a - 1][0]} (face detected again at the size change)"))
    factory = (lambda hw: detector) if detector is not None else (lambda hw: detector_for(config, hw, threads))
    track = track_sequence(frames, factory, every=config.detect_every, sizes=sizes)
    detect_seconds = time.perf_counter() - t_track - (frames.decode_seconds - decoded)
    k = len(frames)
    if not track.ok and frames.bad:  # no face, and some frames were unreadable: were they all?
        for t in range(k):
            frames[t]
        if len(frames.bad) == k:
            result.failure = f"none of the {k} frames could be read (first: {frames.problems[0]})"
            return None
    if not track.ok:
        result.failure = track.reason if "no face" in track.reason else f"no face track in {len(frames)} frames: {track.reason}"
        result.timings = {"decode": frames.decode_seconds, "detect": detect_seconds}
        return None
    return frames, track, detect_seconds


def _align(sample: Sample, config: PrepareConfig, frames: LazyFrames, track: Any, detect_seconds: float,
           result: SampleResult) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(RGB crops, landmarks, per-frame flags, face coverage), unreadable frames filled from their neighbours;
    None, with `result.failure`, when no frame could be read or the face is missing on too many frames."""
    t_align, decoded = time.perf_counter(), frames.decode_seconds
    crops, points = align_sequence(frames, track, config.size, config.template)  # reads every frame
    crops = np.ascontiguousarray(crops[..., ::-1])  # BGR -> RGB, the store's pixel order
    align_seconds = time.perf_counter() - t_align - (frames.decode_seconds - decoded)  # decoding is "decode"
    result.timings = {"decode": frames.decode_seconds, "detect": detect_seconds, "align": align_seconds}
    k = len(frames)
    if len(frames.bad) == k:
        result.failure = f"none of the {k} frames could be read (first: {frames.problems[0]})"
        return None
    flags = track.flags.copy()
    _fill_unreadable(crops, points, flags, frames.bad)
    result.warnings += [Issue(sample.id, REPAIRED, f"{p} (frame filled from neighbours)") for p in frames.problems]
    covered = int(face_found(flags).sum())  # unreadable frames are not faces
    coverage = covered / k
    if coverage < config.min_coverage:
        result.failure = (f"no face on most frames: face found on {covered} of {k} frames "
                          f"(coverage {coverage:.0%}, below --min-coverage {config.min_coverage:.0%})")
        return None
    if coverage < PARTIAL_COVERAGE:
        result.warnings.append(Issue(sample.id, PARTLY_COVERED, f"face found on {covered} of {k} frames (coverage "
                                     f"{coverage:.0%}); the other frames are filled from neighbours"))
    return crops, points, flags, coverage


def _fill_record(result: SampleResult, sample: Sample, config: PrepareConfig, frames: LazyFrames,
                 crops: np.ndarray, points: np.ndarray, flags: np.ndarray, coverage: float) -> None:
    """The store's record of an aligned sample: clip and expression-state indices, annotations in kept-frame
    positions, native frame numbers and AU rows."""
    k, idx = len(frames), frames.source_index
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
        coverage=coverage,
    )
    result.frames, result.landmarks, result.flags = crops, points, flags
    result.source_frame = _native_numbers(sample, idx)
    if sample.aus is not None:  # rows past the AU matrix (a video longer than its header said) are unknown
        aus = np.asarray(sample.aus)
        rows = np.full((k, aus.shape[1]), -1, np.int8)
        inside = idx < len(aus)
        rows[inside] = aus[idx[inside]]
        result.aus, result.au_names = rows, tuple(sample.au_names)


def _frame_name(sample: Sample, frames: LazyFrames, t: int) -> str:
    """How a user finds frame t: its file name, or its number in the video."""
    if sample.frames:
        return str(sample.frames[int(frames.source_index[t])].name)
    return f"frame {int(frames.source_index[t])} of {sample.video.name if sample.video else sample.id}"


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
    """`prepared/<dataset>.h5` in the data home (`ferbench.home`), where `evaluate` finds it by name."""
    from ferbench.home import prepared_path

    return prepared_path(dataset)


def _run_tasks(
    todo: list[Sample], config: PrepareConfig, workers: int | None, scheduler: str | None
):
    """Yield `SampleResult`s as they complete: in-process when workers == 0, else on dask."""
    if workers == 0 and not scheduler:
        for sample in todo:
            with compute_threads():  # restored between samples: the caller's process keeps its settings
                result = process_sample(sample, config)
            yield result
        return
    from dask.distributed import as_completed

    with dask_client(workers, scheduler, plugin=ThreadLimits()) as client:
        n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
        window = 2 * n_workers  # samples in flight: bounds memory on both sides
        pending = iter(longest_first(todo))

        ids = {}

        def submit(sample: Sample):
            future = client.submit(process_sample, sample, config, pure=False)
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


def longest_first(samples: Sequence[Sample]) -> list[Sample]:
    """The order samples go to dask workers: longest first (frames known without decoding; unknown last, in
    their given order), so that the last samples to finish are short ones and no worker idles at the end.
    The merged file is sorted by id whatever the order of completion."""
    return sorted(samples, key=lambda s: -(s.n_frames or 0))


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
    A killed run resumes where it stopped (a finished sample is reused only while its input fingerprint is
    unchanged); a second run on the same output is refused while one runs. Every option is checked before
    any work; a run in which every sample fails writes nothing (an existing file stays as it was) and raises.
    Every I/O failure is one FerbenchError line; finished samples stay in `<out>.tmp/` for the rerun.
    """
    t0 = time.perf_counter()
    adapter, cfg, out = check_options(dataset, config, out, workers=workers, scheduler=scheduler,
                                      overwrite=overwrite, materialize_augmentation=materialize_augmentation, root=root)
    try:
        return _prepare(adapter, root, out, cfg, t0, workers=workers, scheduler=scheduler, overwrite=overwrite,
                        restart=restart, materialize_augmentation=materialize_augmentation, progress=progress)
    except OSError as e:  # anything the store did not name itself (a folder made read-only mid-run, ...)
        where = e.filename or out
        raise FerbenchError(f"{where}: {e.strerror or e}; finished samples stay in {out}.tmp, rerun to resume") from None


def check_options(
    dataset: str, config: PrepareConfig | None = None, out: str | Path | None = None, *,
    workers: int | None = None, scheduler: str | None = None, overwrite: bool = False,
    materialize_augmentation: str | None = None, root: str | Path | None = None,
) -> tuple[DatasetAdapter, PrepareConfig, Path]:
    """Every option of a `prepare` run checked before any work (the CLI calls it before its progress bar):
    the adapter, the resolved config and the output path, or one FerbenchError line naming the option.
    `root`: the native folder, which decides the default aligner (face crops shipped: none)."""
    adapter = get_dataset(dataset)
    cfg = (config or PrepareConfig()).resolved(adapter, root)
    _check_run_options(workers, scheduler, materialize_augmentation)
    path = Path(out) if out else default_output(adapter.name)
    if path.is_dir():
        raise FerbenchError(f"--out {path} is a folder; expected the path of the .h5 file to write (e.g. {path / (adapter.name + '.h5')})")
    if path.exists() and not overwrite:
        raise FerbenchError(f"{path} already exists; pass --overwrite to replace it")
    require_folder(path.parent, "the folder of --out")  # a read-only or impossible folder, before work
    if cfg.aligner != "mtcnn":
        _plain_detector(cfg)  # a missing model pack fails here, before any work
    return adapter, cfg, path


def _check_run_options(workers: int | None, scheduler: str | None, preset: str | None) -> None:
    """The options that are not part of the config: refused with one line before any work."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise FerbenchError(f"--workers {workers!r}: expected 0 (in this process) or a number of worker processes")
    if scheduler is not None:
        check_scheduler(scheduler)  # the same check as evaluate's: the form, and a tcp scheduler answering
    if preset:
        from ferbench.preprocess.augment import get_preset  # torch: imported only where augmentation is asked for

        get_preset(preset)


def _prepare(
    adapter: DatasetAdapter, root: str | Path, out: Path, cfg: PrepareConfig, t0: float, *,
    workers: int | None, scheduler: str | None, overwrite: bool, restart: bool,
    materialize_augmentation: str | None, progress: Callable[[int, int], None] | None,
) -> PrepareSummary:
    """Scan, open (or resume) the writer, process what is left (`_write_results`), publish the file with its
    sidecars (`_publish`)."""
    found = scan(adapter.name, root)
    if not found.samples and not found.excluded:
        raise FerbenchError(f"{root}: no {adapter.name} samples found, nothing to prepare (see `ferbench scan {adapter.name} --root ...`)")
    au_names = _au_union(found.samples)
    fingerprints = {s.id: s.fingerprint() for s in found.samples}
    excluded = dict(found.excluded)
    for sid, reason in excluded.items():
        fingerprints.setdefault(sid, "scan:" + reason)
    writer = StoreWriter(out, dataset=adapter.name, classes=found.classes, config=asdict(cfg), aligner=cfg.aligner,
                         source_root=str(Path(root).resolve()), au_names=au_names, overwrite=overwrite, restart=restart)
    summary = PrepareSummary(dataset=adapter.name, out=str(out), samples=len(fingerprints))
    summary.warnings.extend(Issue("", SCAN, problem) for problem in found.problems)
    try:
        finished, done = _resume(writer, excluded, fingerprints, summary, root, out)
        todo = [s for s in found.samples if s.id not in finished]
        timings = _write_results(writer, todo, done, fingerprints, au_names, summary, cfg, workers, scheduler, progress)
        _publish(writer, out, summary, timings, materialize_augmentation)
    finally:
        writer.close()
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summary


def _resume(writer: StoreWriter, excluded: dict[str, str], fingerprints: dict[str, str], summary: PrepareSummary,
            root: str | Path, out: Path) -> tuple[set[str], int]:
    """Reconcile an interrupted run's finished samples with the current input (drop the vanished, redo the
    changed), record the scan's exclusions; returns the finished ids and how many samples are already done."""
    Path(f"{out}.aug.part").unlink(missing_ok=True)  # left by an older ferbench killed while augmenting
    stale = writer.finished_ids - set(fingerprints)
    if stale:  # a resumed run whose input lost samples: keep the file true to the current input
        writer.discard(stale)
        summary.warnings.append(Issue("", RESUME, f"dropped {len(stale)} sample(s) no longer in {root}: {', '.join(sorted(stale)[:5])}"))
    changed = {sid for sid in writer.finished_ids if writer.fingerprints.get(sid) != fingerprints[sid]}
    if changed:  # finished before the interruption, but the input changed since: redo, never reuse
        writer.discard(changed)
        summary.redone = len(changed)
        summary.warnings.append(Issue("", RESUME, f"redoing {len(changed)} sample(s) whose input changed since the "
                                                  f"interrupted run: {', '.join(sorted(changed)[:5])}"))
    summary.warnings.extend(writer.notes)
    summary.warnings.extend(w for ws in writer.sample_warnings.values() for w in ws)  # from the earlier run
    finished = writer.finished_ids
    summary.resumed = len(finished)
    for sid in sorted(set(excluded) - finished):  # unreadable in the scan: excluded with the reason
        writer.add_failure(sid, excluded[sid], fingerprint=fingerprints[sid])
    return finished, len(finished) + len(set(excluded) - finished)


def _write_results(writer: StoreWriter, todo: list[Sample], done: int, fingerprints: dict[str, str],
                   au_names: tuple[int, ...] | None, summary: PrepareSummary, cfg: PrepareConfig, workers: int | None,
                   scheduler: str | None, progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Process `todo` (in this process or on dask) and write each result as it arrives; the summed timings."""
    timings: dict[str, float] = {}
    n_total = summary.samples
    if progress:
        progress(done, n_total)
    for result in _run_tasks(todo, cfg, workers, scheduler):
        t_write = time.perf_counter()
        if result.failure:
            writer.add_failure(result.id, result.failure, fingerprint=fingerprints[result.id])
        else:
            aus = _to_columns(result.aus, result.au_names, au_names) if au_names else None
            writer.add(result.record, result.frames, result.landmarks, result.flags, aus, result.source_frame,
                       warnings=result.warnings, fingerprint=fingerprints[result.id])
            summary.written += 1
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t_write
        summary.warnings.extend(result.warnings)
        for key, value in result.timings.items():
            timings[key] = timings.get(key, 0.0) + value
        done += 1
        if progress:
            progress(done, n_total)
    return timings


def _publish(writer: StoreWriter, out: Path, summary: PrepareSummary, timings: dict[str, float],
             materialize_augmentation: str | None) -> None:
    """Merge the shards into `out` with its sidecars (QC sheet, failures CSV, augmentation), or refuse when
    every sample failed (a good file is never replaced by an empty one)."""
    summary.failures = writer.failures
    summary.failed = len(summary.failures)
    if not writer.done_ids:
        first = "; ".join(map(str, summary.failures[:2]))
        shutil.rmtree(writer.tmp_dir, ignore_errors=True)
        raise FerbenchError(f"every one of the {summary.failed} samples failed, nothing written"
                            f"{f' ({out} left as it was)' if out.exists() else ''}; first: {first}")
    summary.timings = {k: round(v, 3) for k, v in timings.items()}
    summary.contact_sheet = str(_sidecar(out, ".qc.png"))
    summary.failures_csv = str(_sidecar(out, ".failures.csv"))

    def before_publish(part: Path) -> None:
        """Sidecars, augmentation and the whole-file counts, from the merged file before it goes live."""
        if materialize_augmentation:
            write_augmented(part, materialize_augmentation, in_place=True)
        _count_frames(part, summary)
        write_failures_csv(out, summary.failures, summary.warnings, source=part)
        write_contact_sheet(out, source=part)

    t_write = time.perf_counter()
    writer.finalize(before_publish)
    summary.timings["write"] = round(timings.get("write", 0.0) + time.perf_counter() - t_write, 3)  # shards + merge


def _count_frames(h5_path: Path, summary: PrepareSummary) -> None:
    """Frame counts of the whole file (resumed samples included), from its per-frame flags."""
    from ferbench.store import open_store

    with open_store(h5_path) as store:
        flags = store.per_frame("flags")
    summary.frames = int(flags.size)
    summary.faces_detected = int((flags == FLAG_DETECTED).sum())
    summary.frames_interpolated = int((flags == FLAG_INTERPOLATED).sum())
    summary.frames_filled = int((flags == FLAG_FILLED).sum())


def write_augmented(h5_path: Path, preset: str, in_place: bool = False) -> None:
    """Add `/augmented/<preset>`: every clip (T frames) under every transform of the preset, uint8
    (n * K, T, H, W, 3), clip-major, with the transform parameters as an attribute.

    `prepare` writes it into the merged file before that file is renamed into place (`in_place`), so a run
    killed meanwhile resumes from its shards; otherwise it is written into a copy that replaces the file
    only when complete, so an interrupted call leaves the file as it was.
    """
    import h5py
    import torch

    from ferbench.preprocess.augment import materialize, params_tensor
    from ferbench.store import open_store

    params = params_tensor(preset)
    tmp = h5_path if in_place else Path(f"{h5_path}.aug.part")
    if not in_place:
        shutil.copyfile(h5_path, tmp)
    with open_store(h5_path) as store:
        n, k, t = len(store), params.shape[0], store.length
        h, w, c = store.frame_shape
        clips = [store.frames(i, "clip") for i in range(n)]
    with h5py.File(tmp, "a") as f:
        name = f"augmented/{preset}"
        if name in f:
            del f[name]
        ds = f.create_dataset(name, (n * k, t, h, w, c), np.uint8, chunks=(1, 1, h, w, c), **COMPRESSION)
        ds.attrs["params"] = json.dumps(params.tolist())
        ds.attrs["param_names"] = json.dumps(["flip", "angle", "tx", "ty", "scale"])
        ds.attrs["order"] = "row i*K + j = sample i (sorted by id) under transform j"
        for i, frames in enumerate(clips):
            clip = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
            out = materialize(clip, params).round().clamp(0, 255).to(torch.uint8)
            ds[i * k : (i + 1) * k] = out.permute(0, 1, 3, 4, 2).numpy()
    if not in_place:
        os.replace(tmp, h5_path)


def _sidecar(h5_path: Path, suffix: str) -> Path:
    return h5_path.with_name(h5_path.stem + suffix)


def write_failures_csv(h5_path: Path, failures: list[Issue], warnings: list[Issue], source: Path | None = None) -> Path:
    """`<name>.failures.csv`: every excluded sample and every warning, one record a row (sample, kind, reason).
    `source` (unused but for symmetry with `write_contact_sheet`) is the merged file it describes."""
    path = _sidecar(Path(h5_path), ".failures.csv")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["sample", "kind", "reason"])
    w.writerows([i.sample, i.kind, i.reason] for i in [*failures, *warnings])
    return atomic_write(path, buf.getvalue())


def write_contact_sheet(h5_path: Path, columns: int = 10, max_samples: int = 60, source: Path | None = None) -> Path:
    """`<name>.qc.png`: onset and apex crops of the first samples, side by side, for a quick visual check.
    `source`: the store to read (default `h5_path`; `prepare` passes the merged file before it goes live)."""
    from ferbench.store import open_store

    path = _sidecar(Path(h5_path), ".qc.png")
    with open_store(source or h5_path) as store:
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
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise FerbenchError(f"{path}: could not encode the QC contact sheet")
    return atomic_write(path, png.tobytes())
