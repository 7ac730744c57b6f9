"""dfew-5fold, mafw-5fold and ferv39k: the folds are the owners' lists (read back from the list files themselves,
not from the adapter), never re-drawn; the leakage check is per clip; WAR and UAR as the field computes them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from typer.testing import CliRunner

from _leaderboard_records import make_record
from _protocol_files import protocol_copy
from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.errors import FerbenchError
from ferbench.metrics import summarize
from ferbench.protocols import load_protocol, make_plan
from ferbench.protocols.table import SampleTable
from _wild_roots import DFEW_FIVE, DFEW_TEST, DFEW_TRAIN, MAFW_SINGLE, build_dfew, build_mafw

runner = CliRunner()


def table_of(result) -> SampleTable:
    """The sample table a prepared file of these samples would hold (what a protocol splits)."""
    s = result.samples
    return SampleTable(path=None, dataset=result.dataset, classes=result.classes, ids=[x.id for x in s],
                       subjects=[x.subject for x in s], labels=np.array([x.label for x in s]),
                       splits=[x.split for x in s], modes=[x.mode for x in s])


def dfew_list(path) -> set[str]:
    with open(path, newline="") as fh:
        return {f"{int(row['video_name']):05d}" for row in csv.DictReader(fh)}


def test_dfew_folds_are_the_files_folds(tmp_path):
    root = build_dfew(tmp_path, DFEW_FIVE)
    plan = make_plan("dfew-5fold", table_of(scan("dfew", root)))
    ids = plan.train_table.ids
    assert len(plan.folds) == 5 and {f.repeat for f in plan.folds} == {0}
    for k, fold in enumerate(plan.folds, start=1):
        assert {ids[i] for i in fold.test} == dfew_list(root / DFEW_TEST / f"set_{k}.csv")
        assert {ids[i] for i in fold.train} == dfew_list(root / DFEW_TRAIN / f"set_{k}.csv")
        assert fold.val.size == 0


def test_mafw_folds_are_the_files_folds(tmp_path):
    root = build_mafw(tmp_path)
    plan = make_plan("mafw-5fold", table_of(scan("mafw", root)))
    ids = plan.train_table.ids
    for k, fold in enumerate(plan.folds, start=1):
        for role in ("test", "train"):
            listed = {line.split()[0].removesuffix(".mp4")
                      for line in (root / MAFW_SINGLE / f"set_{k}" / f"{role}.txt").read_text().splitlines()}
            assert {ids[i] for i in getattr(fold, role)} == listed


def test_ferv39k_split_is_the_files_split(tmp_path):
    synth_root = tmp_path / "f"
    (synth_root / "4_setups/All_scenes").mkdir(parents=True)
    rows = {"train": ["Action/Happy/0001 Happy", "War/Sad/0002 Sad", "Crime/Fear/0007 Fear"],
            "test": ["Action/Happy/0003 Happy", "Talkshow/Angry/0004 Angry"]}
    for split, lines in rows.items():
        (synth_root / f"4_setups/All_scenes/{split}_All.csv").write_text("\n".join(lines) + "\n")
        for line in lines:
            folder = synth_root / "2_ClipsforFaceCrop" / line.split()[0]
            folder.mkdir(parents=True)
            (folder / "01.jpg").write_bytes(b"")  # listed frames; the protocol reads no pixels
    plan = make_plan("ferv39k", table_of(scan("ferv39k", synth_root)))
    ids = plan.train_table.ids
    (fold,) = plan.folds
    assert {ids[i] for i in fold.test} == {r.split()[0] for r in rows["test"]}
    assert {ids[i] for i in fold.train} == {r.split()[0] for r in rows["train"]}


def test_folds_are_never_redrawn(tmp_path):
    """Another seed, more repeats, rows in another order: the very same test clips in every fold."""
    table = table_of(scan("dfew", build_dfew(tmp_path, DFEW_FIVE)))
    base = make_plan("dfew-5fold", table)
    want = [sorted(table.ids[i] for i in f.test) for f in base.folds]
    order = np.random.default_rng(3).permutation(len(table))
    shuffled = SampleTable(path=None, dataset="dfew", classes=table.classes, ids=[table.ids[i] for i in order],
                           subjects=[table.subjects[i] for i in order], labels=table.labels[order],
                           splits=[table.splits[i] for i in order], modes=[table.modes[i] for i in order])
    other = make_plan(protocol_copy(tmp_path, "dfew-5fold", seed=99, repeats=2), shuffled)
    assert len(other.folds) == 10
    for f in other.folds:
        assert sorted(shuffled.ids[i] for i in f.test) == want[f.fold]


def test_a_fold_without_clips_is_refused_not_redrawn(tmp_path):
    folds = {k: v for k, v in DFEW_FIVE.items() if k != "set_4"}
    table = table_of(scan("dfew", build_dfew(tmp_path, folds)))
    with pytest.raises(FerbenchError, match="fold 3 has no test samples"):
        make_plan("dfew-5fold", table)


def test_a_clip_on_both_sides_is_caught_by_the_leakage_check(tmp_path):
    """No subject ids: each clip is its own group, and the check before training is that no group is on both
    sides. Forced here by two rows of one clip group stored in different folds."""
    table = table_of(scan("dfew", build_dfew(tmp_path, DFEW_FIVE)))
    subjects = list(table.subjects)
    subjects[1] = subjects[0]  # two rows of one clip (group) in different folds
    leaky = SampleTable(path=None, dataset="dfew", classes=table.classes, ids=table.ids, subjects=subjects,
                        labels=table.labels, splits=[table.splits[0], "set_5", *table.splits[2:]], modes=table.modes)
    assert table.splits[0] != "set_5"
    with pytest.raises(FerbenchError, match="subject leakage in protocol 'dfew-5fold'.*dfew subject '00011'"):
        make_plan("dfew-5fold", leaky)


def test_the_protocols_declare_war_and_uar():
    for name, dataset, n_folds in (("dfew-5fold", "dfew", 5), ("mafw-5fold", "mafw", 5), ("ferv39k", "ferv39k", None)):
        p = load_protocol(name)
        assert p.datasets == (dataset,) and p.metric == "accuracy" and p.metrics == ("accuracy", "uar")
        assert p.repeats == 1 and "WAR (weighted average recall) is ferbench's accuracy" in p.caveat
        if n_folds:
            assert p.splitter == "stored-folds" and p.params["folds"] == [f"set_{k}" for k in range(1, 6)]


def test_war_and_uar_per_fold_and_over_folds_are_sklearns():
    rng = np.random.default_rng(11)
    classes = ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"]
    records = [make_record("stc", "dfew-5fold", "dfew", 0, k, rng=rng, classes=classes, n=60, hit=0.5)
               for k in range(5)]
    for r in records:  # a skewed test fold, as DFEW's (Disgust is 1% of it): WAR and UAR then differ
        r["labels"] = [0] * 30 + [int(v) for v in rng.integers(1, 7, 30)]
        r["predictions"] = [0] * 30 + [int(v) for v in rng.integers(0, 7, 30)]
    s = summarize(records)
    war = [accuracy_score(r["labels"], r["predictions"]) for r in records]
    uar = [balanced_accuracy_score(r["labels"], r["predictions"]) for r in records]
    assert uar == pytest.approx([recall_score(r["labels"], r["predictions"], average="macro") for r in records])
    assert [t["accuracy"] for t in s["per_trial"]] == pytest.approx(war)
    assert [t["uar"] for t in s["per_trial"]] == pytest.approx(uar)
    assert s["scores"]["accuracy"]["mean"] == pytest.approx(np.mean(war))
    assert s["scores"]["uar"]["mean"] == pytest.approx(np.mean(uar))
    assert abs(np.mean(war) - np.mean(uar)) > 0.05


@pytest.mark.slow
def test_the_mission_commands_from_the_data_home(tmp_path, monkeypatch):
    """`ferbench synth dfew` into raw/dfew, then the three commands as typed: prepare (crops: no detector),
    evaluate --protocol dfew-5fold, leaderboard (WAR = accuracy and UAR shown)."""
    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the leaderboard writes leaderboards/ in the working folder
    from ferbench import cli

    monkeypatch.setattr(cli.console, "width", 300)
    assert runner.invoke(app, ["synth", "dfew", str(tmp_path / "raw" / "dfew"), "--subjects", "1"]).exit_code == 0
    made = runner.invoke(app, ["prepare", "dfew", "--workers", "0", "--size", "32", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["written"] == 35
    from ferbench.store import inspect

    assert inspect(tmp_path / "prepared" / "dfew.h5")["aligner"] == "none"
    tiny = json.dumps({"static": {"widths": [4, 8], "features": 16}})  # the plumbing, not learning, is tested
    ran = runner.invoke(app, ["evaluate", "--protocol", "dfew-5fold", "--model", "static", "--recipe", "quick",
                              "--device", "cpu", "--epochs", "1", "--batch-size", "8", "--model-options", tiny])
    assert ran.exit_code == 0, ran.output
    board = runner.invoke(app, ["leaderboard"])
    assert board.exit_code == 0, board.output
    assert "dfew-5fold" in board.output and "UAR" in board.output and "WAR" in board.output


def test_the_board_names_the_metrics_as_the_field_does(tmp_path):
    """On the in-the-wild protocols the headline is WAR and the secondary UAR (protocol `metric_names`), in the
    terminal heads, the Markdown table and the JSON section; other protocols keep ferbench's names."""
    import json

    import numpy as np

    from ferbench.leaderboard import build_board, write_leaderboard
    from ferbench.records import write_record
    from _leaderboard_records import make_record

    rng = np.random.default_rng(0)
    for protocol, dataset in (("dfew-5fold", "dfew"), ("10fold", "ck+")):
        for fold in range(5):
            write_record(tmp_path / "runs", make_record("static", protocol, dataset, 0, fold, rng=rng, n=14))
    write_leaderboard(build_board(tmp_path / "runs"), ["md", "json"], tmp_path / "out")
    sections = {s["protocol"]: s for s in json.loads((tmp_path / "out" / "leaderboard.json").read_text())["sections"]}
    assert sections["dfew-5fold"]["metric"] == "accuracy" and sections["dfew-5fold"]["metric_label"] == "WAR"
    assert sections["10fold"]["metric_label"] == "accuracy"
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    heads = [line for line in md.splitlines() if "mean ± std |" in line]
    assert len(heads) == 2 and sum("| WAR mean ± std |" in h for h in heads) == 1, heads
    assert sum("| accuracy mean ± std |" in h for h in heads) == 1, heads


def test_metric_names_must_name_the_protocols_metrics(tmp_path):
    with pytest.raises(FerbenchError, match="metric_names"):
        load_protocol(protocol_copy(tmp_path, "dfew-5fold", metric_names={"uf1": "UF1"}))  # not among its metrics
    assert load_protocol("dfew-5fold").metric_names == {"accuracy": "WAR", "uar": "UAR"}
