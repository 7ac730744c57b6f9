"""Prediction in eval mode (batched, autocast on CUDA) and the selection metric on validation units."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ferbench.harness.train import autocast


@torch.no_grad()
def predict(
    model: nn.Module, n: int, inputs: Callable[[torch.Tensor], Any], batch_size: int, device: torch.device,
    activation: str = "softmax", forward: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    plan: Callable[[list[torch.Tensor]], None] | None = None,
) -> np.ndarray:
    """Scores (n, outputs) float32 on the CPU: softmax (classes) or sigmoid (AUs) of the model's outputs;
    `plan` is told the batches first (a streamed source reads them ahead)."""
    was = model.training
    model.eval()
    out = []
    call = forward or (lambda m, inp: m(*inp))
    order = in_order(n, batch_size)
    if plan is not None:
        plan(order)
    for idx in order:
        with autocast(device):
            logits = call(model, inputs(idx)).float()
        probs = torch.softmax(logits, 1) if activation == "softmax" else torch.sigmoid(logits)
        out.append(probs.cpu())
    model.train(was)
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def in_order(n: int, batch_size: int) -> list[torch.Tensor]:
    """range(n) in batches of `batch_size` (prediction's and encoding's order)."""
    return [torch.arange(a, min(n, a + batch_size)) for a in range(0, n, max(1, batch_size))]


def selection_score(metric: str, y: np.ndarray, scores: np.ndarray) -> float:
    """The protocol's main metric on validation units (higher is better), scored by `ferbench.metrics`'s
    functions so selection and reporting share one convention."""
    from ferbench import metrics

    if scores.size == 0:
        return float("nan")
    if y.ndim == 2:  # AU detection: mean per-AU F1 at 0.5 over coded labels
        value = metrics.au_scores(y, (scores >= 0.5).astype(np.int64), [str(i) for i in range(y.shape[1])])["f1"]
        return 0.0 if np.isnan(value) else float(value)
    scored = metrics.classification_scores(y, scores.argmax(1))
    return float(scored[metric])  # protocols name only metrics ferbench computes (checked when loaded)
