"""Find and read task records under a runs folder (docs/records.md). Reads JSON only: no harness import."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ferbench.errors import FerbenchError
from ferbench.metrics import check_record

RECORD_NAME = re.compile(r"^r\d+-f\d+\.json$")  # <runs>/<dataset>/<protocol>/<model>/rRR-fFF.json


def record_paths(runs: Path) -> list[Path]:
    """Every record file under `runs` (other JSON, temp files and fold lists are not records)."""
    if not runs.is_dir():
        raise FerbenchError(f"{runs}: no such folder (expected the task records written by ferbench evaluate)")
    return sorted(p for p in runs.rglob("*.json") if RECORD_NAME.match(p.name) and p.is_file())


def read_record(path: Path) -> dict:
    """One record, checked; any problem is one line naming the file."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FerbenchError(f"{path}: not a UTF-8 JSON task record") from None
    except json.JSONDecodeError as e:
        raise FerbenchError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); "
                            "expected a ferbench task record") from None
    return check_record(record, str(path))


def load_records(runs: str | Path, dataset: str | None = None, protocol: str | None = None) -> list[tuple[Path, dict]]:
    """(path, record) for every record under `runs` matching the filters; refuses an empty result."""
    runs = Path(runs)
    paths = record_paths(runs)
    if not paths:
        raise FerbenchError(f"{runs}: no task records (r<repeat>-f<fold>.json) found; run ferbench evaluate first")
    loaded = [(p, read_record(p)) for p in paths]
    kept = [(p, r) for p, r in loaded
            if (dataset is None or dataset in (r["dataset"], section_label(r)))
            and (protocol is None or r["protocol"] == protocol)]
    if not kept:
        found = sorted({f"{section_label(r)}/{r['protocol']}" for _, r in loaded})
        raise FerbenchError(f"{runs}: no task records for dataset {dataset or 'any'} / protocol {protocol or 'any'} "
                            f"(found: {', '.join(found)})")
    return kept


def section_label(record: dict) -> str:
    """`ck+`, or `casme2-to-mmi` for a cross-dataset record (the records folder's naming)."""
    test = record.get("dataset_test") or record["dataset"]
    return record["dataset"] if test == record["dataset"] else f"{record['dataset']}-to-{test}"
