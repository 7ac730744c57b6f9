"""Generic class folders: dynamic classes, videos and frame folders, subjects from subjects.csv or clip names."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.folder import FolderAdapter
from ferbench.errors import DatasetError

runner = CliRunner()


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("folder")
    written = synth("folder", out, subjects=3, seed=4)
    return out, written, scan("folder", out)


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((6, 8, 3), np.uint8))


def _clip(path, n=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (16, 16))
    for _ in range(n):
        w.write(np.zeros((16, 16, 3), np.uint8))
    w.release()


# ---------------------------------------------------------------- replica round trip
def test_replica_scan_equals_what_was_written(replica):
    _, written, result = replica
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert (s.subject, s.label, s.video, s.frames, s.fps) == (w.subject, w.label, w.video, w.frames, w.fps), s.id
        assert s.meta == w.meta
    assert result.classes == ("happy", "neutral", "sad", "surprise")
    assert result.summary()["classes"] == {"happy": 3, "neutral": 3, "sad": 3, "surprise": 3}
    assert result.summary()["subjects"] == 3


def test_replica_mixes_videos_and_frame_folders_and_csv_subjects(replica):
    out, written, result = replica
    assert any(s.video for s in result.samples) and any(s.frames for s in result.samples)
    from_csv = [s for s in result.samples if s.meta["subject_source"] == "csv"]
    assert from_csv and all(s.id.split("/")[1].startswith("take_") for s in from_csv)
    assert {s.subject for s in from_csv} <= {"P01", "P02", "P03"}  # the CSV wins over the name prefix "take"
    assert (out / "subjects.csv").read_text().splitlines()[0] == "clip,subject"
    assert sorted(p.name for p in result.skipped) == [".DS_Store", ".DS_Store"]
    folder = next(s for s in written if s.frames)
    assert [p.name for p in folder.frames[:2]] == ["frame_1.png", "frame_2.png"]
    assert folder.frames[9].name == "frame_10.png"


def test_replica_is_deterministic_per_seed(tmp_path):
    a = synth("folder", tmp_path / "a", subjects=1, seed=9)
    b = synth("folder", tmp_path / "b", subjects=1, seed=9)
    assert [s.id for s in a] == [s.id for s in b]
    for x, y in zip(a, b):
        one, two = (x.video, y.video) if x.video else (x.frames[-1], y.frames[-1])
        assert one.read_bytes() == two.read_bytes()


# ---------------------------------------------------------------- hand-written fixture
def test_fixture_dynamic_classes_and_subject_sources(tmp_path):
    for n in (1, 2, 10):  # natural order: frame2 before frame10
        _img(tmp_path / "joy" / "S07_t1" / f"frame{n}.jpg")
    _clip(tmp_path / "joy" / "clipA.mp4")  # subject from the CSV via "<class>/<clip>"
    _clip(tmp_path / "anger" / "S09_x_1.avi", n=4)  # subject from the CSV via the file name
    _clip(tmp_path / "anger" / "S10_x_2.avi")  # not in the CSV: prefix before the first "_"
    _img(tmp_path / "anger" / "S10_nothing" / "a.png")
    _clip(tmp_path / "anger" / "solo.avi")  # no "_": its own subject
    _img(tmp_path / "anger" / "loose.png")
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "joy" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "subjects.csv").write_text("clip,subject\njoy/clipA,subj-A\nS09_x_1.avi,subj-B\nmissing_clip,subj-C\n")
    adapter = FolderAdapter()
    result = adapter.scan(tmp_path)
    # an empty folder is not a class (it would shift every label after it)
    assert result.classes == adapter.classes == ("anger", "joy") and adapter.emotions == ("anger", "happiness")
    by = {s.id: s for s in result.samples}
    assert set(by) == {"joy/S07_t1", "joy/clipA", "anger/S09_x_1", "anger/S10_x_2", "anger/S10_nothing", "anger/solo"}
    assert [p.name for p in by["joy/S07_t1"].frames] == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    assert by["joy/S07_t1"].label == 1 and by["joy/S07_t1"].subject == "S07"
    assert by["joy/clipA"].subject == "subj-A" and by["joy/clipA"].video.name == "clipA.mp4"
    assert by["anger/S09_x_1"].subject == "subj-B" and by["anger/S09_x_1"].meta["n_frames"] == 4
    assert by["anger/S09_x_1"].fps == pytest.approx(30.0)
    assert by["anger/S10_x_2"].subject == "S10" and by["anger/S10_x_2"].meta["subject_source"] == "name"
    assert by["anger/solo"].subject == "solo"
    problems = " ".join(result.problems)
    assert "loose.png" in problems and "missing_clip" in problems
    assert any("not classes" in n and "empty_class" in n for n in result.notes)
    assert sorted(p.name for p in result.skipped) == [".DS_Store", "__MACOSX"]
    assert result.summary()["classes"] == {"anger": 4, "joy": 2}


def test_explicit_subjects_csv_option(tmp_path):
    _img(tmp_path / "data" / "a" / "x_1" / "1.png")
    table = tmp_path / "people.csv"
    table.write_text("subject,clip\nPX,x_1\n")  # column order does not matter
    (s,) = FolderAdapter(subjects_csv=table).scan(tmp_path / "data").samples
    assert s.subject == "PX"


# ---------------------------------------------------------------- errors
def test_no_class_folders(tmp_path):
    _clip(tmp_path / "a.avi")
    with pytest.raises(DatasetError, match="no class folders"):
        scan("folder", tmp_path)


def test_subjects_csv_without_columns_names_the_file(tmp_path):
    _img(tmp_path / "a" / "x_1" / "1.png")
    (tmp_path / "subjects.csv").write_text("name;who\nx_1;P1\n")
    with pytest.raises(DatasetError, match="clip,subject") as e:
        scan("folder", tmp_path)
    assert str(tmp_path / "subjects.csv") in str(e.value)


def test_cli_bad_subjects_csv_is_one_line(tmp_path):
    _img(tmp_path / "a" / "x_1" / "1.png")
    (tmp_path / "subjects.csv").write_text("clip,subject\nx_1,\n")
    result = runner.invoke(app, ["scan", "folder", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "subjects.csv" in result.output and "line 2" in result.output and "Traceback" not in result.output


def test_clips_sharing_a_stem_get_distinct_ids(tmp_path):
    _clip(tmp_path / "happy" / "p1_take.avi")
    _clip(tmp_path / "happy" / "p1_take.mp4")
    _img(tmp_path / "happy" / "p1_take" / "000.png")
    result = FolderAdapter().scan(tmp_path)
    ids = [s.id for s in result.samples]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert sum("also named 'p1_take'" in p for p in result.problems) == 2


def test_prepared_file_keeps_where_each_subject_came_from(prepared_replica, tmp_path):
    """subjects.csv or the clip name: the store keeps which, and the plan warns about exactly the guesses."""
    from _protocol_files import protocol_copy
    from _replicas import REPLICAS
    from ferbench.protocols import make_plan
    from ferbench.store import open_store

    path = prepared_replica("folder", **REPLICAS["folder"])
    with open_store(path) as store:
        stored = {s.id: s.subject_source for s in store.samples}
        assert store.schema_version == 3
    native = {s.id: s.meta["subject_source"] for s in scan("folder", path.parent / "native").samples}
    assert stored == {sid: native[sid] for sid in stored} and set(stored.values()) == {"csv", "name"}
    guesses = sum(v == "name" for v in stored.values())
    plan = make_plan(protocol_copy(tmp_path, "subject-3fold", params={"n_splits": 2, "shuffle": True}), path)
    warning = [w for w in plan.warnings if "subject independence" in w]
    assert len(warning) == 1 and f"subject ids of {guesses} sample(s) were taken from their clip names" in warning[0]
