"""Task records (docs/records.md, schema `ferbench.record/1`): where they live, how they are written
(atomically: a temp file in the same folder, fsync, os.replace) and when an existing one may be reused
(every fingerprint equal). `build_record` assembles one from a task's result plus the test labels, which only
the client holds."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.harness.spec import TaskSpec

SCHEMA = "ferbench.record/1"
FINGERPRINT_KEYS = ("data", "data_test", "protocol", "folds", "model", "code")


def record_path(out: str | Path, dataset: str, protocol: str, model: str, repeat: int, fold: int) -> Path:
    """`<out>/<dataset>/<protocol>/<model>/r<repeat:02d>-f<fold:02d>.json`."""
    return Path(out) / dataset / protocol / model / f"r{repeat:02d}-f{fold:02d}.json"


def write_record(path: Path, record: dict[str, Any]) -> Path:
    """Write atomically: a reader (or a rerun after kill -9) sees the old file, the new one, or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, allow_nan=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when absent or unreadable (an unreadable one is simply redone)."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA else None


def stale_reason(existing: dict[str, Any] | None, fingerprints: dict[str, str]) -> str | None:
    """None when the record may be reused; else why the task must run again ("no record", "data changed", ...)."""
    if existing is None:
        return "no record"
    old = existing.get("fingerprints") or {}
    changed = [k for k in FINGERPRINT_KEYS if old.get(k) != fingerprints.get(k)]
    if not changed:
        return None
    names = {"data": "data file", "data_test": "test data file", "protocol": "protocol", "folds": "fold list",
             "model": "model/recipe", "code": "ferbench code"}
    return ", ".join(names[k] for k in changed) + " changed"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def list_records(out: str | Path) -> list[Path]:
    """Every record file under a runs folder."""
    return sorted(p for p in Path(out).rglob("r*-f*.json") if not p.name.startswith("."))


def test_labels_of(plans: Any, test_path: Path) -> dict[str, Any]:
    """Test labels, held by the client only: sample id -> class index (classification), and the test file
    (AU labels are read per coded frame when a record is built)."""
    by_id: dict[str, int] = {}
    for plan in plans:
        te = plan.test_table
        for i, sid in enumerate(te.ids):
            by_id[sid] = int(plan.y_test[i])
    return {"by_id": by_id, "path": test_path}


def build_record(spec: TaskSpec, res: dict[str, Any], test_labels: dict[str, Any], protocol_meta: dict[str, Any],
                 config_common: dict[str, Any]) -> dict[str, Any]:
    """A record per docs/records.md from a task's result plus what only the client holds (test labels)."""
    if spec.task == "au-detection":
        from ferbench.harness.data import open_data

        d = open_data(test_labels["path"])
        cols = d.au_columns(spec.classes)
        aus = d.store._f["aus"]
        frames = np.asarray(res["unit_frames"], dtype=np.int64)
        labels = aus[np.sort(frames)][:, cols] if len(frames) else np.zeros((0, len(cols)), np.int8)
        order = np.argsort(np.argsort(frames))  # h5py wants increasing indices; put rows back in unit order
        labels = np.asarray(labels)[order].astype(int).tolist() if len(frames) else []
    else:
        labels = [test_labels["by_id"][sid] for sid in res["sample_ids"]]
    rec: dict[str, Any] = {
        "schema": SCHEMA,
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
        "curve": res["curve"],
        "recipe": {"name": spec.recipe_name, "stages": res["stages"]},
        "config": {**config_common, "model_options": res["model_options"], "index": spec.index,
                   "dtype": res["dtype"], "augment": [s.get("augment") for s in res["stages"]],
                   **({"fusion": res["extra"]} if res.get("extra") else {})},
        "fingerprints": dict(spec.fingerprints),
        "versions": res["versions"],
        "device": res["device"],
        "threads": res["threads"],
        "timings": res["timings"],
    }
    rec["scores"] = _scores(rec)
    rec["created"] = now_iso()
    return rec


def _scores(rec: dict[str, Any]) -> dict[str, Any]:
    from ferbench.metrics import trial_scores

    return trial_scores(rec)
