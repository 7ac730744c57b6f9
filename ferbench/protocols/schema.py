"""Protocol files: where a `protocols/*.yaml` is found, safe-loaded and checked field by field.

A protocol is data, not code: which dataset(s) it applies to, the class subset, a sample filter, the splitter
and its parameters, repeats, the seed, the metrics and the paper/table it comes from. Every mistake in a file
is a `FerbenchError` naming the file and the field, so a user who copies a bundled file to make their own
sees exactly what to fix.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferbench.errors import FerbenchError

TASKS = ("classification", "au-detection")
#: Sample fields a filter may test (`mode.<key>` tests one key of the sample's mode dict).
FILTER_FIELDS = ("split",)
_REQUIRED = ("name", "description", "datasets", "task", "splitter", "metric", "paper", "table")
_OPTIONAL: dict[str, Any] = {
    "classes": None, "filter": {}, "params": {}, "repeats": 1, "seed": 0, "validation": None,
    "metrics": None, "test_dataset": None, "class_map": None, "aus": None,
    "caveat": None, "pretrain": None, "metric_names": None,
}


@dataclass(frozen=True)
class Protocol:
    """One protocol file, checked. `fingerprint` hashes the file's bytes (any edit changes it)."""

    name: str
    path: Path
    description: str
    datasets: tuple[str, ...]
    task: str
    classes: tuple[str, ...] | None
    filter: dict[str, dict[str, tuple[str, ...]]]
    splitter: str
    params: dict[str, Any]
    repeats: int
    seed: int
    validation: dict[str, Any] | None
    metric: str
    metrics: tuple[str, ...]
    paper: str
    table: str
    test_dataset: str | None = None
    class_map: dict[str, str] | None = None
    aus: tuple[int, ...] | None = None  # au-detection: the AUs scored (None: every AU of the file)
    caveat: str | None = None  # what a reader of its results must know (shown on the leaderboard)
    #: A transfer protocol's source dataset: each task first trains the model on every labelled sample of that
    #: file, then copies and freezes the model's transfer layers (its card's `transfer`) and trains the rest on
    #: the fold's training subjects (kim2017 section 3.3).
    pretrain: str | None = None
    #: How the field names a metric on this protocol's tables (DFEW: accuracy is "WAR", uar "UAR"); display only.
    metric_names: dict[str, str] | None = None
    fingerprint: str = field(default="", compare=False)

    @property
    def validation_fraction(self) -> float | None:
        return None if self.validation is None else float(self.validation["fraction"])


def bundled_dir() -> Path:
    """The folder of bundled protocol files.

    A source checkout (the package beside pyproject.toml) uses its own top-level `protocols/`, so edits there
    take effect at once; an installed wheel carries the same files as the package `ferbench._protocols`.
    """
    import ferbench

    root = Path(ferbench.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "protocols").is_dir():
        return root / "protocols"
    try:
        import ferbench._protocols as bundled

        for where in map(Path, bundled.__path__):
            if any(where.glob("*.yaml")):
                return where
    except ImportError:
        pass
    raise FerbenchError(f"the bundled protocol files are missing (looked in {root / 'protocols'} and the "
                        f"package ferbench._protocols); reinstall ferbench")


def _bundled_files() -> list[Path]:
    return sorted(bundled_dir().glob("*.yaml"))


def list_protocols() -> list[Protocol]:
    """Every bundled protocol, sorted by name."""
    return sorted((_load_file(p) for p in _bundled_files()), key=lambda p: p.name)


def load_protocol(name_or_path: str | Path | Protocol) -> Protocol:
    """A bundled protocol by name (`10fold`) or any protocol file by path (`my/10fold-small.yaml`)."""
    if isinstance(name_or_path, Protocol):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise FerbenchError(f"protocol must be a bundled name or the path of a .yaml file; got {name_or_path!r}")
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    # A path must look like one (a folder part or a .yaml suffix): a file named `10fold` in the current folder
    # never shadows the bundled protocol of that name.
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        if not as_path.is_file():
            raise FerbenchError(f"{as_path}: protocol file not found (expected a YAML protocol file or a bundled name)")
        return _load_file(as_path)
    for p in _bundled_files():
        if p.stem == text:
            return _load_file(p)
    names = ", ".join(p.stem for p in _bundled_files())
    local = f"; to use the file {text!r} here, write ./{text}" if as_path.is_file() else ""
    raise FerbenchError(f"unknown protocol '{text}'; choose one of: {names} (or give the path of a .yaml file){local}")


# ------------------------------------------------------------------------------------------------ checking
#: Repeats of a whole protocol, at most (kim2017 reran its protocol 20 times; 100 leaves room, 100000 is a typo).
MAX_REPEATS = 100


class _Fields:
    """Field readers that raise one line naming the file and the field."""

    def __init__(self, path: Path, raw: dict[str, Any]):
        self.path, self.raw = path, raw

    def fail(self, key: str, expected: str) -> FerbenchError:
        got = self.raw.get(key)
        return FerbenchError(f"{self.path}: field '{key}': expected {expected}, got {got!r}")

    def text(self, key: str) -> str:
        v = self.raw.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(key, "a non-empty string")
        return v.strip()

    def names(self, key: str, allow_none: bool = False) -> tuple[str, ...] | None:
        v = self.raw.get(key)
        if v is None and allow_none:
            return None
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(x, (str, int)) and str(x).strip() for x in v):
            raise self.fail(key, "a non-empty list of names" + (" or null" if allow_none else ""))
        out = tuple(str(x).strip() for x in v)
        if len(set(out)) != len(out):
            raise self.fail(key, "names without repeats")
        return out

    def integer(self, key: str, minimum: int, maximum: int | None = None) -> int:
        v = self.raw.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum or (maximum is not None and v > maximum):
            raise self.fail(key, f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
        return v


def _check_filter(f: _Fields, datasets: tuple[str, ...]) -> dict[str, dict[str, tuple[str, ...]]]:
    raw = f.raw.get("filter")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise f.fail("filter", "a mapping dataset -> {field: [allowed values]} (fields: split, mode.<key>)")
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for ds, rules in raw.items():
        if ds not in datasets:
            raise FerbenchError(f"{f.path}: field 'filter': dataset '{ds}' is not one of the protocol's datasets "
                                f"({', '.join(datasets)})")
        if not isinstance(rules, dict) or not rules:
            raise FerbenchError(f"{f.path}: field 'filter.{ds}': expected a mapping {{field: [allowed values]}}, got {rules!r}")
        checked: dict[str, tuple[str, ...]] = {}
        for key, values in rules.items():
            if key not in FILTER_FIELDS and not (isinstance(key, str) and key.startswith("mode.") and len(key) > 5):
                raise FerbenchError(f"{f.path}: field 'filter.{ds}': unknown sample field '{key}' "
                                    f"(expected split or mode.<key>, e.g. mode.illumination)")
            vals = [values] if isinstance(values, str) else values
            if not isinstance(vals, list) or not vals or not all(isinstance(v, (str, int)) for v in vals):
                raise FerbenchError(f"{f.path}: field 'filter.{ds}.{key}': expected a list of allowed values, got {values!r}")
            checked[key] = tuple(str(v) for v in vals)
        out[str(ds)] = checked
    return out


def _check(path: Path, raw: Any, digest: str) -> Protocol:
    from ferbench.protocols.splitters import SPLITTERS, build_splitter

    if not isinstance(raw, dict):
        raise FerbenchError(f"{path}: expected a YAML mapping of protocol fields ({', '.join(_REQUIRED)}, ...), "
                            f"got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise FerbenchError(f"{path}: unknown field(s) {', '.join(unknown)}; expected only: "
                            f"{', '.join(_REQUIRED + tuple(_OPTIONAL))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise FerbenchError(f"{path}: missing field(s) {', '.join(missing)}")
    f = _Fields(path, {**_OPTIONAL, **raw})
    datasets = f.names("datasets")
    assert datasets is not None
    task = f.text("task")
    if task not in TASKS:
        raise f.fail("task", " or ".join(TASKS))
    splitter = f.text("splitter")
    if splitter not in SPLITTERS:
        raise f.fail("splitter", "one of " + ", ".join(SPLITTERS))
    params = f.raw["params"] if f.raw["params"] is not None else {}
    if not isinstance(params, dict):
        raise f.fail("params", "a mapping of the splitter's parameters")
    try:  # the splitter checks its own parameters in __init__
        build_splitter(splitter, params, random_state=0)
    except (TypeError, ValueError) as e:
        raise FerbenchError(f"{path}: field 'params' of splitter '{splitter}': {e}") from None
    validation = f.raw["validation"]
    if validation is not None:
        frac = validation.get("fraction") if isinstance(validation, dict) else None
        if (not isinstance(validation, dict) or set(validation) != {"fraction"} or isinstance(frac, bool)
                or not isinstance(frac, (int, float)) or not 0 < frac < 1):
            raise f.fail("validation", "null or {fraction: F} with 0 < F < 1 (a share of the training subjects)")
        validation = {"fraction": float(frac)}
    metric = f.text("metric")
    metrics = f.names("metrics", allow_none=True) or (metric,)
    if metric not in metrics:
        metrics = (metric, *metrics)
    from ferbench.metrics import METRICS

    computable = METRICS.get(task, ())
    for key, names in (("metric", (metric,)), ("metrics", metrics)):
        unknown = [m for m in names if m not in computable]
        if unknown:
            raise f.fail(key, f"metric names ferbench computes for {task} ({', '.join(computable)}); "
                              f"{unknown[0]!r} is not one")
    metric_names = f.raw["metric_names"]
    if metric_names is not None and (
            not isinstance(metric_names, dict) or not metric_names
            or not all(k in metrics and isinstance(v, str) and v.strip() for k, v in metric_names.items())):
        raise f.fail("metric_names", f"a mapping from the protocol's metrics ({', '.join(metrics)}) to the names "
                                     "its tables show (e.g. {accuracy: WAR})")
    if metric_names is not None:  # a table must never show one metric under another's name, or two as one
        shown = {k: v.strip() for k, v in metric_names.items()}
        clash = next(((k, v) for k, v in shown.items()
                      if list(shown.values()).count(v) > 1 or (v.lower() in computable and v.lower() != k)), None)
        if clash is not None:
            raise f.fail("metric_names", f"distinct names that are not another metric's ({clash[0]} is shown as "
                                         f"{clash[1]!r}, which names another metric too)")
    test_dataset = None if f.raw["test_dataset"] is None else f.text("test_dataset")
    class_map = f.raw["class_map"]
    if class_map is not None:
        if (not isinstance(class_map, dict) or not class_map
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in class_map.items())):
            raise f.fail("class_map", "a mapping train class name -> test class name")
        if len(set(class_map.values())) != len(class_map):
            raise f.fail("class_map", "distinct test class names (two train classes map to one test class)")
        class_map = {str(k): str(v) for k, v in class_map.items()}
    if (splitter == "train-on-file") != (test_dataset is not None):
        raise FerbenchError(f"{path}: field 'test_dataset': the train-on-file splitter needs a test_dataset, "
                            f"and only it uses one (got splitter {splitter}, test_dataset {test_dataset!r})")
    classes = f.names("classes", allow_none=True)
    if class_map is not None and classes is not None and tuple(class_map) != classes:
        raise f.fail("classes", "null or the class_map's train classes in the same order")
    if task == "au-detection" and (classes or class_map):
        raise f.fail("classes", "null for an au-detection protocol (labels are AUs, not classes)")
    pretrain = None if f.raw["pretrain"] is None else f.text("pretrain")
    if pretrain is not None and (task != "classification" or test_dataset is not None or pretrain in datasets):
        raise f.fail("pretrain", "null, or for a classification protocol on one file (no test_dataset) the name "
                                 "of another dataset, whose file trains the transferred layers")
    aus = f.raw["aus"]
    if aus is not None and (task != "au-detection" or not isinstance(aus, list) or not aus or len(set(aus)) != len(aus)
                            or not all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in aus)):
        raise f.fail("aus", "null, or for an au-detection protocol a list of distinct AU numbers (e.g. [1, 2, 4])")
    return Protocol(
        name=f.text("name"), path=path, description=f.text("description"), datasets=datasets, task=task,
        classes=classes, filter=_check_filter(f, datasets + ((test_dataset,) if test_dataset else ())),
        splitter=splitter, params=dict(params), repeats=f.integer("repeats", 1, MAX_REPEATS), seed=f.integer("seed", 0),
        validation=validation, metric=metric, metrics=tuple(metrics), paper=f.text("paper"), table=f.text("table"),
        test_dataset=test_dataset, class_map=class_map, aus=None if aus is None else tuple(aus),
        caveat=None if f.raw["caveat"] is None else f.text("caveat"), pretrain=pretrain,
        metric_names=None if metric_names is None else {str(k): str(v) for k, v in metric_names.items()},
        fingerprint=digest,
    )


def _load_file(path: Path) -> Protocol:
    path = Path(path).resolve()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FerbenchError(f"{path}: cannot read protocol file ({e.strerror or e})") from None
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FerbenchError(f"{path}: not a UTF-8 text file (expected a YAML protocol file)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise FerbenchError(f"{path}: malformed YAML{where}: {problem} (expected a YAML mapping of protocol fields)") from None
    return _check(path, raw, hashlib.sha256(data).hexdigest())
