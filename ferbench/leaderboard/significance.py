"""Which differences on a board are real: one test per protocol shape between the best row and each other one,
Holm-corrected over every comparison the table makes. Measured by simulation in benchmarks/stat_calibration.py
(docs/leaderboard.md, "Intervals and tests"); the formulas and references are in the docstrings.

Every test pairs only *identical* trials (`ferbench.metrics.trial_identity`: the same data file(s), protocol
file and split, repeat, fold, seed and test units). The shapes (`ferbench.metrics.protocol_shape`):

- k-fold (10-fold x 4, subject-3fold, 3fold): the **corrected resampled t-test** (Nadeau & Bengio 2003,
  Machine Learning 52; used for r x k-fold by Bouckaert & Frank 2004): the folds' training sets overlap, so
  the per-trial differences are correlated and the plain paired t-test over them rejects a true null far
  more often than alpha. The variance of the mean difference is taken as s^2 (1/n + n_test/n_train).
- leave one subject out: the **Wilcoxon signed-rank test over subjects** (scipy), each subject's score
  (mean over repeats) paired across the two models; the units of a subject are correlated, so a unit-level
  test (McNemar on clips) overstates the evidence.
- fixed split (one train/test partition, e.g. AFEW Val): the **exact McNemar test** on the paired test units
  (two-sided binomial test on the discordant pairs).

A test that finds no difference does not make two rows equivalent. Equivalence is judged separately, on k-fold
tables, by the **Bayesian correlated t-test** with a region of practical equivalence (Corani & Benavoli 2015;
Benavoli et al. 2017, JMLR 18): the posterior of the mean difference under the corrected t-test's own
Nadeau-Bengio variance (scipy's Student t) gives P(the best row is ahead by more than the ROPE), P(the two lie within it) and
P(the other row is ahead by more than it) (`rope_probs`). Equivalence is claimed where 1 - P(within), a
conservative two-one-sided-tests p, stays below alpha after the same Holm correction as the table's test.

`repeat_level_t` is kim2017 Table 6's design (a t-test over whole-protocol reruns), shown beside the verdict
for comparison with that paper, never in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom, t as student_t, ttest_rel, wilcoxon

ALPHA = 0.05
#: Wilcoxon's treatment of subjects whose two scores are equal: "wilcox" drops them (the classic test; with a
#: handful of units per subject many differences are exactly 0, and "zsplit"/"pratt" keep them at rank cost).
WILCOXON_ZERO_METHOD = "wilcox"
TESTS = {
    "k-fold": ("corrected resampled t-test", "corrected t", "trials"),
    "loso": ("Wilcoxon signed-rank test over subjects", "Wilcoxon", "subjects"),
    "fixed split": ("exact McNemar test", "McNemar", "units"),
}


#: Region of practical equivalence (a fraction of the table's metric: 0.01 = one percentage point, the width
#: Benavoli et al. 2017 use for accuracy).
ROPE = 0.01
BAYESIAN_TEST = "Bayesian correlated t-test"


def points(fraction: float) -> str:
    """A ROPE half width in percentage points of the metric: '1 point', '2.5 points'."""
    return f"{100 * fraction:g} point" + ("" if math.isclose(100 * fraction, 1) else "s")


@dataclass(frozen=True)
class RopeResult:
    """Posterior probabilities that the other row is below the best one by more than `rope`, within `rope` of
    it, or above it by more (None, with `note`, where they cannot be computed)."""

    rope: float | None
    below: float | None
    equivalent: float | None
    above: float | None
    note: str | None = None

    @property
    def equivalence_p(self) -> float | None:
        """1 - P(within): under the test's flat prior P(below) and P(above) are the p-values of the two one-sided
        tests of equivalence (TOST), so their sum bounds the TOST p from above: a valid p for "the two lie within
        the ROPE", which the board Holm-corrects over the table's comparisons before it claims equivalence."""
        if self.equivalent is None or not math.isfinite(self.equivalent):
            return None
        return max(0.0, 1.0 - self.equivalent)


@dataclass(frozen=True)
class TestResult:
    """One comparison: the test's name, its p (None when it cannot be computed: `note` says why), how many
    paired things it used (`n` of `over`: trials, subjects or units)."""

    test: str
    p: float | None
    n: int
    over: str
    note: str | None = None


def corrected_t(diffs: np.ndarray, test_train_ratio: float | np.ndarray) -> np.ndarray:
    """Two-sided p of the corrected resampled t-test over the last axis of `diffs` (per-trial differences of
    two models on identical trials): t = mean / sqrt((1/n + n2/n1) s^2), Student's t with n - 1 degrees of
    freedom (Nadeau & Bengio 2003; Bouckaert & Frank 2004). NaN where s = 0 or n < 2."""
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    if n < 2:
        return np.full(d.shape[:-1], np.nan)
    var = d.var(axis=-1, ddof=1) * (1.0 / n + np.asarray(test_train_ratio, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = d.mean(axis=-1) / np.sqrt(var)
    p = 2 * student_t.sf(np.abs(t), n - 1)
    return np.where(var > 1e-24, p, np.nan)


def subject_wilcoxon(diffs: np.ndarray) -> np.ndarray:
    """Two-sided p of the Wilcoxon signed-rank test over the last axis (per-subject differences), zeros
    handled by WILCOXON_ZERO_METHOD; NaN where every difference is 0."""
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    nonzero = (np.abs(d) > 1e-12).any(axis=-1)
    p = np.full(d.shape[0], np.nan)
    if nonzero.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            p[nonzero] = wilcoxon(d[nonzero], zero_method=WILCOXON_ZERO_METHOD, axis=-1).pvalue
    return p.reshape(np.shape(diffs)[:-1])


def exact_mcnemar(b: np.ndarray | int, c: np.ndarray | int) -> np.ndarray:
    """Two-sided exact McNemar p from the discordant counts (b: only the first model right, c: only the
    second): the binomial test of b in b + c at 1/2, i.e. min(1, 2 P(X <= min(b, c))) (= scipy's binomtest)."""
    b, c = np.asarray(b), np.asarray(c)
    return np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5))


def pair_trials(best: dict, other: dict) -> tuple[list[tuple[dict, dict]], int]:
    """The (best, other) trial pairs that are identical (same identity), and how many of `other`'s trials have
    no identical trial in `best`."""
    mine = {t["identity"]: t for t in best["per_trial"]}
    pairs = [(mine[t["identity"]], t) for t in other["per_trial"] if t["identity"] in mine]
    pairs.sort(key=lambda ab: (ab[0]["repeat"], ab[0]["fold"]))
    return pairs, len(other["per_trial"]) - len(pairs)


def compare(shape: str, best: dict, other: dict, metric: str, units: tuple[dict, dict] | None = None) -> TestResult:
    """The test of `shape` between two rows' summaries (`units`: for a fixed split, unit -> correct per row
    keyed by trial identity and unit id)."""
    name, _, over = TESTS[shape]
    pairs, unmatched = pair_trials(best, other)
    left_out = f"{unmatched} trial(s) without an identical trial in the best row left out" if unmatched else None
    if not pairs:
        return TestResult(name, None, 0, over, "no identical trials (other data, protocol or splits): nothing to pair")
    if any(_undefined(a[metric]) or _undefined(b[metric]) for a, b in pairs):
        return TestResult(name, None, 0, over, "a trial's score is undefined")
    if shape == "k-fold":
        return _corrected(pairs, metric, name, over, left_out)
    if shape == "loso":
        return _wilcoxon(pairs, metric, name, over, left_out)
    return _mcnemar(pairs, units, name, over, left_out)


def rope_probs(shape: str, best: dict, other: dict, metric: str, rope: float = ROPE) -> RopeResult:
    """The Bayesian correlated t-test (Corani & Benavoli 2015) between two rows' identical trials (k-fold tables
    only), with a region of practical equivalence of +-`rope` around 0: under its flat prior the mean difference
    (other - best) has the posterior Student t(n - 1, mean d, s^2 (1/n + n_test/n_train)), the corrected
    resampled t-test's own variance and ratio (baycomp's `CorrelatedTTest` takes 1/(k - 1), the same for equal
    folds). Where that variance is 0 there is no posterior, as there is no t.

    >>> trial = lambda r, f, s: {"identity": f"{r}/{f}", "repeat": r, "fold": f, "units": 1, "train_units": 4,
    ...                          "accuracy": s}
    >>> a = {"per_trial": [trial(r, f, 0.80 + 0.01 * f) for r in range(2) for f in range(5)]}
    >>> b = {"per_trial": [trial(r, f, 0.80 + 0.01 * f - 0.001 * (-1) ** (r + f)) for r in range(2) for f in range(5)]}
    >>> round(rope_probs("k-fold", a, b, "accuracy").equivalence_p, 4)
    0.0
    >>> rope_probs("k-fold", a, a, "accuracy").note
    'the per-trial differences are all equal'
    """
    if shape != "k-fold":
        why = "leave one subject out" if shape == "loso" else "a fixed split"
        return RopeResult(None, None, None, None, f"no ROPE for {why} (the correlated t-test is for k-fold trials)")
    pairs, _ = pair_trials(best, other)
    if any(_undefined(a[metric]) or _undefined(b[metric]) for a, b in pairs):
        return RopeResult(rope, None, None, None, "a trial's score is undefined")
    diffs = _corrected_differences(pairs, metric)
    if isinstance(diffs, str):
        return RopeResult(rope, None, None, None, diffs)
    d, ratio = -diffs[0], diffs[1]  # other - best
    var = d.var(ddof=1) * (1.0 / len(d) + ratio)
    if not var > 1e-24:  # corrected_t's bound: equal differences say nothing about their spread
        return RopeResult(rope, None, None, None, "the per-trial differences are all equal")
    post = student_t(len(d) - 1, loc=d.mean(), scale=math.sqrt(var))
    below, above = float(post.cdf(-rope)), float(post.sf(rope))
    return RopeResult(rope, below, max(0.0, 1.0 - below - above), above)


def _undefined(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _join(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _corrected_differences(pairs: list[tuple[dict, dict]], metric: str) -> tuple[np.ndarray, float] | str:
    """(best - other per paired trial, mean n_test/n_train): what the corrected t-test and the correlated
    Bayesian t-test both read; a note instead where there are fewer than 2 trials or no training units."""
    if len(pairs) < 2:
        return f"{len(pairs)} identical trial(s); the test needs 2 or more"
    ratios = [a["units"] / a["train_units"] for a, _ in pairs if a.get("train_units")]
    if not ratios:
        return "the records name no training units (n_test/n_train)"
    return np.array([a[metric] - b[metric] for a, b in pairs], dtype=float), float(np.mean(ratios))


def _corrected(pairs: list[tuple[dict, dict]], metric: str, name: str, over: str, left_out: str | None) -> TestResult:
    diffs = _corrected_differences(pairs, metric)
    if isinstance(diffs, str):
        return TestResult(name, None, len(pairs), over, _join(diffs, left_out))
    d, ratio = diffs
    p = float(corrected_t(d, ratio))
    if not math.isfinite(p):
        return TestResult(name, None, len(d), over, _join("the per-trial differences are all equal", left_out))
    return TestResult(name, p, len(d), over, left_out)


def _wilcoxon(pairs: list[tuple[dict, dict]], metric: str, name: str, over: str, left_out: str | None) -> TestResult:
    per: dict[str, list[float]] = {}
    for a, b in pairs:  # a subject tested in several repeats: its mean difference over them
        per.setdefault(str(a["subject"]), []).append(a[metric] - b[metric])
    d = np.array([np.mean(v) for v in per.values()])
    p = float(subject_wilcoxon(d)) if len(d) else math.nan
    if not math.isfinite(p):
        return TestResult(name, None, len(d), over, _join("every subject's two scores are equal", left_out))
    return TestResult(name, p, len(d), over, left_out)


def _mcnemar(pairs: list[tuple[dict, dict]], units: tuple[dict, dict] | None, name: str, over: str,
             left_out: str | None) -> TestResult:
    if units is None:
        return TestResult(name, None, 0, over, "no per-unit correctness (AU detection): McNemar does not apply")
    first = pairs[0][0]  # a split run several times (seeds): the first common repeat
    note = (f"McNemar on repeat {first['repeat']}, the first of {len(pairs)} runs of this split"
            if len(pairs) > 1 else None)
    ua, ub = units[0].get(first["identity"], {}), units[1].get(first["identity"], {})
    common = set(ua) & set(ub)
    b = sum(1 for u in common if ua[u] and not ub[u])
    c = sum(1 for u in common if ub[u] and not ua[u])
    return TestResult(name, float(exact_mcnemar(b, c)), len(common), over, _join(note, left_out))


def holm(pvalues: list[float | None], m: int | None = None) -> list[float | None]:
    """Holm-adjusted p-values over m comparisons (default: all of them; statsmodels' `multipletests`). A None
    (a comparison the table makes but cannot test) keeps None and still counts in m: it enters the step-down as
    p = 1, a comparison that is never rejected, so leaving it out would make the others' correction too small.

    >>> holm([0.01, 0.04, None, 0.03])
    [0.04, 0.09, None, 0.09]
    """
    from statsmodels.stats.multitest import multipletests

    m = len(pvalues) if m is None else m
    if not any(p is not None for p in pvalues):
        return list(pvalues)
    filled = [1.0 if p is None else float(p) for p in pvalues] + [1.0] * max(0, m - len(pvalues))
    adjusted = multipletests(filled, alpha=ALPHA, method="holm")[1]
    return [None if p is None else round(float(a), 15) for p, a in zip(pvalues, adjusted)]


def repeat_level_t(best: dict, other: dict, metric: str) -> tuple[float | None, int]:
    """(p, n runs): paired t-test over the per-repeat pooled rates of two rows (kim2017 Table 6's design).
    Repeats pair by repeat id, and only when both ran the same trials in it (same data, protocol, splits and
    seeds): a repeat one row lost to divergence is left out, never shifted onto another."""
    mine = {run["repeat"]: run for run in best.get("pooled_runs") or []}
    pairs = [(mine[run["repeat"]], run) for run in other.get("pooled_runs") or []
             if run["repeat"] in mine and mine[run["repeat"]]["trials"] == run["trials"]]
    if len(pairs) < 2:
        return None, len(pairs)
    x, y = [a["scores"][metric] for a, _ in pairs], [b["scores"][metric] for _, b in pairs]
    if all(math.isclose(u - v, x[0] - y[0], abs_tol=1e-12) for u, v in zip(x, y)):
        return None, len(pairs)
    p = float(ttest_rel(x, y).pvalue)
    return (p if math.isfinite(p) else None), len(pairs)
