"""Measure the leaderboard's tests and intervals by simulation (issue 28): for each protocol shape ferbench ships,
two models with no true difference and with a known one; per test the type-I error at alpha 0.05 (goal 0.03-0.06)
and the power at the known difference, and the coverage of the bootstrap interval of the headline (goal >= 0.93
for nominal 95%). docs/leaderboard.md ("Intervals and tests") holds the printed table and the assumptions.

    PYTHONPATH=. python benchmarks/stat_calibration.py [--sims 1000] [--seed 0] [--rope-only]

A second table measures the ROPE claims of k-fold tables (`significance.rope_probs`, the Bayesian correlated
t-test): how often "practically equivalent" is claimed at known true differences.

It calls the functions the leaderboard calls: `significance.corrected_t`, `significance.subject_wilcoxon`,
`significance.exact_mcnemar` on the per-trial / per-subject / per-unit figures the leaderboard extracts from
records, and `metrics.subject_bootstrap_ci` on records (lists only) with the leaderboard's B = 2000, seed and
aggregation. The old design's tests (the plain paired t-test over trials, McNemar on pooled LOSO units) run
beside them for comparison.

The simulation (a probit model of "unit i of subject s is classified right by model m in trial t"):
    right = 1[ mu_m + b_s + w_si + h_ms + gamma * mean_{s' in train(t)} g_ms' + e_mt + n_msi > 0 ]
b_s ~ N(0, 1) subject difficulty (shared by both models: heterogeneity); w_si ~ N(0, 0.5^2) unit difficulty
(shared); h_ms ~ N(0, 0.4^2) how well model m suits subject s (the subject x model interaction: the two models'
difference varies over subjects, so a new sample of subjects gives another difference); g_ms ~ N(0, 1) how much
training on subject s helps model m, so a trial's score depends on its training set (gamma = 1): trials that
share training subjects are correlated, as in real cross-validation; e_mt ~ N(0, 0.15^2) per-trial noise
(initialisation); n_msi ~ N(0, 0.6^2) model-specific unit noise. Subjects have 1 + Poisson(lam) units. Folds are
random partitions of the subjects (subject-independent, as ferbench's). The true value of a model is its
expected accuracy Phi(mu_m / sd), sd the total standard deviation of the latent (exact for this model).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, ttest_rel

from ferbench.leaderboard.significance import (ALPHA, ROPE, corrected_t, exact_mcnemar, points, rope_probs,
                                               subject_wilcoxon)
from ferbench.metrics import HEADLINE_AGGREGATION, subject_bootstrap_ci

SD = {"b": 1.0, "w": 0.5, "h": 0.4, "n": 0.6}
BASE_ACCURACY = 0.70


@dataclass(frozen=True)
class Scenario:
    """The run-to-run noise of training: tau, the sd of a per-trial shift (seed / initialisation), gamma, how much
    a trial's training subjects move its model (0: the trained model does not depend on which subjects trained)."""

    name: str
    tau: float
    gamma: float


SCENARIOS = (Scenario("S0: subject heterogeneity, no training noise", 0.0, 0.0),
             Scenario("S1: + per-trial noise and training-set dependence", 0.15, 0.5))


@dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # "k-fold", "loso" or "fixed split" (ferbench.metrics.SHAPES)
    subjects: int
    units_lam: float  # units per subject: 1 + Poisson(lam)
    folds: int
    repeats: int
    delta: float  # the known difference in accuracy (model A minus model B) for the power runs
    test_subjects: int = 0  # fixed split: subjects in the test partition (the rest train)


SHAPES = (
    Shape("10-fold x 4, 100 subjects (CK+, Oulu, MMI)", "k-fold", 100, 1.6, 10, 4, 0.05),
    Shape("LOSO, 26 subjects (CASME II)", "loso", 26, 8.5, 26, 1, 0.10),
    Shape("LOSO, 30 subjects (MMI)", "loso", 30, 5.8, 30, 1, 0.10),
    Shape("subject 3-fold, 9 subjects (replicas)", "k-fold", 9, 7.0, 3, 1, 0.15),
    Shape("fixed split, 383 test clips, 1 per group (AFEW Val)", "fixed split", 1156, 0.0, 1, 1, 0.07,
          test_subjects=383),
    Shape("fixed split, 120 test subjects x ~3 units", "fixed split", 360, 2.2, 1, 1, 0.07, test_subjects=120),
)


def latent_mu(accuracy: float, sd: float) -> float:
    """The mean latent that gives this expected accuracy."""
    return float(norm.ppf(accuracy) * sd)


def total_sd(scenario: Scenario, train_subjects: float) -> float:
    """The sd of the latent over subjects, units, trials and training sets (Var(mean of g) = 1/train subjects)."""
    return float(np.sqrt(sum(v ** 2 for v in SD.values()) + scenario.tau ** 2
                         + scenario.gamma ** 2 / train_subjects))


def splits(shape: Shape, rng: np.random.Generator) -> list[tuple[int, int, np.ndarray]]:
    """(repeat, fold, test subjects) of every trial."""
    s = shape.subjects
    if shape.kind == "fixed split":
        return [(0, 0, np.arange(shape.test_subjects))]
    if shape.kind == "loso":
        return [(0, f, np.array([f])) for f in range(s)]
    out = []
    for r in range(shape.repeats):
        perm = rng.permutation(s)
        out += [(r, f, np.sort(part)) for f, part in enumerate(np.array_split(perm, shape.folds))]
    return out


def one_run(shape: Shape, scenario: Scenario, mus: tuple[float, float], rng: np.random.Generator) -> dict:
    """One simulated evaluation of models A and B: per-trial accuracies, per-subject scores, unit correctness
    (pooled), and model A's records (lists only) for the bootstrap."""
    s = shape.subjects
    units = 1 + rng.poisson(shape.units_lam, s)
    subj = np.repeat(np.arange(s), units)
    shared = rng.normal(0, SD["b"], s)[subj] + rng.normal(0, SD["w"], len(subj))
    h = rng.normal(0, SD["h"], (2, s))
    g = rng.normal(0, 1, (2, s))
    noise = rng.normal(0, SD["n"], (2, len(subj)))
    trials = splits(shape, rng)
    acc = np.zeros((2, len(trials)))
    given = []  # model A's accuracy on new subjects given each trial's trained model: Phi((mu + c) / sd_units)
    sd_units = float(np.sqrt(sum(v ** 2 for v in SD.values())))
    correct_by_trial = []
    records = []
    names = np.array([f"s{v}" for v in range(s)])
    for t, (rep, fold, test) in enumerate(trials):
        tested = np.zeros(s, dtype=bool)
        tested[test] = True
        train = ~tested
        mask = tested[subj]
        c = scenario.gamma * g[:, train].mean(1) + rng.normal(0, scenario.tau, 2)  # each model's trained shift
        given.append((0.5 * math.erfc(-(mus[0] + c[0]) / sd_units / math.sqrt(2)), int(mask.sum())))
        right = (np.asarray(mus)[:, None] + shared[mask] + h[:, subj[mask]] + c[:, None] + noise[:, mask]) > 0
        acc[:, t] = right.mean(1)
        correct_by_trial.append(right)
        records.append({"task": "classification", "classes": ["right", "wrong"], "repeat": rep, "fold": fold,
                        "labels": np.zeros(mask.sum(), dtype=np.int64), "predictions": (~right[0]).astype(np.int64),
                        "subjects": names[subj[mask]].tolist()})
    test_units = np.array([units[test].sum() for _, _, test in trials])
    ratio = float(np.mean(test_units / (len(subj) - test_units)))  # n_test / n_train units, as the records give
    w = np.array([n for _, n in given], dtype=float) if shape.kind == "loso" else np.ones(len(given))
    trained = float(np.average([v for v, _ in given], weights=w))  # trial mean, or pooled (unit-weighted) for LOSO
    return {"acc": acc, "right": correct_by_trial, "records": records, "ratio": ratio, "trained": trained,
            "units": len(subj)}


def simulate(shape: Shape, scenario: Scenario, sims: int, seed: int) -> dict[str, float]:
    """Type-I error (null runs), power (runs with the known difference) of the shape's test and of the old
    design's, and the coverage of model A's interval of its true accuracy (null runs)."""
    rng = np.random.default_rng(seed)
    train_subjects = shape.subjects - (shape.test_subjects or shape.subjects / shape.folds)
    sd = total_sd(scenario, train_subjects)
    mu_a, mu_b = latent_mu(BASE_ACCURACY, sd), latent_mu(BASE_ACCURACY - shape.delta, sd)
    aggregation = HEADLINE_AGGREGATION[shape.kind]
    out: dict[str, np.ndarray] = {}
    cover, cover_trained = [], []
    for cond, mus in (("null", (mu_a, mu_a)), ("power", (mu_a, mu_b))):
        d_trials, ratios, discordant = [], [], []
        for _ in range(sims):
            run = one_run(shape, scenario, mus, rng)
            d_trials.append(run["acc"][0] - run["acc"][1])
            ratios.append(run["ratio"])
            discordant.append((sum(int((r[0] & ~r[1]).sum()) for r in run["right"]),
                               sum(int((r[1] & ~r[0]).sum()) for r in run["right"])))
            if cond == "null":
                ci = subject_bootstrap_ci(run["records"], "accuracy", aggregation=aggregation)
                cover.append(ci["low"] <= BASE_ACCURACY <= ci["high"])
                cover_trained.append(ci["low"] <= run["trained"] <= ci["high"])
        d, bc = np.array(d_trials), np.array(discordant)
        if shape.kind == "k-fold":
            out[cond] = corrected_t(d, np.array(ratios))
            out[f"old_{cond}"] = ttest_rel(d, np.zeros_like(d), axis=-1).pvalue
        elif shape.kind == "loso":
            out[cond] = subject_wilcoxon(d)  # one trial per subject: the trial differences are the subjects'
            out[f"old_{cond}"] = exact_mcnemar(bc[:, 0], bc[:, 1])  # the old design: McNemar on pooled units
        else:
            out[cond] = exact_mcnemar(bc[:, 0], bc[:, 1])
            out[f"old_{cond}"] = np.full(sims, np.nan)
    return {"type1": _rejects(out["null"]), "power": _rejects(out["power"]), "old_type1": _rejects(out["old_null"]),
            "old_power": _rejects(out["old_power"]), "coverage": float(np.mean(cover)),
            "coverage_trained": float(np.mean(cover_trained))}


def _rejects(p: np.ndarray) -> float:
    """Share of runs with p < alpha (an undefined p does not reject); NaN when the test never ran."""
    p = np.asarray(p, dtype=float)
    return float("nan") if np.isnan(p).all() else float(np.mean(np.nan_to_num(p, nan=1.0) < ALPHA))


TESTS = {"k-fold": ("corrected resampled t", "plain paired t over trials"),
         "loso": ("Wilcoxon over subjects", "McNemar on pooled units"),
         "fixed split": ("exact McNemar", "–")}


#: k-fold shapes of the ROPE table: the main table's, and DFEW's official 5 folds (16,372 clips; no subject ids,
#: every clip its own group), where the data are large enough for a ±1 point claim.
ROPE_SHAPES = tuple(s for s in SHAPES if s.kind == "k-fold") + (
    Shape("5-fold, 16,372 clips, 1 per group (DFEW)", "k-fold", 16372, 0.0, 5, 1, 0.05),)

#: True differences (model A minus model B, accuracy) at which the ROPE claims are counted: none, half the ROPE,
#: its edge, twice it, five times it.
ROPE_DELTAS = (0.0, ROPE / 2, ROPE, 2 * ROPE, 5 * ROPE)


def rope_claims(shape: Shape, scenario: Scenario, sims: int, seed: int) -> dict[float, float]:
    """Per true difference: the share of runs in which the board would call B 'practically equivalent' to A
    (A the best row, one comparison: 1 - P(within) < alpha)."""
    rng = np.random.default_rng(seed)
    train_subjects = shape.subjects - shape.subjects / shape.folds
    sd = total_sd(scenario, train_subjects)
    out = {}
    for delta in ROPE_DELTAS:
        mus = (latent_mu(BASE_ACCURACY, sd), latent_mu(BASE_ACCURACY - delta, sd))
        claims = 0
        for _ in range(sims):
            run = one_run(shape, scenario, mus, rng)
            trials = splits_of(run)
            rows = [{"per_trial": [dict(t, accuracy=float(run["acc"][m, i])) for i, t in enumerate(trials)]}
                    for m in (0, 1)]
            p = rope_probs("k-fold", rows[0], rows[1], "accuracy").equivalence_p
            claims += p is not None and p < ALPHA  # None: no posterior (every per-trial difference equal)
        out[delta] = claims / sims
    return out


def splits_of(run: dict) -> list[dict]:
    """The run's trials as the board pairs them (identity, repeat, fold, test and training units)."""
    return [{"identity": f"{r['repeat']}/{r['fold']}", "repeat": r["repeat"], "fold": r["fold"],
             "units": len(r["labels"]), "train_units": run["units"] - len(r["labels"])} for r in run["records"]]


def print_rope_table(sims: int, seed: int) -> None:
    print(f"\nROPE ±{points(ROPE)} on k-fold tables ({sims} simulated runs per cell): share of runs claiming B "
          "'practically equivalent' to A, by the true difference A - B (one comparison)")
    heads = " | ".join(f"Δ {100 * d:g}" for d in ROPE_DELTAS)
    print(f"| protocol shape | scenario | {heads} | s |\n|---|---|" + "---|" * len(ROPE_DELTAS) + "---|")
    for i, shape in enumerate(ROPE_SHAPES):
        for j, scenario in enumerate(SCENARIOS):
            t0 = time.perf_counter()
            r = rope_claims(shape, scenario, sims, seed + 100 + 10 * i + j)
            cells = " | ".join(f"{share:.3f}" for share in r.values())
            print(f"| {shape.name} | {scenario.name[:2]} | {cells} | {time.perf_counter() - t0:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=1000, help="simulated runs per cell (null and known difference)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rope-only", action="store_true", help="only the ROPE table")
    args = ap.parse_args()
    if args.rope_only:
        print_rope_table(args.sims, args.seed)
        return
    print(f"{args.sims} simulated runs per cell and condition; alpha {ALPHA}; model A's expected accuracy "
          f"{BASE_ACCURACY}; coverage of model A's 95% interval of it over the null runs")
    print("| protocol shape | scenario | test | type-I error | power (Δ accuracy) | old design: type-I / power "
          "| 95% CI coverage: method / trained models | s |\n|---|---|---|---|---|---|---|---|")
    for i, shape in enumerate(SHAPES):
        for j, scenario in enumerate(SCENARIOS):
            t0 = time.perf_counter()
            r = simulate(shape, scenario, args.sims, args.seed + 10 * i + j)
            main_test, old_test = TESTS[shape.kind]
            old = "–" if np.isnan(r["old_type1"]) else f"{old_test}: {r['old_type1']:.3f} / {r['old_power']:.3f}"
            print(f"| {shape.name} | {scenario.name[:2]} | {main_test} | {r['type1']:.3f} | {r['power']:.3f} "
                  f"({100 * shape.delta:.0f} points) | {old} | {r['coverage']:.3f} / {r['coverage_trained']:.3f} "
                  f"({HEADLINE_AGGREGATION[shape.kind]}) | {time.perf_counter() - t0:.0f} |", flush=True)
    print("; ".join(f"{s.name} (tau {s.tau}, gamma {s.gamma})" for s in SCENARIOS))
    print_rope_table(args.sims, args.seed)


if __name__ == "__main__":
    main()
