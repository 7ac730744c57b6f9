"""Protocols on prepared replicas of every dataset, through the API and the `ferbench folds` command.

Each check re-reads the store itself (subjects, labels, modes, splits by sample id) rather than trusting the
plan's own table. Replicas are small (1-3 subjects), so the protocols run as user copies with fewer folds,
which is also how a user makes their own protocol. They are prepared with `aligner="none"`: a protocol reads
the sample table, not the pixels, and face detection would triple the cost.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _protocol_files import protocol_copy
from _replicas import REPLICAS
from ferbench.cli import app
from ferbench.errors import FerbenchError
from ferbench.protocols import load_protocol, make_plan
from ferbench.store import open_store

SIX = {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}
VL_STRONG = {"system": "VL", "illumination": "Strong"}
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """A wide console, so rich does not wrap the table cells the tests read."""
    from ferbench import cli

    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err_console, "width", 400)


def replica(prepared_replica, dataset: str) -> Path:
    return prepared_replica(dataset, **REPLICAS[dataset])


def rows_of(path: Path) -> dict[str, object]:
    with open_store(path) as store:
        return {s.id: s for s in store.samples}, store.classes


def _label(s, classes):
    return None if s.label is None else classes[s.label]


# (dataset, protocol, changes to a user copy, which stored samples the protocol must use)
CASES = [
    ("ck+", "10fold", {"params": {"n_splits": 2, "shuffle": True}},
     lambda s, c: _label(s, c) in SIX),
    ("ck+", "10fold-7", {"params": {"n_splits": 2, "shuffle": True}, "repeats": 2},
     lambda s, c: _label(s, c) not in (None, "neutral")),
    ("ck+", "ck+-roundrobin", {"params": {"n_splits": 2}},
     lambda s, c: _label(s, c) not in (None, "neutral")),
    ("oulu-casia", "10fold", {"params": {"n_splits": 2, "shuffle": True}},
     lambda s, c: s.mode == VL_STRONG and s.label is not None),
    ("oulu-casia", "unseen-mode", {"params": {"train": [VL_STRONG], "n_splits": 2, "shuffle": True}},
     lambda s, c: s.label is not None),
    ("mmi", "10fold", {"params": {"n_splits": 2, "shuffle": True}},
     lambda s, c: s.label is not None and s.mode.get("view") in ("frontal", "unknown")),
    ("mmi", "loso", {}, lambda s, c: s.label is not None and s.mode.get("view") in ("frontal", "unknown")),
    ("casme2", "loso", {}, lambda s, c: s.label is not None),
    ("bp4d", "fera2015", {}, lambda s, c: True),
    ("afew", "val", {}, lambda s, c: s.label is not None and s.split in ("train", "val")),
    ("folder", "10fold", {"datasets": ["folder"], "classes": None, "filter": None,
                          "params": {"n_splits": 2, "shuffle": True}},
     lambda s, c: s.label is not None),
]


#: Replicas no fast test needs otherwise (each costs seconds to synthesise): their cases run in the full suite.
_SLOW_REPLICAS = ("oulu-casia", "bp4d", "afew")


@pytest.mark.parametrize("dataset, name, changes, used", [
    pytest.param(*c, id=f"{c[0]}-{c[1]}", marks=[pytest.mark.slow] if c[0] in _SLOW_REPLICAS else [])
    for c in CASES])
def test_every_fold_is_subject_disjoint_and_each_repeat_partitions_the_samples(
        prepared_replica, tmp_path, dataset, name, changes, used):
    h5 = replica(prepared_replica, dataset)
    plan = make_plan(protocol_copy(tmp_path, name, **changes), h5)
    stored, classes = rows_of(h5)
    want = {i for i, s in stored.items() if used(s, classes)}
    assert want and plan.folds
    repeats = defaultdict(list)
    for f in plan.folds:
        ids = {role: [plan.train_table.ids[i] for i in getattr(f, role)] for role in ("train", "val", "test")}
        subj = {role: {stored[i].subject for i in v} for role, v in ids.items()}
        assert ids["train"] and ids["test"]
        assert not subj["train"] & subj["test"] and not subj["val"] & subj["test"] and not subj["train"] & subj["val"]
        assert set(ids["train"]) | set(ids["val"]) | set(ids["test"]) <= want
        repeats[f.repeat].append(ids["test"])
        if name == "unseen-mode":
            assert all(stored[i].mode == VL_STRONG for i in ids["train"])
            assert all(stored[i].mode != VL_STRONG for i in ids["test"])
        if name == "val":  # the protocol carves validation out of the Train clips
            assert ids["val"] and {stored[i].split for i in ids["test"]} == {"val"}
            assert {stored[i].split for i in ids["train"] + ids["val"]} == {"train"}
    assert len(repeats) == plan.protocol.repeats
    for tests in repeats.values():
        flat = [i for t in tests for i in t]
        assert len(flat) == len(set(flat))  # no sample tested twice in a repeat
        target = want if name != "unseen-mode" else {i for i in want if stored[i].mode != VL_STRONG}
        if name not in ("fera2015", "val"):  # k-fold kinds: the test folds cover every used sample
            assert set(flat) == target
    if name == "loso":
        assert len(plan.folds) == len({stored[i].subject for i in want})
        assert all(len({stored[plan.train_table.ids[i]].subject for i in f.test}) == 1 for f in plan.folds)
    if name == "ck+-roundrobin":  # independently: sorted subject ids dealt to folds 0, 1, 0, ...
        ranks = {s: k % 2 for k, s in enumerate(sorted({stored[i].subject for i in want}))}
        for f in plan.folds:
            assert {ranks[stored[plan.train_table.ids[i]].subject] for i in f.test} == {f.fold}
    if name == "fera2015":
        (f,) = plan.folds
        assert {stored[plan.train_table.ids[i]].subject for i in f.test} == {"F002"}
        assert {stored[plan.train_table.ids[i]].subject for i in f.train} == {"F001", "M001"}
    if dataset == "folder":  # the replica names some clips' subjects only through their clip names
        assert any("subject independence cannot be guaranteed" in w for w in plan.warnings)


def test_cross_dataset_trains_on_casme2_and_tests_on_mmi_through_the_cli(prepared_replica, tmp_path):
    casme, mmi = replica(prepared_replica, "casme2"), replica(prepared_replica, "mmi")
    out = tmp_path / "folds.csv"
    result = runner.invoke(app, ["folds", "--data", str(casme), "--data-test", str(mmi), "--protocol",
                                 "cross-dataset", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(line for line in out.read_text().splitlines() if not line.startswith("#")))
    by_role = defaultdict(set)
    for r in rows:
        by_role[r["role"]].add((r["dataset"], r["label"]))
    assert {d for d, _ in by_role["train"]} == {"casme2"} and {d for d, _ in by_role["test"]} == {"mmi"}
    assert {lab for _, lab in by_role["train"]} == {lab for _, lab in by_role["test"]} == {"happiness", "disgust", "surprise"}


def test_same_seed_same_folds_and_fingerprint_changes_with_seed_on_a_replica(prepared_replica, tmp_path):
    h5 = replica(prepared_replica, "mmi")
    a = make_plan(protocol_copy(tmp_path, "10fold", params={"n_splits": 2, "shuffle": True}), h5)
    b = make_plan(protocol_copy(tmp_path, "10fold", params={"n_splits": 2, "shuffle": True}), h5)
    assert a.fingerprint == b.fingerprint and a.fold_rows() == b.fold_rows()
    c = make_plan(protocol_copy(tmp_path, "10fold", params={"n_splits": 2, "shuffle": True}, seed=1), h5)
    assert c.fingerprint != a.fingerprint
    d = make_plan(protocol_copy(tmp_path, "10fold", params={"n_splits": 2, "shuffle": False}), h5)
    assert d.fingerprint != a.fingerprint


def test_folds_command_writes_the_list_with_its_fingerprint_and_prints_class_counts(prepared_replica, tmp_path):
    h5 = replica(prepared_replica, "ck+")
    proto = protocol_copy(tmp_path, "10fold", params={"n_splits": 2, "shuffle": True}, repeats=2)
    out = tmp_path / "folds.csv"
    result = runner.invoke(app, ["folds", "--data", str(h5), "--protocol", str(proto), "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = make_plan(proto, h5)
    lines = out.read_text().splitlines()
    assert lines[0] == f"# fingerprint: {plan.fingerprint}" and f"fingerprint: {plan.fingerprint}" in result.output
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [dict(r) for r in rows] == [{k: str(v) for k, v in r.items()} for r in plan.fold_rows()]
    stored, classes = rows_of(h5)
    assert all(stored[r["sample_id"]].subject == r["subject"] and _label(stored[r["sample_id"]], classes) == r["label"]
               for r in rows)
    for f in plan.folds:  # the summary shows each fold's test class counts, recounted here from the CSV
        counts = defaultdict(int)
        for r in rows:
            if (int(r["repeat"]), int(r["fold"]), r["role"]) == (f.repeat, f.fold, "test"):
                counts[r["label"]] += 1
        line = " ".join(f"{c} {counts.get(c, 0)}" for c in plan.classes)
        assert line in result.output


def test_protocols_command_lists_every_bundled_protocol():
    result = runner.invoke(app, ["protocols"])
    assert result.exit_code == 0
    for name, paper in (("10fold", "yu2018"), ("loso", "kim2017"), ("3fold", "ferbench"), ("val", "chao2016"),
                        ("unseen-mode", "baddar2019"), ("cross-dataset", "ferbench"), ("ck+-roundrobin", "ferbench")):
        assert any(line.split("│")[1].strip() == name and paper in line for line in result.output.splitlines()
                   if line.count("│") > 2), name


def _cli_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # an exit, not a crash
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_user_mistakes_are_one_line_naming_the_protocol_file_and_exit_2(prepared_replica, tmp_path):
    ck, bp4d, oulu = (replica(prepared_replica, d) for d in ("ck+", "bp4d", "oulu-casia"))
    three = load_protocol("3fold").path
    assert f"{three}: protocol '3fold' applies to bp4d, but {ck} holds ck+" in _cli_error(
        ["folds", "--data", str(ck), "--protocol", "3fold"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsplitter: [unclosed\n")
    assert f"{broken}: malformed YAML at line" in _cli_error(["folds", "--data", str(ck), "--protocol", str(broken)])
    seven = protocol_copy(tmp_path, "10fold-7", datasets=["oulu-casia"], params={"n_splits": 2, "shuffle": True})
    assert f"{seven}: class 'contempt' is not in {oulu}" in _cli_error(
        ["folds", "--data", str(oulu), "--protocol", str(seven)])
    strict = protocol_copy(tmp_path, "3fold", params={**load_protocol("3fold").params, "missing": "error"})
    line = _cli_error(["folds", "--data", str(bp4d), "--protocol", str(strict)])
    assert str(strict) in line and "listed subject(s) not in the data: F003" in line
    # the replica's subjects (F001, M001, F002) are all in the first list: the other two folds train on nothing
    line = _cli_error(["folds", "--data", str(bp4d), "--protocol", "3fold"])
    assert str(three) in line and "fold 0 has no training samples" in line
    assert f"{load_protocol('10fold').path}: 10 subject-disjoint folds need at least 10 subjects" in _cli_error(
        ["folds", "--data", str(ck), "--protocol", "10fold"])
    assert "--validation must be a fraction" in _cli_error(
        ["folds", "--data", str(ck), "--protocol", "loso", "--validation", "0"])


def test_a_store_a_path_and_a_sample_table_give_the_same_plan(prepared_replica):
    from ferbench.protocols import SampleTable

    h5 = replica(prepared_replica, "casme2")
    with open_store(h5) as store:
        from_store = make_plan("loso", store)
    plans = [from_store, make_plan("loso", h5), make_plan("loso", SampleTable.open(h5))]
    assert len({p.fingerprint for p in plans}) == 1
    assert len({tuple(map(str, p.fold_rows())) for p in plans}) == 1


def test_validation_needs_two_training_subjects(prepared_replica):
    with pytest.raises(FerbenchError, match="cannot carve a validation set out of 1 training subject"):
        make_plan("loso", replica(prepared_replica, "casme2"), validation=0.3)
