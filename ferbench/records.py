"""Task records: the one contract between `evaluate`, resume, the leaderboard and any outside program.

One schema (`SCHEMA`, fields in docs/records.md), one key (`record_path`), one writer (`write_record`), one
validating reader (`read_record` / `scan_records`), one lock per runs folder (`RunsLock`). Nothing else in
ferbench reads or writes a record file.

- **Key.** `<runs>/<dataset>/<protocol>/<model>/<key>/r<repeat:02d>-f<fold:02d>.json`, where `<key>` is short
  hashes of the data file(s), the protocol and the model + recipe configuration. Two prepared files, an edited
  protocol or another recipe evaluated into one runs folder keep their records side by side; a rerun of the
  same configuration finds exactly its own. (The code fingerprint is not in the key: a newer ferbench redoes a
  task in place and says why.)
- **Reader.** A record is used only when it is strict JSON of this schema, every field has its type, the lists
  agree in length, its predictions follow from its probabilities, the scores it stores equal what its own
  labels and predictions give, no test unit is also a training id, and the path it lies at is the key of what
  it holds (a record copied from another run is refused); a link, or a file over `MAX_RECORD_BYTES` (checked
  before reading), is refused too. Anything else is a `RecordError` naming the file and the reason, never a
  silent repair.
- **Prune** removes only the records of older runs (and, when asked, refused regular files); never a nested
  runs folder's files, never a link (docs/records.md, "Pruning").

>>> from ferbench.records import record_key
>>> record_key({"data": "a" * 64, "data_test": "a" * 64, "protocol": "b" * 64, "model": "c" * 64})
'daaaaaaaaaa-pbbbbbbbbbb-mcccccccccc'
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ferbench.atomic import dumps_strict, loads_strict, atomic_write
from ferbench.errors import FerbenchError
from ferbench.lock import WriteLock

SCHEMA = "ferbench.record/1"
FINGERPRINT_KEYS = ("data", "data_test", "protocol", "folds", "model", "code")
_FINGERPRINT_NAMES = {"data": "data file", "data_test": "test data file", "protocol": "protocol",
                      "folds": "fold list", "model": "model/recipe", "code": "ferbench code"}
RECORD_NAME = re.compile(r"^r(\d{2,})-f(\d{2,})\.json$")
KEY_NAME = re.compile(r"^d[0-9a-f]{10}-p[0-9a-f]{10}-m[0-9a-f]{10}$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]{0,79}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
LOCK_NAME = ".ferbench.lock"
#: A record larger than this is refused before it is read (estimated: a BP4D test fold of ~50k frame-level AU
#: units, ~500 bytes each as written, is ~25 MB).
MAX_RECORD_BYTES = 256 * 2**20
#: Scores are recomputed and must agree with the stored ones to this relative tolerance (float round trips).
SCORE_TOLERANCE = 1e-9

_STR, _INT, _LIST, _DICT = "a string", "an integer", "a list", "an object"
#: field -> what it must be (the reader's type check; docs/records.md is the prose version).
FIELDS: dict[str, str] = {
    "schema": _STR, "task_id": _STR, "model": _STR, "protocol": _STR, "dataset": _STR, "dataset_test": _STR,
    "task": _STR, "repeat": _INT, "fold": _INT, "seed": _INT, "classes": _LIST, "metric": _STR, "metrics": _LIST,
    "train_ids": _LIST, "val_ids": _LIST, "sample_ids": _LIST, "subjects": _LIST, "modes": _LIST, "labels": _LIST,
    "predictions": _LIST, "probabilities": _LIST, "selection": _STR, "selected_epoch": _INT, "curve": _LIST,
    "recipe": _DICT, "config": _DICT, "fingerprints": _DICT, "versions": _DICT, "device": _STR, "threads": _INT,
    "timings": _DICT, "scores": _DICT, "created": _STR,
}


class RecordError(FerbenchError):
    """A record file that cannot be used, with the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


# -- names and keys -----------------------------------------------------------------------------------------
def check_slug(value: Any, what: str) -> str:
    """A dataset, protocol or model name that becomes a folder name: letters, digits, `+ . _ -`, starting
    with a letter or digit (so never `..`, `/x` or an empty string)."""
    if not isinstance(value, str) or not _SLUG.match(value):
        raise FerbenchError(f"{what} name {value!r} cannot name a folder of the runs: use 1-80 letters, digits, "
                            "'+', '.', '_' or '-', starting with a letter or digit")
    return value


def run_label(dataset: str, dataset_test: str | None) -> str:
    """`ck+`, or `casme2-to-mmi` for a record trained on one dataset and tested on another."""
    return dataset if not dataset_test or dataset_test == dataset else f"{dataset}-to-{dataset_test}"


def record_key(fingerprints: dict[str, str]) -> str:
    """`d<data>-p<protocol>-m<model>`: 10 hex digits of each (the data part covers the test file too)."""
    data, test = fingerprints["data"], fingerprints.get("data_test") or fingerprints["data"]
    d = data if test == data else hashlib.sha256(f"{data}|{test}".encode()).hexdigest()
    return f"d{d[:10]}-p{fingerprints['protocol'][:10]}-m{fingerprints['model'][:10]}"


def record_path(out: str | Path, *, dataset: str, dataset_test: str | None, protocol: str, model: str, repeat: int,
                fold: int, fingerprints: dict[str, str]) -> Path:
    """Where the record of this task lives under `out`; refuses names that would leave `out`."""
    path = _key_path(out, dataset=dataset, dataset_test=dataset_test, protocol=protocol, model=model,
                     repeat=repeat, fold=fold, fingerprints=fingerprints)
    if not _inside(path, out):  # a symlinked folder pointing elsewhere
        raise FerbenchError(f"{path}: resolves outside the runs folder {out}; refusing to write there")
    return path


def _key_path(out: str | Path, *, dataset: str, dataset_test: str | None, protocol: str, model: str, repeat: int,
              fold: int, fingerprints: dict[str, str]) -> Path:
    """The key path under `out`, names checked, links not resolved (the reader checks those its own way)."""
    for value, what in ((dataset, "dataset"), (dataset_test or dataset, "test dataset"), (protocol, "protocol"),
                        (model, "model")):
        check_slug(value, what)
    return (Path(out) / run_label(dataset, dataset_test) / protocol / model / record_key(fingerprints)
            / f"r{int(repeat):02d}-f{int(fold):02d}.json")


def _inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` lies inside `folder`, links resolved."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def path_of(out: str | Path, record: dict[str, Any], writing: bool = True) -> Path:
    """The key path of `record` under `out`; for `writing`, refused when it resolves outside `out`."""
    where = dict(dataset=record["dataset"], dataset_test=record.get("dataset_test"), protocol=record["protocol"],
                 model=record["model"], repeat=record["repeat"], fold=record["fold"],
                 fingerprints=record["fingerprints"])
    return record_path(out, **where) if writing else _key_path(out, **where)


def stale_reason(existing: dict[str, Any] | None, fingerprints: dict[str, str]) -> str | None:
    """None when the record may be reused; else why the task must run again ("no record", "code changed")."""
    if existing is None:
        return "no record"
    old = existing.get("fingerprints") or {}
    changed = [k for k in FINGERPRINT_KEYS if old.get(k) != fingerprints.get(k)]
    if not changed:
        return None
    return ", ".join(_FINGERPRINT_NAMES[k] for k in changed) + " changed"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- writing ------------------------------------------------------------------------------------------------
def finite_or_none(value: Any) -> Any:
    """NaN / inf -> None, recursively (an undefined score is null in strict JSON, never a bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_record(out: str | Path, record: dict[str, Any]) -> Path:
    """Check `record` as a reader would, then write it atomically at its key under `out`."""
    path = path_of(out, record)
    check_record(record, path)
    text = dumps_strict(record) + "\n"
    try:
        atomic_write(path, text)
    except OSError as e:  # disk full, quota, file-size limit: the earlier records are intact (atomic writes)
        raise FerbenchError(f"{path}: could not write the task record ({e.strerror or e}); the records written "
                            "before it are intact: free space and run the same command again to resume") from None
    return path


# -- reading ------------------------------------------------------------------------------------------------
def read_record(path: str | Path, out: str | Path | None = None,
                max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """The record at `path`, validated (see the module docstring); RecordError otherwise. With `out` (the runs
    folder it was found in) the path must also be the record's own key, a file of its own (not a link) inside
    `out`. A file over `max_bytes` is refused before it is read."""
    path = Path(path)
    if out is not None:
        _check_place(path, Path(out))
    text = _read_text(path, max_bytes)
    try:
        record = loads_strict(text)
    except ValueError as e:
        raise RecordError(path, f"not valid strict JSON ({e}); expected a ferbench task record") from None
    check_record(record, path)
    if out is not None:
        try:
            expected = path_of(out, record, writing=False)
        except FerbenchError as e:  # a name that cannot be a folder of the runs
            raise RecordError(path, f"{e}; not read") from None
        if expected.resolve() != path.resolve():
            raise RecordError(path, f"holds the task {record['task_id']} of another key or folder (its own path is "
                                    f"{expected}); a record copied from another run is not used")
    return record


def _check_place(path: Path, out: Path) -> None:
    """A record read from a runs folder is a file of its own inside it: a link is not followed."""
    if path.is_symlink():
        raise RecordError(path, f"is a link to {os.readlink(path)}; links in a runs folder are not read (a record "
                                "is a file of its own)")
    if not _inside(path, out):
        raise RecordError(path, f"lies outside the runs folder {out} (at {path.resolve()}); not read")


def _read_text(path: Path, max_bytes: int) -> str:
    """The file's text, its size checked before anything is read (a huge file is never loaded)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise RecordError(path, f"{size} bytes, larger than a task record may be ({max_bytes} bytes); "
                                        "not read")
            data = f.read(size + 1)  # one byte more shows a file still growing
    except OSError as e:
        raise RecordError(path, f"unreadable ({e.strerror or e})") from None
    if len(data) > size:
        raise RecordError(path, "grew while it was read (still being written?); not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(path, "not UTF-8 text (expected a ferbench task record)") from None


def check_record(record: Any, path: str | Path) -> dict[str, Any]:
    """Raise RecordError naming `path` unless `record` is a complete, self-consistent record."""
    from ferbench.metrics import check_lists, trial_scores

    def refuse(reason: str) -> RecordError:
        return RecordError(path, reason)

    if not isinstance(record, dict):
        raise refuse("expected a JSON object (a ferbench task record)")
    if record.get("schema") != SCHEMA:
        raise refuse(f"expected schema {SCHEMA!r}, found {record.get('schema')!r}")
    missing = [k for k in FIELDS if k not in record]
    if missing:
        raise refuse(f"lacks field(s) {', '.join(missing)}")
    for key, kind in FIELDS.items():
        if not _is(record[key], kind):
            raise refuse(f"field {key!r} must be {kind}, found {type(record[key]).__name__} {_short(record[key])}")
    for key in ("classes", "metrics", "train_ids", "val_ids", "sample_ids", "subjects", "modes"):
        if not all(isinstance(v, str) for v in record[key]):
            raise refuse(f"field {key!r} must be a list of strings")
    status = record.get("status", "ok")
    if status not in ("ok", "diverged"):
        raise refuse(f"field 'status' must be 'ok' or 'diverged', found {_short(status)}")
    fps = record["fingerprints"]
    bad = [k for k in FINGERPRINT_KEYS if not (isinstance(fps.get(k), str) and _HEX.match(fps[k]))]
    if bad:
        raise refuse(f"fingerprint(s) {', '.join(bad)} missing or not sha256 hex")
    n = len(record["sample_ids"])
    for key in ("labels", "predictions", "probabilities", "subjects", "modes"):
        if len(record[key]) != n:
            raise refuse(f"field {key!r} has {len(record[key])} entries for {n} test units")
    if record["task_id"] != f"{record['model']}/{record['protocol']}/r{record['repeat']}/f{record['fold']}":
        raise refuse(f"task_id {record['task_id']!r} does not match its model, protocol, repeat and fold")
    if record["dataset_test"] == record["dataset"]:  # one file: a test sample may never be trained on
        tested = {u.rsplit("@", 1)[0] if record["task"] == "au-detection" else u for u in record["sample_ids"]}
        leaked = tested & (set(record["train_ids"]) | set(record["val_ids"]))
        if leaked:
            raise refuse(f"test sample {sorted(leaked)[0]!r} is also a training/validation id")
    if status == "diverged":
        _check_divergence(record, refuse)
        return record
    try:
        check_lists(record, str(path))
    except FerbenchError as e:
        raise refuse(str(e).removeprefix(f"{path}: ")) from None
    _check_probabilities(record, refuse)
    recomputed = finite_or_none(trial_scores(record))
    stored = record["scores"]
    for name, value in recomputed.items():
        if not _same(stored.get(name, "missing"), value):
            raise refuse(f"stored score {name}={_short(stored.get(name, 'missing'))} disagrees with its own "
                         f"predictions ({_short(value)}); the record was edited or damaged")
    return record


def _check_divergence(record: dict[str, Any], refuse: Any) -> None:
    """A diverged task has no predictions and no scores, and says where it went non-finite."""
    d = record.get("divergence")
    if not isinstance(d, dict) or not isinstance(d.get("what"), str) or not isinstance(d.get("stage"), str) \
            or not _is(d.get("epoch"), _INT) or not (d.get("last_finite_loss") is None
                                                     or isinstance(d.get("last_finite_loss"), (int, float))):
        raise refuse("a diverged record needs 'divergence' {what, stage, epoch, last_finite_loss}")
    if record["sample_ids"] or record["predictions"] or record["scores"]:
        raise refuse("a diverged record holds no predictions and no scores")


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _LIST: list, _DICT: dict}[kind])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not isinstance(a, (int, float)) or isinstance(a, bool):
        return False
    return math.isclose(float(a), float(b), rel_tol=SCORE_TOLERANCE, abs_tol=1e-12)


def _check_probabilities(record: dict[str, Any], refuse: Any) -> None:
    """Each unit's probabilities: one finite number in [0, 1] per class, and the prediction follows from them
    (argmax for classes, >= 0.5 per AU)."""
    k = len(record["classes"])
    for i, (row, pred) in enumerate(zip(record["probabilities"], record["predictions"])):
        if not isinstance(row, list) or len(row) != k or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in row):
            raise refuse(f"probabilities of unit {i} must be {k} numbers in [0, 1]")
        if record["task"] == "classification":
            if row[pred] < max(row):
                raise refuse(f"prediction of unit {i} ({pred}) is not the argmax of its probabilities")
        elif [int(v >= 0.5) for v in row] != list(pred):
            raise refuse(f"AU predictions of unit {i} do not follow from its probabilities (threshold 0.5)")


# -- a runs folder ------------------------------------------------------------------------------------------
@dataclass
class RecordScan:
    """What a runs folder holds: usable records (path, record) and refused files (path, reason)."""

    runs: Path
    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)


def check_runs_folder(runs: str | Path) -> Path:
    """`runs` as a Path when it is a folder; else one line saying what it is (nothing is created)."""
    runs = Path(runs)
    if runs.is_dir():
        return runs
    what = "is a file, not a folder" if runs.exists() else "no such folder"
    raise FerbenchError(f"{runs}: {what} (expected a runs folder: the task records written by ferbench evaluate)")


def _walk(runs: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files named like a record under `runs` (temp files, fold lists and other JSON are not), and what the walk
    does not enter, with the reason: record-named links, folders linked outside `runs`, unreadable folders."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def unreadable(e: OSError) -> None:
        skipped.append((Path(e.filename), f"folder not readable ({e.strerror or e}); its records are not read"))

    for folder, dirs, names in os.walk(runs, onerror=unreadable):  # links to folders are listed, not entered
        base = Path(folder)
        for d in dirs:
            if (base / d).is_symlink() and not _inside(base / d, runs):
                skipped.append((base / d, f"a folder linked to {os.readlink(base / d)}, outside the runs folder; "
                                          "links are not followed, so its records are not read"))
        for n in names:
            p = base / n
            if RECORD_NAME.match(n) and (p.is_symlink() or p.is_file()):
                files.append(p)
    return sorted(files), skipped


def scan_records(runs: str | Path, max_bytes: int = MAX_RECORD_BYTES) -> RecordScan:
    """Read every record under `runs`; a bad one is refused with its reason and the others are still used."""
    runs = check_runs_folder(runs)
    files, skipped = _walk(runs)
    scan = RecordScan(runs, refused=skipped)
    for p in files:
        try:
            scan.records.append((p, read_record(p, runs, max_bytes)))
        except RecordError as e:
            scan.refused.append((p, e.reason))
    scan.refused.sort()
    return scan


class RunsLock(WriteLock):
    """`<runs>/.ferbench.lock`: one `ferbench evaluate` (or prune) writes a runs folder at a time; a lock
    left by a killed run is taken over (see `ferbench.lock`)."""

    def __init__(self, runs: str | Path, what: str = "ferbench evaluate"):
        runs = Path(runs)
        super().__init__(runs / LOCK_NAME, runs, what)

    def acquire(self) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        super().acquire()


# -- prune --------------------------------------------------------------------------------------------------
@dataclass
class PrunePlan:
    """What `prune` removes from a runs folder and what it leaves, with the reasons."""

    runs: Path
    older: list[Path] = field(default_factory=list)  # records of runs older than the one kept: removed
    refused: list[tuple[Path, str]] = field(default_factory=list)  # refused files (path, reason)
    removable: list[Path] = field(default_factory=list)  # refused regular files inside the runs folder
    remove_refused: bool = False  # remove `removable` too (asked for explicitly)
    nested: list[Path] = field(default_factory=list)  # runs folders of their own inside `runs`: never touched
    kept: list[tuple[str, str]] = field(default_factory=list)  # (run, why it was kept) where there was a choice

    @property
    def removed(self) -> list[Path]:
        return self.older + (self.removable if self.remove_refused else [])


def _nested_runs(runs: Path, scan: RecordScan) -> list[Path]:
    """Folders inside `runs` that are runs folders of their own: they hold a runs lock, or a record refused here
    is valid at its key under one of them (`<nested>/<dataset>/<protocol>/<model>/<key>/<file>`)."""
    found = {p.parent for p in runs.rglob(LOCK_NAME) if p.parent != runs}
    for p, _ in scan.refused:
        if len(p.relative_to(runs).parts) > 5 and not any(p.is_relative_to(n) for n in found):
            try:
                read_record(p, p.parents[4])
                found.add(p.parents[4])
            except RecordError:
                pass
    return sorted(n for n in found if not any(n != m and n.is_relative_to(m) for m in found))


def _run_time(records: list[dict[str, Any]], key: str) -> tuple[str, str]:
    return max(r["created"] for r in records), key


def _keep(runs_of_model: dict[str, list[dict[str, Any]]]) -> tuple[list[str], str]:
    """The runs (keys) of one dataset/protocol/model that prune keeps, and why: the latest run with finite
    results, and any newer run in which every task diverged (the latest word on the model, kept too)."""
    order = sorted(runs_of_model, key=lambda k: _run_time(runs_of_model[k], k))
    finite = [k for k in order if any(r.get("status", "ok") == "ok" for r in runs_of_model[k])]
    if not finite or finite[-1] == order[-1]:
        return [order[-1]], "the latest run" + ("" if finite else " (every run of this model diverged)")
    newer = order[order.index(finite[-1]) + 1:]
    return [finite[-1], *newer], (f"the latest run with finite results; the newer run(s) {', '.join(newer)} "
                                  "diverged in every task and are kept too")


def plan_prune(runs: str | Path, remove_refused: bool = False) -> PrunePlan:
    """What `prune` would do (reads only)."""
    runs = check_runs_folder(runs)
    scan = scan_records(runs)
    plan = PrunePlan(runs, remove_refused=remove_refused, nested=_nested_runs(runs, scan))
    ours = lambda p: not any(p.is_relative_to(n) for n in plan.nested)  # noqa: E731
    groups: dict[tuple[str, str, str], dict[str, list[tuple[Path, dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(list))
    for p, r in scan.records:
        if ours(p):
            groups[(run_label(r["dataset"], r["dataset_test"]), r["protocol"], r["model"])][p.parent.name].append(
                (p, r))
    for group, by_key in sorted(groups.items()):
        keep, why = _keep({k: [r for _, r in recs] for k, recs in by_key.items()})
        if len(by_key) > 1:
            plan.kept += [("/".join((*group, k)), why) for k in keep]
        plan.older += sorted(p for k, recs in by_key.items() if k not in keep for p, _ in recs)
    plan.refused = [(p, why) for p, why in scan.refused if ours(p)]
    plan.removable = [p for p, _ in plan.refused if p.is_file() and not p.is_symlink() and _inside(p, runs)]
    return plan


def prune(runs: str | Path, dry_run: bool = False, remove_refused: bool = False,
          show: Callable[[PrunePlan], None] | None = None) -> PrunePlan:
    """Remove what a leaderboard would not use from `runs`: for each dataset, protocol and model, the records of
    every run but the latest with finite results (and newer fully diverged ones); with `remove_refused`, the
    refused record files too (never a link, a file outside `runs`, or anything inside a nested runs folder).
    `show` sees the plan before anything is removed. A dry run takes no lock and writes nothing."""
    runs = check_runs_folder(runs)
    if dry_run:
        return plan_prune(runs, remove_refused)
    with RunsLock(runs, "ferbench runs prune"):
        plan = plan_prune(runs, remove_refused)
        if show is not None:
            show(plan)
        for p in plan.removed:
            p.unlink()
            for folder in (p.parent, p.parent.parent):  # the key folder, then the model folder, once empty
                if folder != runs and not folder.is_symlink() and not any(folder.iterdir()):
                    folder.rmdir()
    return plan
