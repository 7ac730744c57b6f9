"""`ferbench demo`: the main job end to end on built-in replica data, so a fresh install can be checked.

Today it runs synth -> scan -> prepare -> inspect; evaluate and leaderboard join it as they land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ferbench.datasets import scan, synth
from ferbench.preprocess.pipeline import PrepareConfig, prepare
from ferbench.store import inspect


def run_demo(
    workdir: str | Path = "ferbench-demo",
    dataset: str = "ck+",
    subjects: int = 4,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a replica of `dataset` under `workdir`, prepare it into `workdir/<dataset>.h5`, and report."""
    workdir = Path(workdir)
    root = workdir / "replica" / dataset
    written = synth(dataset, root, subjects=subjects, seed=seed)
    found = scan(dataset, root)
    summary = prepare(dataset, root, workdir / f"{dataset}.h5", PrepareConfig(), workers=workers, overwrite=True, progress=progress)
    return {
        "replica": str(root),
        "written": len(written),
        "scanned": found.summary(),
        "prepare": summary.to_dict(),
        "inspect": inspect(summary.out),
    }
