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
) -> np.ndarray:
    """Scores (n, outputs) float32 on the CPU: softmax (classes) or sigmoid (AUs) of the model's outputs."""
    was = model.training
    model.eval()
    out = []
    call = forward or (lambda m, inp: m(*inp))
    for start in range(0, n, max(1, batch_size)):
        idx = torch.arange(start, min(n, start + batch_size))
        with autocast(device):
            logits = call(model, inputs(idx)).float()
        probs = torch.softmax(logits, 1) if activation == "softmax" else torch.sigmoid(logits)
        out.append(probs.cpu())
    model.train(was)
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def selection_score(metric: str, y: np.ndarray, scores: np.ndarray) -> float:
    """The protocol's main metric on validation units (higher is better), with scikit-learn's functions."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    if scores.size == 0:
        return float("nan")
    if y.ndim == 2:  # AU detection: mean per-AU F1 at 0.5 over known labels
        pred = (scores >= 0.5).astype(np.int64)
        f1s = [f1_score(y[y[:, a] >= 0, a], pred[y[:, a] >= 0, a], zero_division=0) for a in range(y.shape[1]) if (y[:, a] >= 0).any()]
        return float(np.mean(f1s)) if f1s else 0.0
    pred = scores.argmax(1)
    if metric == "uf1":
        return float(f1_score(y, pred, average="macro", zero_division=0))
    if metric == "uar":
        return float(balanced_accuracy_score(y, pred))
    return float(accuracy_score(y, pred))
