"""Numbers that are right or refused (issue 22): diverged tasks recorded and named, never ranked as results;
protocols name only metrics ferbench computes; validation is carved only for recipes that select on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from _harness_data import TINY, make_store, write_protocol
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.leaderboard import build_board, write_leaderboard
from ferbench.protocols import load_protocol


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("numbers")
    return {"data": make_store(base / "d.h5"), "loso": write_protocol(base, "t-loso"), "base": base}


def test_a_run_whose_last_update_breaks_the_weights_is_diverged_not_ranked(files, tmp_path):
    # --lr 1e308 with one step an epoch: the loss seen is finite, the weights after the step are not
    out = tmp_path / "runs"
    res = evaluate(files["data"], files["loso"], models="static,tpool-mean", recipe="quick", epochs=1, batch_size=64,
                   lr=1e308, model_options=TINY, threads=1, out=out)
    assert not res.failed and len(res.ran) == 8 and len(res.diverged) == 8  # the run went on with every task
    for p in out.rglob("r*-f*.json"):
        rec = json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in {p}"))
        assert rec["status"] == "diverged" and rec["predictions"] == [] and rec["scores"] == {}
        d = rec["divergence"]
        assert d["what"] == "weights" and d["epoch"] == 1 and d["last_finite_loss"] > 0
    board = build_board(out)
    rows = [r for r in board.rows() if not r["reported_only"]]
    assert {r["model"] for r in rows} == {"static", "tpool-mean"}
    assert all(r["mean"] is None and r["trials"] == 0 and r["diverged"] == 4 for r in rows)
    write_leaderboard(board, ["md"], tmp_path / "o")
    md = re.sub(r"\\(.)", r"\1", (tmp_path / "o" / "leaderboard.md").read_text())  # as a viewer shows it
    assert "DIVERGED (every trial)" in md and "4 of 4 trial(s) diverged" in md
    again = evaluate(files["data"], files["loso"], models="static,tpool-mean", recipe="quick", epochs=1,
                     batch_size=64, lr=1e308, model_options=TINY, threads=1, out=out)
    assert again.ran == [] and len(again.skipped) == 8  # a diverged record is a result: not redone


@pytest.mark.parametrize("field, value", [("metric", "top5"), ("metrics", ["accuracy", "top5"]), ("metric", "f1")])
def test_protocols_name_only_metrics_ferbench_computes(tmp_path, field, value):
    path = write_protocol(tmp_path, "bad-metric", **({"metric": value} if field == "metric" else {}))
    if field == "metrics":
        body = path.read_text().replace("metrics:\n- accuracy", "metrics: [accuracy, top5]")
        path.write_text(body)
    with pytest.raises(FerbenchError, match=rf"field '{field}': expected metric names ferbench computes"):
        load_protocol(path)


def test_validation_is_carved_only_for_recipes_that_select_on_it(files, tmp_path):
    proto = write_protocol(tmp_path, "t-loso-val", validation={"fraction": 0.3})
    out = tmp_path / "runs"
    res = evaluate(files["data"], proto, models="static,tpool-mean", recipe="paper", epochs=2, model_options=TINY,
                   threads=1, out=out)
    assert not res.failed
    recs = [json.loads(p.read_text()) for p in out.rglob("r*-f*.json")]
    for r in recs:
        n_subjects = len({i.split("_")[0] for i in r["train_ids"] + r["val_ids"]})
        if r["selection"] == "validation":  # tpool-mean's paper recipe selects: 1 of 3 training subjects held out
            assert r["model"] == "tpool-mean" and len({i.split("_")[0] for i in r["val_ids"]}) == 1
        else:  # static trains on the last epoch: every training subject trains
            assert r["model"] == "static" and r["val_ids"] == [] and n_subjects == 3
    assert {r["model"] for r in recs if r["selection"] == "validation"} == {"tpool-mean"}


def _kim2017_casme2_run(runs: Path, *, recipe: str = "paper", hit: float = 0.6) -> list[dict]:
    """Records shaped like kim2017 Table 4(a): CASME II, 5 classes, 246 samples, 26 LOSO folds, the bundled loso
    protocol, the paper recipe (predictions drawn at `hit`)."""
    import numpy as np

    from _leaderboard_records import make_record, rescore, write_record

    rng = np.random.default_rng(7)
    sizes = [10] * 12 + [9] * 14
    ids = [[f"sub{f:02d}_{i}" for i in range(n)] for f, n in enumerate(sizes)]
    classes = ["disgust", "happiness", "others", "repression", "surprise"]
    recs = []
    for f, n in enumerate(sizes):
        rec = make_record("mo-cnn-lstm", "loso", "casme2", 0, f, rng=rng, classes=classes, n=n, hit=hit)
        rec["sample_ids"] = ids[f]
        rec["subjects"] = [f"sub{f:02d}"] * n
        rec["train_ids"] = [i for g, part in enumerate(ids) if g != f for i in part]
        rec["recipe"] = {"name": recipe, "stages": []}
        # as evaluate writes them for a whole untouched --recipe paper run
        rec["config"] = {"plan": {"repeats": 1, "folds": 26, "trials": 26}, "paper_departures": []}
        rec["fingerprints"]["protocol"] = load_protocol("loso").fingerprint
        recs.append(rescore(rec))
        write_record(runs, rec)
    return recs


def test_a_number_is_comparable_only_when_the_run_matches_the_papers_design(tmp_path):
    import numpy as np

    recs = _kim2017_casme2_run(tmp_path / "paper")
    row = next(r for r in build_board(tmp_path / "paper").rows()
               if r["model"] == "mo-cnn-lstm" and not r["reported_only"])
    y = np.concatenate([r["labels"] for r in recs])
    p = np.concatenate([r["predictions"] for r in recs])
    pooled = float((y == p).mean())  # kim2017 pools its LOSO predictions (136/173, 150/246)
    assert row["comparable"] is True and row["reason"] == ""
    assert row["delta"] == pytest.approx(pooled - 0.6098)
    per_subject = row["mean"] if row["metric"] == "accuracy" else row["accuracy"]
    assert row["delta"] != pytest.approx(per_subject - 0.6098)  # not the per-subject mean
    _kim2017_casme2_run(tmp_path / "quick", recipe="quick")
    row = next(r for r in build_board(tmp_path / "quick").rows()
               if r["model"] == "mo-cnn-lstm" and not r["reported_only"])
    assert row["comparable"] is False and row["delta"] is None and "quick recipe" in row["reason"]


# -- AU detection: the protocol's AU set, and AUs that are coded but absent ------------------------------------
def test_an_au_protocol_scores_the_aus_it_names(tmp_path):
    data = make_store(tmp_path / "au.h5", dataset="bp4d", subjects=3, per=2, au_names=(1, 2, 4, 24))
    proto = write_protocol(tmp_path, "t-au", datasets=("bp4d",), task="au-detection", metric="f1",
                           splitter="group-kfold", params={"n_splits": 3}, aus=[1, 2, 4])
    res = evaluate(data, proto, models="static", recipe="quick", epochs=1, model_options=TINY, threads=1,
                   out=tmp_path / "runs")
    assert not res.failed
    for p in (tmp_path / "runs").rglob("r*-f*.json"):
        rec = json.loads(p.read_text())
        assert rec["classes"] == ["AU1", "AU2", "AU4"] and all(len(row) == 3 for row in rec["labels"])
    bad = write_protocol(tmp_path, "t-au5", datasets=("bp4d",), task="au-detection", metric="f1",
                         splitter="group-kfold", params={"n_splits": 3}, aus=[1, 5])
    with pytest.raises(FerbenchError, match="scores AU1, AU5, but .* has no column for AU5"):
        evaluate(data, bad, models="static", recipe="quick", out=tmp_path / "runs2")
    assert load_protocol("fera2015").aus == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23)  # yu2018's 11
    assert "approximation" in load_protocol("fera2015").caveat


def test_an_au_absent_from_a_folds_test_frames_is_left_out_not_scored_zero():
    import numpy as np

    from ferbench.metrics import au_scores, summarize
    from _leaderboard_records import make_record, rescore

    y = np.array([[1, 0, -1], [0, 0, 1], [1, 0, 0], [0, 0, -1]])  # AU2 coded in every frame, never present
    scores = au_scores(y, np.clip(y, 0, 1), ["AU1", "AU2", "AU4"])  # a perfect detector
    assert scores["f1"] == 1.0 and np.isnan(scores["f1_AU2"])  # not (1 + 0 + 1) / 3
    recs = []
    for fold in range(2):
        rec = make_record("static", "3fold", "bp4d", 0, fold, rng=np.random.default_rng(fold), n=4,
                          task="au-detection", classes=["AU1", "AU2", "AU4"])
        rec["labels"] = y.tolist() if fold == 0 else [[1, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1]]
        rec["predictions"] = np.clip(np.asarray(rec["labels"]), 0, 1).tolist()
        rec["probabilities"] = [[float(v) for v in row] for row in rec["predictions"]]
        recs.append(rescore(rec))
    s = summarize(recs)
    assert s["per_au_f1"]["AU2"]["trials"] == 1 and s["per_au_f1"]["AU1"]["trials"] == 2  # folds scored
    assert s["scores"]["f1"]["mean"] == 1.0


def test_validation_selection_leaves_absent_aus_out_too():
    import numpy as np

    from ferbench.harness.predict import selection_score

    y = np.array([[1, 0], [0, 0], [1, 0]])
    assert selection_score("f1", y, np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.4]])) == 1.0


# -- what the leaderboard's uncertainty and tests mean -------------------------------------------------------
def _runs(tmp_path: Path, hits: dict[str, float], repeats: int, folds: int, n: int = 12, protocol: str = "10fold",
          dataset: str = "ck+") -> Path:
    import numpy as np

    from _leaderboard_records import make_record, rescore, write_record

    rng = np.random.default_rng(11)
    runs = tmp_path / "runs"
    for model, hit in hits.items():
        for r in range(repeats):
            for f in range(folds):
                rec = make_record(model, protocol, dataset, r, f, rng=rng, hit=hit, n=n)
                rec["sample_ids"] = [f"s{f}-{i}" for i in range(n)]
                rec["subjects"] = [f"S{f}-{i % 3}" for i in range(n)]  # three subjects per fold
                rec["seed"] = 1000 * r + f
                write_record(runs, rescore(rec))
    return runs


def test_std_over_repeat_means_and_the_subject_bootstrap_interval(tmp_path):
    import numpy as np
    from sklearn.metrics import accuracy_score

    from ferbench.metrics import subject_bootstrap_ci

    runs = _runs(tmp_path, {"stc": 0.7, "static": 0.5}, repeats=3, folds=4)
    board = build_board(runs)
    row = next(r for r in board.rows() if r["model"] == "stc")
    recs = [json.loads(p.read_text()) for p in runs.rglob("r*-f*.json") if "/stc/" in str(p)]
    rep_means = [np.mean([r["scores"]["accuracy"] for r in recs if r["repeat"] == k]) for k in range(3)]
    assert row["std_repeats"] == pytest.approx(np.std(rep_means, ddof=1))
    assert row["std"] == pytest.approx(np.std([r["scores"]["accuracy"] for r in recs], ddof=1))
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["ci_clusters"] == 12
    # the same interval from scikit-learn with sample weights, replicate by replicate (the same seeded draws of
    # subject counts); a trial counts as often as its subjects were drawn (sum of counts / its subjects)
    subjects = sorted({s for r in recs for s in r["subjects"]})
    picks = np.random.default_rng(0).integers(0, len(subjects), size=(60, len(subjects)))
    reps = []
    for d in picks:
        count = dict(zip(subjects, np.bincount(d, minlength=len(subjects))))
        vals, weights = [], []
        for r in recs:
            w = np.array([count[s] for s in r["subjects"]], dtype=float)
            if w.sum() > 0:
                vals.append(accuracy_score(r["labels"], r["predictions"], sample_weight=w))
                weights.append(sum(count[s] for s in set(r["subjects"])) / len(set(r["subjects"])))
        reps.append(np.average(vals, weights=weights))
    ci = subject_bootstrap_ci(recs, "accuracy", n_boot=60, seed=0)
    from scipy.stats import norm, t  # Hesterberg's expanded percentile level for S = 12 subjects

    tail = 100 * norm.sf(np.sqrt(12 / 11) * t.ppf(0.975, 11))
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.percentile(reps, [tail, 100 - tail])))
    assert subject_bootstrap_ci(recs, "accuracy", n_boot=60, seed=0) == ci  # seeded


def test_holm_mcnemar_and_only_identical_trials_paired(tmp_path):
    from scipy.stats import binomtest

    from ferbench.leaderboard.significance import holm

    assert holm([0.01, 0.04, None, 0.03]) == [0.04, 0.09, None, 0.09]  # the untestable comparison counts in m
    # a fixed split (one train/test partition, e.g. AFEW Val): the exact McNemar test on the paired test units
    runs = _runs(tmp_path, {"mv-lstm": 0.9, "stc": 0.6, "static": 0.5}, repeats=1, folds=1, n=96, protocol="val",
                 dataset="afew")
    board = build_board(runs)
    rows = {r["model"]: r for r in board.rows() if not r["reported_only"]}
    recs = {m: [json.loads(p.read_text()) for p in runs.rglob("r*-f*.json") if f"/{m}/" in str(p)] for m in rows}
    right = {m: {u: y == p for r in rs for u, y, p in zip(r["sample_ids"], r["labels"], r["predictions"])}
             for m, rs in recs.items()}
    raw = {}
    for m in ("stc", "static"):
        b = sum(right["mv-lstm"][u] and not right[m][u] for u in right[m])
        c = sum(right[m][u] and not right["mv-lstm"][u] for u in right[m])
        raw[m] = binomtest(b, b + c, 0.5).pvalue
        assert rows[m]["p_raw"] == pytest.approx(raw[m]) and rows[m]["test_n"] == 96
        assert rows[m]["test"] == "exact McNemar test" and rows[m]["test_over"] == "units"
    low, high = sorted(raw, key=raw.get)
    assert rows[low]["p_value"] == pytest.approx(min(1, 2 * raw[low]))  # Holm over the two comparisons
    assert rows[high]["p_value"] == pytest.approx(min(1, max(2 * raw[low], raw[high])))
    # a run on another data file shares no identical trial with the best row: no pairs, no p
    other = json.loads(next(p for p in runs.rglob("r*-f*.json") if "/stc/" in str(p)).read_text())
    from _leaderboard_records import write_record

    write_record(runs, dict(other, fingerprints=dict(other["fingerprints"], data="e" * 64, data_test="e" * 64)))
    split = [r for r in build_board(runs).rows() if r["model"] == "stc"]
    assert len(split) == 2 and {r["test_n"] for r in split} == {0, 96}
    assert {r["run_tag"] for r in split} == {r["run_key"][:7] for r in split}  # "d" + 6 hex digits
    assert {r["label"] for r in split} == {f"stc [{r['run_tag']}]" for r in split}
