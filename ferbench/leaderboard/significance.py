"""Which differences on a board are real: the statistical tests between the best row and each other one.

- `paired_t`: scipy's paired t-test over *identical* trials only: the same data and protocol (the row keys'
  `d` and `p` parts) and, per trial, the same repeat, fold, seed and test units. n pairs is reported.
- `holm`: Holm's step-down correction of the p-values of one table (a board of 12 models makes 11
  comparisons; uncorrected p < 0.05 verdicts would call about one difference in twenty real by chance).
  scipy has no Holm and statsmodels is not a dependency for five lines.
- `mcnemar`: the exact McNemar test (scipy's binomial test on the discordant pairs) on the pooled predictions of
  single-run protocols (LOSO: one trial per subject, many of them with a handful of units), paired by test unit.
- `repeat_level_t`: kim2017 Table 6's design: the whole protocol rerun with other initialisations
  (`--repeats 20`), one rate per run (pooled over its folds), t-test over the run-level rates paired by repeat
  (kim2017 does not say whether its test was paired; its rows are each tested against the row above, ours
  against the best row).
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import binomtest, ttest_rel


def _same_setting(key_a: str | None, key_b: str | None) -> bool:
    """Two rows' records come from the same data file(s) and protocol file (key parts d and p)."""
    return key_a is None or key_b is None or key_a.split("-")[:2] == key_b.split("-")[:2]


def paired_t(best: dict, other: dict, metric: str, key_best: str | None = None,
             key_other: str | None = None) -> tuple[float | None, int, str | None]:
    """(p, n pairs, note) of a paired t-test over identical trials."""
    if not _same_setting(key_best, key_other):
        return None, 0, "other data or protocol file: no identical trials to pair"
    ident = ("repeat", "fold", "seed", "test_units")
    a = {tuple(t.get(k) for k in ident): t[metric] for t in best["per_trial"]}
    b = {tuple(t.get(k) for k in ident): t[metric] for t in other["per_trial"]}
    keys = sorted(set(a) & set(b), key=str)
    unmatched = len(b) - len(keys)
    left_out = f"; {unmatched} trial(s) without an identical trial left out" if unmatched else ""
    if len(keys) < 2:
        return None, len(keys), f"{len(keys)} identical trial(s); a paired test needs 2 or more{left_out}"
    x, y = [a[k] for k in keys], [b[k] for k in keys]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in x + y):
        return None, len(keys), "a trial's score is undefined"
    if all(math.isclose(u - v, x[0] - y[0], abs_tol=1e-12) for u, v in zip(x, y)):
        return None, len(keys), "the per-trial differences are all equal; the t statistic is undefined"
    p = float(ttest_rel(x, y).pvalue)
    return (p if math.isfinite(p) else None), len(keys), (left_out[2:] or None)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (None stays None and does not count as a comparison).

    >>> holm([0.01, 0.04, None, 0.03])
    [0.03, 0.06, None, 0.06]
    """
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, out, running = len(idx), list(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = round(running, 15)
    return out


def mcnemar(best_units: dict[Any, bool], other_units: dict[Any, bool]) -> tuple[float | None, int, int]:
    """(exact p, discordant pairs, paired units) on the units both rows predicted (unit -> correct)."""
    common = set(best_units) & set(other_units)
    b = sum(1 for u in common if best_units[u] and not other_units[u])
    c = sum(1 for u in common if other_units[u] and not best_units[u])
    if not common:
        return None, 0, 0
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return p, b + c, len(common)


def repeat_level_t(best: dict, other: dict, metric: str) -> tuple[float | None, int]:
    """(p, n runs): paired t-test over the per-repeat pooled rates of two rows (kim2017 Table 6's design)."""
    a, b = best.get("pooled_runs") or [], other.get("pooled_runs") or []
    n = min(len(a), len(b))
    if n < 2:
        return None, n
    x, y = [r[metric] for r in a[:n]], [r[metric] for r in b[:n]]
    if all(math.isclose(u - v, x[0] - y[0], abs_tol=1e-12) for u, v in zip(x, y)):
        return None, n
    p = float(ttest_rel(x, y).pvalue)
    return (p if math.isfinite(p) else None), n
