"""DFEW: EmoLabel_DataSplit fold lists read as the owners write them (header, unpadded ids, 1-based labels),
every fold-list fault named, face crops read with no detector, the layout variants sources disagree on."""

from __future__ import annotations

import csv

import cv2
import pytest

from _wild_roots import DFEW_FIVE as FIVE
from _wild_roots import DFEW_TEST as TEST
from _wild_roots import DFEW_TRAIN as TRAIN
from _wild_roots import build_dfew as build
from ferbench.datasets import get_dataset, scan, synth
from ferbench.datasets.dfew import CLASSES, FOLDS
from ferbench.errors import DatasetError



@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("dfew")
    written = synth("dfew", out, subjects=1, seed=2)
    return out, written, scan("dfew", out)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


# ---------------------------------------------------------------- replica
def test_replica_scan_equals_what_was_written(replica):
    _, written, result = replica
    assert [s.summary() for s in result.samples] == [s.summary() for s in written]
    summary = result.summary()
    assert summary["samples"] == 35 and summary["classes"] == {c: 5 for c in CLASSES}  # 1 clip x 7 classes x 5 folds
    assert summary["subjects"] == 35 and all(s.subject == s.id for s in result.samples)  # no subject ids
    assert {s.split for s in result.samples} == set(FOLDS)
    assert not result.excluded and not result.problems
    assert any("2 clip(s)" in n and "in no fold list" in n for n in result.notes)  # the non-single-labelled clips


def test_replica_lists_are_the_release_format(replica):
    out, written, _ = replica
    by_id = {s.id: s for s in written}
    for fold in FOLDS:
        test, train = _rows(out / TEST / f"{fold}.csv"), _rows(out / TRAIN / f"{fold}.csv")
        assert test[0] == train[0] == ["video_name", "label"]
        for name, label in test[1:] + train[1:]:
            assert name == str(int(name)) and label in {"1", "2", "3", "4", "5", "6", "7"}  # unpadded, 1-based
            assert by_id[f"{int(name):05d}"].label == int(label) - 1
        assert {f"{int(v):05d}" for v, _ in test[1:]} == {s.id for s in written if s.split == fold}
        assert {f"{int(v):05d}" for v, _ in train[1:]} == {s.id for s in written if s.split != fold}
    s = written[0]
    assert [p.name for p in s.frames][:2] == [f"{s.id}_00001.jpg", f"{s.id}_00002.jpg"]
    assert cv2.imread(str(s.frames[0])).shape == (224, 224, 3)


# ---------------------------------------------------------------- the real format, by hand
def test_rows_as_the_owners_write_them(tmp_path):
    # reconstructed first rows of test(single-labeled)/set_1.csv: 1,2 / 2,3 / 4,2 (1 Happy ... 7 Fear)
    root = build(tmp_path, {**FIVE, "set_1": [("1", 2), ("2", 3), ("4", 2)]})
    result = scan("dfew", root)
    got = {s.id: (CLASSES[s.label], s.split) for s in result.samples if s.split == "set_1"}
    assert got == {"00001": ("Sad", "set_1"), "00002": ("Neutral", "set_1"), "00004": ("Sad", "set_1")}
    assert CLASSES == ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
    assert not result.excluded and not result.problems


def test_a_clip_in_two_test_lists_is_excluded_and_named(tmp_path):
    root = build(tmp_path, {**FIVE, "set_3": FIVE["set_3"] + [("11", 1)]})  # 11 is set_1's test clip too
    result = scan("dfew", root)
    reasons = dict(result.excluded)
    assert "00011" in reasons and "2 test lists" in reasons["00011"]
    assert "set_1.csv" in reasons["00011"] and "set_3.csv" in reasons["00011"]
    assert "00011" not in {s.id for s in result.samples} and len(result.samples) == 9


def test_a_clip_in_no_test_list_is_excluded_and_named(tmp_path):
    extra = "video_name,label\n" + "".join(f"{v},{lab}\n" for f, rows in FIVE.items() if f != "set_2" for v, lab in rows)
    root = build(tmp_path, FIVE, lists={f"{TRAIN}/set_2.csv": extra + "99,4\n"})
    (root / "Clip/clip_224x224/00099").mkdir()
    result = scan("dfew", root)
    assert "in no test list" in dict(result.excluded)["00099"] and "set_2.csv line" in dict(result.excluded)["00099"]


def test_train_and_test_of_one_fold_and_a_missing_train_row_are_named(tmp_path):
    rows = lambda fold: "".join(f"{v},{lab}\n" for f, rr in FIVE.items() if f != fold for v, lab in rr)  # noqa: E731
    root = build(tmp_path, FIVE, lists={
        f"{TRAIN}/set_1.csv": "video_name,label\n" + rows("set_1") + "11,1\n",  # set_1's own test clip
        f"{TRAIN}/set_4.csv": "video_name,label\n" + rows("set_4").replace("52,6\n", ""),  # set_5's clip 52 left out
    })
    reasons = dict(scan("dfew", root).excluded)
    assert "both the train and the test list of set_1" in reasons["00011"]
    assert "missing from the train list of set_4" in reasons["00052"]


def test_a_malformed_row_and_a_label_out_of_range_are_named(tmp_path):
    root = build(tmp_path, FIVE, lists={f"{TEST}/set_1.csv": "video_name,label\n11,1\nabc,2\n12,8\n13,2.5\n"})
    result = scan("dfew", root)
    problems = " ".join(result.problems)
    assert "set_1.csv: line 3: 'abc,2' names no clip" in problems
    reasons = dict(result.excluded)
    assert "line 4: label 8 of clip 00012 is outside 1-7" in reasons["00012"]
    assert "line 5 label cell '2.5' is not an integer" in reasons["00013"]


def test_a_list_without_the_header_or_missing_is_one_error_naming_it(tmp_path):
    root = build(tmp_path, FIVE, lists={f"{TEST}/set_2.csv": "21,2\n22,3\n"})
    with pytest.raises(DatasetError, match=r"set_2\.csv: header '21,2': expected a header row naming the columns"):
        scan("dfew", root)
    (root / TEST / "set_2.csv").unlink()
    with pytest.raises(DatasetError, match=r"set_2\.csv: fold list not found"):
        scan("dfew", root)


# ---------------------------------------------------------------- variants the sources disagree on
def test_underscore_list_folders_nested_crops_and_16f_names(tmp_path):
    root = build(tmp_path, FIVE, frames_dir="Clip/clip_224x224_16f/clip_224x224_16f", names=lambda c, t: f"{t}.jpg",
                 n=11, train_dir="EmoLabel_DataSplit/train(single_labeled)")
    result = scan("dfew", root)
    assert len(result.samples) == 10 and not result.problems and not result.excluded
    assert [p.name for p in result.samples[0].frames] == [f"{t}.jpg" for t in range(1, 12)]  # 10.jpg after 9.jpg
    assert get_dataset("dfew").default_aligner(root) == "none"


def test_original_videos_only_go_through_the_detector(tmp_path):
    written = synth("dfew", tmp_path, subjects=1, seed=1, modes=["original"])
    assert not (tmp_path / "Clip/clip_224x224").exists()
    result = scan("dfew", tmp_path)
    assert [s.video for s in result.samples] == [s.video for s in written] and all(not s.frames for s in written)
    assert {s.video.suffix for s in written} == {".mp4"} and written[0].video.parent.name == "original"
    assert get_dataset("dfew").default_aligner(tmp_path) == "mtcnn"


def test_prepare_reads_the_crops_with_no_detector_and_names_the_excluded_clip(tmp_path):
    """`prepare` with no --aligner: the face crops are read as they are (aligner none, recorded in the file), and
    a clip the lists put in two folds is an excluded sample with the scan's reason, not a sample of either."""
    from ferbench.preprocess.pipeline import PrepareConfig, prepare
    from ferbench.store import inspect

    root = build(tmp_path / "DFEW", {**FIVE, "set_3": FIVE["set_3"] + [("11", 1)]})
    summary = prepare("dfew", root, tmp_path / "dfew.h5", PrepareConfig(size=32), workers=0)
    assert summary.written == 9 and summary.failed == 1
    (failure,) = summary.failures
    assert failure.sample == "00011" and "2 test lists" in str(failure)
    info = inspect(tmp_path / "dfew.h5")
    assert info["aligner"] == "none" and info["config"]["length"] == 16
