"""Protocols on sample tables built in memory: every split is subject-disjoint, reproducible and as published.

The tables have the shape of the real datasets (CK+ 118-subject ids, BP4D's 41 subjects, Oulu-CASIA modes,
AFEW splits) at sizes the replicas cannot reach cheaply; tests/test_protocols_replicas.py runs the same
protocols on prepared replica files.
"""

from __future__ import annotations

import doctest
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import yaml

import ferbench.protocols.splitters as splitters_module
from _protocol_files import protocol_copy
from ferbench.errors import FerbenchError
from ferbench.protocols import SampleTable, check_leakage, load_protocol, make_plan, read_folds_fingerprint, write_folds

CK_CLASSES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
SIX = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
# SPEC section 3: the public BP4D 3-fold subject lists (typed here independently of protocols/3fold.yaml)
BP4D_PARTS = [
    "F001 F002 F008 F009 F010 F016 F018 F023 M001 M004 M007 M008 M012 M014".split(),
    "F003 F005 F011 F013 F020 F022 M002 M005 M010 M011 M013 M016 M017 M018".split(),
    "F004 F006 F007 F012 F014 F015 F017 F019 F021 M003 M006 M009 M015".split(),
]


def make_table(dataset, classes, rows, path=None) -> SampleTable:
    """rows: (id, subject, label or None, split, mode dict)."""
    return SampleTable(
        path=path, dataset=dataset, classes=classes, ids=[r[0] for r in rows], subjects=[r[1] for r in rows],
        labels=np.array([-1 if r[2] is None else r[2] for r in rows]), splits=[r[3] for r in rows],
        modes=[r[4] for r in rows],
    )


def ck_table(n_subjects=40, seed=0) -> SampleTable:
    """CK+-like: 1-4 sequences per subject, labels 1-7 (contempt = 2), some unlabelled."""
    rng = np.random.default_rng(seed)
    numbers = sorted(rng.choice(np.arange(5, 1000), size=n_subjects, replace=False))
    rows = []
    for k, num in enumerate(numbers):
        subject = f"S{num:03d}"
        for j in range(int(rng.integers(1, 5))):
            label = None if (k + j) % 7 == 6 else 1 + (k * 3 + j) % 7
            rows.append((f"{subject}_{j + 1:03d}", subject, label, None, {}))
    return make_table("ck+", CK_CLASSES, rows)


def oulu_table(n_subjects=12) -> SampleTable:
    rows = []
    for s in range(n_subjects):
        for system in ("VL", "NI"):
            for light in ("Strong", "Dark"):
                for c in range(6):
                    subject = f"P{s + 1:03d}"
                    rows.append((f"{system}/{light}/{subject}/{c}", subject, c, None,
                                 {"illumination": light, "system": system}))
    return make_table("oulu-casia", SIX, rows)


def subjects_of(table, idx):
    return {table.subjects[i] for i in idx.tolist()}


def assert_subject_disjoint(plan):
    for f in plan.folds:
        tr, va, te = (subjects_of(plan.train_table, f.train), subjects_of(plan.train_table, f.val),
                      subjects_of(plan.test_table, f.test))
        if plan.test_table is plan.train_table:
            assert not (tr & te) and not (va & te) and not (tr & va), (f.repeat, f.fold)
        assert f.test.size and f.train.size


# ------------------------------------------------------------------------------------------------ 10fold
def test_10fold_is_40_subject_disjoint_trials_whose_test_folds_partition_the_six_class_samples():
    t = ck_table()
    plan = make_plan("10fold", t)
    assert len(plan.folds) == 40 and {f.repeat for f in plan.folds} == {0, 1, 2, 3}
    assert plan.classes == SIX
    six = np.array([lab >= 0 and CK_CLASSES[lab] in SIX for lab in t.labels])
    assert np.array_equal(plan.y_train >= 0, six)  # contempt, neutral and unlabelled are not used
    for i in np.flatnonzero(six)[:20]:
        assert plan.classes[plan.y_train[i]] == CK_CLASSES[t.labels[i]]
    assert_subject_disjoint(plan)
    by_repeat = defaultdict(list)
    for f in plan.folds:
        by_repeat[f.repeat].append(f)
        assert np.array_equal(np.sort(np.concatenate([f.train, f.test])), np.flatnonzero(six))
    assignments = []
    for folds in by_repeat.values():
        tests = np.concatenate([f.test for f in folds])
        assert np.array_equal(np.sort(tests), np.flatnonzero(six))  # a partition: each sample tested once
        assignments.append(tuple(frozenset(subjects_of(t, f.test)) for f in folds))
    assert len(set(assignments)) == 4  # every repeat has its own seed, so its own folds
    seeds = [f.seed for f in plan.folds]
    assert len(set(seeds)) == 40


def test_10fold_7_keeps_contempt_and_the_fold_counts_add_up():
    t = ck_table()
    plan = make_plan("10fold-7", t)
    assert plan.classes == ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    used = (t.labels >= 1)
    assert np.array_equal(plan.y_train >= 0, used)
    for f in plan.folds[:10]:
        counts = plan.class_counts(f, "test")
        want = {c: int(sum(CK_CLASSES[t.labels[i]] == c for i in f.test)) for c in plan.classes}
        assert counts == want and sum(counts.values()) == f.test.size


def test_same_seed_same_folds_and_the_fingerprint_follows_seed_protocol_and_table(tmp_path):
    t = ck_table()
    a, b = make_plan("10fold", t, repeats=2), make_plan("10fold", t, repeats=2)
    assert a.fingerprint == b.fingerprint
    assert all(np.array_equal(x.test, y.test) and np.array_equal(x.train, y.train) for x, y in zip(a.folds, b.folds))
    # a byte-identical copy elsewhere is the same protocol: same fingerprint (two labs compare one string)
    same = tmp_path / "mine.yaml"
    same.write_bytes(load_protocol("10fold").path.read_bytes())
    assert make_plan(same, t, repeats=2).fingerprint == a.fingerprint
    seeded = make_plan(protocol_copy(tmp_path, "10fold", seed=7), t, repeats=2)
    assert seeded.fingerprint != a.fingerprint
    assert any(not np.array_equal(x.test, y.test) for x, y in zip(a.folds, seeded.folds))
    edited = tmp_path / "edited.yaml"
    edited.write_text(load_protocol("10fold").path.read_text().replace("validation: null", "validation: {fraction: 0.2}"))
    assert make_plan(edited, t, repeats=2).fingerprint != a.fingerprint
    assert make_plan("10fold", t, repeats=3).fingerprint != a.fingerprint
    other = replace(t, labels=np.where(np.arange(len(t)) == 0, 5, t.labels), fingerprint="")
    assert other.fingerprint != t.fingerprint and make_plan("10fold", other, repeats=2).fingerprint != a.fingerprint


def test_validation_is_carved_from_training_subjects_only_and_is_seeded():
    t = ck_table()
    plan = make_plan("10fold", t, repeats=1, validation=0.25)
    again = make_plan("10fold", t, repeats=1, validation=0.25)
    bare = make_plan("10fold", t, repeats=1)
    assert_subject_disjoint(plan)
    for f, g, h in zip(plan.folds, again.folds, bare.folds):
        assert np.array_equal(f.test, h.test)  # the test fold is untouched by validation
        assert np.array_equal(np.sort(np.concatenate([f.train, f.val])), h.train)  # val comes out of train
        n_train_subjects = len(subjects_of(t, h.train))
        assert len(subjects_of(t, f.val)) == int(np.ceil(0.25 * n_train_subjects))
        assert np.array_equal(f.val, g.val)
    assert len({frozenset(subjects_of(t, f.val)) for f in plan.folds}) > 1  # each fold draws its own


# ----------------------------------------------------------------------------------------- round robin
def test_round_robin_matches_an_independently_computed_assignment():
    t = ck_table(n_subjects=118, seed=3)
    plan = make_plan("ck+-roundrobin", t)
    used = t.labels >= 1
    # independently: the numeric ids in increasing order, dealt to folds 0..9 in turn
    numbers = sorted({int(s[1:]) for s, u in zip(t.subjects, used) if u})
    expected = defaultdict(set)
    for rank, num in enumerate(numbers):
        expected[rank % 10].add(f"S{num:03d}")
    assert len(plan.folds) == 10
    for f in plan.folds:
        assert subjects_of(t, f.test) == expected[f.fold]
    assert_subject_disjoint(plan)


# ----------------------------------------------------------------------------------------------- LOSO
def test_loso_has_one_fold_per_subject():
    rows = [(f"S{s:03d}_{j}", f"S{s:03d}", j % 6, None, {"view": "frontal"}) for s in (1, 2, 5, 9, 30) for j in range(4)]
    rows.append(("S031_0", "S031", 0, None, {"view": "profile"}))  # outside the frontal filter: unused
    t = make_table("mmi", SIX, rows)
    plan = make_plan("loso", t)
    assert len(plan.folds) == 5
    assert sorted(next(iter(subjects_of(t, f.test))) for f in plan.folds) == ["S001", "S002", "S005", "S009", "S030"]
    assert all(len(subjects_of(t, f.test)) == 1 and f.test.size == 4 and f.train.size == 16 for f in plan.folds)
    assert_subject_disjoint(plan)


# ----------------------------------------------------------------------------------------------- BP4D
def bp4d_table(subjects) -> SampleTable:
    return make_table("bp4d", (), [(f"{s}_T{k}", s, None, None, {}) for s in subjects for k in (1, 2)])


def test_3fold_equals_the_published_lists():
    everyone = [s for part in BP4D_PARTS for s in part]
    assert len(everyone) == 41
    t = bp4d_table(sorted(everyone))
    plan = make_plan("3fold", t)
    assert plan.protocol.task == "au-detection" and plan.classes == ()
    assert (plan.y_train == -1).all()
    assert len(plan.folds) == 3 and not plan.warnings
    for f, part in zip(plan.folds, BP4D_PARTS):
        assert subjects_of(t, f.test) == set(part)
        assert subjects_of(t, f.train) == set(everyone) - set(part)


def test_3fold_uses_only_present_subjects_and_names_the_missing_ones(tmp_path):
    present = [s for part in BP4D_PARTS for s in part if s not in ("F002", "M018")] + ["X001"]
    t = bp4d_table(present)
    plan = make_plan("3fold", t)
    missing = [w for w in plan.warnings if "not in" in w]
    assert len(missing) == 1 and "F002, M018" in missing[0]
    assert any("X001" in w for w in plan.warnings)  # in no list: unused, and said so
    assert all("X001" not in subjects_of(t, np.concatenate([f.train, f.test])) for f in plan.folds)
    strict = protocol_copy(tmp_path, "3fold", params={"missing": "error", "folds": BP4D_PARTS})
    with pytest.raises(FerbenchError, match=r"3fold-copy\.yaml.*F002, M018"):
        make_plan(strict, t)


def test_fera2015_trains_on_odd_and_tests_on_even_subjects():
    t = bp4d_table(["F001", "F002", "F003", "M001", "M002", "M017", "M018"])
    (f,) = make_plan("fera2015", t).folds
    assert subjects_of(t, f.train) == {"F001", "F003", "M001", "M017"}
    assert subjects_of(t, f.test) == {"F002", "M002", "M018"}


# ------------------------------------------------------------------------------------------ AFEW / modes
def test_val_tests_on_val_and_validates_on_train_subjects_only():
    classes = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    rows = [(f"{split}/{i}", f"{split}{i:04d}", None if split == "test" else i % 7, split, {})
            for split, n in (("train", 40), ("val", 20), ("test", 10)) for i in range(n)]
    t = make_table("afew", classes, rows)
    (f,) = make_plan("val", t).folds
    splits = np.array(t.splits)
    assert set(splits[f.test]) == {"val"} and f.test.size == 20
    assert set(splits[f.train]) == {"train"} and set(splits[f.val]) == {"train"}
    assert f.train.size + f.val.size == 40 and f.val.size == 4  # protocol's validation: 10% of Train subjects
    assert_subject_disjoint(make_plan("val", t))


def test_unseen_mode_trains_on_vl_strong_and_tests_other_modes_of_other_subjects(tmp_path):
    t = oulu_table()
    plan = make_plan(protocol_copy(tmp_path, "unseen-mode", params={
        "train": [{"system": "VL", "illumination": "Strong"}], "n_splits": 4, "shuffle": True}), t)
    keys = t.mode_keys()
    vl_strong = keys == "illumination=Strong,system=VL"
    assert len(plan.folds) == 4
    for f in plan.folds:
        assert vl_strong[f.train].all() and not vl_strong[f.test].any()
    assert np.array_equal(np.sort(np.concatenate([f.test for f in plan.folds])), np.flatnonzero(~vl_strong))
    assert_subject_disjoint(plan)


def test_10fold_on_oulu_uses_vl_strong_only():
    t = oulu_table(n_subjects=10)
    plan = make_plan("10fold", t, repeats=1)
    used = np.flatnonzero(plan.y_train >= 0)
    assert set(t.mode_keys()[used]) == {"illumination=Strong,system=VL"} and used.size == 60
    assert any("60 of 240" in w for w in plan.warnings)


def test_cross_dataset_maps_classes_and_trains_on_one_file_tests_on_the_other():
    casme = make_table("casme2", ("happiness", "disgust", "repression", "surprise", "others"),
                       [(f"s{i}", "S01" if i < 5 else "S02", i % 5, None, {}) for i in range(10)])
    mmi = make_table("mmi", SIX, [(f"m{i}", "S01", i % 6, None, {"view": "frontal"}) for i in range(12)])
    plan = make_plan("cross-dataset", casme, mmi)
    assert plan.classes == ("happiness", "disgust", "surprise")
    (f,) = plan.folds
    assert [casme.classes[casme.labels[i]] for i in f.train] == ["happiness", "disgust", "surprise"] * 2
    assert [plan.classes[plan.y_test[i]] for i in f.test] == [mmi.classes[mmi.labels[i]] for i in f.test]
    assert {mmi.classes[mmi.labels[i]] for i in f.test} == {"happiness", "disgust", "surprise"}
    # "S01" of CASME II and "S01" of MMI are different people: no leakage reported
    assert plan.test_table is mmi and plan.train_table is casme
    with pytest.raises(FerbenchError, match="--data-test"):
        make_plan("cross-dataset", casme)
    with pytest.raises(FerbenchError, match="only for cross-dataset"):
        make_plan("loso", mmi, mmi)


# --------------------------------------------------------------------------------------------- leakage
def test_leakage_check_names_the_shared_subject_and_the_shared_sample():
    t = ck_table()
    plan = make_plan("10fold", t, repeats=1)
    f = plan.folds[3]
    intruder = f.test[0]
    # the very same sample in validation and test: the sample is named
    dup = replace(plan, folds=[replace(f, val=f.test[:1])])
    with pytest.raises(FerbenchError, match=f"sample '{t.ids[f.test[0]]}' is in both val and test"):
        check_leakage(dup)
    # a fold whose test subject is also a training subject through another sample
    t2 = replace(t, subjects=[t.subjects[intruder] if i == f.train[0] else s for i, s in enumerate(t.subjects)],
                 fingerprint="")
    with pytest.raises(FerbenchError, match=f"subject '{t.subjects[intruder]}' is in both train and test"):
        check_leakage(replace(plan, train_table=t2, test_table=t2))


def test_folder_subjects_that_may_be_clip_name_guesses_are_warned_about(tmp_path):
    rows = [("happy/P01_happy_1", "P01", 0, None, {}), ("happy/take_01", "P02", 0, None, {}),
            ("sad/P02_sad_3", "P02", 1, None, {}), ("sad/take_02", "P01", 1, None, {})]
    t = make_table("folder", ("happy", "sad"), rows)
    p = {"name": "mine", "description": "d", "datasets": ["folder"], "task": "classification",
         "splitter": "group-kfold", "params": {"n_splits": 2}, "metric": "accuracy", "paper": "own", "table": "-"}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(p))
    plan = make_plan(path, t)  # a file of schema 1-2: no recorded sources, the prefix check
    assert [w for w in plan.warnings if "subject independence cannot be guaranteed" in w][0].startswith(
        "the folder sample table: subject ids of 2 sample(s) equal their clip-name prefix")
    # recorded sources (schema 3): exactly the samples whose subject came from the name, prefix or not
    known = replace(t, subject_sources=["csv", "name", "name", "name"])
    warning = [w for w in make_plan(path, known).warnings if "subject independence" in w]
    assert len(warning) == 1 and "subject ids of 3 sample(s) were taken from their clip names" in warning[0]
    listed = replace(t, subject_sources=["csv"] * 4)
    assert not [w for w in make_plan(path, listed).warnings if "subject independence" in w]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("text, field", [
    ("name: x\n  bad: [indent", "malformed YAML at line"),
    ("- just\n- a list\n", "expected a YAML mapping"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t, repeat: 4}", "unknown field(s) repeat"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t, repeats: four}", "field 'repeats': expected an integer >= 1"),
    ("{name: x, description: d, datasets: [ck+], task: classify, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t}", "field 'task'"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: kfold, metric: accuracy, "
     "paper: p, table: t}", "field 'splitter': expected one of group-kfold"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t, params: {folds: 3}}", "field 'params' of splitter 'group-kfold'"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t, params: {n_splits: 1}}", "field 'params'"),
    ("{name: x, description: d, datasets: [ck+], task: classification, splitter: group-kfold, metric: accuracy, "
     "paper: p, table: t, filter: {ck+: {colour: [red]}}}", "unknown sample field 'colour'"),
    ("{name: x, datasets: [ck+]}", "missing field(s) description"),
])
def test_malformed_protocol_files_name_the_file_and_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FerbenchError) as e:
        load_protocol(path)
    msg = str(e.value)
    assert msg.startswith(str(path.resolve())) and field in msg and "\n" not in msg


def test_wrong_dataset_missing_class_empty_fold_and_unknown_name_are_one_clear_line(tmp_path):
    t = ck_table(n_subjects=5)
    with pytest.raises(FerbenchError, match=r"3fold\.yaml: protocol '3fold' applies to bp4d, but .* holds ck\+"):
        make_plan("3fold", t)
    oulu = oulu_table(n_subjects=3)
    with pytest.raises(FerbenchError, match=r"10fold-7-copy\.yaml: class 'contempt' is not in"):
        make_plan(protocol_copy(tmp_path, "10fold-7", datasets=["oulu-casia"]), oulu)
    with pytest.raises(FerbenchError, match=r"10fold\.yaml: 10 subject-disjoint folds need at least 10 subjects, but .* has 5"):
        make_plan("10fold", t)
    with pytest.raises(FerbenchError, match="unknown protocol 'tenfold'; choose one of: .*10fold"):
        load_protocol("tenfold")
    no_vl = replace(oulu, modes=[{**m, "system": "NI"} for m in oulu.modes], fingerprint="")
    with pytest.raises(FerbenchError, match=r"filter mode.system in \['VL'\] matches no sample"):
        make_plan("10fold", no_vl)


def test_every_bundled_protocol_loads_and_its_splitter_is_documented():
    from ferbench.protocols import list_protocols

    names = {p.name for p in list_protocols()}
    assert {"10fold", "10fold-7", "ck+-roundrobin", "loso", "3fold", "fera2015", "val", "unseen-mode",
            "cross-dataset", "cross-dataset-ck+-oulu"} <= names
    for p in list_protocols():
        assert p.path.stem == p.name and len(p.fingerprint) == 64 and p.metric in p.metrics


def test_splitter_docstring_examples_hold():
    result = doctest.testmod(splitters_module, verbose=False)
    assert result.attempted >= 6 and result.failed == 0


def test_fold_list_csv_has_the_fingerprint_first_and_one_row_per_role_and_sample(tmp_path):
    import csv

    t = ck_table()
    plan = make_plan("10fold", t, repeats=2, validation=0.2)
    out = write_folds(plan, tmp_path / "sub" / "folds.csv")
    assert read_folds_fingerprint(out) == plan.fingerprint
    lines = out.read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert len(rows) == sum(f.train.size + f.val.size + f.test.size for f in plan.folds)
    f = plan.folds[5]
    got = {(r["role"], r["sample_id"]) for r in rows if (int(r["repeat"]), int(r["fold"])) == (f.repeat, f.fold)}
    want = {(role, t.ids[i]) for role in ("train", "val", "test") for i in getattr(f, role)}
    assert got == want
    by_id = dict(zip(t.ids, t.subjects))
    assert all(by_id[r["sample_id"]] == r["subject"] and r["label"] in SIX for r in rows)


def test_unseen_mode_refuses_a_file_without_the_training_mode_or_without_other_modes(tmp_path):
    t = oulu_table(n_subjects=4)
    only_vl_strong = make_table("oulu-casia", SIX, [r for r in zip(t.ids, t.subjects, t.labels.tolist(), t.splits, t.modes)
                                                    if r[4] == {"illumination": "Strong", "system": "VL"}])
    small = protocol_copy(tmp_path, "unseen-mode", params={"train": [{"system": "VL", "illumination": "Strong"}],
                                                           "n_splits": 2})
    with pytest.raises(FerbenchError, match=r"unseen-mode-copy\.yaml: repeat 0 fold 0 has no test samples"):
        make_plan(small, only_vl_strong)
    no_vl_strong = make_table("oulu-casia", SIX, [r for r in zip(t.ids, t.subjects, t.labels.tolist(), t.splits, t.modes)
                                                  if r[4] != {"illumination": "Strong", "system": "VL"}])
    with pytest.raises(FerbenchError, match=r"train mode 'illumination=Strong,system=VL' is in no sample"):
        make_plan(small, no_vl_strong)
