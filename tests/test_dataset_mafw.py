"""MAFW: the single/no_caption 5-fold lists as the owners write them (`<id>.mp4 <class>`, no header, last line
without a newline), the 11 classes in the owners' order, every list fault named, frames vs faces vs clips."""

from __future__ import annotations

import pytest

from _wild_roots import MAFW_SINGLE as SINGLE
from _wild_roots import MAFW_FIVE as FIVE
from _wild_roots import build_mafw as build
from ferbench.datasets import get_dataset, scan, synth
from ferbench.datasets.mafw import CLASSES, FOLDS
from ferbench.errors import DatasetError



@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("mafw")
    written = synth("mafw", out, subjects=1, seed=5)
    return out, written, scan("mafw", out)


def test_replica_scan_equals_what_was_written(replica):
    _, written, result = replica
    assert [s.summary() for s in result.samples] == [s.summary() for s in written]
    summary = result.summary()
    assert summary["samples"] == 55 and summary["classes"] == {c: 5 for c in CLASSES}  # 11 classes x 5 folds
    assert {s.split for s in written} == set(FOLDS) and all(s.subject == s.id for s in written)
    assert not result.excluded and not result.problems
    assert any("2 clip(s)" in n and "no single-label fold list" in n for n in result.notes)


def test_replica_lists_are_the_release_format(replica):
    out, written, _ = replica
    by_id = {s.id: s for s in written}
    for fold in FOLDS:
        for role in ("test", "train"):
            text = (out / SINGLE / fold / f"{role}.txt").read_text()
            assert not text.endswith("\n")  # as in the release: no newline after the last row
            for line in text.split("\n"):
                name, word = line.split(" ")
                clip = name.removesuffix(".mp4")
                assert len(clip) == 5 and word == word.lower() == CLASSES[by_id[clip].label]
                assert (by_id[clip].split == fold) == (role == "test")


def test_rows_as_the_owners_write_them_and_the_owners_class_order(tmp_path):
    folds = {**FIVE, "set_1": [("00025", "anger"), ("03747", "anger"), ("12000", "disappointment")]}
    result = scan("mafw", build(tmp_path, folds, top="split"))  # MAE-DFER's renamed top folder
    got = {s.id: (s.label, s.split) for s in result.samples if s.split == "set_1"}
    assert got == {"00025": (0, "set_1"), "03747": (0, "set_1"), "12000": (10, "set_1")}
    assert CLASSES[:7] == ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    assert not result.excluded and not result.problems


def test_list_faults_are_named(tmp_path):
    root = build(tmp_path, lists={
        f"{SINGLE}/set_2/test.txt": "00201.mp4 disgust\n00202.mp4 sadness\n00101.mp4 disgust\n00203.mp4 boredom\n"
                                    "00204.mp4 anger extra\nnot-a-clip anger",
    })
    for clip in ("00203", "00204"):
        (root / "data/frames" / clip).mkdir()
    result = scan("mafw", root)
    reasons = dict(result.excluded)
    assert "in 2 test lists" in reasons["00101"] and "set_1/test.txt line 1" in reasons["00101"]
    assert "label 'boredom' of clip 00203 is not one of the 11 classes" in reasons["00203"]
    assert "has 3 fields" in reasons["00204"]
    assert any("set_2/test.txt: line 6: 'not-a-clip anger' names no clip" in p for p in result.problems)


def test_faces_read_without_a_detector_frames_and_clips_with_one(tmp_path):
    faces = build(tmp_path / "a", frames="data/faces")
    assert len(scan("mafw", faces).samples) == 10 and get_dataset("mafw").default_aligner(faces) == "none"
    assert get_dataset("mafw").default_aligner(build(tmp_path / "b")) == "mtcnn"
    written = synth("mafw", tmp_path / "c", subjects=1, seed=1, modes=["clips"])
    result = scan("mafw", tmp_path / "c")
    assert [s.video for s in result.samples] == [s.video for s in written] and written[0].video.suffix == ".mp4"
    assert get_dataset("mafw").default_aligner(tmp_path / "c") == "mtcnn"


def test_missing_lists_are_one_error_naming_them(tmp_path):
    root = build(tmp_path)
    (root / SINGLE / "set_4" / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"set_4/test\.txt: fold list not found"):
        scan("mafw", root)
