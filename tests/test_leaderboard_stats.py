"""The leaderboard's statistics design (issue 28): the interval and the test each protocol shape gets, which
trials a test may pair, Holm's m, the verdict's words, the LOSO headline, and which rows are ranked (issue 27).
Expected values are computed here from the records with numpy / scipy / scikit-learn, not by ferbench."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.stats import ttest_rel, wilcoxon
from sklearn.metrics import accuracy_score

from _leaderboard_records import make_record, write_record
from ferbench.leaderboard import build_board, write_leaderboard
from ferbench.leaderboard.significance import repeat_level_t
from ferbench.metrics import subject_bootstrap_ci, summarize


def _loso(model: str, hit: float, subjects: int = 12, rng=None, units=None, repeat: int = 0,
          dataset: str = "mmi") -> list[dict]:
    """Leave-one-subject-out records: fold f tests subject f only (units[f] clips)."""
    rng = rng or np.random.default_rng(0)
    out = []
    for f in range(subjects):
        n = units[f] if units else 6
        rec = make_record(model, "loso", dataset, repeat, f, rng=rng, hit=hit, n=n)
        rec["subjects"] = [f"sub{f:02d}"] * n
        rec["seed"] = 1000 * repeat + f
        out.append(rec)
    return out


def _write(tmp_path, *groups):
    for recs in groups:
        for r in recs:
            write_record(tmp_path, r)
    return tmp_path


def _rows(runs) -> dict[str, dict]:
    return {r["label"]: r for r in build_board(runs).rows() if not r["reported_only"]}


def _draws(n_subjects: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """How often each subject is drawn: S draws with replacement per replicate (the seeded generator's)."""
    picks = np.random.default_rng(seed).integers(0, n_subjects, size=(n_boot, n_subjects))
    return np.array([np.bincount(row, minlength=n_subjects) for row in picks])


def _tails(n_subjects: int) -> list[float]:
    """Hesterberg's expanded percentile level for S subjects: z' = sqrt(S/(S-1)) t_{0.975, S-1}."""
    from scipy.stats import norm, t

    tail = 100 * norm.sf(np.sqrt(n_subjects / (n_subjects - 1)) * t.ppf(0.975, n_subjects - 1))
    return [tail, 100 - tail]


# -- 1. the cluster bootstrap counts a subject drawn twice twice, also when it is a trial of its own ----------
def test_loso_bootstrap_weights_each_subject_by_its_draw_count():
    recs = _loso("stc", 0.6, subjects=15, rng=np.random.default_rng(4))
    acc = np.array([accuracy_score(r["labels"], r["predictions"]) for r in recs])  # subject f = trial f
    draws = _draws(15, 400)
    right = draws @ acc / draws.sum(1)  # sum(k_s a_s) / sum(k_s)
    distinct = np.array([acc[d > 0].mean() for d in draws])  # what rescoring each trial alone averages
    ci = subject_bootstrap_ci(recs, "accuracy", n_boot=400, seed=0)
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.percentile(right, _tails(15))))
    assert ci["high"] - ci["low"] > 1.05 * np.subtract(*np.percentile(distinct, _tails(15)[::-1]))
    assert ci["type"] == "expanded percentile" and ci["level"] == 0.95 and ci["n_boot"] == 400
    # the pooled figure: sum(k_s correct_s) / sum(k_s n_s), with subjects of unequal size
    recs = _loso("stc", 0.6, subjects=10, rng=np.random.default_rng(5), units=[3, 9, 4, 12, 5, 6, 2, 8, 7, 10])
    correct = np.array([sum(y == p for y, p in zip(r["labels"], r["predictions"])) for r in recs])
    sizes = np.array([len(r["labels"]) for r in recs])
    draws = _draws(10, 300)
    pooled = (draws @ correct) / (draws @ sizes)
    ci = subject_bootstrap_ci(recs, "accuracy", n_boot=300, seed=0, aggregation="pooled")
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.percentile(pooled, _tails(10))))


# -- 2. kim2017's repeat-level test pairs repeats by id, never by list position --------------------------------
def test_repeat_level_test_pairs_by_repeat_id():
    rng = np.random.default_rng(8)
    a = [r for k in range(6) for r in _loso("stc", 0.7, subjects=4, rng=rng, repeat=k)]
    b = [r for k in range(1, 6) for r in _loso("static", 0.5, subjects=4, rng=rng, repeat=k)]  # repeat 0 lost
    sa, sb = summarize(a), summarize(b)

    def rate(recs, k):
        rs = [r for r in recs if r["repeat"] == k]
        return accuracy_score(sum((r["labels"] for r in rs), []), sum((r["predictions"] for r in rs), []))

    p, runs = repeat_level_t(sa, sb, "accuracy")
    assert runs == 5
    assert p == pytest.approx(ttest_rel([rate(a, k) for k in range(1, 6)], [rate(b, k) for k in range(1, 6)]).pvalue)
    # a repeat run with another seed (another split) is not the same repeat: left out
    for r in b:
        if r["repeat"] == 5:
            r["seed"] += 1
    assert repeat_level_t(sa, summarize(b), "accuracy")[1] == 4


# -- 4. a paired test pairs only identical trials: same data file, protocol, split, seed and test units --------
def test_no_test_across_different_data_files(tmp_path):
    rng = np.random.default_rng(3)
    best = [make_record("mv-lstm", "val", "afew", 0, 0, rng=rng, hit=0.9, n=80)]
    other = [make_record("static", "val", "afew", 0, 0, rng=rng, hit=0.4, n=80)]
    other[0]["fingerprints"] = dict(other[0]["fingerprints"], data="e" * 64, data_test="e" * 64)  # other clips
    row = _rows(_write(tmp_path, best, other))["static"]
    assert row["test"] == "exact McNemar test" and row["test_n"] == 0 and row["p_value"] is None
    assert "no identical trials" in row["test_note"] and row["comparisons"] == 1


# -- 5. one test per protocol shape ------------------------------------------------------------------------------
def test_loso_is_tested_over_subjects_with_wilcoxon(tmp_path):
    rng = np.random.default_rng(12)
    groups = {m: _loso(m, h, subjects=20, rng=rng) for m, h in (("mv-lstm", 0.85), ("stc", 0.6), ("static", 0.4))}
    rows = _rows(_write(tmp_path, *groups.values()))
    best = max(rows, key=lambda m: rows[m]["headline"])
    acc = {m: np.array([accuracy_score(r["labels"], r["predictions"]) for r in rs]) for m, rs in groups.items()}
    for m, row in rows.items():
        if m == best:
            assert row["test"] is None and row["p_value"] is None
            continue
        p = wilcoxon(acc[best] - acc[m], zero_method="wilcox").pvalue
        assert row["test"] == "Wilcoxon signed-rank test over subjects" and row["test_over"] == "subjects"
        assert row["test_n"] == 20 and row["p_raw"] == pytest.approx(p, rel=1e-9)
        assert "mcnemar_p" not in row  # one test family per table


def test_kfold_shape_uses_the_corrected_resampled_t_test(tmp_path):
    rng = np.random.default_rng(6)
    groups = {}
    for m, h in (("stc", 0.7), ("static", 0.6)):
        groups[m] = []
        for k in range(2):
            for f in range(5):
                rec = make_record(m, "10fold", "ck+", k, f, rng=rng, hit=h, n=20)
                rec["train_ids"] = [f"t{i}" for i in range(80)]
                groups[m].append(rec)
    row = _rows(_write(tmp_path, *groups.values()))["static"]
    d = np.array([accuracy_score(a["labels"], a["predictions"]) - accuracy_score(b["labels"], b["predictions"])
                  for a, b in zip(groups["stc"], groups["static"])])
    from scipy.stats import t as student_t

    t = d.mean() / np.sqrt((1 / 10 + 20 / 80) * d.var(ddof=1))
    assert row["p_raw"] == pytest.approx(2 * student_t.sf(abs(t), 9), rel=1e-9)
    assert row["p_raw"] > ttest_rel(*(np.array([accuracy_score(r["labels"], r["predictions"]) for r in groups[m]])
                                      for m in ("stc", "static"))).pvalue  # the plain t-test is overconfident
    assert row["test"] == "corrected resampled t-test" and row["test_n"] == 10 and row["test_over"] == "trials"


# -- 6. Holm's m is the number of comparisons the table makes ----------------------------------------------------
def test_holm_counts_untestable_comparisons(tmp_path):
    rng = np.random.default_rng(21)
    groups = {m: _loso(m, h, subjects=16, rng=rng) for m, h in (("mv-lstm", 0.9), ("stc", 0.55), ("static", 0.5))}
    # a twin of the best row (the same predictions): every per-subject difference is 0, Wilcoxon is undefined
    twin = [dict(r, model="tpool-max", task_id=r["task_id"].replace("mv-lstm", "tpool-max"))
            for r in groups["mv-lstm"]]
    rows = _rows(_write(tmp_path, *groups.values(), twin))
    untested = [r for r in rows.values() if r["test"] and r["p_raw"] is None]
    assert rows["mv-lstm"]["best"] and [r["label"] for r in untested] == ["tpool-max"]
    assert "every subject's two scores are equal" in untested[0]["test_note"]
    tested = sorted((r for r in rows.values() if r["p_raw"] is not None), key=lambda r: r["p_raw"])
    assert all(r["comparisons"] == 3 for r in tested)
    assert tested[0]["p_value"] == pytest.approx(min(1, 3 * tested[0]["p_raw"]))
    assert tested[1]["p_value"] == pytest.approx(min(1, max(3 * tested[0]["p_raw"], 2 * tested[1]["p_raw"])))


# -- 7 and 8: the words of the verdict; the LOSO headline is the pooled figure ------------------------------------
def test_loso_headline_is_pooled_and_the_verdict_claims_no_equivalence(tmp_path):
    # subject f has units[f] clips; "pooled-best" is right on the big subjects, "mean-best" on the small ones
    units = [2] * 8 + [12] * 3
    recs = {"pooled-best": [], "mean-best": []}
    for f, n in enumerate(units):
        for model, good in (("pooled-best", n > 2), ("mean-best", n == 2)):
            rec = make_record(model, "loso", "mmi", 0, f, rng=np.random.default_rng(f), hit=0.5, n=n)
            rec["subjects"] = [f"sub{f:02d}"] * n
            rec["predictions"] = [y if good or i == 0 else (y + 1) % 6 for i, y in enumerate(rec["labels"])]
            recs[model].append(rec)
    from _leaderboard_records import rescore

    for rs in recs.values():
        for r in rs:
            rescore(r)
    runs = _write(tmp_path / "runs", *recs.values())
    rows = _rows(runs)
    pb, mb = rows["pooled-best"], rows["mean-best"]
    assert mb["mean"] > pb["mean"] and pb["pooled"] > mb["pooled"]  # the two aggregations disagree
    assert pb["rank"] == 1 and pb["headline"] == pb["pooled"] and pb["aggregation"] == "pooled"
    assert pb["ci_of"] == "pooled" and pb["ci_low"] <= pb["pooled"] <= pb["ci_high"]
    write_leaderboard(build_board(runs), ["md", "json", "html"], tmp_path / "o")
    md = re.sub(r"\\(.)", r"\1", (tmp_path / "o" / "leaderboard.md").read_text())
    head = next(line for line in md.splitlines() if line.startswith("| #"))
    assert "accuracy pooled" in head and "per-subject mean ± std" in head
    line = next(line for line in md.splitlines() if "| mean-best |" in line)
    assert "≈" not in md and ("not distinguishable from best (Holm p≥0.05)" in line or "below best" in line)
    assert "Wilcoxon signed-rank test over subjects" in md and "expanded percentile cluster bootstrap" in md
    assert "B=2000" in md
    html = (tmp_path / "o" / "leaderboard.html").read_text()
    assert "accuracy pooled" in html and "B=2000" in html and "Wilcoxon" in html
    sec = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["sections"][0]
    assert sec["aggregation"] == "pooled" and sec["test"].startswith("Wilcoxon")
    assert sec["interval"] == {"type": "expanded percentile", "level": 0.95, "n_boot": 2000, "seed": 0,
                               "clusters": "test subjects"}


# -- issue 27.2 / 27.14: diverged and incomplete rows are not ranked; JSON names the model by its registry name ---
def _diverged(rec: dict) -> dict:
    return dict(rec, status="diverged", sample_ids=[], labels=[], predictions=[], probabilities=[], subjects=[],
                modes=[], scores={}, divergence={"what": "loss", "stage": "end-to-end", "epoch": 1,
                                                 "last_finite_loss": 1.2, "message": "non-finite loss"})


def test_diverged_and_incomplete_rows_are_listed_unranked(tmp_path):
    rng = np.random.default_rng(2)
    good = _loso("static", 0.5, subjects=6, rng=rng)
    lost = [_diverged(r) for r in _loso("stc", 0.9, subjects=6, rng=rng)]
    part = _loso("mv-lstm", 0.9, subjects=6, rng=rng)
    part[5] = _diverged(part[5])
    short = _loso("lstm-last", 0.95, subjects=6, rng=rng)[:4]  # two trials never run
    runs = _write(tmp_path / "runs", good, lost, part, short)
    board = build_board(runs)
    rows = [r for r in board.rows() if not r["reported_only"]]
    assert [(r["label"], r["rank"]) for r in rows] == [("static", 1), ("lstm-last", None), ("mv-lstm", None),
                                                        ("stc", None)]
    by = {r["label"]: r for r in rows}
    assert by["static"]["best"] and by["static"]["status"] == "ranked"
    assert (by["mv-lstm"]["status"], by["mv-lstm"]["trials"], by["mv-lstm"]["planned_trials"]) == ("incomplete", 5, 6)
    assert by["stc"]["status"] == "diverged" and by["lstm-last"]["status"] == "incomplete"
    assert all(by[m]["p_value"] is None and by[m]["test"] is None for m in ("stc", "mv-lstm", "lstm-last"))
    write_leaderboard(board, ["md", "json"], tmp_path / "o")
    md = re.sub(r"\\(.)", r"\1", (tmp_path / "o" / "leaderboard.md").read_text())
    line = next(line for line in md.splitlines() if "| mv-lstm |" in line)
    assert line.startswith("| – |") and "5 of 6" in line and "INCOMPLETE (5 of 6 trials, 1 diverged), unranked" in line
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert {r["model"]: r["rank"] for r in doc["rows"] if not r["reported_only"]} == {
        "static": 1, "lstm-last": None, "mv-lstm": None, "stc": None}


def test_a_run_short_of_its_own_plan_is_unranked_even_alone(tmp_path):
    """Every model of the table stopped after 4 of the 6 planned folds: the records' `config.plan` says 6, so no
    row is ranked (the union of trials seen would call 4 of 4 complete)."""
    rng = np.random.default_rng(3)
    groups = []
    for model in ("static", "stc"):
        recs = _loso(model, 0.7, subjects=6, rng=rng)[:4]
        for r in recs:
            r["config"] = dict(r.get("config") or {}, plan={"repeats": 1, "folds": 6, "trials": 6})
        groups.append(recs)
    rows = _rows(_write(tmp_path / "runs", *groups))
    assert {m: (r["status"], r["rank"], r["trials"], r["planned_trials"]) for m, r in rows.items()} == {
        "static": ("incomplete", None, 4, 6), "stc": ("incomplete", None, 4, 6)}


def test_json_model_is_the_registry_name_and_the_run_tag_a_field(tmp_path):
    rng = np.random.default_rng(1)
    old = _loso("static", 0.5, subjects=4, rng=rng)
    new = [dict(r, fingerprints=dict(r["fingerprints"], data="c" * 64, data_test="c" * 64)) for r in old]
    runs = _write(tmp_path / "runs", old, new)
    write_leaderboard(build_board(runs), ["json", "csv"], tmp_path / "o")
    rows = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["rows"]
    ours = [r for r in rows if not r["reported_only"]]
    assert [r["model"] for r in ours] == ["static", "static"]
    assert sorted(r["run_tag"] for r in ours) == sorted(r["run_key"][:7] for r in ours)
    assert {r["label"] for r in ours} == {f"static [{r['run_tag']}]" for r in ours}
    assert "run_tag" in (tmp_path / "o" / "leaderboard.csv").read_text().splitlines()[0]
