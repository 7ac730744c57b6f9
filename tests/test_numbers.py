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
