"""Benchmark `ferbench prepare` against the floor (decoding the frames) and the naive every-frame loop.

    python benchmarks/prepare.py [--subjects 3] [--workers 1 2] [--repeat 2] [--baseline REF]
                                 [--bp4d-subjects 1 2] [--bp4d-frames 200] [--afew-subjects 1]

One run prints, on the same CK+ replica frames: decode-only (every frame read with `read_image`: the floor),
ferbench in-process, with 1 and 2 dask workers, and the naive loop research code uses (the same MTCNN at
full resolution on every frame, largest face, 2-eye warp, one process); frames/s and wall time as a ratio
to the floor; the time split (decode / detect / align / write, summed over workers, each second counted
once). `--baseline REF` also runs the ferbench of git revision REF on the same frames, interleaved with the
current code, so the ratio between them survives a busy machine. Every prepare run is a fresh child
process (imports and ONNX sessions counted the same for both); the best of `--repeat` runs is printed.

Then a BP4D-shaped run (1040x1392 JPEG frames, coded segments of `--bp4d-frames` frames, 2 tasks per
subject, at each `--bp4d-subjects`): frames/s and peak RSS of the client and of each worker, so a reader can
see memory does not grow with the number of sequences; an AFEW replica run (720x576 video clips, small
faces); and the full BP4D (146k frames) and AFEW (1,156 clips) wall times projected from them.
The load average is printed beside every figure: on a shared machine, compare figures from one run only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ferbench.datasets import scan, synth  # noqa: E402
from ferbench.preprocess.align import align_face  # noqa: E402
from ferbench.preprocess.detect import get_detector  # noqa: E402
from ferbench.preprocess.frames import read_image, read_video  # noqa: E402
from ferbench.preprocess.pipeline import PrepareConfig  # noqa: E402
from ferbench.threads import compute_threads  # noqa: E402

BP4D_FRAMES = 146_000  # BP4D-Spontaneous, 2D frames of the 328 coded task sequences
AFEW_CLIPS = 1_156  # AFEW 7.0 Train + Val

#: Runs one prepare in a child process with the given ferbench on its path; prints a JSON line.
CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
dataset, root, out, workers, cluster_workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
from ferbench.preprocess.pipeline import PrepareConfig, prepare
kw, cluster, client, start = {}, None, None, 0.0
if cluster_workers:  # a started cluster: time the processing only; and read the workers' peak memory
    import logging
    from dask.distributed import Client, LocalCluster
    t = time.perf_counter()
    cluster = LocalCluster(n_workers=cluster_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(lambda: __import__("ferbench.preprocess.pipeline"))  # what every worker imports for its first task
    start = time.perf_counter() - t
    kw["scheduler"] = cluster.scheduler_address
t = time.perf_counter()
s = prepare(dataset, root, out, PrepareConfig(), workers=workers, overwrite=True, **kw)
wall = time.perf_counter() - t
rss = {}
if client is not None:
    rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    client.close(); cluster.close()
print(json.dumps({"frames": s.frames, "samples": s.written, "wall": wall, "timings": s.timings, "start": start,
                  "client_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss_mb": sorted(v / 1024 for v in rss.values())}))
"""


def load() -> str:
    return "load {:.2f}".format(os.getloadavg()[0])


def child_prepare(code: Path, dataset: str, root: Path, out: Path, workers: int, cluster_workers: int = 0) -> dict:
    """One `prepare` by the ferbench at `code`, in a fresh process; its JSON summary plus the load average."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", CHILD, dataset, str(root), str(out), str(workers), str(cluster_workers)],
                          env=env, capture_output=True, text=True, cwd=code)
    if proc.returncode != 0:
        raise SystemExit(f"prepare ({code}) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load"] = before
    return result


def decode_floor(dataset: str, root: Path) -> tuple[int, float]:
    """Read every frame once (what any preprocessing must do): (frames, seconds)."""
    n, t = 0, time.perf_counter()
    for sample in scan(dataset, root).samples:
        if sample.frames:
            for p in sample.frames:
                read_image(p)
                n += 1
        else:
            n += len(read_video(sample.video).frames)
    return n, time.perf_counter() - t


def naive_loop(dataset: str, root: Path) -> tuple[int, float, dict[str, float]]:
    """MTCNN at full resolution on every frame (same minimum face size as prepare), largest face, 2-eye warp,
    one thread: what hand-written FER preprocessing does. Returns (frames, seconds, split)."""
    split = {"decode": 0.0, "detect": 0.0, "align": 0.0}
    n = 0
    cfg = PrepareConfig().resolved(dataset)
    t0 = time.perf_counter()
    with compute_threads():
        for sample in scan(dataset, root).samples:
            t = time.perf_counter()
            frames = [read_image(p) for p in sample.frames] if sample.frames else read_video(sample.video).frames
            split["decode"] += time.perf_counter() - t
            detector = get_detector("mtcnn", min_face_size=max(20, int(cfg.min_face * min(frames[0].shape[:2]))))
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


def checkout(ref: str, into: Path) -> Path:
    """The ferbench package of git revision `ref`, extracted into `into` (for --baseline)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "ferbench"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def bp4d_shaped(root: Path, subjects: int, frames: int, seed: int = 0) -> None:
    """A BP4D native tree (1040x1392 JPEGs, AU_OCC CSVs) whose coded segments are `frames` long: 2 tasks per
    subject. Twelve frames per sequence are rendered (neutral -> AUs -> neutral) and the segment steps
    through them back and forth, one JPEG file per frame number, so decoding costs what real frames cost."""
    from ferbench.datasets import bp4d
    from ferbench.datasets._media import write_image
    from ferbench.synth.faces import FaceAnimator

    rng = np.random.default_rng([seed, 4])
    anim = FaceAnimator(seed=seed)
    au_dir = root.joinpath(*bp4d.AU_DIR)
    au_dir.mkdir(parents=True, exist_ok=True)
    for s, subject in enumerate(bp4d._subject_names(subjects)):
        ident = anim.identity(s)
        for k in range(2):
            task = f"T{(2 * s + k) % 8 + 1}"
            folder = root / bp4d.SEQUENCE_DIRS[0] / subject / task
            folder.mkdir(parents=True, exist_ok=True)
            truth = bp4d._au_truth(task, 12, rng)
            rendered = []
            for j in range(12):
                path = folder / f"_render{j}.jpg"
                active = {au: 1.0 for au, on in zip(bp4d.AU_NAMES, truth[j]) if on}
                write_image(path, anim.render(ident, active, bp4d.FRAME_SIZE))
                rendered.append(path)
            cycle = list(range(12)) + list(range(10, 0, -1))
            start = 1000
            numbers = list(range(start, start + frames))
            labels = np.stack([truth[cycle[i % len(cycle)]] for i in range(frames)]).astype(np.int8)
            for i, number in enumerate(numbers):
                os.link(rendered[cycle[i % len(cycle)]], folder / f"{number}.jpg")
            for path in rendered:
                path.unlink()
            bp4d._write_au_csv(au_dir / f"{subject}_{task}.csv", numbers, labels)


def split_text(t: dict) -> str:
    return " ".join(f"{t.get(k, 0):6.2f}" for k in ("decode", "detect", "align", "write"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3, help="CK+ replica subjects")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per row")
    ap.add_argument("--baseline", help="git revision to compare against (e.g. main), run interleaved")
    ap.add_argument("--bp4d-subjects", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--bp4d-frames", type=int, default=200, help="frames per coded BP4D-shaped segment")
    ap.add_argument("--bp4d-workers", type=int, default=2)
    ap.add_argument("--afew-subjects", type=int, default=1, help="AFEW replica size (0 = skip)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="ferbench-bench-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    root = work / "ck+"
    synth("ck+", root, subjects=args.subjects, seed=0)
    n_samples = len(scan("ck+", root).samples)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {load()}")
    print(f"CK+ replica: {n_samples} samples; best of {args.repeat}; time split in seconds summed over workers\n")

    # --- CK+ replica: every row on the same frames, rows interleaved across repeats ---------------------
    codes = {"current": REPO}
    if args.baseline:
        codes[f"baseline {args.baseline}"] = checkout(args.baseline, work / "baseline")
    best: dict[str, dict] = {}

    def keep(name: str, result: dict) -> None:
        if name not in best or result["wall"] < best[name]["wall"]:
            best[name] = result

    for _ in range(args.repeat):
        before = os.getloadavg()[0]
        n, wall = decode_floor("ck+", root)
        keep("decode only (floor)", {"frames": n, "wall": wall, "timings": {"decode": wall}, "load": before})
        for label, code in codes.items():
            keep(f"in-process ({label})", child_prepare(code, "ck+", root, work / "w0.h5", 0))
        for w in args.workers:
            name = f"{w} dask worker{'s' if w > 1 else ''}"
            for label, code in codes.items():
                keep(f"{name} ({label})", child_prepare(code, "ck+", root, work / f"w{w}.h5", w))
            keep(f"{name}, started (current)", child_prepare(REPO, "ck+", root, work / f"w{w}.h5", 0, cluster_workers=w))
    before = os.getloadavg()[0]
    n, wall, split = naive_loop("ck+", root)
    best["naive: MTCNN on every frame"] = {"frames": n, "wall": wall, "timings": split, "load": before}

    floor = best["decode only (floor)"]["wall"]
    print("dask rows: wall includes starting the local cluster (as `prepare --workers N` runs); 'started' rows time "
          "the same job on a cluster already started, its start in the last column\n")
    print(f"{'run':<38}{'frames':>7}{'wall s':>8}{'frames/s':>9}{'x floor':>8}   decode detect  align  write   load  start s")
    for name, r in best.items():
        start = f"{r['start']:8.2f}" if r.get("start") else ""
        print(f"{name:<38}{r['frames']:>7}{r['wall']:>8.2f}{r['frames'] / r['wall']:>9.1f}{r['wall'] / floor:>8.2f}"
              f"   {split_text(r['timings'])}   {r['load']:.2f}{start}")
    fps = {k: v["frames"] / v["wall"] for k, v in best.items()}
    if args.baseline:
        label = f"baseline {args.baseline}"
        print(f"\nin-process speed-up over {args.baseline}: {fps['in-process (current)'] / fps[f'in-process ({label})']:.2f}x")
    if 1 in args.workers and 2 in args.workers:
        print(f"2 workers / 1 worker: {fps['2 dask workers (current)'] / fps['1 dask worker (current)']:.2f}x with the cluster "
              f"start, {fps['2 dask workers, started (current)'] / fps['1 dask worker, started (current)']:.2f}x on a started cluster")
    print(f"in-process wall / decode-only wall: {best['in-process (current)']['wall'] / floor:.2f}x")

    # --- BP4D-shaped: big frames, long segments, memory ----------------------------------------------
    bp4d_fps = None
    if args.bp4d_subjects:
        print(f"\nBP4D-shaped: 1040x1392 JPEG frames, 2 sequences per subject of {args.bp4d_frames} frames, "
              f"{args.bp4d_workers} dask workers")
        print(f"{'subjects':>8}{'sequences':>10}{'frames':>8}{'wall s':>8}{'frames/s':>9}{'client MB':>10}"
              f"   worker peak RSS MB   decode detect  align  write   load")
        for subjects in args.bp4d_subjects:
            broot = work / f"bp4d{subjects}"
            bp4d_shaped(broot, subjects, args.bp4d_frames)
            r = child_prepare(REPO, "bp4d", broot, work / f"bp4d{subjects}.h5", 0, cluster_workers=args.bp4d_workers)
            bp4d_fps = r["frames"] / r["wall"]
            workers = ", ".join(f"{v:.0f}" for v in r["worker_rss_mb"])
            print(f"{subjects:>8}{r['samples']:>10}{r['frames']:>8}{r['wall']:>8.2f}{bp4d_fps:>9.1f}"
                  f"{r['client_rss_mb']:>10.0f}   {workers:<20} {split_text(r['timings'])}   {r['load']:.2f}")
            shutil.rmtree(broot, ignore_errors=True)

    # --- AFEW replica: video clips, small faces --------------------------------------------------------
    afew = None
    if args.afew_subjects:
        aroot = work / "afew"
        synth("afew", aroot, subjects=args.afew_subjects, seed=0)
        r = child_prepare(REPO, "afew", aroot, work / "afew.h5", 0)
        clips = r["samples"]
        afew = (r["frames"] / r["wall"], r["frames"] / max(clips, 1))
        print(f"\nAFEW replica (720x576 MJPG clips), in-process: {clips} clips, {r['frames']} frames, {r['wall']:.2f} s, "
              f"{afew[0]:.1f} frames/s ({r['wall'] / max(clips, 1):.2f} s/clip)   {split_text(r['timings'])}   load {r['load']:.2f}")

    # --- projections ------------------------------------------------------------------------------------
    eff = None
    if "2 dask workers, started (current)" in fps:
        eff = fps["2 dask workers, started (current)"] / (2 * fps["in-process (current)"])
    print("\nProjected full-dataset wall time, from the frames/s measured above. One worker process uses one "
          "core; N cores = N workers at this machine's per-process rate times the parallel efficiency measured "
          f"here on CK+ (2 started workers / 2 x in-process = {eff if eff else float('nan'):.2f}); not measured on 16 cores.")
    if bp4d_fps:
        per_worker = bp4d_fps / args.bp4d_workers  # measured with this many workers: efficiency included
        print(f"  BP4D {BP4D_FRAMES:,} frames: 2 cores {BP4D_FRAMES / (per_worker * 2) / 3600:.2f} h, "
              f"16 cores {BP4D_FRAMES / (per_worker * 16) / 3600:.2f} h")
    if afew and eff:
        frames_afew = AFEW_CLIPS * afew[1]
        print(f"  AFEW {AFEW_CLIPS:,} clips at the replica's {afew[1]:.0f} frames/clip ({frames_afew:,.0f} frames): "
              f"2 cores {frames_afew / (afew[0] * 2 * eff) / 60:.1f} min, 16 cores {frames_afew / (afew[0] * 16 * eff) / 60:.1f} min")

if __name__ == "__main__":
    main()
