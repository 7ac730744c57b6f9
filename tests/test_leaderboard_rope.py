"""Practical equivalence on k-fold tables: the Bayesian correlated t-test with a region of practical equivalence
(ROPE). A large p never makes two rows equivalent; the posterior probability of lying within the ROPE may.
Expected probabilities are computed here from the records' predictions with scipy, not by ferbench."""

from __future__ import annotations

import csv
import doctest
import json
import re

import numpy as np
import pytest
from scipy.stats import t as student_t
from sklearn.metrics import accuracy_score
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from _leaderboard_records import make_record, rescore, write_record
from ferbench.cli import app
from ferbench.leaderboard import build_board, write_leaderboard
from ferbench.leaderboard import significance

REPEATS, FOLDS, UNITS = 2, 5, 400


def _kfold(model: str, hit: float, rng: np.random.Generator) -> list[dict]:
    out = []
    for k in range(REPEATS):
        for f in range(FOLDS):
            rec = make_record(model, "10fold", "ck+", k, f, rng=rng, hit=hit, n=UNITS)
            rec["train_ids"] = [f"t{i}" for i in range(4 * UNITS)]
            out.append(rec)
    return out


def _near_twin(records: list[dict], model: str) -> list[dict]:
    """`records` with one test unit per trial turned wrong (6 trials) or right (4): 0.25 points apart per trial,
    0.05 below on average (so `records` is the best row)."""
    out = []
    for i, r in enumerate(records):
        preds = list(r["predictions"])
        worse = i % 2 == 0 or i == len(records) - 1
        j = next(j for j, (y, p) in enumerate(zip(r["labels"], preds)) if (y == p) == worse)
        preds[j] = (r["labels"][j] + 1) % len(r["classes"]) if worse else r["labels"][j]
        out.append(rescore(dict(r, model=model, task_id=r["task_id"].replace(r["model"], model), predictions=preds)))
    return out


def _same_rate(records: list[dict], model: str) -> list[dict]:
    """`records` with one right and one wrong test unit swapped per trial: other predictions, the same accuracy in
    every trial, so every per-trial difference is 0 and there is no posterior (nor a corrected t)."""
    out = []
    for r in records:
        preds = list(r["predictions"])
        right = next(j for j, (y, p) in enumerate(zip(r["labels"], preds)) if y == p)
        wrong = next(j for j, (y, p) in enumerate(zip(r["labels"], preds)) if y != p)
        preds[right], preds[wrong] = (r["labels"][right] + 1) % len(r["classes"]), r["labels"][wrong]
        out.append(rescore(dict(r, model=model, task_id=r["task_id"].replace(r["model"], model), predictions=preds)))
    return out


def _expected(best: list[dict], other: list[dict], rope: float) -> tuple[float, float, float]:
    """The posterior of the mean difference: Student t, n - 1 df, scale^2 = s^2 (1/n + 1/(folds - 1))."""
    d = np.array([accuracy_score(b["labels"], b["predictions"]) - accuracy_score(a["labels"], a["predictions"])
                  for a, b in zip(best, other)])
    n = len(d)
    post = student_t(n - 1, loc=d.mean(), scale=np.sqrt(d.var(ddof=1) * (1 / n + 1 / (FOLDS - 1))))
    return post.cdf(-rope), post.cdf(rope) - post.cdf(-rope), post.sf(rope)


@pytest.fixture(scope="module")
def board_records(tmp_path_factory):
    rng = np.random.default_rng(11)
    groups = {"stc": _kfold("stc", 0.8, rng), "static": _kfold("static", 0.6, rng),
              "mv-lstm": _kfold("mv-lstm", 0.79, rng)}
    groups["lstm-last"] = _near_twin(groups["stc"], "lstm-last")
    groups["tpool-max"] = _same_rate(groups["stc"], "tpool-max")  # ties stc: the label breaks it (stc first)
    runs = tmp_path_factory.mktemp("rope") / "runs"
    for recs in groups.values():
        for r in recs:
            write_record(runs, r)
    return runs, groups


def test_rope_probabilities_follow_the_correlated_t_posterior_and_equivalence_is_holm_corrected(board_records, tmp_path):
    runs, groups = board_records
    board = build_board(runs)
    rows = {r["label"]: r for r in board.rows() if not r["reported_only"]}
    best = next(r["label"] for r in rows.values() if r["best"])
    assert best == "stc"
    others = [name for name in rows if name != best]
    assert rows[best]["p_rope_equivalent"] is None  # the best row is not compared with itself
    # tpool-max scores what stc scores in every trial: no spread, no posterior, no claim (and no t either)
    same = rows["tpool-max"]
    assert same["p_rope_equivalent"] is None and same["rope_claim"] is None and same["rope_p"] is None
    assert same["rope_note"] == "the per-trial differences are all equal" and same["p_raw"] is None
    tested = [name for name in others if name != "tpool-max"]
    want = {name: _expected(groups[best], groups[name], 0.01) for name in tested}
    for name in tested:
        got = (rows[name]["p_rope_below"], rows[name]["p_rope_equivalent"], rows[name]["p_rope_above"])
        assert got == pytest.approx(want[name], abs=1e-9), name
    # the claim: 1 - P(within) (a conservative TOST p), Holm-corrected over the table's 4 comparisons, the
    # untestable one included (as p = 1)
    holm = multipletests([1 - want[n][1] for n in tested] + [1.0], method="holm")[1][:-1]
    others = tested
    for name, p in zip(others, holm):
        assert rows[name]["rope_p"] == pytest.approx(p, abs=1e-9), name
        assert rows[name]["rope_claim"] == ("equivalent" if p < 0.05 else None), name
    twin = "lstm-last"
    assert rows[twin]["rope_claim"] == "equivalent"  # 0.25 points apart on every trial
    # 20 points below, or an independent draw at nearly the same rate: no claim of equivalence
    assert rows["static"]["rope_claim"] is None and rows["static"]["p_rope_below"] > 0.999
    assert rows["mv-lstm"]["rope_claim"] is None and rows["mv-lstm"]["p_rope_equivalent"] < 0.95

    write_leaderboard(board, ["md", "csv", "json"], tmp_path / "o")
    md = re.sub(r"\\(.)", r"\1", (tmp_path / "o" / "leaderboard.md").read_text())
    twin_line = next(line for line in md.splitlines() if line.startswith("| ") and f"| {twin} |" in line)
    assert "practically equivalent to best (within ±1 point, Holm p " in twin_line
    static_line = next(line for line in md.splitlines() if "| static |" in line)
    assert "practically" not in static_line
    assert static_line.endswith("| P(below) 1.00, P(within ±1 point) 0.00, P(above) 0.00 |")
    assert "Bayesian correlated t-test" in md and "P(below / within / above ±1 point of" in md
    with open(tmp_path / "o" / "leaderboard.csv", newline="") as fh:
        by = {r["label"]: r for r in csv.DictReader(fh)}
    assert float(by["static"]["p_rope_below"]) == pytest.approx(rows["static"]["p_rope_below"], abs=1e-9)
    assert by[twin]["rope_claim"] == "equivalent" and by[best]["p_rope_equivalent"] == ""
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert {r["model"]: r["rope_claim"] for r in doc["rows"] if not r["reported_only"]}[twin] == "equivalent"


def test_a_wider_rope_is_set_from_the_command_line_and_a_bad_one_refused_before_any_file(board_records, tmp_path):
    runs, groups = board_records
    runner = CliRunner()
    out = tmp_path / "wide"
    res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--format", "json", "--out", str(out),
                              "--rope", "30"])
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads((out / "leaderboard.json").read_text())["rows"]
            if not r["reported_only"]}
    best = next(m for m, r in rows.items() if r["best"])
    assert rows["static"]["rope"] == 0.3
    want = _expected(groups[best], groups["static"], 0.3)  # 20 points below lies within +-30
    assert rows["static"]["p_rope_equivalent"] == pytest.approx(want[1], abs=1e-9)
    assert rows["static"]["rope_claim"] == "equivalent"  # 1 - P(within) alone is below 0.05 (Holm's m is 3)
    for bad in ("0", "-1", "51", "nan"):
        res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--format", "md", "--out",
                                  str(tmp_path / f"bad{bad}"), "--rope", bad])
        assert res.exit_code == 2 and "--rope" in res.output and "Traceback" not in res.output, (bad, res.output)
        assert not (tmp_path / f"bad{bad}").exists()


def test_no_rope_where_the_correlated_t_test_does_not_apply(tmp_path):
    rng = np.random.default_rng(3)
    for model, hit in (("stc", 0.8), ("static", 0.5)):
        for f in range(6):
            rec = make_record(model, "loso", "mmi", 0, f, rng=rng, hit=hit, n=8)
            rec["subjects"] = [f"sub{f}"] * 8
            write_record(tmp_path / "runs", rec)
    board = build_board(tmp_path / "runs")
    row = next(r for r in board.rows() if r["label"] == "static")
    assert row["p_raw"] is not None  # tested (Wilcoxon over subjects) ...
    assert row["p_rope_equivalent"] is None and row["rope_claim"] is None  # ... but no ROPE claim
    assert "no ROPE for leave one subject out" in row["rope_note"]
    write_leaderboard(board, ["md"], tmp_path / "o")
    md = re.sub(r"\\(.)", r"\1", (tmp_path / "o" / "leaderboard.md").read_text())
    assert "| static |" in md and next(line for line in md.splitlines() if "| static |" in line).endswith("| – |")
    assert "ROPE vs best: Bayesian" not in md  # the method note names no ROPE on a LOSO table


def test_significance_examples_hold():
    assert doctest.testmod(significance).failed == 0
