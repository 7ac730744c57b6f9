"""Whether a paper's number may be set beside ours as comparable: only when our run did what the paper's table
did (the table's `design` in reported.yaml): the same class count and number of samples, the bundled protocol
file unchanged, the same folds per repeat and repeats, every planned trial present with a finite score (records'
`config.plan`), the paper's recipe, the paper's network and training as the paper describes them (records'
`config.paper_departures`, written by the harness, one clause per departure), the paper's aggregation (kim2017
pools its LOSO predictions) and, for a transfer experiment, the same source data (kim2017 Table 5: 246 CASME II
samples trained C1-C2). Otherwise the number is a reference, with every reason, and no delta is printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ferbench.leaderboard.reported import Design, Reported


@dataclass(frozen=True)
class RunFacts:
    """What a row's records say about how they were made."""

    protocol: str
    protocol_fingerprint: str
    recipes: tuple[str, ...]
    classes: int
    samples: int
    repeats: int  # as planned (records' config.plan), else as found
    folds: int  # per repeat, as planned, else the most found in a repeat
    source: str | None = None  # a transfer run's source dataset (records' config.pretrain)
    source_samples: int | None = None
    trials: int = 0  # records with a finite main metric (diverged and unscored trials are not results)
    planned: int | None = None  # trials the run planned (records' config.plan); None: the records do not say
    departures: tuple[str, ...] | None = None  # records' config.paper_departures; None: the records do not say


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _departures(records: list[dict[str, Any]]) -> tuple[str, ...] | None:
    """How the row's model and training depart from the paper's (every record's clauses, in order); None when
    a record does not say (written before ferbench recorded it)."""
    said = [(r.get("config") or {}).get("paper_departures") for r in records]
    if any(not isinstance(d, list) for d in said):
        return None
    return tuple(dict.fromkeys(str(c) for d in said for c in d))


def run_facts(records: list[dict[str, Any]]) -> RunFacts:
    """RunFacts of one row (records of one model, one key)."""
    first = records[0]
    reps: dict[int, set[int]] = {}
    for r in records:
        reps.setdefault(r["repeat"], set()).add(r["fold"])
    ids: set[str] = set()
    for r in records:
        if r["repeat"] == min(reps):
            ids.update(r["train_ids"], r["val_ids"], (u.rsplit("@", 1)[0] for u in r["sample_ids"]))
    config = first.get("config") or {}
    pretrain = config.get("pretrain") or {}
    plan = config.get("plan") if isinstance(config.get("plan"), dict) else {}
    trials = sum(1 for r in records
                 if r.get("status", "ok") == "ok" and _finite((r.get("scores") or {}).get(r["metric"])))
    return RunFacts(protocol=first["protocol"], protocol_fingerprint=first["fingerprints"]["protocol"],
                    recipes=tuple(sorted({str((r.get("recipe") or {}).get("name")) for r in records})),
                    classes=len(first["classes"]), samples=len(ids),
                    repeats=int(plan.get("repeats") or len(reps)),
                    folds=int(plan.get("folds") or max(len(f) for f in reps.values())), source=pretrain.get("dataset"),
                    source_samples=pretrain.get("samples"), trials=trials,
                    planned=int(plan["trials"]) if plan.get("trials") else None, departures=_departures(records))


@lru_cache(maxsize=64)
def _bundled(name: str) -> Any:
    from ferbench.errors import FerbenchError
    from ferbench.protocols import load_protocol

    try:
        return load_protocol(name)
    except FerbenchError:
        return None


def _bundled_fingerprint(name: str) -> str | None:
    p = _bundled(name)
    return None if p is None else p.fingerprint


def protocol_caveat(name: str) -> str | None:
    """The caveat a bundled protocol carries (e.g. fera2015 is an approximation), for the leaderboard."""
    p = _bundled(name)
    return None if p is None else p.caveat


def protocol_metric_names(name: str) -> dict[str, str]:
    """How a bundled protocol's tables name its metrics (`metric_names`: DFEW's accuracy is "WAR")."""
    p = _bundled(name)
    return dict(p.metric_names or {}) if p is not None else {}


def judge(entry: Reported, design: Design | None, facts: RunFacts | None) -> tuple[bool, str]:
    """(comparable, reason): the reason lists every difference ('' when comparable)."""
    if design is None:
        return False, f"reported.yaml gives no design for {entry.source}"
    if design.not_comparable:
        return False, design.not_comparable
    if facts is None:
        return False, "reference: ferbench has no run of this method"
    why = []
    bundled = _bundled_fingerprint(facts.protocol)
    if bundled is None:
        why.append(f"protocol {facts.protocol!r} is not a bundled protocol")
    elif bundled != facts.protocol_fingerprint:
        why.append(f"protocol file differs from the bundled {facts.protocol}")
    if design.classes is not None and facts.classes != design.classes:
        why.append(f"{facts.classes} classes, the paper used {design.classes}")
    if design.samples is not None and facts.samples != design.samples:
        why.append(f"{facts.samples} samples, the paper used {design.samples} (replica or other data)")
    if isinstance(design.folds, int) and facts.folds != design.folds:
        why.append(f"{facts.folds} folds per repeat, the paper used {design.folds}")
    if design.repeats is not None and facts.repeats != design.repeats:
        why.append(f"{facts.repeats} of {design.repeats} repeats")
    if facts.planned is None:
        why.append("the records do not say how many trials the run planned (written by an older ferbench)")
    elif facts.trials < facts.planned:
        why.append(f"{facts.trials} of {facts.planned} trials")
    if design.source is not None and facts.source != design.source:
        why.append(f"no layers trained on {design.source} first" if facts.source is None
                   else f"layers trained on {facts.source}, the paper's on {design.source}")
    elif design.source_samples is not None and facts.source_samples != design.source_samples:
        why.append(f"{facts.source_samples} {design.source} samples trained the transferred layers, the paper used "
                   f"{design.source_samples} (replica or other data)")
    if design.recipe is not None and facts.recipes != (design.recipe,):
        why.append(f"{'/'.join(facts.recipes)} recipe (the paper's training is --recipe {design.recipe})")
    if facts.departures is None:
        why.append("the records do not say whether the model was built and trained as the paper's "
                   "(written by an older ferbench)")
    else:
        why.extend(facts.departures)
    return (not why), "; ".join(why)


def caveat(entry: Reported, design: Design | None) -> str | None:
    """What a reader must know beside a paper's number: the entry's own note and, for the paper's own methods, its
    table's (e.g. kim2017's MMI figures are fractions of 173 sequences, not the 205 it states), shown in every
    format as the row's note."""
    table_note = design.note if design is not None and entry.model is not None else None  # the paper's own rows
    parts = [p for p in (entry.note, table_note) if p]
    return "; ".join(dict.fromkeys(parts)) or None


def ours_for(entry: Reported, design: Design | None, summary: dict[str, Any]) -> float | None:
    """Our figure on the paper's aggregation: the pooled score where the paper pooled, else the trial mean."""
    if design is not None and design.aggregation == "pooled":
        return summary["pooled"].get(entry.metric)
    return (summary["scores"].get(entry.metric) or {}).get("mean")
