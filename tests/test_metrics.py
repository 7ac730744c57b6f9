"""ferbench.metrics recomputes every figure from a record's lists; the expected values here are computed
independently, from counts in plain numpy and the statistics module, not by calling the same functions."""

import json
import math
import statistics

import numpy as np
import pytest

from _leaderboard_records import make_record
from ferbench.errors import FerbenchError
from ferbench.metrics import STD_DDOF, summarize, trial_scores
from ferbench.records import check_record


def _by_hand(y, p):
    """accuracy, macro-F1 and macro-recall over the classes present in y, from TP/FP/FN counts."""
    y, p = np.asarray(y), np.asarray(p)
    f1s, recalls = [], []
    for c in np.unique(y):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn))
        recalls.append(tp / (tp + fn))
    return float((y == p).mean()), float(np.mean(f1s)), float(np.mean(recalls))


def _au_f1_by_hand(y, p):
    """per-AU F1 over coded frames (label -1 dropped)."""
    y, p = np.asarray(y), np.asarray(p)
    out = []
    for j in range(y.shape[1]):
        keep = y[:, j] != -1
        tp = int(((p[keep, j] == 1) & (y[keep, j] == 1)).sum())
        fp = int(((p[keep, j] == 1) & (y[keep, j] == 0)).sum())
        fn = int(((p[keep, j] == 0) & (y[keep, j] == 1)).sum())
        out.append(2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0)
    return out


@pytest.fixture
def cls_records():
    rng = np.random.default_rng(7)
    return [make_record("stc", "10fold", "ck+", r, f, rng=rng, n=15, hit=0.6) for r in range(2) for f in range(3)]


def test_trial_scores_match_counts(cls_records):
    for rec in cls_records:
        acc, uf1, uar = _by_hand(rec["labels"], rec["predictions"])
        got = trial_scores(rec)
        assert got["accuracy"] == pytest.approx(acc)
        assert got["uf1"] == pytest.approx(uf1)
        assert got["uar"] == pytest.approx(uar)


def test_known_small_case():
    rec = make_record("m", "loso", "casme2", 0, 0, rng=np.random.default_rng(0), classes=["a", "b", "c"], n=6)
    rec["labels"] = [0, 0, 0, 1, 1, 2]
    rec["predictions"] = [0, 0, 1, 1, 2, 2]
    got = trial_scores(rec)
    # class a: tp2 fn1 -> f1 0.8 recall 2/3 ; b: tp1 fp1 fn1 -> 0.5, 0.5 ; c: tp1 fp1 -> 2/3, 1
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["uf1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert got["uar"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_summary_mean_std_pooled_confusion(cls_records):
    s = summarize(cls_records)
    accs = [_by_hand(r["labels"], r["predictions"])[0] for r in cls_records]
    assert STD_DDOF == 1
    assert s["trials"] == 6 and s["repeats"] == 2
    assert s["scores"]["accuracy"]["mean"] == pytest.approx(statistics.mean(accs))
    assert s["scores"]["accuracy"]["std"] == pytest.approx(statistics.stdev(accs))  # sample std
    uf1s = [_by_hand(r["labels"], r["predictions"])[1] for r in cls_records]
    assert s["scores"]["uf1"]["mean"] == pytest.approx(statistics.mean(uf1s))

    pooled = []
    for rep in range(2):
        y = sum((r["labels"] for r in cls_records if r["repeat"] == rep), [])
        p = sum((r["predictions"] for r in cls_records if r["repeat"] == rep), [])
        pooled.append(_by_hand(y, p))
    assert s["pooled"]["accuracy"] == pytest.approx(np.mean([x[0] for x in pooled]))
    assert s["pooled"]["uf1"] == pytest.approx(np.mean([x[1] for x in pooled]))
    assert s["pooled"]["uar"] == pytest.approx(np.mean([x[2] for x in pooled]))

    y = np.array(sum((r["labels"] for r in cls_records), []))
    p = np.array(sum((r["predictions"] for r in cls_records), []))
    k = len(cls_records[0]["classes"])
    counts = np.zeros((k, k))
    for a, b in zip(y, p):
        counts[a, b] += 1
    rows = counts / counts.sum(axis=1, keepdims=True)
    assert np.allclose(s["confusion"], rows)
    for i, c in enumerate(cls_records[0]["classes"]):
        assert s["per_class_accuracy"][c] == pytest.approx(rows[i, i])
    assert s["train_s"]["total"] == pytest.approx(1.5 * 6)
    assert [(t["repeat"], t["fold"]) for t in s["per_trial"]] == [(r, f) for r in range(2) for f in range(3)]
    json.dumps(s)  # the summary is JSON-ready


def test_single_trial_std_is_undefined_not_zero(cls_records):
    assert summarize(cls_records[:1])["scores"]["accuracy"]["std"] is None


def test_per_mode_accuracy():
    rng = np.random.default_rng(3)
    modes = ["VL/Strong", "NI/Weak"] * 5
    recs = [make_record("mv-lstm", "unseen-mode", "oulu", 0, f, rng=rng, n=10, modes=modes) for f in range(2)]
    s = summarize(recs)
    for m in set(modes):
        accs = [np.mean([lab == pr for lab, pr, mm in zip(r["labels"], r["predictions"], modes) if mm == m])
                for r in recs]
        assert s["per_mode"][m]["mean"] == pytest.approx(np.mean(accs))


def test_au_f1_masks_unknown_and_means_over_aus_then_folds():
    rng = np.random.default_rng(11)
    recs = [make_record("stc-nlstm", "3fold", "bp4d", 0, f, rng=rng, n=40, task="au-detection") for f in range(3)]
    fold_means = []
    for r in recs:
        per = _au_f1_by_hand(r["labels"], r["predictions"])
        got = trial_scores(r)
        for au, v in zip(r["classes"], per):
            assert got[f"f1_{au}"] == pytest.approx(v)
        fold_means.append(np.mean(per))
        assert got["f1"] == pytest.approx(np.mean(per))
    s = summarize(recs)
    assert s["scores"]["f1"]["mean"] == pytest.approx(np.mean(fold_means))
    # a masked frame must not count: turning an unknown label into a wrong prediction changes nothing
    r = recs[0]
    i, j = next((i, j) for i, row in enumerate(r["labels"]) for j, v in enumerate(row) if v == -1)
    before = trial_scores(r)
    r["predictions"][i][j] = 1 - r["predictions"][i][j]
    assert trial_scores(r) == before


def test_bad_records_name_the_source(cls_records):
    rec = dict(cls_records[0])
    rec["predictions"] = rec["predictions"][:-1]
    with pytest.raises(FerbenchError, match="somefile.json: field 'predictions' has 14 entries for 15"):
        check_record(rec, "somefile.json")
    rec = dict(cls_records[0], labels=[99] * len(cls_records[0]["labels"]))
    with pytest.raises(FerbenchError, match="class index 99"):
        check_record(rec, "x.json")
    with pytest.raises(FerbenchError, match="schema"):
        check_record(dict(cls_records[0], schema="other/2"), "x.json")
    with pytest.raises(FerbenchError, match="appears twice"):
        summarize([cls_records[0], cls_records[0]])
    other = dict(cls_records[1], model="stc-lstm")
    with pytest.raises(FerbenchError, match="differs"):
        summarize([cls_records[0], other])
    assert math.isfinite(trial_scores(cls_records[0])["uf1"])


def test_trial_scores_needs_only_the_lists():
    """The harness may score a record it is still assembling (no schema, ids or timings yet)."""
    partial = {"task": "classification", "classes": ["a", "b"], "labels": [0, 1, 1, 0], "predictions": [0, 1, 0, 0]}
    assert trial_scores(partial) == pytest.approx({"accuracy": 0.75, "uf1": (0.8 + 2 / 3) / 2, "uar": 0.75})
    with pytest.raises(FerbenchError, match="predictions"):
        trial_scores(dict(partial, predictions=[0]))
