"""Training throughput of every bundled model through the harness's own training loop, and the projected wall
time of each full paper protocol from it.

    python benchmarks/evaluate.py                        # CPU, and CUDA with bf16 autocast where available
    python benchmarks/evaluate.py --models stc-nlstm --clips 256 --device cuda --batch 128

For each model: paper-size clips (18x64x64x3, uint8 on the device, as `Store.load` keeps them), the model's
default-size network, its recipe's optimizer and augmentation preset, batches gathered and augmented on the
device, `train_stage` for one epoch over `--clips` clips after a one-batch warm-up. Prints training clips/s
(stage-1 models: clips of 5 expression-state frames). The projection multiplies clips per trial (from the
`paper` recipe: epochs x training clips, or iterations x batch) by the number of trials and divides by the
measured rate; it leaves out loading, prediction and validation passes, which are small beside training.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from ferbench.harness.recipes import DEFAULT_BATCH, Overrides, resolve
from ferbench.harness.spec import FUSION_ENTRIES
from ferbench.harness.fit import build_model
from ferbench.harness.train import clip_loss, stage1_loss, train_stage
from ferbench.models import list_models, model_card
from ferbench.preprocess.augment import augment_batch

#: Full paper protocols: (label, model, dataset key for the paper recipe, trials, training clips per trial).
#: Sample counts are those the papers report: CK+ 309 sequences in 10 folds (x4 repeats, yu2018 section 4.3);
#: MMI 205 sequences over 30 subjects and CASME II 255 samples over 26 subjects, leave-one-subject-out (kim2017);
#: BP4D about 146,000 AU-coded frames over 41 subjects in 3 folds (each a 22-frame training window).
PROTOCOLS = (
    ("CK+ 10-fold x4 (40 trials)", "stc-nlstm", "ck+", 40, 309 * 9 // 10),
    ("MMI LOSO (30 trials)", "mo-cnn-lstm", "mmi", 30, 205 * 29 // 30),
    ("CASME II LOSO (26 trials)", "mo-cnn-lstm", "casme2", 26, 255 * 25 // 26),
    ("BP4D 3-fold (3 trials)", "stc-nlstm", "bp4d", 3, 146_000 * 2 // 3),
)


def rate(model_name: str, device: torch.device, clips: int, frames: int, size: int, batch: int | None,
         kind: str = "default") -> dict[str, float]:
    """Training clips per second of each stage of `model_name` (default network size) on `device`."""
    stages = resolve(model_name, kind, None, Overrides(epochs=1), device.type)
    torch.manual_seed(0)
    model, _ = build_model(model_name, 6, {}, size, frames, seed=0)
    model.to(device)
    out = {}
    for si, stage in enumerate(stages):
        stage = {**stage, "batch_size": batch or stage["batch_size"] or DEFAULT_BATCH[device.type]}
        first = stage["stage"] == "stage1"
        n = clips
        t = 5 if first or model_card(model_name).index == "states" else frames
        x = torch.randint(0, 256, (n, t, 3, size, size), dtype=torch.uint8, device=device)
        y = torch.randint(0, 6, (n,), device=device)
        preset = stage.get("augment")

        def batcher(idx, gen, x=x, y=y, preset=preset, t=t):
            xb = x[idx.to(device)]
            if preset:
                xb = augment_batch(xb, preset, generator=gen)
            xb = xb.float().div_(255.0)
            if first:
                return xb, y[idx.to(device)]
            return (xb, torch.full((len(idx),), t, device=device)), y[idx.to(device)]

        loss = stage1_loss if first else clip_loss
        warm = {**stage, "epochs": 1, "iterations": None}
        train_stage(model, warm, si, min(n, stage["batch_size"]), batcher, loss, device=device, seed=1)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_stage(model, warm, si, n, batcher, loss, device=device, seed=2)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[stage["stage"]] = n / (time.perf_counter() - t0)
    return out


def clips_per_trial(model_name: str, dataset: str, train_clips: int, device: torch.device) -> float:
    """Training clips one trial of the paper recipe processes (every stage)."""
    total = 0.0
    for s in resolve(model_name, "paper", dataset, Overrides(), device.type):
        if s.get("iterations"):
            total += int(s["iterations"]) * min(int(s["batch_size"]), train_clips)
        else:
            total += int(s["epochs"]) * train_clips
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all", help="comma-separated names, or all")
    ap.add_argument("--clips", type=int, default=32, help="clips per measured epoch")
    ap.add_argument("--frames", type=int, default=18)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the recipe's, else 32 CPU / 128 GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "auto":
        devices = [args.device]
    names = list_models() if args.models == "all" else [m for m in args.models.split(",") if m not in FUSION_ENTRIES]
    print(f"clips {args.frames}x{args.size}x{args.size}x3, {args.clips} per epoch; torch {torch.__version__}; "
          f"{platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} threads"
          + (f"; GPU {torch.cuda.get_device_name()} (bf16 autocast)" if "cuda" in devices else ""))
    rates: dict[tuple[str, str], dict[str, float]] = {}
    print(f"| {'model':<12} | {'index':<6} | " + " | ".join(f"{d + ' clips/s':>24}" for d in devices) + " |")
    print(f"|{'-' * 14}|{'-' * 8}|" + "|".join("-" * 26 for _ in devices) + "|")
    for name in names:
        cells = []
        for d in devices:
            r = rate(name, torch.device(d), args.clips, args.frames, args.size, args.batch)
            rates[(name, d)] = r
            cells.append(", ".join(f"{k} {v:.1f}" for k, v in r.items()))
        print(f"| {name:<12} | {model_card(name).index:<6} | " + " | ".join(f"{c:>24}" for c in cells) + " |", flush=True)
    print()
    print("Projected training time of full paper protocols (paper recipe, measured rate above):")
    for label, model, dataset, trials, train in PROTOCOLS:
        for d in devices:
            if (model, d) not in rates:
                continue
            dev = torch.device(d)
            stages = resolve(model, "paper", dataset, Overrides(), dev.type)
            seconds = 0.0
            for s in stages:
                per = (int(s["iterations"]) * min(int(s["batch_size"]), train)) if s.get("iterations") else int(s["epochs"]) * train
                seconds += per / rates[(model, d)][s["stage"]]
            total = seconds * trials
            print(f"- {label}, {model} on {d}: {clips_per_trial(model, dataset, train, dev):.0f} clips/trial, "
                  f"{seconds:.0f} s/trial, {total / 60:.1f} min in all ({math.ceil(total / 3600)} h rounded up)")


if __name__ == "__main__":
    main()
