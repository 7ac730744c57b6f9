"""One task, start to finish, wherever it runs (in this process or on a dask worker): load the data files
(cached), fit the model or the fusion (`fit`, `fusion`), predict the test units, and return everything the
record needs except the test labels, which this module never sees (the client attaches them once the
predictions are final). A task whose loss, weights or outputs go non-finite returns a diverged result.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np
import torch

import ferbench
from ferbench.errors import FerbenchError
from ferbench.harness.data import open_data, stop_streams, task_budget
from ferbench.harness.fit import Context, Progress, UnitScores, fit, predict_test
from ferbench.harness.spec import FUSION_ENTRIES, TaskSpec
from ferbench.harness.train import Diverged, dtype_label, set_precision


def setup_determinism(threads: int, device: torch.device) -> None:
    """Same seed + device + thread count -> same predictions, in this process or on any worker."""
    torch.set_num_threads(max(1, int(threads)))
    if device.type == "cuda":  # CPU kernels are deterministic already (and this call costs seconds of imports)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def versions() -> dict[str, str]:
    import h5py
    import sklearn

    return {
        "ferbench": ferbench.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "sklearn": sklearn.__version__, "h5py": h5py.__version__,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def mode_text(mode: dict[str, Any]) -> str:
    """A sample's mode as "VL/Strong"-style text ("" where the dataset has none)."""
    return "/".join(str(v) for v in (mode or {}).values())


def _fit_and_predict(ctx: Context) -> tuple[UnitScores, list, int, dict, list, dict, float]:
    """Train (or fuse) and predict the test units; Diverged when the loss, weights or outputs go non-finite."""
    spec = ctx.spec
    extra: dict[str, Any] = {}
    if spec.model in FUSION_ENTRIES:
        from ferbench.harness.fusion import run_fusion

        fused = run_fusion(ctx)
        units = UnitScores(list(spec.test_ids), list(spec.test_ids), None, fused.probabilities, fused.predictions)
        curve, selected, options, used, extra = fused.curve, fused.selected_epoch, fused.options, fused.stages, fused.extra
        predict_s = fused.predict_s
    else:
        fitted = fit(ctx, spec.model, list(spec.stages), spec.selection)
        t2 = time.perf_counter()
        units = predict_test(ctx, fitted)
        predict_s = time.perf_counter() - t2
        curve, selected, options, used = fitted.curve, fitted.selected_epoch, {spec.model: fitted.options}, fitted.stages
        if fitted.pretrain is not None:
            extra = {"pretrain": {**fitted.pretrain, "train_s": round(fitted.pretrain_s, 4)}}
    if not np.isfinite(np.asarray(units.probabilities, dtype=np.float64)).all():
        last = curve[-1] if curve else {}
        raise Diverged("test outputs", str(last.get("stage", "?")), int(last.get("epoch", 0)), last.get("loss"))
    return units, curve, selected, options, used, extra, predict_s


def _where_and_when(ctx: Context, load_s: float, train_s: float, predict_s: float) -> dict[str, Any]:
    """The fields every result carries about where it ran, how its data was read and how long each part took."""
    device, budget = ctx.device, ctx.budget
    return {"device": device_name(device), "dtype": dtype_label(device), "threads": torch.get_num_threads(),
            "versions": versions(), "data_mode": budget.mode(), "memory_budget": budget.total,
            "timings": {"load_s": round(load_s, 4), "train_s": round(train_s, 4), "predict_s": round(predict_s, 4)}}


def _diverged_result(spec: TaskSpec, e: Diverged) -> dict[str, Any]:
    """A diverged task's result: no predictions, the divergence (what, stage, epoch, last finite loss)."""
    return {
        "status": "diverged", "divergence": e.as_dict(), "sample_ids": [], "subjects": [], "modes": [],
        "predictions": [], "probabilities": [], "selected_epoch": int(e.epoch), "curve": [], "stages": list(spec.stages),
        "model_options": {spec.model: spec.model_options.get(spec.model, {})}, "extra": {}, "unit_frames": [],
    }


def _ensure_model(spec: TaskSpec) -> None:
    """On a dask worker, a user model is not registered yet: load it from its spec (its file must be readable
    there: a shared path, or the package installed on the worker)."""
    from ferbench.models import list_models
    from ferbench.models.user import load_plugin, register_spec

    if spec.model in list_models() or spec.model in FUSION_ENTRIES or not spec.model_source:
        return
    if spec.model_source.startswith("entry point "):
        load_plugin(spec.model)
    else:
        register_spec(spec.model_source, name=spec.model)
    if spec.model not in list_models():
        raise FerbenchError(f"model {spec.model!r} ({spec.model_source}) cannot be loaded on this worker; install "
                            "its package there or put its file on a path every worker reads")


def run_task(spec: TaskSpec, progress: Progress | None = None) -> dict[str, Any]:
    """Run one task; returns the record's fields that a task can know (no test labels, no scores)."""
    device = torch.device(spec.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", _worker_gpu())
    setup_determinism(spec.threads, device)
    set_precision(spec.precision)
    _ensure_model(spec)
    t0 = time.perf_counter()
    train_data, test_data = open_data(spec.data), open_data(spec.data_test)
    labels = dict(zip(spec.train_ids, spec.y_train)) | dict(zip(spec.val_ids, spec.y_val))
    ctx = Context(spec, device, train_data, test_data, labels, progress, task_budget(spec.memory_budget, device))
    ctx.frames(train_data, spec.frame_index)  # load now (where resident): load time is measured apart from training
    ctx.frames(test_data, spec.frame_index)
    load_s = time.perf_counter() - t0
    ctx.emit(event="start")
    t1 = time.perf_counter()
    try:
        units, curve, selected, options, used, extra, predict_s = _fit_and_predict(ctx)
    except Diverged as e:
        ctx.emit(event="done")
        return _diverged_result(spec, e) | _where_and_when(ctx, load_s, time.perf_counter() - t1, 0.0)
    finally:
        stop_streams()  # a task that stops early (divergence, error) leaves no read-ahead thread holding batches
    pretrain_s = float((extra.get("pretrain") or {}).get("train_s") or 0.0)  # the source training, timed apart
    train_s = time.perf_counter() - t1 - predict_s - pretrain_s
    rows = [test_data.store.sample(s) for s in units.samples]
    out = {
        "sample_ids": units.names,
        "subjects": [r.subject for r in rows],
        "modes": [mode_text(r.mode) for r in rows],
        "predictions": np.asarray(units.predictions).astype(int).tolist(),
        "probabilities": [[float(v) for v in row] for row in np.asarray(units.probabilities)],
        "selected_epoch": int(selected),
        "curve": curve,
        "stages": used,
        "model_options": options,
        "extra": extra,
        "unit_frames": units.frames,
        "status": "ok",
    } | _where_and_when(ctx, load_s, train_s, predict_s)
    ctx.emit(event="done")
    return out


def _worker_gpu() -> int:
    """The GPU of this dask worker (its name is its number in a LocalCluster), else GPU 0."""
    try:
        from distributed import get_worker

        name = get_worker().name
        return int(name) % max(1, torch.cuda.device_count())
    except (ImportError, ValueError, TypeError):
        return 0
