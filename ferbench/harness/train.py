"""The training loop for one recipe stage: seeded batch order and augmentation, lr schedule, bf16 autocast on
CUDA, a per-epoch curve, and epoch selection on the validation set only (never on test units).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ferbench.errors import FerbenchError
from ferbench.harness.transfer import trainable

#: A batch source: positions (into the stage's training units) -> (inputs, targets); inputs go to `loss`.
Batcher = Callable[[torch.Tensor, torch.Generator | None], tuple[Any, Any]]
LossFn = Callable[[nn.Module, Any, Any], torch.Tensor]
#: Told the batches (positions into the units) a pass will ask for, in order, before it asks (a streamed source
#: reads them ahead); it changes nothing else.
Plan = Callable[[list[torch.Tensor]], None]


#: Numerics of a task: `auto` (bf16 autocast on CUDA, float32 on CPU), `bf16` (bf16 autocast on any device: on
#: a CPU it exercises the code paths a CUDA run takes), `fp32` (float32 everywhere).
PRECISIONS = ("auto", "bf16", "fp32")
_precision = "auto"


def set_precision(precision: str) -> None:
    """Set this process's precision for the tasks it runs (each task sets its own, like its thread count)."""
    global _precision
    if precision not in PRECISIONS:
        raise FerbenchError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    _precision = precision


def uses_bf16(device: torch.device) -> bool:
    return _precision == "bf16" or (_precision == "auto" and device.type == "cuda")


def dtype_label(device: torch.device) -> str:
    """What a record says about its numerics."""
    return "bfloat16 autocast" if uses_bf16(device) else "float32"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where the precision asks for it (CUDA by default), else nothing (CPU results stay float32
    and bit-reproducible)."""
    if uses_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_at(stage: dict[str, Any], step: int) -> float:
    """The recipe's learning rate at `step` (an epoch or an iteration, per its schedule_unit)."""
    lr = float(stage["lr"])
    for start, value in stage.get("schedule") or ():
        if step >= int(start):
            lr = float(value)
    return lr


def make_optimizer(model: nn.Module, params: list[nn.Parameter], stage: dict[str, Any]) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params`; weight decay only on `model.decay_parameters()` where a model has it
    (chao2016 decays the softmax layer only)."""
    wd = float(stage.get("weight_decay") or 0.0)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise FerbenchError(f"stage {stage['stage']!r}: the model has no trainable parameters in this stage")
    if wd and hasattr(model, "decay_parameters"):
        decay_ids = {id(p) for p in model.decay_parameters()}
        groups = [
            {"params": [p for p in params if id(p) in decay_ids], "weight_decay": wd},
            {"params": [p for p in params if id(p) not in decay_ids], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": params, "weight_decay": wd}]
    name, lr = str(stage["optimizer"]).lower(), float(stage["lr"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(stage.get("momentum") or 0.0))
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=float(stage.get("momentum") or 0.0))
    raise FerbenchError(f"unknown optimizer {name!r}")


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle of range(n) cut into batches of `batch_size` (<= n); a trailing batch of one joins the
    previous one, since batch norm cannot train on a single sample."""
    order = torch.randperm(n, generator=generator)
    out = list(order.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        last = out.pop()  # popped first: `out[-2] = cat([out[-2], out.pop()])` would write to the wrong batch
        out[-1] = torch.cat([out[-1], last])
    return out


class Diverged(Exception):
    """Training went non-finite (loss, weights or outputs): the task is recorded as diverged, not scored."""

    def __init__(self, what: str, stage: str, epoch: int, last_finite_loss: float | None):
        self.what, self.stage, self.epoch, self.last_finite_loss = what, stage, epoch, last_finite_loss
        loss = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        super().__init__(f"{what} non-finite in stage {stage!r} epoch {epoch} (last finite training loss {loss}); "
                         "the recipe diverged (lower the learning rate with --lr)")

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "stage": self.stage, "epoch": self.epoch,
                "last_finite_loss": self.last_finite_loss, "message": str(self)}


def check_finite_weights(model: nn.Module, stage: str, epoch: int, last_loss: float | None) -> None:
    """Raise Diverged when any parameter or buffer holds NaN or inf."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise Diverged("weights", stage, epoch, last_loss)


def _stage_parameters(model: nn.Module, kind: str) -> list[nn.Parameter]:
    """The parameters a stage trains: kim2017's two stages train their own parts, anything else the whole model;
    never the layers a transfer protocol froze."""
    if kind not in ("stage1", "stage2"):
        return trainable(list(model.parameters()))
    if not hasattr(model, "set_stage"):
        raise FerbenchError(f"recipe stage {kind!r} needs a two-stage model (set_stage / stage_parameters)")
    model.set_stage(1 if kind == "stage1" else 2)
    return trainable(list(model.stage_parameters(1 if kind == "stage1" else 2)))


def _stage_length(stage: dict[str, Any], n_units: int) -> tuple[int, int, int]:
    """(batch size, epochs, optimiser steps) of a stage on `n_units` training units: a recipe gives epochs, or
    iterations (then the epochs that hold them, the last one cut short)."""
    if n_units < 1:
        raise FerbenchError(f"stage {stage['stage']!r}: no training samples")
    bs = max(1, min(int(stage["batch_size"]), n_units))
    per_epoch = len(batches(n_units, bs, torch.Generator().manual_seed(0)))
    iterations = stage.get("iterations")
    epochs = math.ceil(int(iterations) / per_epoch) if iterations else int(stage["epochs"])
    return bs, epochs, int(iterations) if iterations else epochs * per_epoch


@dataclass
class StageResult:
    curve: list[dict[str, Any]]
    selected_epoch: int
    best_state: dict[str, torch.Tensor] | None  # weights of the selected epoch (validation), else None


def clip_loss(model: nn.Module, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy on model(x, lengths)."""
    x, lengths = inputs
    return F.cross_entropy(model(x, lengths).float(), targets)


def au_loss(model: nn.Module, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy per AU with unknown (-1) labels masked out."""
    x, lengths = inputs
    logits = model(x, lengths).float()
    mask = targets >= 0
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], targets[mask].float())


def stage1_loss(model: nn.Module, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """kim2017 stage 1: E1..E5 over the five expression-state frames of each sample (state = 0..4)."""
    frames = inputs  # (B, 5, 3, H, W)
    b, k = frames.shape[:2]
    states = torch.arange(k, device=frames.device).repeat(b)
    return model.stage1_loss(frames.flatten(0, 1), targets.repeat_interleave(k), states)["total"]


def train_stage(
    model: nn.Module,
    stage: dict[str, Any],
    stage_index: int,
    n_units: int,
    batcher: Batcher,
    loss_fn: LossFn,
    *,
    device: torch.device,
    seed: int,
    validate: Callable[[], float] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    plan: Plan | None = None,
) -> StageResult:
    """Run one stage. `validate` (validation selection only) scores the model after each epoch; the best
    epoch's weights are kept (ties: the earlier epoch). `plan` is told each epoch's batches first."""
    kind = stage["stage"]
    opt = make_optimizer(model, _stage_parameters(model, kind), stage)
    bs, epochs, total_steps = _stage_length(stage, n_units)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    by_iteration = stage.get("schedule_unit", "epoch") == "iteration"
    curve: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-math.inf, epochs, None)
    step = 0
    last_finite: float | None = None
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        order = batches(n_units, bs, gen)[: max(0, total_steps - step)]
        if plan is not None:
            plan(order)
        for idx in order:
            lr = lr_at(stage, step if by_iteration else epoch - 1)
            for g in opt.param_groups:
                g["lr"] = lr
            inputs, targets = batcher(idx, gen)
            with autocast(device):
                loss = loss_fn(model, inputs, targets)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise Diverged("training loss", kind, epoch, last_finite)
            last_finite = value
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += value * len(idx)
            count += len(idx)
            step += 1
        check_finite_weights(model, kind, epoch, last_finite)  # the last update can break the weights
        point: dict[str, Any] = {"epoch": epoch, "stage": kind, "loss": total / max(count, 1), "val_metric": None}
        if validate is not None:
            score = float(validate())
            point["val_metric"] = score
            if score > best[0]:
                best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        curve.append(point)
        if on_epoch is not None:
            on_epoch({**point, "epochs": epochs, "stage_index": stage_index})
    if validate is not None and best[2] is not None:
        return StageResult(curve, best[1], best[2])
    return StageResult(curve, epochs, None)
