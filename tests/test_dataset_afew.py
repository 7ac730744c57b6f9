"""AFEW: Train/Val class folders, unlabelled Test, aligned faces, clip id as group, replica .avi clips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.afew import CLASSES, aligned_face_frames
from ferbench.errors import DatasetError

runner = CliRunner()


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("afew")
    written = synth("afew", out, subjects=2, seed=3)
    return out, written, scan("afew", out)


def _clip(path, n=3, size=(32, 24)):
    """A tiny real video, written here with OpenCV directly (not with the adapter's helper)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    w.release()


def _decode(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


# ---------------------------------------------------------------- replica round trip
def test_replica_scan_equals_what_was_written(replica):
    _, written, result = replica
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert (s.subject, s.label, s.split, s.video, s.fps) == (w.subject, w.label, w.split, w.video, w.fps), s.id
        assert s.meta == w.meta and s.subject == s.id and s.frames == []
    summary = result.summary()
    # subjects=2: 1 train + 1 val clip per class, 2 unlabelled test clips
    assert summary["samples"] == len(written) == 16 and summary["unlabelled"] == 2
    assert summary["classes"] == {c: 2 for c in CLASSES}
    assert {s.split for s in result.samples} == {"train", "val", "test"}
    assert all(s.label is None for s in result.samples if s.split == "test")
    assert [p.name for p in result.skipped] == ["Thumbs.db"]


def test_replica_clips_are_real_avi_720x576_25fps(replica):
    _, written, _ = replica
    for s in written[:3] + written[-2:]:
        frames = _decode(s.video)
        assert len(frames) == s.meta["n_frames"] and 25 <= len(frames) <= 50  # 1-2 s at 25 fps
        assert frames[0].shape == (576, 720, 3)
        assert s.video.suffix == ".avi"


def test_replica_has_a_faceless_clip_and_aligned_faces(replica):
    out, written, result = replica
    # the face-less clip is pure scenery: every frame is the same background picture
    neutral_train = [s for s in written if s.split == "train" and CLASSES[s.label] == "Neutral"]
    frames = _decode(neutral_train[0].video)
    assert max(np.abs(f.astype(int) - frames[0].astype(int)).mean() for f in frames) < 3
    with_aligned = [s for s in result.samples if "aligned_faces" in s.meta]
    assert {s.split for s in with_aligned} == {"train", "val"}
    for s in with_aligned:
        assert s.meta["aligned_faces"].endswith(f"Faces/{s.id}") and "AlignedFaces_LBPTOP_Points" in s.meta["aligned_faces"]
        assert len(aligned_face_frames(s)) >= 5
    # the aligned-faces folder inside Train_AFEW is not mistaken for a class
    assert not any("AlignedFaces" in p for p in result.problems)


# ---------------------------------------------------------------- hand-written fixture
def test_fixture_layout(tmp_path):
    _clip(tmp_path / "Train_AFEW" / "Angry" / "000046280.avi", n=4)
    _clip(tmp_path / "Train_AFEW" / "happy" / "000147920.avi")  # class folder case differs
    _clip(tmp_path / "Val_AFEW" / "Sad" / "001234560.avi", n=5)
    _clip(tmp_path / "Test_AFEW" / "002345670.avi")
    (tmp_path / "Val_AFEW" / "Sad" / "000999999.avi").write_bytes(b"")  # zero-byte: reported, not a sample
    (tmp_path / "Train_AFEW" / "Angry" / "Thumbs.db").write_bytes(b"x")
    faces = tmp_path / "Train_AFEW" / "AlignedFaces_LBPTOP_Points" / "Faces" / "000046280"
    faces.mkdir(parents=True)
    for i in (1, 2, 10):
        cv2.imwrite(str(faces / f"{i}.png"), np.zeros((4, 4, 3), np.uint8))
    result = scan("afew", tmp_path)
    by = {s.id: s for s in result.samples}
    assert set(by) == {"000046280", "000147920", "001234560", "002345670"}
    a = by["000046280"]
    assert (a.label, a.split, a.subject, a.meta["n_frames"]) == (CLASSES.index("Angry"), "train", "000046280", 4)
    assert a.video == tmp_path / "Train_AFEW" / "Angry" / "000046280.avi" and a.fps == pytest.approx(25.0)
    assert a.meta["aligned_faces"] == str(faces)
    assert [p.name for p in aligned_face_frames(a)] == ["1.png", "2.png", "10.png"]
    assert by["000147920"].label == CLASSES.index("Happy")
    assert (by["001234560"].split, by["001234560"].label) == ("val", CLASSES.index("Sad"))
    assert (by["002345670"].split, by["002345670"].label) == ("test", None)
    assert "aligned_faces" not in by["001234560"].meta
    assert any("000999999.avi" in p for p in result.problems)
    assert [p.name for p in result.skipped] == ["Thumbs.db"]
    assert any("no subject ids" in n and "clip id" in n for n in result.notes)
    assert result.summary()["unlabelled"] == 1


def test_unknown_folder_is_a_problem(tmp_path):
    _clip(tmp_path / "Train_AFEW" / "Contempt" / "000000001.avi")
    _clip(tmp_path / "Train_AFEW" / "Fear" / "000000002.avi")
    result = scan("afew", tmp_path)
    assert [s.id for s in result.samples] == ["000000002"]
    assert any("Contempt" in p for p in result.problems)


# ---------------------------------------------------------------- errors
def test_no_split_folder(tmp_path):
    _clip(tmp_path / "Angry" / "000046280.avi")
    with pytest.raises(DatasetError, match="Train_AFEW"):
        scan("afew", tmp_path)


def test_cli_wrong_layout_is_one_line(tmp_path):
    (tmp_path / "clips").mkdir()
    result = runner.invoke(app, ["scan", "afew", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path / "Train_AFEW") in result.output and "Traceback" not in result.output
