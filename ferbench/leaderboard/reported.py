"""The papers' reported numbers (leaderboards/reported.yaml), loaded safely and checked, so a leaderboard can put
each paper's figure beside ours. The file ships inside the package as `ferbench._leaderboards`; a source
checkout (PYTHONPATH runs, editable installs) reads it from `leaderboards/` directly."""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferbench.errors import FerbenchError

SCHEMA = "ferbench.reported/1"
SCALES = {"percent": 100.0, "fraction": 1.0}
METRICS = ("accuracy", "f1", "uf1", "uar")
ENTRY_FIELDS = ("paper", "table", "dataset", "protocol", "method", "model", "metric", "value", "scale")


@dataclass(frozen=True)
class Reported:
    """One number from a paper's table. `value` (and `std`) are fractions in [0, 1]; `text` is as printed."""

    paper: str
    table: str
    dataset: str
    dataset_test: str
    protocol: str | None
    method: str
    model: str | None
    metric: str
    value: float
    text: str
    scale: str
    std: float | None = None
    std_text: str | None = None
    p_value: str | None = None
    note: str | None = None

    @property
    def source(self) -> str:
        return f"{self.paper} {self.table}"


@dataclass(frozen=True)
class Design:
    """What a paper's table measured (the `designs` of reported.yaml): the reference for comparability."""

    paper: str
    table: str
    classes: int | None = None
    samples: int | None = None
    folds: int | str | None = None  # a number per repeat, or "subjects" (leave one subject out)
    repeats: int | None = None
    recipe: str | None = None
    aggregation: str = "trials"  # "trials" (mean over trials) | "pooled" (all test predictions scored at once)
    source: str | None = None  # a transfer experiment's source dataset (the layers were trained on it first)
    source_samples: int | None = None  # how many source samples that training used
    not_comparable: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ReportedConfusion:
    """A paper's row-normalised confusion matrix (fractions), rows/columns in `classes` order."""

    paper: str
    table: str
    dataset: str
    protocol: str | None
    method: str
    model: str | None
    classes: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]
    note: str | None = None  # e.g. where the matrix disagrees with the paper's own accuracy

    @property
    def source(self) -> str:
        return f"{self.paper} {self.table}"


@dataclass(frozen=True)
class ReportedSet:
    path: Path
    entries: tuple[Reported, ...] = field(default_factory=tuple)
    confusions: tuple[ReportedConfusion, ...] = field(default_factory=tuple)
    designs: tuple[Design, ...] = field(default_factory=tuple)

    def design_of(self, entry: Reported) -> Design | None:
        """The design of the table an entry comes from (None when the file gives none)."""
        return next((d for d in self.designs if d.paper == entry.paper and d.table == entry.table), None)

    def for_section(self, dataset: str, dataset_test: str, protocol: str) -> list[Reported]:
        return [e for e in self.entries
                if e.dataset == dataset and e.dataset_test == dataset_test and e.protocol == protocol]

    def confusion_for(self, dataset: str, protocol: str, model: str) -> ReportedConfusion | None:
        return next((c for c in self.confusions
                     if c.dataset == dataset and c.protocol == protocol and c.model == model), None)


def default_path() -> Path:
    """reported.yaml from the installed package, else from the source checkout's leaderboards/."""
    try:
        res = importlib.resources.files("ferbench._leaderboards").joinpath("reported.yaml")
        if res.is_file():
            return Path(str(res))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "leaderboards" / "reported.yaml"


def _number(text: Any, where: str, scale: float) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise FerbenchError(f"{where}: expected a number as printed in the paper, found {text!r}")
    try:
        value = float(str(text)) / scale
    except ValueError:
        raise FerbenchError(f"{where}: expected a number as printed in the paper, found {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise FerbenchError(f"{where}: {text!r} is outside the metric's range")
    return value, str(text)


def _scale(raw: dict, where: str) -> float:
    if raw.get("scale") not in SCALES:
        raise FerbenchError(f"{where}: scale must be one of {', '.join(SCALES)}, found {raw.get('scale')!r}")
    return SCALES[raw["scale"]]


def _entry(raw: Any, where: str) -> Reported:
    if not isinstance(raw, dict):
        raise FerbenchError(f"{where}: expected a mapping with {', '.join(ENTRY_FIELDS)}")
    missing = [k for k in ENTRY_FIELDS if k not in raw]
    if missing:
        raise FerbenchError(f"{where}: lacks {', '.join(missing)}")
    if raw["metric"] not in METRICS:
        raise FerbenchError(f"{where}: metric must be one of {', '.join(METRICS)}, found {raw['metric']!r}")
    scale = _scale(raw, where)
    value, text = _number(raw["value"], where, scale)
    std, std_text = _number(raw["std"], where, scale) if raw.get("std") is not None else (None, None)
    return Reported(
        paper=str(raw["paper"]), table=str(raw["table"]), dataset=str(raw["dataset"]),
        dataset_test=str(raw.get("dataset_test") or raw["dataset"]),
        protocol=None if raw["protocol"] is None else str(raw["protocol"]), method=str(raw["method"]),
        model=None if raw["model"] is None else str(raw["model"]), metric=raw["metric"], value=value, text=text,
        scale=raw["scale"], std=std, std_text=std_text,
        p_value=None if raw.get("p_value") is None else str(raw["p_value"]),
        note=None if raw.get("note") is None else str(raw["note"]))


def _confusion(raw: Any, where: str) -> ReportedConfusion:
    if not isinstance(raw, dict) or not isinstance(raw.get("classes"), list) or not isinstance(raw.get("rows"), list):
        raise FerbenchError(f"{where}: expected classes (list) and rows (list of lists)")
    scale = _scale(raw, where)
    k = len(raw["classes"])
    if len(raw["rows"]) != k or any(not isinstance(r, list) or len(r) != k for r in raw["rows"]):
        raise FerbenchError(f"{where}: rows must be a {k} x {k} matrix (one row per class)")
    rows = tuple(tuple(_number(v, where, scale)[0] for v in r) for r in raw["rows"])
    return ReportedConfusion(paper=str(raw.get("paper")), table=str(raw.get("table")), dataset=str(raw.get("dataset")),
                             protocol=raw.get("protocol"), method=str(raw.get("method")), model=raw.get("model"),
                             classes=tuple(str(c) for c in raw["classes"]), rows=rows,
                             note=None if raw.get("note") is None else str(raw["note"]))


_DESIGN_FIELDS = {"paper", "table", "classes", "samples", "folds", "repeats", "recipe", "aggregation",
                  "source", "source_samples", "not_comparable", "note"}


def _design(raw: Any, where: str) -> Design:
    if not isinstance(raw, dict) or not {"paper", "table"} <= set(raw) or set(raw) - _DESIGN_FIELDS:
        raise FerbenchError(f"{where}: expected a mapping with paper, table and some of "
                            f"{', '.join(sorted(_DESIGN_FIELDS - {'paper', 'table'}))}")
    for key in ("classes", "samples", "repeats", "source_samples"):
        if raw.get(key) is not None and (isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 1):
            raise FerbenchError(f"{where}: {key} must be a positive integer, found {raw[key]!r}")
    folds = raw.get("folds")
    if folds is not None and folds != "subjects" and (isinstance(folds, bool) or not isinstance(folds, int)):
        raise FerbenchError(f"{where}: folds must be a number or 'subjects', found {folds!r}")
    if raw.get("aggregation", "trials") not in ("trials", "pooled"):
        raise FerbenchError(f"{where}: aggregation must be 'trials' or 'pooled', found {raw.get('aggregation')!r}")
    return Design(**{k: (str(v) if k in ("paper", "table") else v) for k, v in raw.items()})


def load_reported(path: str | Path | None = None) -> ReportedSet:
    """Read and check a reported-numbers file (default: the bundled one). Errors name the file and entry."""
    path = Path(path) if path is not None else default_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FerbenchError(f"{path}: reported-numbers file not found") from None
    except yaml.YAMLError as e:
        raise FerbenchError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise FerbenchError(f"{path}: expected a mapping with schema {SCHEMA!r}")
    entries = tuple(_entry(raw, f"{path}: entries[{i}]") for i, raw in enumerate(data.get("entries") or []))
    seen: dict[tuple, int] = {}
    for i, e in enumerate(entries):
        if e.model is None:
            continue
        key = (e.dataset, e.dataset_test, e.protocol, e.model, e.metric)
        if key in seen:
            raise FerbenchError(f"{path}: entries[{i}] names model {e.model!r} for {e.dataset}/{e.protocol} "
                                f"{e.metric} again (entries[{seen[key]}]); set model: null on one of them")
        seen[key] = i
    confusions = tuple(_confusion(raw, f"{path}: confusions[{i}]")
                       for i, raw in enumerate(data.get("confusions") or []))
    designs = tuple(_design(raw, f"{path}: designs[{i}]") for i, raw in enumerate(data.get("designs") or []))
    return ReportedSet(path=path, entries=entries, confusions=confusions, designs=designs)
