"""Everything a GPU run must confirm, in one call (the day a CUDA machine is at hand):

    python benchmarks/gpu_check.py                 # not yet run on a GPU: time it the first time
    python benchmarks/gpu_check.py --quick         # models only, no timing

1. CUDA evaluate of every bundled model (and the two fusion entries) under bf16 autocast on a small CK+
   replica: every task ends `ok`, its record says `bfloat16 autocast` and a CUDA device, predictions are finite.
2. Data resident on the device: the harness's loaded clips live on the GPU (no host copy per batch).
4. Data streamed to the device (a memory budget smaller than the frames): batches are read into pinned host
   memory by the prefetch thread and copied without blocking; they equal the resident batches, and an evaluate
   run with `memory_budget=1` records `data_mode: streamed` with the resident run's predictions.
3. The CK+ 40-trial STC-NLSTM paper-recipe timing: training clips/s of the paper-size network on paper-size
   clips (18x64x64x3) with the paper recipe's optimizer and augmentation, and the projected wall time of the
   whole protocol (40 trials x 278 training clips x the recipe's epochs), from benchmarks/evaluate.py.

Prints one line per check and `GPU CHECK: PASS` or `GPU CHECK: FAIL (n)`; exit status 0 or 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


def _replica(work: Path) -> tuple[Path, Path]:
    import yaml

    from ferbench.datasets import synth
    from ferbench.preprocess.pipeline import PrepareConfig, prepare

    synth("ck+", work / "native", subjects=6, seed=0)
    data = work / "ckp.h5"
    prepare("ck+", work / "native", data, PrepareConfig(aligner="none", size=64), workers=0)
    proto = work / "gpu-3fold.yaml"
    proto.write_text(yaml.safe_dump({
        "name": "gpu-3fold", "description": "3 subject folds", "paper": "ferbench", "table": "-",
        "task": "classification", "datasets": ["ck+"], "splitter": "group-kfold", "params": {"n_splits": 3},
        "repeats": 1, "seed": 0, "metric": "accuracy", "metrics": ["accuracy"], "validation": None}))
    return data, proto


def check_models(data: Path, proto: Path, out: Path) -> list[str]:
    from ferbench.harness import evaluate
    from ferbench.models import compact_options, list_models
    from ferbench.records import read_record

    failures = []
    models = list_models() + ["fusion-svm", "fusion-avg"]
    t0 = time.perf_counter()
    res = evaluate(data, proto, models=models, recipe="quick", epochs=2, device="cuda", out=out,
                   model_options={m: compact_options(m) for m in list_models()})
    for task, why in {**res.failed, **res.diverged}.items():
        failures.append(f"{task}: {why}")
    for path in res.records:
        rec = read_record(path)
        if rec["status"] != "ok" or "cuda" not in rec["device"] or (
                rec["config"]["dtype"] != "bfloat16 autocast" and not rec["model"].startswith("fusion")):
            failures.append(f"{path}: status {rec['status']}, device {rec['device']}, dtype {rec['config']['dtype']}")
    print(f"[1] {len(res.records)} CUDA tasks of {len(models)} models in {time.perf_counter() - t0:.0f} s: "
          f"{'ok' if not failures else f'{len(failures)} problem(s)'}", flush=True)
    return failures


def check_resident(data: Path) -> list[str]:
    from ferbench.harness.data import open_data

    loaded = open_data(data).loaded("clip", "cuda")
    ok = loaded.x.is_cuda
    print(f"[2] loaded clips on {loaded.x.device} ({loaded.x.numel() / 2**20:.1f} Mi values, {loaded.x.dtype}): "
          f"{'ok' if ok else 'NOT on the GPU'}", flush=True)
    return [] if ok else ["loaded clips are not on the GPU"]


def check_streamed(data: Path, proto: Path, out: Path) -> list[str]:
    from ferbench.harness import evaluate
    from ferbench.harness.data import open_data
    from ferbench.harness.memory import Budget
    from ferbench.harness.train import batches
    from ferbench.records import read_record

    failures = []
    cuda = torch.device("cuda")
    d = open_data(data)
    resident = d.source("clip", cuda, Budget(2**40, explicit=True))
    streamed = d.source("clip", cuda, Budget(1, explicit=True))
    order = batches(len(resident.ids), 16, torch.Generator().manual_seed(0))
    if not streamed.prefetch.depth or not streamed._read(streamed._clip_frames(order[0])[0]).is_pinned():
        failures.append("streamed batches are not read into pinned host memory")
    t0 = time.perf_counter()
    streamed.plan_clips(order)
    for pos in order:
        xs = streamed.gather_clips(pos)[0]
        if not xs.is_cuda or not torch.equal(xs, resident.gather_clips(pos)[0]):
            failures.append("a streamed batch is not on the GPU or differs from the resident one")
            break
    torch.cuda.synchronize()
    took = time.perf_counter() - t0
    records = {}
    for budget in (None, 1):
        res = evaluate(data, proto, models="static", recipe="quick", epochs=2, device="cuda", out=out / f"b{budget}",
                       memory_budget=budget)
        records[budget] = [read_record(p) for p in sorted(res.records)]
    modes = [r["config"]["data_mode"] for r in records[1]]
    if any(m != "streamed" for m in modes):
        failures.append(f"memory_budget=1 on CUDA ran {modes}, not streamed")
    if [r["probabilities"] for r in records[None]] != [r["probabilities"] for r in records[1]]:
        failures.append("streamed predictions on CUDA differ from the resident ones")
    print(f"[4] streamed clips on CUDA: {len(resident.ids)} clips gathered in {took:.2f} s (pinned, non-blocking); "
          f"evaluate streamed = resident: {'ok' if not failures else f'{len(failures)} problem(s)'}", flush=True)
    return failures


def check_timing() -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from evaluate import PROTOCOLS, rate  # benchmarks/evaluate.py

    from ferbench.harness.recipes import Overrides, resolve

    label, model, dataset, trials, clips = PROTOCOLS[0]
    speed = rate(model, torch.device("cuda"), clips=256, frames=18, size=64, batch=None, kind="paper")
    total = 0.0
    for s in resolve(model, "paper", dataset, Overrides(), "cuda"):
        per = (int(s["iterations"]) * min(int(s["batch_size"]), clips)) if s.get("iterations") else int(s["epochs"]) * clips
        total += trials * per / speed[s["stage"]]
    print(f"[3] {model} paper recipe on CUDA: " + ", ".join(f"{k} {v:.0f} clips/s" for k, v in speed.items())
          + f"; {label}: about {total / 3600:.2f} h of training", flush=True)
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the timing")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("GPU CHECK: no CUDA device visible to torch", flush=True)
        sys.exit(1)
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ferbench-gpu-"))
    data, proto = _replica(work)
    failures = check_models(data, proto, work / "runs") + check_resident(data)
    failures += check_streamed(data, proto, work / "stream")
    if not args.quick:
        failures += check_timing()
    for f in failures:
        print(f"  - {f}")
    print("GPU CHECK: PASS" if not failures else f"GPU CHECK: FAIL ({len(failures)})", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
