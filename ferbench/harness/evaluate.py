"""`evaluate`: plan every (model, protocol, repeat, fold) task, skip those whose record is still valid, run
the rest (in-process or on dask), write one record per task as it ends. Everything the user can get wrong is
checked before the first task starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferbench.errors import DatasetError, FerbenchError
from ferbench.harness import recipes as R
from ferbench.harness.data import au_name
from ferbench.harness.fingerprint import code_fingerprint, data_fingerprint
from ferbench.harness.records import build_record, read_record, record_path, stale_reason, test_labels_of, write_record
from ferbench.harness.spec import FUSION_ENTRIES, TaskSpec
from ferbench.harness.tasks import RunContext, make_specs

Progress = Callable[[dict[str, Any]], None]
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_VAL_FRACTION = 0.2


@dataclass
class EvaluateResult:
    """What a run did: records written or reused (paths), tasks that failed (task id -> message)."""

    out: Path
    records: list[Path] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rerun_reasons: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- checks before any work ---------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    import torch

    d = (device or "auto").strip().lower()
    if d not in DEVICES and not d.startswith("cuda:"):
        raise FerbenchError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise FerbenchError("--device cuda, but torch sees no CUDA device here (use --device cpu or auto)")
    return d


def resolve_models(models: str | list[str] | tuple[str, ...], task: str) -> list[str]:
    """`all`, a comma list or a list of names -> checked registry names (+ harness fusion entries)."""
    from ferbench.models import list_models

    known = list(list_models())
    items = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m and m.strip()]
    if not items:
        raise FerbenchError("no model given; pass --model all or a comma-separated list of names")
    if items == ["all"]:
        return known + ([] if task == "au-detection" else list(FUSION_ENTRIES))
    unknown = [m for m in items if m not in known and m not in FUSION_ENTRIES]
    if unknown:
        raise FerbenchError(f"unknown model {unknown[0]!r}; known: {', '.join(known + list(FUSION_ENTRIES))}")
    if task == "au-detection" and any(m in FUSION_ENTRIES for m in items):
        raise FerbenchError("the fusion entries classify expressions; they do not apply to au-detection protocols")
    return list(dict.fromkeys(items))


def _open_checked(path: str | Path, what: str) -> Any:
    from ferbench.store import open_store

    p = Path(path)
    if not p.exists():
        raise DatasetError(p, f"{what} not found (expected a ferbench store written by `ferbench prepare`)")
    return open_store(p)


def _card_index(model: str) -> tuple[str, int]:
    """Which frames the model reads at prediction time, and the smallest frame size it runs on."""
    from ferbench.models import model_card

    if model in FUSION_ENTRIES:
        from ferbench.harness.spec import FUSION_MEMBERS

        cards = [model_card(m) for m in FUSION_MEMBERS]
        return cards[0].index, max(int(c.min_size) for c in cards)
    card = model_card(model)
    return card.index, int(card.min_size)


def _au_stages(stages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """AU detection trains every model end to end on the final stage's values (kim2017's stage 1 objective
    needs expression classes and states, which AU data does not have)."""
    last = dict(stages[-1])
    last["stage"] = "end-to-end"
    return (last,)


# -- the run -------------------------------------------------------------------------------------------------
def evaluate(
    data: str | Path,
    protocol: str | Path,
    *,
    data_test: str | Path | None = None,
    models: str | list[str] = "all",
    repeats: int | None = None,
    recipe: str = "default",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    augment: str | None = None,
    device: str = "auto",
    out: str | Path = "runs",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    threads: int | None = None,
    model_options: dict[str, dict[str, Any]] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    progress: Progress | None = None,
) -> EvaluateResult:
    """Train and score `models` under `protocol` on a prepared store; one JSON record per task under `out`.

    `workers` N runs a local dask cluster (N processes, 1 thread each); `scheduler` uses an existing one.
    `threads` (torch threads per task) defaults to cores / workers; predictions are reproducible for the same
    seed, device and thread count. `model_options` maps a model name to create_model overrides.
    """
    from ferbench.protocols import load_protocol, make_plan

    started = time.perf_counter()
    # ---- options
    ov = R.Overrides(epochs=epochs, batch_size=batch_size, lr=lr, augment=augment)
    ov.check()
    if recipe not in R.RECIPE_KINDS:
        raise FerbenchError(f"unknown recipe {recipe!r}; choose one of {', '.join(R.RECIPE_KINDS)}")
    if workers is not None and scheduler is not None:
        raise FerbenchError("pass either --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise FerbenchError(f"--workers must be >= 1; got {workers}")
    if repeats is not None and repeats < 1:
        raise FerbenchError(f"--repeats must be >= 1; got {repeats}")
    if threads is not None and threads < 1:
        raise FerbenchError(f"--threads must be >= 1; got {threads}")
    if not 0 < float(val_fraction) < 1:
        raise FerbenchError(f"the validation fraction must lie between 0 and 1; got {val_fraction}")
    dev = resolve_device(device)
    if scheduler is not None:
        from ferbench.harness.execute import check_scheduler

        check_scheduler(scheduler)
    n_par = workers or 1
    threads = threads or max(1, (os.cpu_count() or 1) // n_par)
    model_options = dict(model_options or {})
    # ---- data, protocol, models
    proto = load_protocol(protocol)
    with _open_checked(data, "data file") as st:
        dataset, size, length = st.dataset, int(st.frame_shape[0]), st.length
        au_names = list(st.au_names)
    if dataset not in proto.datasets:
        raise FerbenchError(
            f"protocol {proto.name!r} is for {', '.join(proto.datasets)}, but {data} holds {dataset} "
            f"(see `ferbench protocols` for the protocols of {dataset})"
        )
    test_path = Path(data_test) if data_test is not None else Path(data)
    if data_test is not None:
        with _open_checked(data_test, "test data file") as st2:
            dataset_test = st2.dataset
    else:
        dataset_test = proto.test_dataset or dataset
        if proto.test_dataset and proto.test_dataset != dataset:
            raise FerbenchError(f"protocol {proto.name!r} tests on {proto.test_dataset}; pass its file with --data-test")
    names = resolve_models(models, proto.task)
    from ferbench.models import list_models

    unknown_opts = [m for m in model_options if m not in list_models()]
    if unknown_opts:
        raise FerbenchError(f"model options given for {unknown_opts[0]!r}, which is not a registered model")
    plans_needed: dict[float | None, list[str]] = {}
    stages_of: dict[str, tuple[dict[str, Any], ...]] = {}
    for m in names:
        index, min_size = _card_index(m)
        if size < min_size:
            raise FerbenchError(f"model {m!r} needs frames of at least {min_size}x{min_size}; {data} has {size}x{size}")
        stages = R.resolve(m, recipe, dataset, ov, "cuda" if dev.startswith("cuda") else "cpu")
        if proto.task == "au-detection":
            stages = _au_stages(stages)
        stages_of[m] = stages
        needs_val = R.selection_of(stages) == "validation" and not proto.validation
        plans_needed.setdefault(float(val_fraction) if needs_val else None, []).append(m)
    # ---- plans and tasks
    ctx = RunContext(
        recipe=recipe, dataset=dataset, dataset_test=dataset_test, data=Path(data).resolve(),
        data_test=test_path.resolve(), device=dev, threads=threads,
        fingerprints={"data": data_fingerprint(data), "data_test": data_fingerprint(test_path),
                      "protocol": proto.fingerprint, "code": code_fingerprint()},
    )
    outdir = Path(out)
    run_dataset = dataset if dataset_test == dataset else f"{dataset}-to-{dataset_test}"
    result = EvaluateResult(out=outdir)
    pending: list[tuple[TaskSpec, Path]] = []
    plans = {}
    for frac, members in plans_needed.items():
        plan = make_plan(proto, data, data_test, repeats=repeats, validation=frac)
        plans[frac] = plan
        result.warnings.extend(w for w in plan.warnings if w not in result.warnings)
        classes = tuple(plan.classes) if plan.classes else tuple(au_name(a) for a in au_names)
        for m in members:
            for spec in make_specs(plan, m, stages_of[m], model_options, _card_index(m)[0], classes, ctx, frac):
                path = record_path(outdir, run_dataset, proto.name, m, spec.repeat, spec.fold)
                existing = read_record(path)
                reason = ("--force" if existing else "no record") if force else stale_reason(existing, spec.fingerprints)
                if reason is None:
                    result.skipped.append(spec.task_id)
                    result.records.append(path)
                else:
                    if reason != "no record":
                        result.rerun_reasons[spec.task_id] = reason
                    pending.append((spec, path))
    if progress:
        progress({"event": "plan", "total": len(pending) + len(result.skipped), "skipped": len(result.skipped),
                  "pending": len(pending), "rerun": dict(result.rerun_reasons), "warnings": list(result.warnings)})
    if not pending:
        result.seconds = time.perf_counter() - started
        return result
    # ---- run
    from ferbench.harness.execute import run_tasks

    test_labels = test_labels_of(plans.values(), test_path)
    protocol_meta = {"metric": proto.metric, "metrics": list(proto.metrics)}
    config_common = {"overrides": ov.as_dict(), "device": dev, "threads": threads, "val_fraction": float(val_fraction),
                     "data": str(Path(data).resolve()), "data_test": str(test_path.resolve()),
                     "workers": workers, "scheduler": scheduler}
    specs = {spec.task_id: (spec, path) for spec, path in pending}

    def on_result(spec: TaskSpec, res: dict[str, Any] | None, error: str | None) -> None:
        if error is not None:
            result.failed[spec.task_id] = error
            if progress:
                progress({"event": "task-failed", "task_id": spec.task_id, "error": error})
            return
        path = specs[spec.task_id][1]
        rec = build_record(spec, res, test_labels, protocol_meta, config_common)
        write_record(path, rec)
        result.ran.append(spec.task_id)
        result.records.append(path)
        if progress:
            progress({"event": "task-done", "task_id": spec.task_id, "model": spec.model, "path": str(path),
                      "scores": rec.get("scores"), "train_s": rec["timings"]["train_s"]})

    run_tasks([s for s, _ in pending], on_result, workers=workers, scheduler=scheduler, progress=progress,
              gpu=dev.startswith("cuda"))
    result.seconds = time.perf_counter() - started
    return result
