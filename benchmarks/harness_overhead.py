"""What the harness costs: the same model, data, seed and epochs trained by `ferbench evaluate` and by a bare
PyTorch loop over the same tensors, interleaved, and the ratio per model.

    python benchmarks/harness_overhead.py                         # stc-nlstm and mv-lstm, CK+ replica, CPU
    python benchmarks/harness_overhead.py --models stc-nlstm --epochs 4 --rounds 3 --threads 2

The harness side is the whole `ferbench.harness.evaluate` call of one task (protocol plan, fingerprints, data
load, training, prediction, the record written and read back), timed from outside. The bare side is a 30-line
loop: the same uint8 clips (the store's `clip` index, read once into a tensor), the same model built with the
same seed and options, the recipe's optimizer, the same batch size and number of epochs, cross entropy,
then one prediction pass over the test clips, for each of two subject-disjoint folds (half the subjects
tested in each). Each round runs both once, the harness first in even rounds and the bare loop first in odd
ones (whichever runs first pays the process's warm-up); the figure is the best of the rounds (the least
disturbed by the rest of the machine), and the median ratio of the rounds is printed beside it. Target: within
1.10x on CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml


def replica(folder: Path, subjects: int, size: int) -> Path:
    from ferbench.datasets import synth
    from ferbench.preprocess.pipeline import PrepareConfig, prepare

    synth("ck+", folder / "native", subjects=subjects, seed=0)
    out = folder / "ckp.h5"
    prepare("ck+", folder / "native", out, PrepareConfig(aligner="none", size=size), workers=0)
    return out


def protocol(folder: Path, data: Path) -> Path:
    """Two subject-disjoint folds: each half of the subjects tested once, the other half trained on."""
    from ferbench.store import open_store

    with open_store(data) as st:
        subjects = sorted({str(s.subject) for s in st.samples})
    body = {"name": "overhead", "description": "two subject-disjoint folds", "paper": "ferbench", "table": "-",
            "task": "classification", "datasets": ["ck+"], "splitter": "fixed-subjects",
            "params": {"folds": [subjects[: len(subjects) // 2], subjects[len(subjects) // 2:]]}, "repeats": 1, "seed": 0, "metric": "accuracy",
            "metrics": ["accuracy"], "validation": None}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def bare_loop(data: Path, proto: Path, model_name: str, options: dict, stage: dict, threads: int) -> float:
    """Seconds for the bare loop: for each fold, train on its training clips and predict its test clips."""
    from ferbench.harness.fit import build_model
    from ferbench.harness.train import make_optimizer
    from ferbench.protocols import make_plan
    from ferbench.store import open_store

    torch.set_num_threads(threads)
    plan = make_plan(proto, data)
    with open_store(data) as st:  # the very tensor the harness trains from: Store.load, (n, T, 3, H, W) uint8
        loaded = st.load(device="cpu", index="clip")
        size, length = int(st.frame_shape[0]), st.length
    pos = {sid: i for i, sid in enumerate(loaded.ids)}
    clips = loaded.x[torch.tensor([pos[i] for i in plan.train_table.ids])]
    labels = torch.from_numpy(plan.y_train)
    t0 = time.perf_counter()
    for fold in plan.folds:  # the same folds the harness runs
        train, test = torch.from_numpy(fold.train), torch.from_numpy(fold.test)
        model, _ = build_model(model_name, len(plan.classes), options, size, length, seed=0)
        opt = make_optimizer(model, list(model.parameters()), stage)
        gen = torch.Generator().manual_seed(0)
        bs = min(int(stage["batch_size"]), len(train))
        steps = int(stage.get("iterations") or 0) or int(stage["epochs"]) * -(-len(train) // bs)
        model.train()
        for step in range(steps):
            if step % -(-len(train) // bs) == 0:
                order = train[torch.randperm(len(train), generator=gen)].split(bs)
            idx = order[step % len(order)]
            x = clips[idx].float().div_(255.0)
            loss = torch.nn.functional.cross_entropy(model(x, None), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            model(clips[test].float().div_(255.0), None).softmax(1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="stc-nlstm,mv-lstm")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()

    from ferbench.harness import evaluate
    from ferbench.harness.recipes import Overrides, resolve
    from ferbench.models import compact_options
    from ferbench.records import read_record

    work = Path(tempfile.mkdtemp(prefix="ferbench-overhead-"))
    data = replica(work, args.subjects, args.size)
    proto = protocol(work, data)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s); CK+ replica {args.subjects} subjects at {args.size} px; {args.epochs} epochs")
    print(f"{'model':12s} {'harness s':>10s} {'bare s':>8s} {'ratio':>6s} {'median':>9s}")
    for m in args.models.split(","):
        options = compact_options(m)
        stage = dict(resolve(m, "quick", "ck+", Overrides(epochs=args.epochs), "cpu")[-1])
        harness, bare = [], []

        def run_harness(r: int) -> None:
            t0 = time.perf_counter()
            res = evaluate(data, proto, models=[m], recipe="quick", epochs=args.epochs, device="cpu",
                           out=work / f"runs-{m}-{r}", threads=args.threads, model_options={m: options})
            harness.append(time.perf_counter() - t0)
            assert len(res.records) == 2 and all(read_record(p)["status"] == "ok" for p in res.records), res.failed

        for r in range(args.rounds):
            if r % 2 == 0:
                run_harness(r)
            bare.append(bare_loop(data, proto, m, options, stage, args.threads))
            if r % 2 == 1:
                run_harness(r)
        ratios = sorted(h / b for h, b in zip(harness, bare))
        print(f"{m:12s} {min(harness):10.2f} {min(bare):8.2f} {min(harness) / min(bare):6.2f}x "
              f"{ratios[len(ratios) // 2]:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
