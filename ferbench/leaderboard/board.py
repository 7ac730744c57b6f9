"""Assemble the leaderboard: one section per dataset x protocol, one row per model run, the papers' numbers beside
ours, complete rows ranked by the headline (pooled for leave-one-subject-out, else the trial mean), and the
protocol shape's one test between the best row and each other ranked row (significance.py). Every renderer reads
this structure only.

All numbers are fractions in [0, 1] here (and in JSON / CSV); the human formats print percent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferbench.errors import FerbenchError
from ferbench.leaderboard.records import load_records
from ferbench.leaderboard import significance as stat_tests
from ferbench.leaderboard.comparable import (RunFacts, caveat, judge, ours_for, protocol_caveat,
                                             protocol_metric_names, run_facts)
from ferbench.leaderboard.reported import Design, Reported, ReportedConfusion, ReportedSet, load_reported
from ferbench.metrics import (BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, CI_LEVEL, CI_TYPE, HEADLINE_AGGREGATION, STD_DDOF,
                              summarize, trial_identity)

BASELINES = ("static",)  # the single-frame floor every leaderboard is read against (SPEC section 4)
SCHEMA = "ferbench.leaderboard/2"  # 2: model = registry name (run_tag, label apart), one test per shape


@dataclass
class Section:
    """One dataset x protocol table."""

    dataset: str
    dataset_test: str
    protocol: str
    metric: str
    task: str
    rows: list[dict[str, Any]]
    summaries: dict[str, dict[str, Any]]
    best: str | None
    baseline: str | None
    reported_confusions: dict[str, ReportedConfusion] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shape: str = "k-fold"  # the protocol shape (ferbench.metrics.protocol_shape): decides the test
    aggregation: str = "mean"  # the headline: "mean" over trials or "pooled" (leave one subject out)
    metric_names: dict[str, str] = field(default_factory=dict)  # the protocol's own names (accuracy: WAR)
    rope: float = stat_tests.ROPE  # half width of the region of practical equivalence (a fraction of the metric)

    @property
    def metric_label(self) -> str:
        """The headline metric as the protocol's field names it (`WAR` on DFEW), else its ferbench name."""
        return self.metric_names.get(self.metric, self.metric)

    @property
    def label(self) -> str:
        return self.dataset if self.dataset == self.dataset_test else f"{self.dataset}-to-{self.dataset_test}"

    def ranked(self) -> list[str]:
        """Our rows' labels, best first (the table's order; unranked rows last)."""
        return [r["label"] for r in self.rows if not r["reported_only"]]

    def per_class(self) -> tuple[str, list[str], list[tuple[str, list[float | None]]]]:
        """(what, class names, rows): per-class accuracy (the confusion diagonal) or per-AU F1 (mean over
        folds) for each model, plus the diagonal of any confusion matrix the paper reports for it."""
        names = list(dict.fromkeys(c for s in self.summaries.values() for c in s["classes"]))
        rows: list[tuple[str, list[float | None]]] = []
        for model in self.ranked():
            s = self.summaries[model]
            if self.task == "au-detection":
                vals = {c: v["mean"] for c, v in s["per_au_f1"].items()}
            else:
                vals = s["per_class_accuracy"]
            rows.append((model, [vals.get(c) for c in names]))
            ref = self.reported_confusions.get(model)
            if ref is not None:
                diag = {c: ref.rows[i][i] for i, c in enumerate(ref.classes)}
                rows.append((f"{model} as reported ({ref.source})", [diag.get(c) for c in names]))
        what = "per-AU F1 (mean over folds)" if self.task == "au-detection" else "per-class accuracy (all trials)"
        return what, names, rows

    def per_fold(self) -> list[dict[str, Any]]:
        """One row per (model, repeat, fold) with every metric of that trial."""
        out = []
        for model, s in self.summaries.items():
            for t in s["per_trial"]:
                row = {"dataset": self.label, "protocol": self.protocol, "model": s["model"], "label": model,
                       "repeat": t["repeat"], "fold": t["fold"], "seed": t["seed"], "units": t["units"]}
                row.update({k: v for k, v in t.items() if k not in row and k not in (
                    "modes", "selection", "selected_epoch", "identity", "subject", "test_subjects", "train_units")})
                row["selected_epoch"] = t["selected_epoch"]
                out.append(row)
        return out


@dataclass
class Board:
    runs: Path
    reported_path: Path
    sections: list[Section]
    refused: list[tuple[Path, str]] = field(default_factory=list)  # record files not used, with the reason

    def rows(self) -> list[dict[str, Any]]:
        return [row for s in self.sections for row in s.rows]

    def refused_lines(self) -> list[str]:
        """One line per record file the board did not use, with the reason (empty when none)."""
        if not self.refused:
            return []
        head = (f"{len(self.refused)} record file(s) refused and left out of every table (fix or delete them; "
                "`ferbench evaluate` reruns their tasks, `ferbench runs prune --remove-refused` removes them):")
        return [head] + [f"{path}: {reason}" for path, reason in self.refused]


def _units_correct(records: list[dict]) -> dict[str, dict[str, bool]]:
    """trial identity -> (test unit -> whether the prediction was right), for classification records."""
    out: dict[str, dict[str, bool]] = {}
    for r in records:
        if r["task"] == "classification":
            out[trial_identity(r)] = {u: y == p for u, y, p in zip(r["sample_ids"], r["labels"], r["predictions"])}
    return out


def _compare_with_best(section_shape: str, ranked: list[dict], summaries: dict[str, dict],
                       records: dict[str, list[dict]], metric: str, rope: float) -> None:
    """The shape's one test between the best row and every other ranked row, Holm-corrected over all of those
    comparisons (m = ranked rows - 1, the untestable ones included); kim2017's repeat-level t-test beside it;
    on k-fold tables the Bayesian ROPE probabilities (practical equivalence, never inferred from a large p).
    Fills test, p_raw, p_value (Holm), test_n, test_over, test_note, comparisons, paired_trials, p_repeats and
    the rope fields."""
    top, others = ranked[0], ranked[1:]
    name = top["label"]
    best_units = _units_correct(records[name]) if section_shape == "fixed split" else {}
    raw: list[float | None] = []
    equivalence: list[float | None] = []
    for row in others:
        units = None
        if section_shape == "fixed split" and summaries[name]["task"] == "classification":
            units = (best_units, _units_correct(records[row["label"]]))
        result = stat_tests.compare(section_shape, summaries[name], summaries[row["label"]], metric, units)
        pairs, _ = stat_tests.pair_trials(summaries[name], summaries[row["label"]])
        row.update({"test": result.test, "p_raw": result.p, "test_n": result.n, "test_over": result.over,
                    "test_note": result.note, "paired_trials": len(pairs)})
        raw.append(result.p)
        rp, runs = stat_tests.repeat_level_t(summaries[name], summaries[row["label"]], metric)
        row.update({"p_repeats": rp, "repeat_runs": runs})
        bayes = stat_tests.rope_probs(section_shape, summaries[name], summaries[row["label"]], metric, rope)
        row.update({"rope": bayes.rope, "p_rope_below": bayes.below, "p_rope_equivalent": bayes.equivalent,
                    "p_rope_above": bayes.above, "rope_note": bayes.note})
        equivalence.append(bayes.equivalence_p)
    for row, p in zip(others, stat_tests.holm(raw)):
        row.update({"p_value": p, "comparisons": len(others)})
    for row, p in zip(others, stat_tests.holm(equivalence)):  # the same m: every comparison the table makes
        row.update({"rope_p": p, "rope_claim": "equivalent" if p is not None and p < stat_tests.ALPHA else None})


def _reported_for(entries: list[Reported], model: str, metric: str) -> Reported | None:
    mine = [e for e in entries if e.model == model]
    return next((e for e in mine if e.metric == metric), mine[0] if mine else None)


def _model_row(s: dict, label: str, name: str, key: str, run_tag: str | None) -> dict[str, Any]:
    metric = s["metric"]
    main = s["scores"].get(metric) or {"mean": None, "std": None, "trials": 0}
    row: dict[str, Any] = {
        "dataset": label, "dataset_test": s["dataset_test"], "protocol": s["protocol"], "model": s["model"],
        "run_tag": run_tag, "label": name, "run_key": key,
        "metric": metric, "headline": s["headline"], "aggregation": s["aggregation"], "shape": s["shape"],
        "mean": main["mean"], "std": main["std"], "trials": s["trials"],
        "pooled": s["pooled"].get(metric), "reported": None, "delta": None, "reported_only": False,
        **_untested(), "best": False, "beats_baseline": None,
        "selection": s["selection"], "train_s": s["train_s"]["mean"], "train_s_total": s["train_s"]["total"],
        "std_ddof": STD_DDOF, "repeats": s["repeats"], "diverged": len(s.get("diverged") or []),
        "std_repeats": (s["over_repeats"].get(metric) or {}).get("std"),
        "ci_low": s["ci"]["low"], "ci_high": s["ci"]["high"], "ci_level": s["ci"]["level"],
        "ci_type": s["ci"]["type"], "ci_of": s["ci"]["of"], "ci_n_boot": s["ci"]["n_boot"],
        "ci_seed": s["ci"]["seed"], "ci_clusters": s["ci"]["clusters"],
    }
    for name, stats in s["scores"].items():
        if name != metric:
            row[name] = stats["mean"]
    for name, value in s["pooled"].items():
        row[f"pooled_{name}"] = value
    if s["task"] == "au-detection":
        for au, stats in s["per_au_f1"].items():
            row[f"f1_{au}"] = stats["mean"]
    for mode, stats in (s.get("per_mode") or {}).items():
        row[f"accuracy[{mode}]"] = stats["mean"]
    row.update({"reported_metric": None, "reported_std": None, "reported_text": None, "reported_source": None,
                "reported_method": None, "note": None, "comparable": None, "reason": None,
                "reported_aggregation": None})
    return row


def _attach_reported(row: dict, entry: Reported, summary: dict, design: Design | None, facts: RunFacts) -> None:
    """The paper's number beside ours; a delta only where the two are comparable (see comparable.py)."""
    comparable, reason = judge(entry, design, facts)
    ours = ours_for(entry, design, summary)
    row.update({"reported": entry.value, "reported_metric": entry.metric, "reported_std": entry.std,
                "reported_text": entry.text + (f" ({entry.scale})"), "reported_source": entry.source,
                "reported_method": entry.method, "note": caveat(entry, design), "comparable": comparable,
                "reason": reason,
                "reported_aggregation": design.aggregation if design else None,
                "delta": (ours - entry.value) if comparable and ours is not None else None})


def _untested() -> dict[str, Any]:
    """The test fields of a row that is not compared with the best one."""
    return {"test": None, "p_value": None, "p_raw": None, "test_n": None, "test_over": None, "test_note": None,
            "paired_trials": None, "comparisons": None, "p_repeats": None, "repeat_runs": None, "rope": None,
            "p_rope_below": None, "p_rope_equivalent": None, "p_rope_above": None, "rope_p": None,
            "rope_claim": None, "rope_note": None}


def _reported_row(entry: Reported, label: str, design: Design | None) -> dict[str, Any]:
    reason = judge(entry, design, None)[1]
    return {
        "dataset": label, "dataset_test": entry.dataset_test, "protocol": entry.protocol,
        "model": entry.model or entry.method, "run_tag": None, "label": entry.model or entry.method,
        "run_key": None, "metric": entry.metric, "headline": None, "aggregation": None, "shape": None,
        "mean": None, "std": None, "trials": 0, "planned_trials": None, "status": "reported", "rank": None,
        "pooled": None, "reported": entry.value, "delta": None, "reported_only": True,
        **_untested(), "best": False, "beats_baseline": None, "selection": None,
        "train_s": None, "train_s_total": None, "std_ddof": STD_DDOF, "repeats": None, "diverged": 0,
        "std_repeats": None, "ci_low": None, "ci_high": None, "ci_level": None, "ci_type": None, "ci_of": None,
        "ci_n_boot": None, "ci_seed": None, "ci_clusters": None,
        "reported_metric": entry.metric, "reported_std": entry.std, "reported_text": f"{entry.text} ({entry.scale})",
        "reported_source": entry.source, "reported_method": entry.method, "note": caveat(entry, design),
        "reported_p_value": entry.p_value, "comparable": False, "reason": reason,
        "reported_aggregation": design.aggregation if design else None,
    }


def _run_tags(keys: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """(model, key) -> the row's run tag: None, or `d… p…` naming the key parts (data d, protocol p,
    model/recipe m) that differ between that model's rows when its records come from several runs (the row's
    label is then `model [tag]`)."""
    by_model: dict[str, list[str]] = defaultdict(list)
    for model, key in keys:
        by_model[model].append(key)
    names = {}
    for model, key in keys:
        others = by_model[model]
        if len(others) == 1:
            names[(model, key)] = None
            continue
        parts = key.split("-")
        differ = [i for i in range(3) if len({k.split("-")[i] for k in others}) > 1]
        names[(model, key)] = " ".join(parts[i][:7] for i in differ)
    return names


def _check_groups(groups: dict[tuple, list[tuple[Path, dict]]]) -> None:
    """Two records of one row for the same trial, or with other class lists, cannot be summarised."""
    for items in groups.values():
        first_path, first = items[0]
        seen: dict[tuple[int, int], Path] = {}
        for path, r in items:
            if r["classes"] != first["classes"] or r["task"] != first["task"] or r["metric"] != first["metric"]:
                raise FerbenchError(f"{path}: classes/task/metric differ from {first_path} (same model and protocol)")
            key = (r["repeat"], r["fold"])
            if key in seen:
                raise FerbenchError(f"{path}: repeat {key[0]} fold {key[1]} of {r['model']} also in {seen[key]}")
            seen[key] = path


def build_section(dataset: str, dataset_test: str, protocol: str, items: list[tuple[Path, dict]],
                  reported: ReportedSet, rope: float = stat_tests.ROPE) -> Section:
    """Summaries, rows, ranking, paired tests, baseline verdicts and reported rows for one table."""
    by_run: dict[tuple[str, str], list[tuple[Path, dict]]] = defaultdict(list)
    for path, r in items:
        by_run[(r["model"], path.parent.name)].append((path, r))
    _check_groups(by_run)
    tags = _run_tags(sorted(by_run))
    names = {k: (f"{k[0]} [{tag}]" if tag else k[0]) for k, tag in tags.items()}
    summaries = {names[k]: summarize([r for _, r in recs]) for k, recs in sorted(by_run.items())}
    metrics = {s["metric"] for s in summaries.values()}
    if len(metrics) > 1:
        raise FerbenchError(f"{dataset}/{protocol}: records disagree on the main metric ({', '.join(sorted(metrics))})")
    metric = metrics.pop()
    label = dataset if dataset == dataset_test else f"{dataset}-to-{dataset_test}"
    rows = [_model_row(summaries[names[k]], label, names[k], k[1], tags[k]) for k in sorted(by_run)]
    _mark_completeness(rows, {names[k]: recs for k, recs in by_run.items()})
    ranked = sorted((r for r in rows if r["status"] == "ranked"), key=lambda r: (-r["headline"], r["label"]))
    unranked = sorted((r for r in rows if r["status"] != "ranked"), key=lambda r: r["label"])
    rows = ranked + unranked
    best = ranked[0]["label"] if ranked else None
    shapes = [r["shape"] for r in ranked] or [r["shape"] for r in rows]
    shape = max(set(shapes), key=shapes.count)
    notes = [_method_note(shape, summaries[best]["aggregation"] if best else HEADLINE_AGGREGATION[shape], best,
                          len(ranked) - 1, rope)]
    for i, row in enumerate(rows, 1):
        row["rank"] = i if row["status"] == "ranked" else None
        row["best"] = row["label"] == best
    if len(ranked) > 1:
        ok = {name: [r for _, r in by_run[k] if r.get("status", "ok") == "ok"] for k, name in names.items()}
        _compare_with_best(shape, ranked, summaries, ok, metric, rope)
    odd = [r["label"] for r in ranked if r["shape"] != shape]
    if odd:
        notes.append(f"{', '.join(odd)}: records of another protocol shape than this table's {shape}")
    # the floor: the best-ranked row of a baseline model that has a figure (a diverged run is no floor)
    baseline = next((r["label"] for b in BASELINES for r in rows if r["model"] == b and r["headline"] is not None),
                    next((name for b in BASELINES for name in summaries if summaries[name]["model"] == b), None))
    if baseline:
        floor = summaries[baseline]["headline"]
        for row in rows:
            if row["label"] != baseline and row["headline"] is not None and floor is not None:
                row["beats_baseline"] = bool(row["headline"] > floor)
    else:
        notes.append(f"no {'/'.join(BASELINES)} baseline among these records: the floor is unknown")
    for name, sm in summaries.items():
        if sm.get("diverged"):
            first = sm["diverged"][0]
            notes.append(f"{name}: {len(sm['diverged'])} of {len(sm['diverged']) + sm['trials']} trial(s) diverged "
                         f"and are left out of its figures (first: repeat {first['repeat']} fold {first['fold']}, "
                         f"{first['what']} non-finite in stage {first['stage']} epoch {first['epoch']}, last finite "
                         f"training loss {first['last_finite_loss']})")
    for (m, key), name in sorted(names.items()):
        source = (by_run[(m, key)][0][1].get("config") or {}).get("model_source")
        if source and source != "ferbench":
            notes.append(f"{name}: a user model, from {source}")
    caveat = protocol_caveat(protocol)
    if caveat:
        notes.append(f"protocol {protocol}: {caveat}")
    split = sorted({m for m, _ in by_run if sum(1 for mm, _ in by_run if mm == m) > 1})
    if split:
        notes.append(f"{', '.join(split)}: records of several runs (in brackets: the differing key part, d = data "
                     "file, p = protocol, m = model/recipe); each is its own row. `ferbench runs prune` keeps only "
                     "the latest run of each model")

    entries = reported.for_section(dataset, dataset_test, protocol)
    facts = {name: run_facts([r for _, r in by_run[(m, key)]]) for (m, key), name in names.items()}
    for row in rows:
        entry = _reported_for(entries, row["model"], metric)
        if entry:
            _attach_reported(row, entry, summaries[row["label"]], reported.design_of(entry), facts[row["label"]])
    ran = {s["model"] for s in summaries.values()}
    ref_rows = [_reported_row(e, label, reported.design_of(e)) for e in entries if e.model not in ran]
    ref_rows.sort(key=lambda r: (r["reported_metric"] != metric, -r["reported"], r["model"]))
    confusions = {m: c for m, sm in summaries.items()
                  if (c := reported.confusion_for(dataset, protocol, sm["model"])) is not None}
    notes += list(dict.fromkeys(f"{c.source} confusion matrix ({c.method}), beside {m}: {c.note}"
                                for m, c in confusions.items() if c.note))
    task = next(iter(summaries.values()))["task"]
    return Section(dataset=dataset, dataset_test=dataset_test, protocol=protocol, metric=metric, task=task,
                   rows=rows + ref_rows, summaries=summaries, best=best, baseline=baseline,
                   reported_confusions=confusions, notes=notes, shape=shape,
                   aggregation=summaries[best]["aggregation"] if best else HEADLINE_AGGREGATION[shape],
                   metric_names=protocol_metric_names(protocol), rope=rope)


def _mark_completeness(rows: list[dict], records: dict[str, list[tuple[Path, dict]]]) -> None:
    """status, planned_trials: a row is ranked only when every trial the table's protocol plans was scored.
    The plan of rows on the same data and protocol file (key parts d and p) is every (repeat, fold) any of them
    has a record of (scored or diverged), and at least the trial count the records say their run planned
    (`config.plan.trials`; older records do not say, and then trials no row ran are not seen)."""
    plans: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for row in rows:
        plans[_setting(row["run_key"])] |= {(r["repeat"], r["fold"]) for _, r in records[row["label"]]}
    for row in rows:
        plan = plans[_setting(row["run_key"])]
        scored = {(r["repeat"], r["fold"]) for _, r in records[row["label"]] if r.get("status", "ok") == "ok"}
        planned = max([len(plan)] + [_declared_trials(r) for _, r in records[row["label"]]])
        row["planned_trials"] = planned
        if not scored:
            row["status"] = "diverged"
        elif row["headline"] is None:
            row["status"] = "no figure"  # every trial's main metric undefined
        elif scored != plan or len(scored) < planned:
            row["status"] = "incomplete"
        else:
            row["status"] = "ranked"


def _declared_trials(record: dict) -> int:
    """The trials the record's run planned (`config.plan.trials`), 0 where an older record does not say."""
    plan = (record.get("config") or {}).get("plan")
    trials = plan.get("trials") if isinstance(plan, dict) else None
    return trials if isinstance(trials, int) and not isinstance(trials, bool) and trials > 0 else 0


def _setting(run_key: str) -> str:
    """The data and protocol parts (d, p) of a record key."""
    return "-".join(run_key.split("-")[:2])


def _method_note(shape: str, aggregation: str, best: str | None, comparisons: int, rope: float) -> str:
    """The first note of every table: which figure it ranks by, which interval and which test it uses."""
    name, _, over = stat_tests.TESTS[shape]
    figure = ("pooled over the folds of a repeat (the papers' and MEGC's LOSO figure), per-subject mean beside it"
              if aggregation == "pooled" else "mean over trials")
    test = (f"p vs best: {name} over paired {over}, Holm-corrected over the {comparisons} comparison(s) this table "
            f"makes with {best} (best is chosen on the same data it is tested on)" if best and comparisons > 0
            else "p vs best: none (fewer than two ranked rows)")
    if shape == "k-fold" and best and comparisons > 0:
        test += (f"; ROPE vs best: {stat_tests.BAYESIAN_TEST} (Benavoli et al. 2017), posterior "
                 f"P(below / within / above ±{stat_tests.points(rope)} of {best}); practical equivalence "
                 f"claimed where 1 - P(within) < {stat_tests.ALPHA:g} after Holm over the same comparisons")
    return (f"{shape} protocol; headline {figure}; {int(100 * CI_LEVEL)}% CI: {CI_TYPE} cluster bootstrap over test "
            f"subjects, B={BOOTSTRAP_SAMPLES}, seed {BOOTSTRAP_SEED}; {test}")


def check_rope(rope: float) -> None:
    """A ROPE half width is a fraction of the metric in (0, 0.5]: wider would call any two models equivalent."""
    if not (isinstance(rope, (int, float)) and math.isfinite(rope) and 0 < rope <= 0.5):
        raise FerbenchError(f"--rope (the region of practical equivalence) must lie in (0, 50] points of the "
                            f"metric (1: one percentage point); got {100 * rope:g}" if isinstance(rope, (int, float))
                            else f"the region of practical equivalence must be a number; got {rope!r}")


def build_board(runs: str | Path = "runs", dataset: str | None = None, protocol: str | None = None,
                reported: str | Path | None = None, rope: float = stat_tests.ROPE) -> Board:
    """Read the records under `runs` (filtered) and the reported numbers; build every section. `rope`: the half
    width of the region of practical equivalence, a fraction of the metric (0.01: one percentage point)."""
    check_rope(rope)
    ref = load_reported(reported)
    scan = load_records(runs, dataset, protocol)
    groups: dict[tuple[str, str, str], list[tuple[Path, dict]]] = defaultdict(list)
    for path, r in scan.records:
        groups[(r["dataset"], r.get("dataset_test") or r["dataset"], r["protocol"])].append((path, r))
    sections = [build_section(d, dt, p, recs, ref, rope) for (d, dt, p), recs in sorted(groups.items())]
    return Board(runs=Path(runs), reported_path=ref.path, sections=sections, refused=scan.refused)


__all__ = ["BASELINES", "Board", "SCHEMA", "Section", "build_board", "build_section"]
