"""`ferbench demo`: the main job end to end on built-in replica data, so a fresh install can be checked.

synth -> scan -> prepare -> evaluate (every bundled model, quick recipe) -> leaderboard. The default replica is
the temporal-order diagnostic (`order`): its two classes differ only in the order of action-unit onsets, so a
single frame cannot tell them apart and the leaderboard shows at once whether a model uses time (the static
baseline should sit near chance, the temporal models above it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ferbench.errors import FerbenchError

#: The stages `run_demo` reports through `on_stage`, in order.
STAGES = ("synth", "prepare", "evaluate", "leaderboard")


@dataclass
class DemoReport:
    """Where everything went, and what each stage reported."""

    workdir: Path
    replica: Path
    data: Path
    runs: Path
    leaderboard: Path
    scanned: dict[str, Any]
    prepare: dict[str, Any]
    evaluate: Any  # ferbench.harness.EvaluateResult
    board: Any  # ferbench.leaderboard.Board
    written: dict[str, Path] = field(default_factory=dict)


def run_demo(
    workdir: str | Path = "ferbench-demo",
    dataset: str = "order",
    subjects: int = 9,
    seed: int = 0,
    protocol: str = "subject-3fold",
    models: str | list[str] | None = None,
    recipe: str = "quick",
    device: str = "auto",
    workers: int | None = None,
    size: int = 32,
    compact: bool = True,
    formats: tuple[str, ...] = ("md", "html", "csv", "json"),
    on_stage: Callable[[str], None] | None = None,
    prepare_progress: Callable[[int, int], None] | None = None,
    evaluate_progress: Callable[[dict[str, Any]], None] | None = None,
) -> DemoReport:
    """Write a replica of `dataset` under `workdir`, prepare it, evaluate `models` under `protocol` with
    `recipe`, and render the leaderboard into `workdir/leaderboards/`. Faces are aligned to `size` pixels (32 by
    default, a quarter of the paper size's pixels) and, with `compact`, every model is built at the compact widths
    of `ferbench.models.sizes` (the papers' layers, fewer channels), so that the whole zoo trains within minutes
    on two CPU cores.

    `models` None evaluates every registered model (`list_models()`); "all" adds chao2016's two fusion entries,
    which retrain four encoders each (about 4 more minutes on two cores).

    Reruns reuse what is there: `prepare` overwrites the file, `evaluate` keeps records whose fingerprints
    still match, so a second demo in the same folder only redoes what changed.
    """
    from ferbench.datasets import ScanResult, get_dataset, synth
    from ferbench.harness import evaluate
    from ferbench.leaderboard import build_board, write_leaderboard
    from ferbench.models import COMPACT, compact_options, list_models
    from ferbench.preprocess.pipeline import PrepareConfig, prepare
    from ferbench.protocols import load_protocol

    if subjects < 3:
        raise FerbenchError(f"--subjects must be at least 3 (a subject-independent split needs a subject per fold), got {subjects}")
    models = list_models() if models is None else models
    proto = load_protocol(protocol)  # fail on a bad protocol before minutes of preparation
    if dataset not in proto.datasets:
        raise FerbenchError(f"protocol '{proto.name}' applies to {', '.join(proto.datasets)}, not to '{dataset}'")
    stage = on_stage or (lambda name: None)
    workdir = Path(workdir)
    root = workdir / "replica" / dataset
    data = workdir / f"{dataset}.h5"
    runs = workdir / "runs"
    boards = workdir / "leaderboards"

    stage("synth")
    samples = synth(dataset, root, subjects=subjects, seed=seed)
    # what was written, summarised without scanning it back (prepare scans the folder itself)
    found = ScanResult(dataset=dataset, root=root, classes=get_dataset(dataset).classes, samples=samples)
    stage("prepare")
    prepared = prepare(dataset, root, data, PrepareConfig(size=size), workers=workers, overwrite=True, progress=prepare_progress)
    stage("evaluate")
    options = {name: compact_options(name) for name in COMPACT} if compact else None
    result = evaluate(data, proto.path, models=models, recipe=recipe, device=device, out=runs, model_options=options,
                      progress=evaluate_progress)
    if result.failed:
        raise FerbenchError(f"demo: {len(result.failed)} task(s) failed: " + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))
    stage("leaderboard")
    board = build_board(runs, dataset=dataset, protocol=proto.name)
    written = write_leaderboard(board, list(formats), boards)
    return DemoReport(
        workdir=workdir, replica=root, data=Path(prepared.out), runs=runs, leaderboard=boards,
        scanned=found.summary(), prepare=prepared.to_dict(), evaluate=result, board=board, written=written,
    )
