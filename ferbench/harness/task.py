"""One task, start to finish, wherever it runs: load (cached), build the model, train every recipe stage,
select, predict the test units. Returns everything the record needs except the test labels, which this
module never sees (the client attaches them once the predictions are final).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import ferbench
from ferbench.errors import FerbenchError
from ferbench.harness import train as T
from ferbench.harness.train import Diverged
from ferbench.harness.data import DataFile, gather_clips, gather_windows, open_data, to_float
from ferbench.harness.predict import predict, selection_score
from ferbench.harness.spec import FUSION_ENTRIES, TaskSpec, stage_seed

Progress = Callable[[dict[str, Any]], None]


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


def build_model(name: str, num_classes: int, options: dict[str, Any], size: int, length: int, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """create_model with the user's options plus the frame size / clip length where the model takes them."""
    from ferbench.models import create_model, model_options

    cfg = dict(options)
    params = model_options(name) or ()
    if "image_size" in params and "image_size" not in cfg:
        cfg["image_size"] = size
    if "num_frames" in params and "num_frames" not in cfg:
        cfg["num_frames"] = length
    torch.manual_seed(seed)
    try:
        model = create_model(name, num_classes, **cfg)
    except (TypeError, ValueError) as e:
        raise FerbenchError(f"model {name!r} with options {cfg}: {e}") from None
    return model, cfg


@dataclass
class Context:
    """What a task's parts share: the device, the two data files, labels it may use, its progress hook."""

    spec: TaskSpec
    device: torch.device
    train: DataFile
    test: DataFile
    labels: dict[str, int]  # train + val labels (never test)
    progress: Progress | None

    def emit(self, **event: Any) -> None:
        if self.progress is not None:
            self.progress({"task_id": self.spec.task_id, "model": self.spec.model, "repeat": self.spec.repeat,
                           "fold": self.spec.fold, **event})


# -- inputs ---------------------------------------------------------------------------------------------------
def _augment(x: torch.Tensor, preset: str | None, gen: torch.Generator | None) -> torch.Tensor:
    if not preset or preset == "none" or gen is None:
        return x
    from ferbench.preprocess.augment import augment_batch

    return augment_batch(x, preset, generator=gen)


class ClipSource:
    """Classification inputs of one sample list from one data file, in the model's index."""

    def __init__(self, data: DataFile, index: str, ids: tuple[str, ...], device: torch.device):
        self.loaded, _ = data.loaded(index, str(device))
        self.pos = data.positions(index, str(device), ids)
        self.n = len(ids)

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = gather_clips(self.loaded, self.pos[idx])
        return to_float(_augment(x, preset, gen)), lengths


class WindowSource:
    """AU-detection inputs: fixed-length windows ending at each coded frame of the given samples."""

    def __init__(self, data: DataFile, ids: tuple[str, ...], columns: list[int], device: torch.device):
        self.data = data
        self.loaded, _ = data.loaded("native", str(device))
        rows, local = data.coded_units(ids, columns)
        self.rows, self.local = torch.from_numpy(rows), torch.from_numpy(local)
        self.columns = torch.tensor(columns, dtype=torch.int64)
        self.n = len(rows)
        self.length = data.length

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = gather_windows(self.loaded, self.rows[idx], self.local[idx], self.length)
        return to_float(_augment(x, preset, gen)), torch.full((len(idx),), self.length, dtype=torch.int64, device=x.device)

    def targets(self, idx: torch.Tensor) -> torch.Tensor:
        starts = self.loaded.offsets[self.rows[idx].to(self.loaded.x.device), 0]
        frames = starts + self.local[idx].to(starts.device)
        return self.loaded.aus[frames][:, self.columns.to(starts.device)].long()

    def store_frames(self) -> np.ndarray:
        """Each unit's absolute frame number in the store (to name it and to look up its labels later)."""
        starts = np.array([self.data.store.samples[r].frame_start for r in self.rows.tolist()], dtype=np.int64)
        return starts + self.local.numpy()


# -- training one model ---------------------------------------------------------------------------------------
@dataclass
class Fitted:
    model: nn.Module
    curve: list[dict[str, Any]]
    selected_epoch: int
    options: dict[str, Any]
    stages: list[dict[str, Any]]


def fit(ctx: Context, name: str, stages: list[dict[str, Any]], selection: str, member: int = 0) -> Fitted:
    """Build `name` and train it through its stages; with validation selection, keep the best epoch of the
    final stage as scored on the validation ids (test ids are not even in scope here)."""
    spec, dev = ctx.spec, ctx.device
    au = spec.task == "au-detection"
    num_outputs = len(spec.classes)
    model, options = build_model(name, num_outputs, spec.model_options.get(name, {}), ctx.train.size,
                                 ctx.train.length, stage_seed(spec.seed, 0, member))
    model.to(dev)
    index = spec.index if name == spec.model else _index_of(name)
    columns = ctx.train.au_columns(spec.classes) if au else []
    y_train = torch.tensor([ctx.labels[i] for i in spec.train_ids], dtype=torch.int64, device=dev)
    train_src = WindowSource(ctx.train, spec.train_ids, columns, dev) if au else ClipSource(ctx.train, index, spec.train_ids, dev)
    validate = None
    if selection == "validation" and spec.val_ids:
        val_src = WindowSource(ctx.train, spec.val_ids, columns, dev) if au else ClipSource(ctx.train, index, spec.val_ids, dev)
        y_val = (val_src.targets(torch.arange(val_src.n)).cpu().numpy() if au
                 else np.array([ctx.labels[i] for i in spec.val_ids], dtype=np.int64))
        bs_eval = int(stages[-1]["batch_size"])

        def validate() -> float:
            scores = predict(model, val_src.n, val_src.inputs, bs_eval, dev, "sigmoid" if au else "softmax")
            return selection_score(spec.metric, y_val, scores)
    elif selection == "validation":
        raise FerbenchError(f"{spec.task_id}: the recipe selects on validation but the fold has no validation ids")
    curve: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    result = None
    for si, stage in enumerate(stages):
        last = si == len(stages) - 1
        preset = stage.get("augment")
        if stage["stage"] == "stage1":
            st_src = ClipSource(ctx.train, "states", _with_states(ctx.train, spec.train_ids), dev)
            st_y = torch.tensor([ctx.labels[i] for i in _with_states(ctx.train, spec.train_ids)], dtype=torch.int64, device=dev)

            def batcher(idx, gen, st_src=st_src, st_y=st_y, preset=preset):
                x = st_src.loaded.x[st_src.pos[idx].to(dev)]
                return to_float(_augment(x, preset, gen)), st_y[idx.to(dev)]

            n, loss_fn = st_src.n, T.stage1_loss
        elif au:
            def batcher(idx, gen, preset=preset):
                return train_src.inputs(idx, preset, gen), train_src.targets(idx)

            n, loss_fn = train_src.n, T.au_loss
        else:
            def batcher(idx, gen, preset=preset):
                return train_src.inputs(idx, preset, gen), y_train[idx.to(dev)]

            n, loss_fn = train_src.n, T.clip_loss
        used.append({**stage, "batch_size": max(1, min(int(stage["batch_size"]), n)), "units": n})
        result = T.train_stage(
            model, stage, si, n, batcher, loss_fn, device=dev, seed=stage_seed(spec.seed, 1, member, si),
            validate=validate if last else None,
            on_epoch=lambda p, name=name: ctx.emit(event="epoch", member=name, **p),
        )
        curve.extend(result.curve)
    assert result is not None
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    return Fitted(model, curve, result.selected_epoch, options, used)


def _with_states(data: DataFile, ids: tuple[str, ...]) -> tuple[str, ...]:
    keep = tuple(i for i in ids if data.store.sample(i).states is not None)
    if not keep:
        raise FerbenchError(f"{data.path}: no training sample has an expression-state index (needed by stage 1)")
    return keep


def _index_of(name: str) -> str:
    from ferbench.models import model_card

    return model_card(name).index


# -- the task -------------------------------------------------------------------------------------------------
@dataclass
class UnitScores:
    """Predictions on the test units: names, the sample each belongs to, store frame (AU) and scores."""

    names: list[str]
    samples: list[str]
    frames: list[int] | None
    probabilities: np.ndarray
    predictions: np.ndarray


def predict_test(ctx: Context, fitted: Fitted) -> UnitScores:
    """Scores for the test ids: one unit per clip, or (AU detection) one per coded frame."""
    spec, dev, test = ctx.spec, ctx.device, ctx.test
    bs = int(fitted.stages[-1]["batch_size"])
    if spec.task == "au-detection":
        src = WindowSource(test, spec.test_ids, test.au_columns(spec.classes), dev)
        probs = predict(fitted.model, src.n, src.inputs, bs, dev, "sigmoid")
        frames = src.store_frames()
        source = test.source_frames()
        samples = [test.store.samples[r].id for r in src.rows.tolist()]
        names = [f"{sid}@{int(source[f])}" for sid, f in zip(samples, frames)]
        return UnitScores(names, samples, [int(f) for f in frames], probs, (probs >= 0.5).astype(np.int64))
    src = ClipSource(test, spec.index, spec.test_ids, dev)
    probs = predict(fitted.model, src.n, src.inputs, bs, dev, "softmax")
    preds = probs.argmax(1) if probs.size else np.zeros(0, np.int64)
    return UnitScores(list(spec.test_ids), list(spec.test_ids), None, probs, preds)


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
    if not np.isfinite(np.asarray(units.probabilities, dtype=np.float64)).all():
        last = curve[-1] if curve else {}
        raise Diverged("test outputs", str(last.get("stage", "?")), int(last.get("epoch", 0)), last.get("loss"))
    return units, curve, selected, options, used, extra, predict_s


def _diverged_result(spec: TaskSpec, device: torch.device, e: Diverged, train_s: float, load_s: float) -> dict[str, Any]:
    """A diverged task's result: no predictions, the divergence (what, stage, epoch, last finite loss)."""
    return {
        "status": "diverged", "divergence": e.as_dict(), "sample_ids": [], "subjects": [], "modes": [],
        "predictions": [], "probabilities": [], "selected_epoch": int(e.epoch), "curve": [], "stages": list(spec.stages),
        "model_options": {spec.model: spec.model_options.get(spec.model, {})}, "extra": {},
        "device": device_name(device), "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        "threads": torch.get_num_threads(), "versions": versions(),
        "timings": {"load_s": round(load_s, 4), "train_s": round(train_s, 4), "predict_s": 0.0}, "unit_frames": [],
    }


def run_task(spec: TaskSpec, progress: Progress | None = None) -> dict[str, Any]:
    """Run one task; returns the record's fields that a task can know (no test labels, no scores)."""
    device = torch.device(spec.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", _worker_gpu())
    setup_determinism(spec.threads, device)
    t0 = time.perf_counter()
    train_data, test_data = open_data(spec.data), open_data(spec.data_test)
    labels = dict(zip(spec.train_ids, spec.y_train)) | dict(zip(spec.val_ids, spec.y_val))
    ctx = Context(spec, device, train_data, test_data, labels, progress)
    index = "native" if spec.task == "au-detection" else spec.index
    train_data.loaded(index, str(device))  # load now, so that the load time is measured apart from training
    test_data.loaded(index, str(device))
    load_s = time.perf_counter() - t0
    ctx.emit(event="start")
    t1 = time.perf_counter()
    try:
        units, curve, selected, options, used, extra, predict_s = _fit_and_predict(ctx)
    except Diverged as e:
        ctx.emit(event="done")
        return _diverged_result(spec, device, e, time.perf_counter() - t1, load_s)
    train_s = time.perf_counter() - t1 - predict_s
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
        "device": device_name(device),
        "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "timings": {"load_s": round(load_s, 4), "train_s": round(train_s, 4), "predict_s": round(predict_s, 4)},
        "unit_frames": units.frames,
        "status": "ok",
    }
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
