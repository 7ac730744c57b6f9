"""Metrics computed from task records alone (docs/records.md), so any reader can audit a figure.

No torch here: the leaderboard imports this module and must stay light. Every number comes from a
scikit-learn function on the record's `labels` / `predictions` lists; nothing is taken from `scores`.

Conventions (the same everywhere a figure is shown):
- A trial is one record; a protocol's figure is the mean and the *sample* standard deviation (ddof=1,
  `STD_DDOF`) over its trials. With one trial the std is None (undefined), never a fake 0.
- UF1 is macro-F1 and UAR is macro-recall, both over the classes present in that set's ground truth
  (the MEGC convention: a class absent from a fold's test units is not averaged in as a zero).
- Pooled metrics concatenate the test units of all folds of one repeat, score them once, and average
  over repeats (the MEGC / MEB convention for LOSO UF1 / UAR).
- AU detection (BP4D): per-AU F1 over the coded frames of a fold (label -1 masked), the fold's `f1` is the
  mean over AUs, the protocol's `f1` the mean over folds.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from functools import lru_cache
from typing import Any, Iterable

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ferbench.errors import FerbenchError

STD_DDOF = 1  # sample std over trials; documented in docs/leaderboard.md
CLASSIFICATION_METRICS = ("accuracy", "uf1", "uar")
#: What ferbench computes per task; a protocol naming anything else is refused when it is loaded.
METRICS = {"classification": CLASSIFICATION_METRICS, "au-detection": ("f1",)}
GROUP_KEYS = ("model", "protocol", "dataset", "dataset_test", "task")


def _where(record: dict, source: str | None) -> str:
    return source or str(record.get("task_id") or "record")


def check_lists(record: dict, where: str = "record") -> None:
    """What scoring needs: task, classes, and labels / predictions of matching shape and range (the whole
    record is checked by `ferbench.records.check_record`, which calls this)."""
    for key in ("task", "classes", "labels", "predictions"):
        if key not in record:
            raise FerbenchError(f"{where}: task record lacks field {key}")
    if record["task"] not in ("classification", "au-detection"):
        raise FerbenchError(f"{where}: task must be 'classification' or 'au-detection', found {record['task']!r}")
    classes = record["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise FerbenchError(f"{where}: classes must be a non-empty list of names")
    if not isinstance(record["labels"], list) or not record["labels"]:
        raise FerbenchError(f"{where}: labels must be a non-empty list (the record has no test units)")
    n = len(record["labels"])
    if not isinstance(record["predictions"], list) or len(record["predictions"]) != n:
        raise FerbenchError(f"{where}: predictions must be a list with one entry per test unit ({n})")
    try:
        y, p = _arrays(record)
    except (TypeError, ValueError) as e:
        raise FerbenchError(f"{where}: labels/predictions are not numbers of the expected shape ({e})") from None
    k = len(classes)
    if record["task"] == "classification":
        if y.ndim != 1 or p.ndim != 1:
            raise FerbenchError(f"{where}: classification labels/predictions must be one class index per unit")
        bad = [v for v in np.concatenate([y, p]) if v < 0 or v >= k]
        if bad:
            raise FerbenchError(f"{where}: class index {int(bad[0])} outside 0..{k - 1} ({k} classes)")
    else:
        if y.shape != (n, k) or p.shape != (n, k):
            raise FerbenchError(f"{where}: AU labels/predictions must be {k} values (one per AU) per unit")
        if not np.isin(y, (-1, 0, 1)).all() or not np.isin(p, (0, 1)).all():
            raise FerbenchError(f"{where}: AU labels must be 0/1/-1 and predictions 0/1")


def _arrays(record: dict) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(record["labels"], dtype=np.int64)
    p = np.asarray(record["predictions"], dtype=np.int64)
    return y, p


def classification_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """accuracy, uf1 (macro-F1) and uar (macro-recall) over the classes present in `y`; for arrays the
    harness holds (e.g. validation units for model selection) so selection and reporting share one rule."""
    present = np.unique(y)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "uf1": float(f1_score(y, p, labels=present, average="macro", zero_division=0)),
        "uar": float(recall_score(y, p, labels=present, average="macro", zero_division=0)),
    }


def _per_au_f1(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict[str, float]:
    """F1 of each AU over the frames where it is coded (-1 masked). NaN (undefined, left out of means) when the
    AU is never coded, or coded but never present in these frames: with no positive frame, F1 measures
    nothing a detector did right, and zero_division=0 would score a perfect detector 0."""
    out = {}
    for j, au in enumerate(classes):
        keep = y[:, j] != -1
        present = bool((y[keep, j] == 1).any())
        out[au] = float(f1_score(y[keep, j], p[keep, j], zero_division=0)) if present else math.nan
    return out


def au_scores(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Mean `f1` over AUs (AUs never coded or never present left out) and `f1_<AU>` per AU (NaN where
    undefined); y in {-1, 0, 1}, p in {0, 1}."""
    per = _per_au_f1(y, p, classes)
    vals = [v for v in per.values() if not math.isnan(v)]
    out = {"f1": float(np.mean(vals)) if vals else math.nan}
    out.update({f"f1_{au}": v for au, v in per.items()})
    return out


def trial_scores(record: dict) -> dict[str, float]:
    """This trial's scores from its lists: accuracy/uf1/uar, or mean `f1` plus `f1_<AU>` per AU.
    Needs only task, classes, labels and predictions (see check_lists)."""
    check_lists(record, _where(record, None))
    y, p = _arrays(record)
    if record["task"] == "classification":
        return classification_scores(y, p)
    return au_scores(y, p, record["classes"])


def mode_scores(record: dict) -> dict[str, float]:
    """Accuracy per mode (`modes` field) for this trial; empty when the record carries no modes."""
    modes = record.get("modes") or []
    if record["task"] != "classification" or not any(modes):
        return {}
    y, p = _arrays(record)
    modes_arr = np.asarray(modes, dtype=object)
    return {m: float(accuracy_score(y[modes_arr == m], p[modes_arr == m])) for m in sorted(set(modes)) if m}


def units_digest(sample_ids: list[str]) -> str:
    """A short hash of a trial's test units (order-free): two models' trials pair only when these are equal."""
    return hashlib.sha256("\n".join(sorted(map(str, sample_ids))).encode()).hexdigest()[:16]


def mean_std(values: Iterable[float]) -> dict[str, Any]:
    """Mean and sample std (ddof=STD_DDOF) of the finite values; std None with fewer than two."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "std": None, "trials": 0}
    std = float(np.std(vals, ddof=STD_DDOF)) if len(vals) > STD_DDOF else None
    return {"mean": float(np.mean(vals)), "std": std, "trials": len(vals)}


def _check_group(records: list[dict]) -> None:
    first = records[0]
    for r in records[1:]:
        for key in GROUP_KEYS + ("classes",):
            if r.get(key, first.get(key)) != first.get(key):
                raise FerbenchError(
                    f"{_where(r, None)}: differs from {_where(first, None)} in {key} "
                    f"({r.get(key)!r} vs {first.get(key)!r}); summarize one model x protocol x dataset at a time")
    seen: dict[tuple[int, int], str] = {}
    for r in records:
        key = (r["repeat"], r["fold"])
        if key in seen:
            raise FerbenchError(f"{_where(r, None)}: repeat {key[0]} fold {key[1]} appears twice (also {seen[key]})")
        seen[key] = _where(r, None)


def summarize(records: list[dict]) -> dict[str, Any]:
    """Everything a leaderboard row needs for one model x protocol x dataset, from its records.

    Keys: model, protocol, dataset, dataset_test, task, classes, metric, metrics, trials, std_ddof,
    scores ({metric: {mean, std, trials}}), pooled ({metric: mean over repeats}), pooled_repeats, pooled_runs
    (per repeat: repeat, trials (identities), scores), over_repeats (std of the repeat means), shape (k-fold, loso,
    fixed split), aggregation and headline (the figure the row is ranked by: pooled for loso, else the trial
    mean), ci (subject bootstrap of the headline), per_class_accuracy, confusion (row-normalised,
    class order), per_au_f1 (au-detection), per_mode, selection, train_s ({mean, std, total}), per_trial (sorted
    by repeat, fold; for paired tests), diverged (the trials left out).
    """
    if not records:
        raise FerbenchError("no task records to summarize")
    _check_group(records)
    diverged = sorted((r for r in records if r.get("status") == "diverged"), key=lambda r: (r["repeat"], r["fold"]))
    records = sorted((r for r in records if r.get("status", "ok") == "ok"), key=lambda r: (r["repeat"], r["fold"]))
    if not records:
        return _all_diverged(diverged)
    for r in records:
        check_lists(r, _where(r, None))
    first = records[0]
    per_trial = [_trial_row(r) for r in records]
    metric_names = list(CLASSIFICATION_METRICS) if first["task"] == "classification" else ["f1"]
    shape = protocol_shape(records + diverged)
    aggregation = HEADLINE_AGGREGATION[shape]
    out: dict[str, Any] = {
        "model": first["model"], "protocol": first["protocol"], "dataset": first["dataset"],
        "dataset_test": first.get("dataset_test", first["dataset"]), "task": first["task"],
        "classes": list(first["classes"]), "metric": first["metric"],
        "metrics": list(first.get("metrics") or [first["metric"]]), "trials": len(records), "std_ddof": STD_DDOF,
        "scores": {m: mean_std(t[m] for t in per_trial) for m in metric_names},
        "shape": shape, "aggregation": aggregation,
        "ci": subject_bootstrap_ci(records, first["metric"], aggregation=aggregation),
        "selection": "/".join(sorted({str(r.get("selection")) for r in records if r.get("selection")})) or None,
        "train_s": _time_summary(t["train_s"] for t in per_trial),
        "per_trial": per_trial,
        "diverged": [_divergence_row(r) for r in diverged],
    }
    out.update(_over_repeats(records, per_trial, metric_names))
    out.update(_per_class(records, per_trial))
    main = out["pooled"] if aggregation == "pooled" else {m: v["mean"] for m, v in out["scores"].items()}
    out["headline"] = main.get(first["metric"])
    return out


#: Protocol shapes, told apart by the records (what the statistics depend on, not the protocol's name).
SHAPES = ("k-fold", "loso", "fixed split")
#: The figure a table of each shape ranks by: the papers and the MEGC pool leave-one-subject-out predictions
#: (kim2017: 136/173, 150/246), yu2018 averages its 10-fold trials.
HEADLINE_AGGREGATION = {"k-fold": "mean", "loso": "pooled", "fixed split": "mean"}


def protocol_shape(records: list[dict]) -> str:
    """'fixed split' (one fold per repeat), 'loso' (several folds, each testing one subject) or 'k-fold'
    (several folds, several test subjects each, e.g. 10-fold, subject-3fold)."""
    folds: dict[int, set[int]] = defaultdict(set)
    for r in records:
        folds[r["repeat"]].add(r["fold"])
    if max(len(f) for f in folds.values()) <= 1:
        return "fixed split"
    scored = [r for r in records if r.get("status", "ok") == "ok" and r.get("subjects")]
    if scored and all(len(set(r["subjects"])) == 1 for r in scored):
        return "loso"
    return "k-fold"


def trial_identity(record: dict) -> str:
    """What makes two models' trials identical, so that a paired test may pair them: the data file(s), the
    protocol file and this trial's split (the `folds` fingerprint hashes train, validation and test ids and the
    seed), repeat, fold, seed and the test units."""
    fp = record.get("fingerprints") or {}
    parts = (fp.get("data"), fp.get("data_test"), fp.get("protocol"), fp.get("folds"), record["repeat"],
             record["fold"], record.get("seed"), units_digest(record.get("sample_ids") or []))
    return "|".join(str(p) for p in parts)


def _trial_row(r: dict) -> dict[str, Any]:
    """One trial's figures (every metric, per mode), its time, selection and the digest of its test units."""
    row = {"repeat": r["repeat"], "fold": r["fold"], "seed": r.get("seed"), "units": len(r["labels"])}
    row.update(trial_scores(r))
    subjects = sorted({str(s) for s in r.get("subjects") or []})
    row.update({"modes": mode_scores(r), "train_s": (r.get("timings") or {}).get("train_s"),
                "selection": r.get("selection"), "selected_epoch": r.get("selected_epoch"),
                "test_units": units_digest(r["sample_ids"]), "identity": trial_identity(r),
                "subject": subjects[0] if len(subjects) == 1 else None, "test_subjects": len(subjects),
                "train_units": len(r.get("train_ids") or []) + len(r.get("val_ids") or [])})
    return row


def _over_repeats(records: list[dict], per_trial: list[dict], metric_names: list[str]) -> dict[str, Any]:
    """Pooled scores (all test units of a repeat at once, averaged over repeats) and the std of repeat means."""
    by_repeat: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        by_repeat[r["repeat"]].append(r)
    pooled_runs = []  # one per repeat: its id, the identities of its trials (for pairing) and its pooled scores
    for rep in sorted(by_repeat):
        ys, ps = zip(*(_arrays(r) for r in by_repeat[rep]))
        y, p = np.concatenate(ys), np.concatenate(ps)
        if records[0]["task"] == "classification":
            scores = classification_scores(y, p)
        else:
            scores = {"f1": au_scores(y, p, records[0]["classes"])["f1"]}
        pooled_runs.append({"repeat": rep, "trials": sorted(trial_identity(r) for r in by_repeat[rep]),
                            "scores": scores})
    repeat_means = {m: [float(np.nanmean([t[m] for t in per_trial if t["repeat"] == rep] or [np.nan]))
                        for rep in sorted(by_repeat)] for m in metric_names}
    return {"repeats": len(by_repeat), "pooled_runs": pooled_runs, "pooled_repeats": len(pooled_runs),
            "pooled": {m: float(np.mean([run["scores"][m] for run in pooled_runs])) for m in pooled_runs[0]["scores"]},
            "over_repeats": {m: mean_std(v) for m, v in repeat_means.items()}}


def _per_class(records: list[dict], per_trial: list[dict]) -> dict[str, Any]:
    """Classification: the row-normalised confusion matrix over all trials, its diagonal, accuracy per mode.
    AU detection: per-AU F1, mean over the folds where each AU is scored."""
    classes = list(records[0]["classes"])
    if records[0]["task"] != "classification":
        return {"per_au_f1": {au: mean_std(t[f"f1_{au}"] for t in per_trial) for au in classes}}
    y_all = np.concatenate([_arrays(r)[0] for r in records])
    p_all = np.concatenate([_arrays(r)[1] for r in records])
    cm = confusion_matrix(y_all, p_all, labels=list(range(len(classes))), normalize="true")
    counts = np.bincount(y_all, minlength=len(classes))
    modes = sorted({m for t in per_trial for m in t["modes"]})
    return {"confusion": cm.tolist(), "class_units": counts.tolist(),
            "per_class_accuracy": {c: (float(cm[i, i]) if counts[i] else None) for i, c in enumerate(classes)},
            "per_mode": {m: mean_std(t["modes"][m] for t in per_trial if m in t["modes"]) for m in modes}}


BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
#: The interval of the cluster (subject) bootstrap (docs/leaderboard.md, "Intervals and tests"): the
#: percentile interval at a level widened for the number of subjects S (Hesterberg 2015, "What teachers should
#: know about the bootstrap", The American Statistician 69: the plain percentile interval is too narrow for
#: small samples by about sqrt((S-1)/S) and the t/z ratio); measured by benchmarks/stat_calibration.py.
CI_TYPE = "expanded percentile"


@lru_cache(maxsize=16)
def subject_counts(n_subjects: int, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(n_boot, n_subjects) multinomial counts: how often each subject is drawn in each bootstrap replicate
    (`rng.integers` draws S subjects with replacement per replicate, so every row sums to S). Seeded: the same
    data give the same interval. Cached (read-only): every row of a table with S test subjects shares them."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_boot, n_subjects))
    flat = (draws + n_subjects * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_subjects).reshape(n_boot, n_subjects).astype(float)
    counts.flags.writeable = False
    return counts


def expanded_level(level: float, clusters: int) -> float:
    """The percentile level that makes the interval as wide as a t interval on `clusters` - 1 degrees of freedom
    with the sqrt(S/(S-1)) variance correction: z' = sqrt(S/(S-1)) t_{S-1}, level' = 2 Phi(z') - 1 (Hesterberg
    2015). 0.95 becomes 0.986 for 9 subjects, 0.964 for 26, 0.954 for 100."""
    from scipy.stats import norm, t

    if clusters < 2:
        return level
    z = math.sqrt(clusters / (clusters - 1)) * t.ppf(0.5 + level / 2, clusters - 1)
    return float(2 * norm.cdf(z) - 1)


def percentile_interval(replicates: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """The percentile interval of the finite replicates at `level` (None when there are none)."""
    reps = replicates[np.isfinite(replicates)]
    if reps.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high)


def subject_bootstrap_ci(records: list[dict], metric: str, n_boot: int = BOOTSTRAP_SAMPLES,
                         seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL,
                         aggregation: str = "mean") -> dict[str, Any]:
    """An (expanded) percentile interval for the row's headline figure by a cluster bootstrap over test subjects.

    Each replicate draws the S test subjects with replacement (multinomial counts k_s); every statistic is
    recomputed with the counts as weights, so a subject drawn twice counts twice (STATISTICS.md, "Cluster
    bootstrap"): each trial is rescored with unit weights k_s, and
    - aggregation "mean" (the trial mean): the trials are averaged with weights sum(k_s) / (subjects tested in
      the trial), i.e. a trial counts as often as its subjects were drawn. Under leave-one-subject-out this is
      sum(k_s a_s) / sum(k_s); rescoring the trial alone would give a subject drawn twice weight 2 in both the
      numerator and denominator of its own score and average the *distinct* subjects drawn (too narrow);
    - aggregation "pooled": the units of all folds of a repeat weighted by k_s and scored at once (pooled
      accuracy = sum(k_s correct_s) / sum(k_s n_s)), averaged over repeats.
    Metrics use unit weights as one matrix product per class (see `weighted_score`); tests check them against
    scikit-learn's `sample_weight`.
    """
    subjects = sorted({str(s) for r in records for s in r["subjects"]})
    none = {"low": None, "high": None, "level": level, "n_boot": 0, "clusters": len(subjects), "seed": seed,
            "type": CI_TYPE, "of": aggregation}
    if not subjects or any(len(r.get("subjects") or []) != len(r["labels"]) for r in records):
        return none
    pos = {s: i for i, s in enumerate(subjects)}
    counts = subject_counts(len(subjects), n_boot, seed)
    groups = [np.array([pos[str(s)] for s in r["subjects"]], dtype=np.int64) for r in records]
    if aggregation == "pooled":
        reps = _bootstrap_pooled(records, groups, counts, metric)
    else:
        reps = _bootstrap_trial_mean(records, groups, counts, metric)
    interval = percentile_interval(reps, expanded_level(level, len(subjects)))
    if interval is None:
        return none
    return dict(none, low=interval[0], high=interval[1], n_boot=int(np.isfinite(reps).sum()))


def _bootstrap_trial_mean(records: list[dict], groups: list[np.ndarray], counts: np.ndarray,
                          metric: str) -> np.ndarray:
    """Replicates of the trial mean: each trial rescored with unit weights, averaged with weights sum(k_s) /
    (number of subjects the trial tests)."""
    num = np.zeros(counts.shape[0])
    den = np.zeros(counts.shape[0])
    for r, g in zip(records, groups):
        y, p = _arrays(r)
        score = weighted_score(y, p, counts, g, metric, r["task"])
        tested = np.unique(g)
        weight = counts[:, tested].sum(1) / len(tested)
        ok = np.isfinite(score) & (weight > 0)
        num += np.where(ok, weight * np.where(ok, score, 0.0), 0.0)
        den += np.where(ok, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _bootstrap_pooled(records: list[dict], groups: list[np.ndarray], counts: np.ndarray, metric: str) -> np.ndarray:
    """Replicates of the pooled figure: per repeat, all its test units weighted and scored at once; mean over
    repeats."""
    by_repeat: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_repeat[r["repeat"]].append(i)
    per_repeat = []
    for idx in by_repeat.values():
        ys, ps = zip(*(_arrays(records[i]) for i in idx))
        g = np.concatenate([groups[i] for i in idx])
        per_repeat.append(weighted_score(np.concatenate(ys), np.concatenate(ps), counts, g, metric,
                                         records[idx[0]]["task"]))
    return _nanmean_rows(np.vstack(per_repeat))


def weighted_score(y: np.ndarray, p: np.ndarray, counts: np.ndarray, groups: list[int] | np.ndarray, metric: str,
                   task: str) -> np.ndarray:
    """`metric` of one trial when unit i weighs `counts[b, groups[i]]`, for each row b of `counts` (B, G) -> (B,),
    NaN where undefined. Sums go through the G groups (subjects), so memory is B x G whatever the number of
    units. The conventions of `classification_scores` / `au_scores` (classes / AUs absent from the weighted
    units left out)."""
    groups = np.asarray(groups, dtype=np.int64)

    def w(v: np.ndarray) -> np.ndarray:  # weighted sum of per-unit values v, for every replicate
        return counts @ np.bincount(groups, weights=v.astype(float), minlength=counts.shape[1])

    with np.errstate(invalid="ignore", divide="ignore"):
        if task != "classification":
            per_au = []
            for j in range(y.shape[1]):
                coded = (y[:, j] != -1).astype(float)
                pos, pred = (y[:, j] == 1) * coded, (p[:, j] == 1) * coded
                tp, support, predicted = w(pos * pred), w(pos), w(pred)
                per_au.append(np.where(support > 0, 2 * tp / (support + predicted), np.nan))
            return _nanmean_rows(np.vstack(per_au))
        if metric == "accuracy":
            total = w(np.ones(len(y)))
            return np.where(total > 0, w((y == p).astype(float)) / total, np.nan)
        scores = []
        for k in np.unique(np.concatenate([y, p])):
            is_k, pred_k = (y == k).astype(float), (p == k).astype(float)
            tp, support, predicted = w(is_k * pred_k), w(is_k), w(pred_k)
            if metric == "uar":
                scores.append(np.where(support > 0, tp / support, np.nan))
            else:  # uf1
                scores.append(np.where(support > 0, 2 * tp / (support + predicted), np.nan))
        return _nanmean_rows(np.vstack(scores))


def _nanmean_rows(m: np.ndarray) -> np.ndarray:
    """Column means over the finite entries of each column (NaN where a column has none)."""
    finite = np.isfinite(m)
    n = finite.sum(0)
    return np.where(n > 0, np.where(finite, m, 0.0).sum(0) / np.maximum(n, 1), np.nan)


def _divergence_row(record: dict) -> dict[str, Any]:
    d = record.get("divergence") or {}
    return {"repeat": record["repeat"], "fold": record["fold"], "what": d.get("what"), "stage": d.get("stage"),
            "epoch": d.get("epoch"), "last_finite_loss": d.get("last_finite_loss")}


def _all_diverged(diverged: list[dict]) -> dict[str, Any]:
    """The summary of a model whose every trial diverged: no score, the divergences named."""
    first = diverged[0]
    task, classes = first["task"], list(first["classes"])
    names = list(CLASSIFICATION_METRICS) if task == "classification" else ["f1"]
    out: dict[str, Any] = {
        "model": first["model"], "protocol": first["protocol"], "dataset": first["dataset"],
        "dataset_test": first.get("dataset_test", first["dataset"]), "task": task, "classes": classes,
        "metric": first["metric"], "metrics": list(first.get("metrics") or [first["metric"]]), "trials": 0,
        "repeats": 0, "std_ddof": STD_DDOF, "scores": {m: mean_std([]) for m in names}, "pooled": {},
        "pooled_repeats": 0, "pooled_runs": [], "over_repeats": {m: mean_std([]) for m in names},
        "shape": protocol_shape(diverged), "aggregation": HEADLINE_AGGREGATION[protocol_shape(diverged)],
        "headline": None,
        "ci": {"low": None, "high": None, "level": CI_LEVEL, "n_boot": 0, "clusters": 0, "seed": BOOTSTRAP_SEED,
               "type": CI_TYPE, "of": HEADLINE_AGGREGATION[protocol_shape(diverged)]}, "selection": first.get("selection"), "train_s": _time_summary([]), "per_trial": [],
        "diverged": [_divergence_row(r) for r in diverged],
    }
    if task == "classification":
        out.update({"per_class_accuracy": {c: None for c in classes}, "per_mode": {}, "class_units": [0] * len(classes)})
    else:
        out["per_au_f1"] = {au: mean_std([]) for au in classes}
    return out


def _time_summary(values: Iterable[Any]) -> dict[str, Any]:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    stats = mean_std(vals)
    return {"mean": stats["mean"], "std": stats["std"], "total": float(sum(vals)) if vals else None}
