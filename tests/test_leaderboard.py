"""`ferbench leaderboard` renders records written per docs/records.md; every number in every format is checked
against scikit-learn / scipy computed here from the same records, and the renderer never imports torch."""

import csv
import json
import os
import re
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t
from sklearn.metrics import accuracy_score, f1_score, recall_score
from typer.testing import CliRunner

from _leaderboard_records import make_record, write_record
from ferbench.cli import app

ROOT = Path(__file__).resolve().parents[1]
CASME = ["happiness", "disgust", "repression", "surprise", "others"]
HITS = {("ck+", "10fold"): {"stc-nlstm": 0.9, "static": 0.75, "stc": 0.4},
        ("casme2", "loso"): {"mo-cnn-lstm": 0.7, "static": 0.45},
        ("bp4d", "3fold"): {"stc-nlstm": 0.85, "static": 0.6}}
runner = CliRunner()


def _make_runs(runs: Path) -> list[dict]:
    rng = np.random.default_rng(2024)
    records = []
    for (dataset, protocol), models in HITS.items():
        for model, hit in models.items():
            if protocol == "10fold":
                trials = [(r, f) for r in range(2) for f in range(5)]
                kw = {"n": 24}
            elif protocol == "loso":
                trials = [(0, f) for f in range(6)]
                kw = {"n": 10, "classes": CASME, "metric": "uf1"}
            else:
                trials = [(0, f) for f in range(3)]
                kw = {"n": 40, "task": "au-detection"}
            for r, f in trials:
                records.append(make_record(model, protocol, dataset, r, f, rng=rng, hit=hit, train_s=2.0 + f, **kw))
    for f in range(3):  # a zero-shot cross-dataset run: CASME II -> MMI (ferbench's; no paper number)
        rec = make_record("mo-cnn-lstm", "cross-dataset", "casme2", 0, f, rng=rng, hit=0.6, n=12)
        rec["dataset_test"] = "mmi"
        records.append(rec)
    for f in range(3):  # kim2017's transfer (Table 5 inter-dataset): C1-C2 from CASME II, LOSO on MMI
        records.append(make_record("mo-cnn-lstm", "kim2017-transfer", "mmi", 0, f, rng=rng, hit=0.6, n=12))
    for rec in records:
        write_record(runs, rec)
    return records


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render every format once, through the CLI, in a fresh interpreter that must not import torch."""
    tmp = tmp_path_factory.mktemp("lb")
    records = _make_runs(tmp / "runs")
    code = ("import json, sys\nfrom ferbench.cli import app\n"
            f"app(['leaderboard', '--runs', {str(tmp / 'runs')!r}, '--out', {str(tmp / 'out')!r}, '--per-fold'],"
            " standalone_mode=False)\n"
            "print('TORCH_MODULES=' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n")
    env = dict(os.environ, COLUMNS="250", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {"records": records, "out": tmp / "out", "stdout": proc.stdout, "stderr": proc.stderr}


def _group(records, dataset, protocol, model):
    return sorted((r for r in records if r["dataset"] == dataset and r["protocol"] == protocol
                   and r["model"] == model and r["dataset_test"] == dataset), key=lambda r: (r["repeat"], r["fold"]))


def _trial(rec, metric):
    y, p = np.array(rec["labels"]), np.array(rec["predictions"])
    if metric == "accuracy":
        return accuracy_score(y, p)
    if metric == "uf1":
        return f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0)
    if metric == "uar":
        return recall_score(y, p, labels=np.unique(y), average="macro", zero_division=0)
    scores = []  # f1: per AU over coded frames, mean over AUs
    for j in range(y.shape[1]):
        keep = y[:, j] != -1
        scores.append(f1_score(y[keep, j], p[keep, j], zero_division=0))
    return float(np.mean(scores))


def _pooled(recs, metric):
    values = []
    for rep in sorted({r["repeat"] for r in recs}):
        y = sum((r["labels"] for r in recs if r["repeat"] == rep), [])
        p = sum((r["predictions"] for r in recs if r["repeat"] == rep), [])
        values.append(_trial({"labels": y, "predictions": p}, metric))
    return float(np.mean(values))


def _corrected_p(recs_a, recs_b, metric):
    """Nadeau & Bengio's corrected resampled t-test by hand: t = mean(d) / sqrt((1/n + n_test/n_train) s^2)."""
    d = np.array([_trial(a, metric) - _trial(b, metric) for a, b in zip(recs_a, recs_b)])
    ratio = np.mean([len(a["sample_ids"]) / len(a["train_ids"] + a["val_ids"]) for a in recs_a])
    t = d.mean() / np.sqrt((1 / len(d) + ratio) * d.var(ddof=1))
    return float(2 * student_t.sf(abs(t), len(d) - 1))


def _expected(records):
    """Independent figures per (dataset, protocol, model): mean, std, trials, pooled, p vs best."""
    out = {}
    for (dataset, protocol), models in HITS.items():
        metric = {"10fold": "accuracy", "loso": "uf1", "3fold": "f1"}[protocol]
        per = {m: _group(records, dataset, protocol, m) for m in models}
        vals = {m: [_trial(r, metric) for r in recs] for m, recs in per.items()}
        best = max(vals, key=lambda m: statistics.mean(vals[m]))
        raw = {m: _corrected_p(per[best], per[m], metric) for m in vals if m != best}
        order = sorted(raw, key=raw.get)  # Holm: the i-th smallest p times (comparisons - i), kept monotone
        holm = {m: min(1.0, max((len(order) - j) * raw[order[j]] for j in range(order.index(m) + 1))) for m in raw}
        for m, v in vals.items():
            out[(dataset, protocol, m)] = {
                "metric": metric, "mean": statistics.mean(v), "std": statistics.stdev(v), "trials": len(v),
                "pooled": _pooled(per[m], metric), "best": m == best,
                "p_raw": raw.get(m), "p_value": holm.get(m),
                "beats_baseline": None if m == "static" else statistics.mean(v) > statistics.mean(vals["static"]),
            }
    return out


def _pct(x):
    return f"{100 * x:.2f}"


def _p(p):
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def test_no_torch_and_all_files(rendered):
    assert "TORCH_MODULES=[]" in rendered["stdout"]
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.csv", "leaderboard.json", "leaderboard-folds.csv"):
        assert (rendered["out"] / name).stat().st_size > 0, name


def test_json_numbers_match_sklearn_scipy(rendered):
    doc = json.loads((rendered["out"] / "leaderboard.json").read_text())
    rows = {(r["dataset"], r["protocol"], r["model"]): r for r in doc["rows"] if not r["reported_only"]}
    expected = _expected(rendered["records"])
    assert doc["std_ddof"] == 1 and doc["unit"] == "fraction"
    for key, exp in expected.items():
        row = rows[key]
        assert row["metric"] == exp["metric"]
        assert row["trials"] == exp["trials"]
        assert row["mean"] == pytest.approx(exp["mean"], abs=1e-12)
        assert row["std"] == pytest.approx(exp["std"], abs=1e-12)
        assert row["pooled"] == pytest.approx(exp["pooled"], abs=1e-12)
        assert row["best"] == exp["best"]
        assert row["beats_baseline"] == exp["beats_baseline"]
        if exp["p_value"] is None:
            assert row["p_value"] is None
        else:
            assert row["p_raw"] == pytest.approx(exp["p_raw"], rel=1e-9)
            assert row["p_value"] == pytest.approx(exp["p_value"], rel=1e-9)  # Holm-corrected
            assert row["paired_trials"] == exp["trials"]
    # pooled UAR of the LOSO table (the MEGC convention) and the honesty flag
    casme = _group(rendered["records"], "casme2", "loso", "mo-cnn-lstm")
    assert rows[("casme2", "loso", "mo-cnn-lstm")]["pooled_uar"] == pytest.approx(_pooled(casme, "uar"))
    assert rows[("ck+", "10fold", "stc")]["beats_baseline"] is False


def test_reported_numbers_beside_ours(rendered):
    doc = json.loads((rendered["out"] / "leaderboard.json").read_text())
    rows = doc["rows"]
    nlstm = next(r for r in rows if r["dataset"] == "ck+" and r["model"] == "stc-nlstm")
    exp = _expected(rendered["records"])[("ck+", "10fold", "stc-nlstm")]
    assert nlstm["reported"] == pytest.approx(0.998) and nlstm["reported_std"] == pytest.approx(0.002)
    assert nlstm["reported_source"] == "yu2018 Table 3" and exp["mean"] is not None
    # these records were not made the way yu2018 made Table 3: a reference, with every reason, and no delta
    assert nlstm["comparable"] is False and nlstm["delta"] is None
    for words in ("protocol file differs from the bundled 10fold", "samples, the paper used 309", "of 4 repeats",
                  "quick recipe"):
        assert words in nlstm["reason"]
    dcpn = next(r for r in rows if r["dataset"] == "ck+" and r["model"] == "DCPN")
    assert dcpn["reported_only"] is True and dcpn["reported"] == pytest.approx(0.996) and dcpn["mean"] is None
    # a paper row for a bundled model that was not run is a reported-only row too
    assert any(r["model"] == "stc-lstm" and r["reported_only"] for r in rows if r["dataset"] == "ck+")
    cross = next(r for r in rows if r["protocol"] == "cross-dataset" and not r["reported_only"])
    assert cross["dataset"] == "casme2-to-mmi" and cross["reported"] is None and cross["comparable"] is None
    transfer = next(r for r in rows if r["protocol"] == "kim2017-transfer" and not r["reported_only"])
    assert transfer["reported"] == pytest.approx(0.7283) and transfer["comparable"] is False
    assert "samples, the paper used 173" in transfer["reason"] and transfer["delta"] is None
    # kim2017 reports CASME II accuracy while the LOSO table ranks by UF1; these records are not comparable
    kim = next(r for r in rows if r["dataset"] == "casme2" and r["protocol"] == "loso" and r["model"] == "mo-cnn-lstm")
    assert kim["reported_metric"] == "accuracy" and kim["delta"] is None and kim["comparable"] is False
    assert all(r["comparable"] is False and r["reason"] for r in rows if r["reported_only"])


def test_csv_matches_json(rendered):
    doc = json.loads((rendered["out"] / "leaderboard.json").read_text())
    with open(rendered["out"] / "leaderboard.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(doc["rows"])
    expected = _expected(rendered["records"])
    for row in table:
        key = (row["dataset"], row["protocol"], row["model"])
        if key not in expected:
            assert row["reported_only"] in ("True", "False")
            continue
        exp = expected[key]
        assert float(row["mean"]) == pytest.approx(exp["mean"], abs=1e-12)
        assert float(row["std"]) == pytest.approx(exp["std"], abs=1e-12)
        assert int(row["trials"]) == exp["trials"]
        assert float(row["pooled"]) == pytest.approx(exp["pooled"], abs=1e-12)
        assert (row["p_value"] == "") == (exp["p_value"] is None)
        if exp["p_value"] is not None:
            assert float(row["p_value"]) == pytest.approx(exp["p_value"], rel=1e-9)


def _line_for(text, model, marker):
    """The table line of `model` in the section whose heading contains `marker`."""
    section = text.split(marker, 1)[1]
    return next(line for line in section.splitlines() if re.search(rf"[|│]\s*{re.escape(model)}\s*[|│]", line))


@pytest.mark.parametrize("fmt", ["md", "rich"])
def test_human_formats_show_the_same_numbers(rendered, fmt):
    text = (rendered["out"] / "leaderboard.md").read_text() if fmt == "md" else rendered["stdout"]
    if fmt == "md":  # what a Markdown viewer shows: backslash escapes of brackets, parens and emphasis removed
        text = re.sub(r"\\([\[\]()_*.:#!])", r"\1", text)
    md = fmt == "md"  # the terminal prints one decimal, 3-digit p with its n, and terse verdicts
    for (dataset, protocol, model), exp in _expected(rendered["records"]).items():
        line = _line_for(text, model, f"{dataset} · {protocol} · ")
        if md:
            assert f"{_pct(exp['mean'])} ± {_pct(exp['std'])}" in line and f" {_pct(exp['pooled'])} " in line
        else:
            assert f"{100 * exp['mean']:.1f}±{100 * exp['std']:.1f}" in line and f" {100 * exp['pooled']:.1f} " in line
        if exp["p_value"] is not None:
            assert (_p(exp["p_value"]) if md else f"{exp['p_value']:.3f} n={exp['trials']}"
                    if exp["p_value"] >= 1e-3 else f"< 0.001 n={exp['trials']}") in line
        if exp["beats_baseline"] is False:
            assert ("NOT ABOVE static" if md else "NOT > static") in line
    line = _line_for(text, "DCPN" if fmt == "rich" else "DCPN [reported only]", "ck+ · 10fold · ")
    assert "99.60" in line and ("REPORTED ONLY" if md else "ref") in line


def test_per_fold_rows(rendered):
    doc = json.loads((rendered["out"] / "leaderboard.json").read_text())
    folds = doc["per_fold"]
    assert len(folds) == len(rendered["records"])
    for rec in _group(rendered["records"], "ck+", "10fold", "stc"):
        row = next(r for r in folds if r["dataset"] == "ck+" and r["model"] == "stc"
                   and (r["repeat"], r["fold"]) == (rec["repeat"], rec["fold"]))
        assert row["accuracy"] == pytest.approx(_trial(rec, "accuracy"))
        assert row["uar"] == pytest.approx(_trial(rec, "uar"))
    with open(rendered["out"] / "leaderboard-folds.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rendered["records"])


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = {"class": dict(attrs).get("class", ""), "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_html_numbers(rendered):
    parser = _Cells()
    parser.feed((rendered["out"] / "leaderboard.html").read_text())
    expected = _expected(rendered["records"])
    nlstm = expected[("ck+", "10fold", "stc-nlstm")]
    row = next(r for r in parser.rows if r["cells"] and r["cells"][1].startswith("stc-nlstm")
               and r["cells"][2].startswith(f"{_pct(nlstm['mean'])} ± {_pct(nlstm['std'])}"))
    assert row["class"] == "best"
    stc = expected[("ck+", "10fold", "stc")]
    row = next(r for r in parser.rows if r["cells"] and r["cells"][1].startswith("stc")
               and r["cells"][2].startswith(f"{_pct(stc['mean'])} ± {_pct(stc['std'])}"))
    assert row["class"] == "below-baseline"
    assert f"{_p(stc['p_value'])} (corr. t, n={stc['trials']} trials)" in row["cells"]


def _invoke(*args):
    result = runner.invoke(app, ["leaderboard", *args])
    assert "Traceback" not in result.output
    return result


def test_bad_input_is_one_line_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _invoke("--runs", str(empty), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "no task records" in res.output and len(res.output.strip().splitlines()) == 1
    res = _invoke("--runs", str(tmp_path / "missing"))
    assert res.exit_code == 2 and "no such folder" in res.output

    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    write_record(runs, make_record("stc", "10fold", "ck+", 0, 0, rng=rng))
    res = _invoke("--runs", str(runs), "--format", "md,pdf", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "unknown format pdf" in res.output
    assert not (tmp_path / "o").exists()  # options are refused before any work
    (tmp_path / "afile").write_text("x")
    res = _invoke("--runs", str(runs), "--out", str(tmp_path / "afile"))
    assert res.exit_code == 2 and "afile: is a file" in res.output
    res = _invoke("--runs", str(runs), "--dataset", "mmi", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "found: ck+/10fold" in res.output

    res = _invoke("--runs", str(runs), "--format", "json", "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["rows"][0]
    assert row["trials"] == 1 and row["std"] is None  # one trial: no std, not a fake 0


def test_per_class_accuracy_and_paper_diagonal(rendered):
    from sklearn.metrics import confusion_matrix

    doc = json.loads((rendered["out"] / "leaderboard.json").read_text())
    sec = next(s for s in doc["sections"] if s["dataset"] == "ck+")
    recs = _group(rendered["records"], "ck+", "10fold", "stc")
    y = sum((r["labels"] for r in recs), [])
    p = sum((r["predictions"] for r in recs), [])
    cm = confusion_matrix(y, p, labels=range(6))
    assert sec["per_class"]["rows"]["stc"] == pytest.approx(list(cm.diagonal() / cm.sum(axis=1)))
    assert np.allclose(sec["confusion"]["stc"], cm / cm.sum(axis=1, keepdims=True))
    # yu2018 Table 4's diagonal beside stc-nlstm (An 100, Di 99.68, Fe 99.71, Ha 99.89, Sa 99.14, Su 100)
    paper = sec["per_class"]["rows"]["stc-nlstm as reported (yu2018 Table 4)"]
    assert paper == pytest.approx([1.0, 0.9968, 0.9971, 0.9989, 0.9914, 1.0])


def test_paired_test_only_pairs_trials_on_the_same_test_units(tmp_path):
    from ferbench.leaderboard import build_board

    rng = np.random.default_rng(9)
    recs = {m: [make_record(m, "loso", "mmi", 0, f, rng=rng, hit=h, n=15) for f in range(5)]
            for m, h in (("stc-nlstm", 0.9), ("static", 0.5))}
    recs["static"][4]["sample_ids"] = [f"other-{i}" for i in range(15)]  # scored on other samples
    for rs in recs.values():
        for r in rs:
            write_record(tmp_path, r)
    row = next(r for r in build_board(tmp_path).rows() if r["model"] == "static")
    assert row["paired_trials"] == 4 and "left out" in row["test_note"]
    assert row["p_value"] == pytest.approx(_corrected_p(recs["stc-nlstm"][:4], recs["static"][:4], "accuracy"),
                                           rel=1e-9)
