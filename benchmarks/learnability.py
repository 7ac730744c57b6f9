"""Do the bundled models learn, with their default recipes, on the replicas? (issue 10)

Prepares replicas (`ferbench synth` + `prepare`), trains every model with its `default` recipe through the
harness (`ferbench.harness.evaluate`) under subject-disjoint folds, and prints accuracy per model and dataset
with chance, the static baseline and seconds:

* `ck+`: stratified, subject-grouped k-fold (default 3) over the CK+ replica's seven emotions;
* `order`: the same on the temporal-order diagnostic replica (two classes, class only in the order of AU
  onsets: a static model must stay at chance, a model that reads time must not);
* `oulu-casia`: the unseen-mode protocol's splitter (train VL/Strong, test NI/Strong and VL/Dark), per mode.

    PYTHONPATH=. python benchmarks/learnability.py --subjects 9 --size 32 --out /tmp/learn
    PYTHONPATH=. python benchmarks/learnability.py --datasets order --models static,lstm-mean

Sizes: the models run at `--size` (16 or 32) with the compact widths (`ferbench.models.COMPACT`), so that every model
trains on two CPU cores; prepared files and records are cached under `--out` (a rerun only trains what is
missing). `--markdown` prints the table for docs/models.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPLICA_MODES = {"oulu-casia": ["VL/Strong", "NI/Strong", "VL/Dark"]}


def protocol_files(folder: Path, folds: int, repeats: int) -> dict[str, Path]:
    """The two protocols of this benchmark as YAML files (subject-grouped k-fold; unseen mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    kfold = {
        "name": "learn-kfold", "description": f"{folds} stratified subject-grouped folds (learnability benchmark)",
        "paper": "ferbench", "table": "-", "task": "classification", "datasets": ["ck+", "order"], "classes": None,
        "splitter": "stratified-group-kfold", "params": {"n_splits": folds, "shuffle": True},
        "repeats": repeats, "seed": 0, "validation": None, "metric": "accuracy", "metrics": ["accuracy"],
    }
    unseen = {
        "name": "learn-unseen-mode", "description": "train VL/Strong, test the other modes (learnability benchmark)",
        "paper": "baddar2019", "table": "-", "task": "classification", "datasets": ["oulu-casia"], "classes": None,
        "splitter": "train-on-modes",
        "params": {"train": [{"system": "VL", "illumination": "Strong"}], "test": None, "n_splits": folds,
                   "shuffle": True},
        "repeats": repeats, "seed": 0, "validation": None, "metric": "accuracy", "metrics": ["accuracy"],
    }
    out = {}
    for proto in (kfold, unseen):
        # one file per (folds, repeats): two runs sharing --out with other settings must not rewrite each other's
        path = folder / f"{proto['name']}-{folds}f{repeats}r.yaml"
        path.write_text(yaml.safe_dump(proto, sort_keys=False))
        out[proto["name"]] = path
    return out


def prepared(dataset: str, out: Path, subjects: int, size: int, seed: int) -> tuple[Path, float]:
    """Synth + prepare one replica (cached); returns the file and the seconds spent now."""
    from ferbench.datasets import synth
    from ferbench.preprocess.pipeline import PrepareConfig, prepare

    path = out / f"{dataset.replace('+', 'p')}-{subjects}s-{size}px.h5"
    if path.exists():
        return path, 0.0
    t0 = time.perf_counter()
    native = out / "native" / f"{dataset.replace('+', 'p')}-{subjects}s"
    if not native.exists():
        synth(dataset, native, subjects=subjects, seed=seed, modes=REPLICA_MODES.get(dataset))
    prepare(dataset, native, path, PrepareConfig(size=size), workers=0)
    return path, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="ck+,order,oulu-casia")
    ap.add_argument("--models", default="all")
    ap.add_argument("--subjects", type=int, default=9)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1, help="repeats of the folds (different seeds)")
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--epochs", type=int, default=None, help="override every stage's epochs (default: the recipe's)")
    ap.add_argument("--seed", type=int, default=0, help="replica seed")
    ap.add_argument("--out", type=Path, default=Path("learnability"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from ferbench.harness import evaluate
    from ferbench.metrics import summarize
    from ferbench.records import read_record
    from ferbench.models import compact_options, list_models
    from ferbench.store import Store

    torch.set_num_threads(args.threads)
    names = list_models() if args.models == "all" else args.models.split(",")
    if "static" not in names:
        names = ["static", *names]
    args.out.mkdir(parents=True, exist_ok=True)
    protos = protocol_files(args.out / "protocols", args.folds, args.repeats)
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    chance: dict[str, float] = {}
    prep_s: dict[str, float] = {}
    for ds in args.datasets.split(","):
        data, prep_s[ds] = prepared(ds, args.out, args.subjects, args.size, args.seed)
        with Store(data) as st:
            present = {s.label for s in st.samples if s.label is not None}
        chance[ds] = 1.0 / len(present)
        proto = protos["learn-unseen-mode" if ds == "oulu-casia" else "learn-kfold"]
        for m in names:
            t0 = time.perf_counter()
            res = evaluate(data, proto, models=[m], recipe=args.recipe, epochs=args.epochs, device="cpu",
                           out=args.out / "runs", threads=args.threads,
                           model_options={m: compact_options(m)})  # frame size / clip length: the harness
            if res.failed:
                print(f"{m} on {ds} failed: {next(iter(res.failed.values()))}", file=sys.stderr)
                continue
            recs = [read_record(p) for p in res.records]
            summ = summarize(recs)
            rows[m][ds] = {"acc": summ["scores"]["accuracy"]["mean"], "std": summ["scores"]["accuracy"]["std"],
                           "modes": {k: v["mean"] for k, v in summ.get("per_mode", {}).items()},
                           "train_s": summ["train_s"].get("total"), "wall_s": time.perf_counter() - t0}
            print(f"{ds:11s} {m:12s} acc {rows[m][ds]['acc']:.3f} (chance {chance[ds]:.3f}) "
                  f"{rows[m][ds]['wall_s']:.0f} s", flush=True)
    _table(rows, chance, names, args)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; prepare s: "
          + ", ".join(f"{d} {s:.0f}" for d, s in prep_s.items()))
    return 0


def _table(rows: dict, chance: dict, names: list[str], args: argparse.Namespace) -> None:
    cols = []
    for ds in args.datasets.split(","):
        cols.append((ds, None))
        if ds == "oulu-casia":
            modes = sorted({k for m in names for k in rows.get(m, {}).get(ds, {}).get("modes", {})})
            cols += [(ds, mode) for mode in modes]
    head = ["model"] + [f"{d} {mo}" if mo else d for d, mo in cols] + ["train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| chance | " + " | ".join(f"{chance[d]:.2f}" for d, _ in cols) + " | |")
    for m in names:
        cells = []
        for d, mo in cols:
            r = rows.get(m, {}).get(d)
            v = None if r is None else (r["acc"] if mo is None else r["modes"].get(mo))
            cells.append("-" if v is None else f"{v:.2f}")
        secs = sum((rows.get(m, {}).get(d) or {}).get("train_s") or 0 for d, _ in cols if _ is None)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {secs:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
