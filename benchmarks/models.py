"""Parameter count and forward time of every bundled model at its paper's input size (default 18x64x64x3 clips).

    python benchmarks/models.py                 # CPU (and CUDA with bf16 autocast when available), batch 4
    python benchmarks/models.py --batch 32 --frames 18 --repeats 5 --device cuda

Prints ms per clip (forward only, eval mode, no grad), best of `repeats` after one warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from ferbench.models import create_model, list_models


def forward_ms_per_clip(model: torch.nn.Module, x: torch.Tensor, repeats: int, bf16: bool) -> float:
    """Best-of-`repeats` forward time divided by the batch size, in milliseconds."""
    cuda = x.device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and bf16) else contextlib.nullcontext()
    best = float("inf")
    with torch.no_grad(), ctx:
        model(x)  # warm-up
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / x.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=18)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--models", default="all", help="comma-separated names, or all")
    args = ap.parse_args()

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "auto":
        devices = [args.device]
    names = list_models() if args.models == "all" else args.models.split(",")
    torch.manual_seed(0)
    clips = torch.rand(args.batch, args.frames, 3, args.size, args.size)
    cols = [f"{d} ms/clip" for d in devices] + (["cuda bf16 ms/clip"] if "cuda" in devices else [])
    print(f"input {args.batch}x{args.frames}x3x{args.size}x{args.size}, torch {torch.__version__}, "
          f"CPU threads {torch.get_num_threads()}" + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print(f"| {'model':<12} | {'params':>11} | " + " | ".join(f"{c:>17}" for c in cols) + " |")
    print(f"|{'-' * 14}|{'-' * 13}|" + "|".join("-" * 19 for _ in cols) + "|")
    for name in names:
        cfg = {"num_frames": args.frames, "image_size": args.size} if name == "stc" else {}
        if name in ("mo-cnn-lstm", "apex-cnn"):
            cfg = {"image_size": args.size}
        model = create_model(name, args.classes, **cfg).eval()
        params = sum(p.numel() for p in model.parameters())
        times = []
        for dev in devices:
            m, x = model.to(dev), clips.to(dev)
            times.append(forward_ms_per_clip(m, x, args.repeats, bf16=False))
            if dev == "cuda":
                times.append(forward_ms_per_clip(m, x, args.repeats, bf16=True))
        print(f"| {name:<12} | {params:>11,} | " + " | ".join(f"{t:>17.2f}" for t in times) + " |", flush=True)


if __name__ == "__main__":
    main()
