"""Benchmark `ferbench prepare`: frames/s with 1..N dask workers, where the time goes, and a naive baseline.

    python benchmarks/prepare.py [--dataset ck+] [--subjects 3] [--workers 1 2]

Prints one table. The naive loop decodes every frame and runs the detector on every frame (no keyframe
tracking), in one process, as most hand-written FER preprocessing scripts do.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


from ferbench.datasets import scan, synth
from ferbench.preprocess.align import align_face
from ferbench.preprocess.frames import read_image, read_video
from ferbench.preprocess.pipeline import PrepareConfig, detector_for, prepare


def naive_loop(dataset: str, root: Path) -> tuple[int, float, dict[str, float]]:
    """Detector on every frame, largest face, align; returns (frames, seconds, split).

    Uses the same detector settings as prepare (MTCNN, minimum face 10% of the frame), so the difference
    is keyframe tracking and parallelism, not detector tuning.
    """
    split = {"decode": 0.0, "detect": 0.0, "align": 0.0}
    n = 0
    t0 = time.perf_counter()
    for sample in scan(dataset, root).samples:
        t = time.perf_counter()
        frames = [read_image(p) for p in sample.frames] if sample.frames else read_video(sample.video).frames
        split["decode"] += time.perf_counter() - t
        detector = detector_for(PrepareConfig().resolved(dataset), frames[0].shape)
        for frame in frames:
            t = time.perf_counter()
            faces = detector.detect(frame)
            split["detect"] += time.perf_counter() - t
            if faces:
                t = time.perf_counter()
                align_face(frame, max(faces, key=lambda f: f.area).points, 64, "yu2018")
                split["align"] += time.perf_counter() - t
            n += 1
    return n, time.perf_counter() - t0, split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ck+")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ferbench-bench-"))
    root = work / args.dataset
    synth(args.dataset, root, subjects=args.subjects, seed=0)
    n_samples = len(scan(args.dataset, root).samples)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"dataset {args.dataset} replica: {n_samples} samples")
    print(f"{'run':<28}{'frames':>8}{'wall s':>9}{'frames/s':>10}   time split (s, summed over workers)")

    for workers in args.workers:
        out = work / f"w{workers}.h5"
        t = time.perf_counter()
        s = prepare(args.dataset, root, out, PrepareConfig(), workers=workers, overwrite=True)
        wall = time.perf_counter() - t
        split = ", ".join(f"{k} {s.timings.get(k, 0):.2f}" for k in ("decode", "detect", "align", "write"))
        print(f"{f'prepare, {workers} dask worker(s)':<28}{s.frames:>8}{wall:>9.2f}{s.frames / wall:>10.1f}   {split}")

    t = time.perf_counter()
    s = prepare(args.dataset, root, work / "w0.h5", PrepareConfig(), workers=0, overwrite=True)
    wall = time.perf_counter() - t
    split = ", ".join(f"{k} {s.timings.get(k, 0):.2f}" for k in ("decode", "detect", "align", "write"))
    print(f"{'prepare, in-process':<28}{s.frames:>8}{wall:>9.2f}{s.frames / wall:>10.1f}   {split}")

    n, wall, split = naive_loop(args.dataset, root)
    text = ", ".join(f"{k} {v:.2f}" for k, v in split.items())
    print(f"{'naive: detect every frame':<28}{n:>8}{wall:>9.2f}{n / wall:>10.1f}   {text}")


if __name__ == "__main__":
    main()
