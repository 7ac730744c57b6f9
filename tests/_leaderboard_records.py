"""Task records (docs/records.md, schema ferbench.record/1) built by tests, so metric and leaderboard tests
need no training: predictions are drawn at a chosen accuracy from a seeded generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ferbench import records
from ferbench.metrics import trial_scores


def fake_fingerprint(*parts: object) -> str:
    """A sha256 hex standing in for a real fingerprint (same parts -> same value)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()

EMOTIONS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
AUS = ["AU1", "AU2", "AU4", "AU6"]


def make_record(model: str, protocol: str, dataset: str, repeat: int, fold: int, *, rng: np.random.Generator,
                classes: list[str] | None = None, n: int = 12, hit: float = 0.7, task: str = "classification",
                metric: str | None = None, modes: list[str] | None = None, train_s: float = 1.5,
                selection: str = "last-epoch") -> dict:
    """One record with `n` test units; each prediction is right with probability `hit`."""
    classes = list(classes or (EMOTIONS if task == "classification" else AUS))
    k = len(classes)
    ids = [f"{dataset}-s{repeat}{fold}{i:03d}" for i in range(n)]
    if task == "classification":
        labels = [int(v) for v in rng.integers(0, k, n)]
        preds = [lab if rng.random() < hit else int((lab + rng.integers(1, k)) % k) for lab in labels]
        probs = [[1.0 / k] * k for _ in labels]
        metric = metric or "accuracy"
        metrics = ["accuracy", "uf1", "uar"]
    else:
        labels = [[int(v) for v in rng.choice([-1, 0, 1], size=k, p=[0.1, 0.5, 0.4])] for _ in range(n)]
        preds = [[(v if v != -1 else 0) if rng.random() < hit else 1 - max(v, 0) for v in row] for row in labels]
        probs = [[float(v) for v in row] for row in preds]
        ids = [f"{i}@{j}" for i, j in zip(ids, range(n))]
        metric = metric or "f1"
        metrics = ["f1"]
    rec = {
        "schema": "ferbench.record/1",
        "task_id": f"{model}/{protocol}/r{repeat}/f{fold}",
        "model": model, "protocol": protocol, "dataset": dataset, "dataset_test": dataset, "task": task,
        "repeat": repeat, "fold": fold, "seed": 1000 * repeat + fold, "classes": classes,
        "metric": metric, "metrics": metrics,
        "train_ids": ["train-a", "train-b"], "val_ids": [],
        "sample_ids": ids, "subjects": [f"S{i % 3}" for i in range(n)],
        "modes": modes if modes is not None else [""] * n,
        "labels": labels, "predictions": preds, "probabilities": probs,
        "selection": selection, "selected_epoch": 3,
        "curve": [{"epoch": 1, "stage": "end-to-end", "loss": 1.0, "val_metric": None}],
        "recipe": {"name": "quick", "stages": []}, "config": {},
        "fingerprints": {"data": fake_fingerprint(dataset), "data_test": fake_fingerprint(dataset),
                         "protocol": fake_fingerprint(protocol), "folds": fake_fingerprint(repeat, fold),
                         "model": fake_fingerprint(model), "code": fake_fingerprint("code")},
        "versions": {}, "device": "cpu", "threads": 1,
        "timings": {"load_s": 0.1, "train_s": train_s, "predict_s": 0.05},
        "created": "2026-11-30T08:00:00+00:00",
    }
    return rescore(rec)


def rescore(record: dict) -> dict:
    """Store the scores the record's own predictions give (what the harness does); returns the record."""
    record["scores"] = records.finite_or_none(trial_scores(record))
    return record


def write_record(runs: Path, record: dict) -> Path:
    """Write `record` where `ferbench evaluate` would, through the one record writer."""
    return records.write_record(runs, record)
