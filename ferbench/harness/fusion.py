"""chao2016 fusion as harness entries (section 2.3 of that paper), over the four encoders it defines
(lstm-mean, lstm-last, tpool-mean, tpool-max), each trained on the task's training ids exactly as its own task
would train it:

- `fusion-svm` (feature level): the encoders' encodings concatenated -> linear SVM (LibLinear via
  scikit-learn's LinearSVC, one-vs-rest); C by grid search with GroupKFold over the *training subjects* only.
  Its "probabilities" are the softmax of the SVM's one-vs-rest scores (uncalibrated; argmax = the SVM's class).
- `fusion-avg` (decision level): the average of the four encoders' softmax probabilities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ferbench.harness.spec import FUSION_ENTRIES, FUSION_MEMBERS

#: C values searched (LibLinear's usual decade grid).
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


@dataclass
class Fused:
    probabilities: np.ndarray
    predictions: np.ndarray
    curve: list[dict[str, Any]]
    selected_epoch: int
    options: dict[str, Any]
    stages: list[dict[str, Any]]
    predict_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def _encodings(model: torch.nn.Module, src: Any, batch: int) -> np.ndarray:
    from ferbench.harness.predict import in_order
    from ferbench.harness.train import autocast

    was = model.training
    model.eval()
    out = []
    order = in_order(src.n, batch)
    src.plan(order)
    for idx in order:
        with autocast(next(model.parameters()).device):
            out.append(model.encode(*src.inputs(idx)).float().cpu())
    model.train(was)
    return torch.cat(out).numpy().astype(np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def run_fusion(ctx: Any) -> Fused:
    """Train the four encoders, then fuse them as the entry says."""
    from ferbench.harness.predict import predict
    from ferbench.harness.fit import index_of, fit

    spec, dev = ctx.spec, ctx.device
    level = FUSION_ENTRIES[spec.model]
    fitted = {}
    for k, member in enumerate(FUSION_MEMBERS):
        stages = [{key: v for key, v in s.items() if key != "member"} for s in spec.stages if s.get("member") == member]
        sel = stages[-1].get("selection") or "last-epoch"
        fitted[member] = fit(ctx, member, stages, sel if spec.val_ids else "last-epoch", member=0)
    t0 = time.perf_counter()
    curve = [{**p, "member": m} for m, f in fitted.items() for p in f.curve]
    extra: dict[str, Any] = {"members": list(FUSION_MEMBERS), "level": level,
                             "selected_epochs": {m: f.selected_epoch for m, f in fitted.items()}}
    bs = {m: int(f.stages[-1]["batch_size"]) for m, f in fitted.items()}
    sources = {m: ctx.clips(ctx.test, index_of(m), spec.test_ids) for m in FUSION_MEMBERS}
    if level == "decision":
        probs = np.mean([predict(f.model, sources[m].n, sources[m].inputs, bs[m], dev, plan=sources[m].plan)
                         for m, f in fitted.items()], axis=0)
        preds = probs.argmax(1)
    else:
        from sklearn.model_selection import GridSearchCV, GroupKFold
        from sklearn.svm import LinearSVC

        train_src = {m: ctx.clips(ctx.train, index_of(m), spec.train_ids) for m in FUSION_MEMBERS}
        x_train = np.concatenate([_encodings(f.model, train_src[m], bs[m]) for m, f in fitted.items()], 1)
        x_test = np.concatenate([_encodings(f.model, sources[m], bs[m]) for m, f in fitted.items()], 1)
        y = np.asarray(spec.y_train, dtype=np.int64)
        groups = np.asarray(spec.train_subjects)
        n_groups = len(set(groups.tolist()))
        svm = LinearSVC(max_iter=20000, random_state=spec.seed % (2**32))
        if n_groups >= 2 and len(set(y.tolist())) >= 2:
            grid = GridSearchCV(svm, {"C": list(C_GRID)}, cv=GroupKFold(n_splits=min(3, n_groups)), error_score=0.0)
            grid.fit(x_train, y, groups=groups)
            best_c, clf = float(grid.best_params_["C"]), grid.best_estimator_
            extra["grid"] = {str(c): float(s) for c, s in zip(C_GRID, grid.cv_results_["mean_test_score"])}
        else:
            best_c, clf = 1.0, svm.set_params(C=1.0).fit(x_train, y)
            extra["grid"] = None
        extra["C"] = best_c
        scores = np.full((len(x_test), len(spec.classes)), -np.inf)
        dec = clf.decision_function(x_test)
        if dec.ndim == 1:  # two classes seen in training
            dec = np.stack([-dec, dec], 1)
        scores[:, clf.classes_] = dec
        probs = _softmax(scores)
        preds = clf.classes_[dec.argmax(1)]
    predict_s = time.perf_counter() - t0
    return Fused(
        probabilities=np.asarray(probs, dtype=np.float32), predictions=np.asarray(preds, dtype=np.int64),
        curve=curve, selected_epoch=max(f.selected_epoch for f in fitted.values()),
        options={m: f.options for m, f in fitted.items()},
        stages=[{**s, "member": m} for m, f in fitted.items() for s in f.stages],
        predict_s=predict_s, extra=extra,
    )
