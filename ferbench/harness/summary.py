"""The end-of-run table: one row per model (mean +- std of the protocol's metric over trials, trials, time),
computed by `ferbench.metrics.summarize` from the records alone."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def summary_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Per model x protocol x dataset: metric, mean, std, trials, pooled value, total train seconds."""
    from ferbench.metrics import summarize
    from ferbench.records import read_record

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for p in paths:
        rec = read_record(p)
        groups[(rec["dataset"], rec.get("dataset_test"), rec["protocol"], rec["model"])].append(rec)
    rows = []
    for key in sorted(groups):
        s = summarize(groups[key])
        metric = s["metric"]
        stats = s["scores"].get(metric) or {"mean": None, "std": None, "trials": 0}
        rows.append({
            "model": s["model"], "protocol": s["protocol"], "dataset": s["dataset"], "metric": metric,
            "mean": stats["mean"], "std": stats["std"], "trials": s["trials"], "pooled": s["pooled"].get(metric),
            "selection": s["selection"], "train_s": (s.get("train_s") or {}).get("total"),
            "diverged": len(s.get("diverged") or []),
        })
    return rows


def format_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"
