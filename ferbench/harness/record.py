"""Assembling a task record (docs/records.md) from a task's result plus the test labels, which only the
client holds. Where records live, how they are written and read: `ferbench.records`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferbench.harness.spec import TaskSpec
from ferbench.records import SCHEMA, finite_or_none, now_iso


def test_labels_of(plans: Any, test_path: Path) -> dict[str, Any]:
    """Test labels, held by the client only: sample id -> class index (classification), and the test file
    (AU labels are read per coded frame when a record is built)."""
    by_id: dict[str, int] = {}
    for plan in plans:
        te = plan.test_table
        for i, sid in enumerate(te.ids):
            by_id[sid] = int(plan.y_test[i])
    return {"by_id": by_id, "path": test_path}


def _unit_labels(spec: TaskSpec, res: dict[str, Any], test_labels: dict[str, Any]) -> list[Any]:
    """The test units' labels, in unit order: a class index per clip, or (AU detection) the AU row of each
    scored frame, read from the test file."""
    if spec.task != "au-detection":
        return [test_labels["by_id"][sid] for sid in res["sample_ids"]]
    from ferbench.harness.data import open_data

    d = open_data(test_labels["path"])
    cols = d.au_columns(spec.classes)
    frames = np.asarray(res["unit_frames"], dtype=np.int64)
    if not len(frames):
        return []
    rows = d.store.per_frame("aus", np.sort(frames))[:, cols]
    order = np.argsort(np.argsort(frames))  # h5py wants increasing indices; put rows back in unit order
    return np.asarray(rows)[order].astype(int).tolist()


def build_record(spec: TaskSpec, res: dict[str, Any], test_labels: dict[str, Any], protocol_meta: dict[str, Any],
                 config_common: dict[str, Any]) -> dict[str, Any]:
    """A record per docs/records.md from a task's result plus what only the client holds (test labels)."""
    diverged = res.get("status") == "diverged"
    labels = [] if diverged else _unit_labels(spec, res, test_labels)
    rec: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "diverged" if diverged else "ok",
        "task_id": spec.task_id,
        "model": spec.model,
        "protocol": spec.protocol,
        "dataset": spec.dataset,
        "dataset_test": spec.dataset_test,
        "task": spec.task,
        "repeat": spec.repeat,
        "fold": spec.fold,
        "seed": spec.seed,
        "classes": list(spec.classes),
        "metric": protocol_meta["metric"],
        "metrics": protocol_meta["metrics"],
        "train_ids": list(spec.train_ids),
        "val_ids": list(spec.val_ids),
        "sample_ids": res["sample_ids"],
        "subjects": res["subjects"],
        "modes": res["modes"],
        "labels": labels,
        "predictions": res["predictions"],
        "probabilities": res["probabilities"],
        "selection": spec.selection,
        "selected_epoch": res["selected_epoch"],
        "curve": finite_or_none(res["curve"]),
        "recipe": {"name": spec.recipe_name, "stages": res["stages"]},
        "config": {**config_common, "model_options": res["model_options"], "index": spec.index,
                   "model_source": spec.model_source or "ferbench",
                   **({"model_files": dict(spec.model_files)} if spec.model_files else {}),
                   "dtype": res["dtype"], "augment": [s.get("augment") for s in res["stages"]],
                   **{k: res[k] for k in ("data_mode", "memory_budget") if k in res},
                   **_extra(res.get("extra") or {})},
        "fingerprints": dict(spec.fingerprints),
        "versions": res["versions"],
        "device": res["device"],
        "threads": res["threads"],
        "timings": res["timings"],
    }
    from ferbench.metrics import trial_scores

    if diverged:
        rec["divergence"] = finite_or_none(res["divergence"])
    rec["scores"] = {} if diverged else finite_or_none(trial_scores(rec))
    rec["created"] = now_iso()
    return rec


def _extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A task's extra result in the record's config: a transfer task's `pretrain` (its source training), a
    fusion's members and SVM settings under `fusion`."""
    extra = dict(extra)
    pretrain = extra.pop("pretrain", None)
    return ({"pretrain": finite_or_none(pretrain)} if pretrain else {}) | ({"fusion": extra} if extra else {})
