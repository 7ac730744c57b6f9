"""Fitting one model inside a task: build it (on a transfer protocol, with its transfer layers trained on the
source file and frozen), train every recipe stage, select the epoch (on validation ids only), and predict the
test units. `Context` is what these steps share."""

from __future__ import annotations

from collections.abc import Callable
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ferbench.errors import FerbenchError
from ferbench.harness import train as T
from ferbench.harness.data import DataFile, open_data, task_budget, to_float
from ferbench.harness.fingerprint import hash_json
from ferbench.harness.inputs import ClipSource, WindowSource, augment
from ferbench.harness.memory import Budget
from ferbench.harness.sources import FrameSource
from ferbench.harness.predict import predict, selection_score
from ferbench.harness.spec import TaskSpec, stage_seed
from ferbench.harness.transfer import Pretrain, layer_state, load_and_freeze

Progress = Callable[[dict[str, Any]], None]


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
    """What a task's parts share: the device, the two data files, labels it may use, its progress hook, and its
    memory budget (which decides whether each frame source is resident or streamed)."""

    spec: TaskSpec
    device: torch.device
    train: DataFile
    test: DataFile
    labels: dict[str, int]  # train + val labels (never test)
    progress: Progress | None
    budget: Budget | None = field(default=None)

    def frames(self, data: DataFile, index: str) -> FrameSource:
        """The frames of `index` of one of the task's files, resident or streamed as the budget allows."""
        if self.budget is None:
            self.budget = task_budget(self.spec.memory_budget, self.device)
        return data.source(index, self.device, self.budget)

    def clips(self, data: DataFile, index: str, ids: tuple[str, ...]) -> ClipSource:
        return ClipSource(self.frames(data, index), ids)

    def windows(self, data: DataFile, ids: tuple[str, ...]) -> WindowSource:
        return WindowSource(self.frames(data, "native"), data, ids, data.au_columns(self.spec.classes))

    def emit(self, **event: Any) -> None:
        if self.progress is not None:
            self.progress({"task_id": self.spec.task_id, "model": self.spec.model, "repeat": self.spec.repeat,
                           "fold": self.spec.fold, **event})


@dataclass
class Fitted:
    model: nn.Module
    curve: list[dict[str, Any]]
    selected_epoch: int
    options: dict[str, Any]
    stages: list[dict[str, Any]]
    pretrain: dict[str, Any] | None = None  # a transfer task's source training (docs/records.md)
    pretrain_s: float = 0.0  # seconds this task spent training the source (0 when this process had it already)


def fit(ctx: Context, name: str, stages: list[dict[str, Any]], selection: str, member: int = 0) -> Fitted:
    """Build `name` and train it through its stages; with validation selection, keep the best epoch of the
    final stage as scored on the validation ids (test ids are not even in scope here)."""
    spec, dev = ctx.spec, ctx.device
    model, options = build_model(name, len(spec.classes), spec.model_options.get(name, {}), ctx.train.size,
                                 ctx.train.length, stage_seed(spec.seed, 0, member))
    model.to(dev)
    pretrain, pretrain_s = None, 0.0
    if spec.pretrain is not None and name == spec.model:
        t0 = time.perf_counter()
        state, pretrain, reused = pretrained_layers(ctx, name)
        pretrain_s = 0.0 if reused else time.perf_counter() - t0
        load_and_freeze(model, name, state)
    index = spec.index if name == spec.model else index_of(name)
    validate = _validation(ctx, model, index, selection, int(stages[-1]["batch_size"]))
    curve: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    result = None
    for si, stage in enumerate(stages):
        n, batcher, loss_fn, plan = _stage_inputs(ctx, stage, index)
        used.append({**stage, "batch_size": max(1, min(int(stage["batch_size"]), n)), "units": n})
        result = T.train_stage(
            model, stage, si, n, batcher, loss_fn, device=dev, seed=stage_seed(spec.seed, 1, member, si),
            validate=validate if si == len(stages) - 1 else None,
            on_epoch=lambda p, name=name: ctx.emit(event="epoch", member=name, **p), plan=plan,
        )
        curve.extend(result.curve)
    assert result is not None
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    return Fitted(model, curve, result.selected_epoch, options, used, pretrain, pretrain_s)


_LAST_SOURCE: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}


def pretrained_layers(ctx: Context, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
    """A transfer task's source side: `name` trained on every labelled sample of the source file for the source
    recipe's epochs (no selection: no source sample is held out), seeded per repeat; returns the state of its
    transfer layers, what the record says about them, and whether they were kept from an earlier fold of this
    process (the last one is kept)."""
    spec = ctx.spec
    src: Pretrain = spec.pretrain
    key = hash_json({"source": src.describe(), "seed": src.seed, "model": name, "options": spec.model_options,
                     "device": str(ctx.device), "precision": spec.precision})
    reused = key in _LAST_SOURCE
    if not reused:
        _LAST_SOURCE.clear()
        source_spec = replace(
            spec, data=src.data, data_test=src.data, dataset=src.dataset, dataset_test=src.dataset,
            classes=src.classes, train_ids=src.ids, y_train=src.labels, val_ids=(), y_val=(), test_ids=(),
            stages=src.stages, selection="last-epoch", seed=src.seed, pretrain=None)
        data = open_data(src.data)
        fitted = fit(Context(source_spec, ctx.device, data, data, dict(zip(src.ids, src.labels)), None, ctx.budget),
                     name, list(src.stages), "last-epoch")
        state, digest = layer_state(fitted.model, name)
        info = {"dataset": src.dataset, "data": src.data, "data_fingerprint": src.fingerprint,
                "samples": len(src.ids), "classes": list(src.classes), "seed": src.seed,
                "frame_size": src.frame_size, "target_frame_size": src.target_frame_size, "stages": fitted.stages,
                "layers": src.transfer, "parameters": sorted(state), "weights_sha256": digest,
                "final_loss": fitted.curve[-1].get("loss") if fitted.curve else None}
        _LAST_SOURCE[key] = (state, info)
    return (*_LAST_SOURCE[key], reused)


def _validation(ctx: Context, model: nn.Module, index: str, selection: str, batch: int) -> Callable[[], float] | None:
    """The selection score on the validation ids (training subjects held out), or None for last-epoch."""
    spec, dev = ctx.spec, ctx.device
    if selection != "validation":
        return None
    if not spec.val_ids:
        raise FerbenchError(f"{spec.task_id}: the recipe selects on validation but the fold has no validation ids")
    au = spec.task == "au-detection"
    src: ClipSource | WindowSource
    if au:
        src = ctx.windows(ctx.train, spec.val_ids)
        y_val = src.targets(torch.arange(src.n)).cpu().numpy()
    else:
        src = ctx.clips(ctx.train, index, spec.val_ids)
        y_val = np.array([ctx.labels[i] for i in spec.val_ids], dtype=np.int64)

    def validate() -> float:
        scores = predict(model, src.n, src.inputs, batch, dev, "sigmoid" if au else "softmax", plan=src.plan)
        return selection_score(spec.metric, y_val, scores)

    return validate


def _stage_inputs(ctx: Context, stage: dict[str, Any], index: str) -> tuple[int, T.Batcher, T.LossFn, T.Plan]:
    """(training units, batcher, loss, plan) of one stage: kim2017's stage 1 on the expression-state frames, AU
    windows for AU detection, else clips in the model's index; `plan` tells the source the epoch's batches."""
    spec, dev, preset = ctx.spec, ctx.device, stage.get("augment")
    if stage["stage"] == "stage1":
        ids = _with_states(ctx.train, spec.train_ids)
        src = ctx.clips(ctx.train, "states", ids)
        y = torch.tensor([ctx.labels[i] for i in ids], dtype=torch.int64, device=dev)

        def states(idx: torch.Tensor, gen: torch.Generator) -> Any:
            return to_float(augment(src.raw(idx)[0], preset, gen)), y[idx.to(dev)]

        return src.n, states, T.stage1_loss, src.plan
    if spec.task == "au-detection":
        win = ctx.windows(ctx.train, spec.train_ids)
        return win.n, lambda idx, gen: (win.inputs(idx, preset, gen), win.targets(idx)), T.au_loss, win.plan
    clips = ctx.clips(ctx.train, index, spec.train_ids)
    y_train = torch.tensor([ctx.labels[i] for i in spec.train_ids], dtype=torch.int64, device=dev)
    return (clips.n, lambda idx, gen: (clips.inputs(idx, preset, gen), y_train[idx.to(dev)]), T.clip_loss,
            clips.plan)


def _with_states(data: DataFile, ids: tuple[str, ...]) -> tuple[str, ...]:
    keep = tuple(i for i in ids if data.store.sample(i).states is not None)
    if not keep:
        raise FerbenchError(f"{data.path}: no training sample has an expression-state index (needed by stage 1)")
    return keep


def index_of(name: str) -> str:
    """The frame index (clip, states, native) model `name` reads."""
    from ferbench.models import model_card

    return model_card(name).index


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
        win = ctx.windows(test, spec.test_ids)
        probs = predict(fitted.model, win.n, win.inputs, bs, dev, "sigmoid", plan=win.plan)
        frames = win.store_frames()
        source = test.source_frames()
        samples = [test.store.samples[r].id for r in win.rows.tolist()]
        names = [f"{sid}@{int(source[f])}" for sid, f in zip(samples, frames)]
        return UnitScores(names, samples, [int(f) for f in frames], probs, (probs >= 0.5).astype(np.int64))
    src = ctx.clips(test, spec.index, spec.test_ids)
    probs = predict(fitted.model, src.n, src.inputs, bs, dev, "softmax", plan=src.plan)
    preds = probs.argmax(1) if probs.size else np.zeros(0, np.int64)
    return UnitScores(list(spec.test_ids), list(spec.test_ids), None, probs, preds)
