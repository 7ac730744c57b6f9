"""Task records (docs/records.md, schema `ferbench.record/1`): where they live, how they are written
(atomically: a temp file in the same folder, fsync, os.replace) and when an existing one may be reused
(every fingerprint equal)."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
