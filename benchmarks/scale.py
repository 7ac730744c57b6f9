"""Memory and speed of `prepare` and `evaluate` as the dataset grows: resident frames against streamed ones.

    python benchmarks/scale.py                              # 1k, 4k and 16k clips (long on 2 cores)
    python benchmarks/scale.py --sizes 250 1000 4000        # a quicker run
    python benchmarks/scale.py --sizes 200 --frames 8       # a smoke run

For each size: a `folder` dataset of that many clips is synthesised (pre-cropped "faces": `--size` px noise
frames with a class band, `--frames` PNG frames per clip, 20 subjects), prepared by the real `prepare` with
`--aligner none` (no face detection: a replica of an already aligned dataset, such as FERV39k's or DFEW's
released face crops), then evaluated by the real `evaluate` under a one-split protocol (odd subjects train, even
test; the process's one-time import of torch's optimizer machinery paid before it), one epoch of `--model` (default: a tiny static CNN, so that reading frames weighs the most), twice: with
the default memory budget (the frames fit: resident) and with `--memory-budget 1` (streamed). Every prepare and
evaluate runs in a fresh child process, so each peak RSS (`ru_maxrss`) is that run's own. Printed per size:
prepare clips/s and peak RSS; per mode the training time of the epoch (`timings.train_s` of the record), the
prediction time and peak RSS; and the ratio of streamed to resident epoch time. The load average is printed: on a shared machine compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("happy", "neutral", "sad", "surprise")
SUBJECTS = 20

#: One prepare in a child process; prints a JSON line.
PREPARE = r"""
import json, resource, sys, time
from pathlib import Path
from ferbench.preprocess.pipeline import PrepareConfig, prepare
root, out, size, frames = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
s = prepare("folder", root, out, PrepareConfig(aligner="none", size=size, length=frames), workers=0, overwrite=True)
print(json.dumps({"wall": time.perf_counter() - t, "clips": s.written, "frames": s.frames,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

#: One evaluate in a child process (budget "" = the default); prints a JSON line.
EVALUATE = r"""
import json, resource, sys
from ferbench.harness import evaluate
from ferbench.records import read_record
data, proto, out, model, budget, options = sys.argv[1:7]
import torch
torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the first optimizer imports torch._dynamo (~1-4 s, once
# per process): paid here, so that the epoch time is the epoch's
res = evaluate(data, proto, models=model, recipe="quick", epochs=1, batch_size=32, device="cpu", out=out,
               force=True, memory_budget=budget or None, model_options={model: json.loads(options)})
assert not res.failed, res.failed
rec = read_record(res.records[0])
print(json.dumps({"mode": rec["config"]["data_mode"], "budget": rec["config"]["memory_budget"],
                  "timings": rec["timings"], "train_clips": len(rec["train_ids"]), "test_clips": len(rec["sample_ids"]),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PROTOCOL = """name: scale-parity
description: odd-numbered subjects train, even-numbered test (benchmarks/scale.py)
paper: ferbench
table: "-"
task: classification
datasets: [folder]
splitter: subject-parity
params: {test: even}
repeats: 1
seed: 0
metric: accuracy
metrics: [accuracy]
"""


def synth_folder(root: Path, clips: int, frames: int, size: int, seed: int = 0) -> None:
    """`clips` clips as folders of PNG frames under <class>/<subject>_<n>/ (what the folder adapter reads)."""
    import cv2

    rng = np.random.default_rng(seed)
    band = size // len(CLASSES)
    for i in range(clips):
        c = i % len(CLASSES)
        folder = root / CLASSES[c] / f"P{1 + i % SUBJECTS:03d}_{i:06d}"
        folder.mkdir(parents=True)
        face = (rng.random((size, size, 3)) * 80).astype(np.uint8)
        face[:, c * band:(c + 1) * band] += 120
        for j in range(frames):
            shift = np.roll(face, j, axis=0)  # a moving "face": frames differ, as in a clip
            cv2.imwrite(str(folder / f"{j:03d}.png"), shift)


def child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000], help="clips per replica")
    ap.add_argument("--frames", type=int, default=16, help="frames per clip (all of them in the clip index)")
    ap.add_argument("--size", type=int, default=32, help="frame size in pixels")
    ap.add_argument("--model", default="static", help="model evaluated")
    ap.add_argument("--model-options", default='{"widths": [4, 8], "features": 16}',
                    help="its options (JSON; default: a tiny static CNN, so reading frames weighs the most)")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed at the end)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ferbench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    proto = work / "scale-parity.yaml"
    proto.write_text(PROTOCOL)
    import psutil
    import torch

    print(f"{platform.machine()} {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); {args.frames} frames of "
          f"{args.size}x{args.size} per clip; model {args.model} {args.model_options}, 1 epoch, batch 32; "
          f"load {load()}",
          flush=True)
    head = ("| clips | frames MB | prepare clips/s | prepare RSS MB | resident s/epoch | resident RSS MB "
            "| streamed s/epoch | streamed RSS MB | streamed/resident | load |")
    print(head)
    print("|" + "|".join("-" * (len(c) + 2) for c in head.strip("|").split(" | ")) + "|", flush=True)
    try:
        for n in args.sizes:
            base = work / f"n{n}"
            shutil.rmtree(base, ignore_errors=True)
            synth_folder(base / "native", n, args.frames, args.size)
            h5 = base / "folder.h5"
            p = child(PREPARE, str(base / "native"), str(h5), str(args.size), str(args.frames))
            shutil.rmtree(base / "native")
            runs = {}
            for mode, budget in (("resident", ""), ("streamed", "1")):
                r = child(EVALUATE, str(h5), str(proto), str(base / f"runs-{mode}"), args.model, budget,
                          args.model_options)
                if r["mode"] != mode:
                    raise SystemExit(f"{n} clips: expected {mode}, the record says {r['mode']} (budget {r['budget']})")
                runs[mode] = r
            res, st = runs["resident"], runs["streamed"]
            mb = n * args.frames * 3 * args.size**2 / 1e6
            print(f"| {n} | {mb:.0f} | {p['clips'] / p['wall']:.1f} | {p['rss_mb']:.0f} | "
                  f"{res['timings']['train_s']:.1f} | {res['rss_mb']:.0f} | {st['timings']['train_s']:.1f} | "
                  f"{st['rss_mb']:.0f} | {st['timings']['train_s'] / res['timings']['train_s']:.2f} | {load()} |",
                  flush=True)
            print(f"    ({n} clips: {res['train_clips']} trained, {res['test_clips']} predicted; predict s resident "
                  f"{res['timings']['predict_s']:.1f}, streamed {st['timings']['predict_s']:.1f}; load s resident "
                  f"{res['timings']['load_s']:.1f}, streamed {st['timings']['load_s']:.1f})", flush=True)
            shutil.rmtree(base)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
