"""CK+: replica -> scan round trip, literal native files, and errors that name the file."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.ckplus import CLASSES, read_landmarks
from ferbench.errors import DatasetError

runner = CliRunner()
LANDMARK_LINE = "   2.5900000e+02   2.7400000e+02\n"


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("ckplus")
    return out, synth("ck+", out)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((6, 8), np.uint8))


def test_replica_scans_back_exactly_as_written(replica):
    out, written = replica
    result = scan("ck+", out)
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert s.summary() == w.summary(), s.id  # label, subject, frames, onset/apex/offset, FACS, landmarks ...
    summary = result.summary()
    assert (summary["samples"], summary["labelled"], summary["unlabelled"], summary["subjects"]) == (24, 21, 3, 3)
    assert summary["classes"] == {"neutral": 0, **{c: 3 for c in CLASSES[1:]}}
    assert summary["skipped"] == 2 and all(p.name == ".DS_Store" for p in result.skipped)
    assert result.problems == []
    assert all(s.onset == 0 and s.apex == len(s.frames) - 1 and s.offset is None and s.fps == 30 for s in written)
    assert any("30 fps assumed" in n for n in result.notes)


def test_replica_writes_the_native_quirks(replica):
    out, written = replica
    by_id = {s.id: s for s in written}
    emotion = next((out / "Emotion").rglob("*_emotion.txt"))
    assert re.fullmatch(r"   [1-7]\.0000000e\+00\n", emotion.read_text())
    empty = [p for p in (out / "Emotion").glob("*/*") if p.is_dir() and not any(q.name != ".DS_Store" for q in p.iterdir())]
    assert len(empty) == 1 and by_id[f"{empty[0].parent.name}_{empty[0].name}"].label is None
    grey = cv2.imread(str(by_id["S012_001"].frames[0]), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (490, 640)  # single-channel PNG
    assert cv2.imread(str(by_id["S019_001"].frames[0]), cv2.IMREAD_UNCHANGED).shape == (480, 640, 3)
    assert cv2.imread(str(by_id["S005_001"].frames[0]), cv2.IMREAD_UNCHANGED).shape == (490, 640, 3)
    happy = next(s for s in written if s.label == CLASSES.index("happiness"))
    assert happy.au_intensity[12] >= 3 and happy.au_intensity[25] == 0.0  # AU 25 coded without intensity
    assert read_landmarks(happy.landmarks[0]).shape == (68, 2)
    first, apex = (cv2.imread(str(p)).astype(int) for p in (happy.frames[0], happy.frames[-1]))
    assert np.abs(apex - first).mean() > 0.5  # the face moves from neutral to the apex


def test_literal_native_files(tmp_path):
    root = tmp_path / "CK+"
    images = root / "cohn-kanade-images"
    for t in (1, 2, 3):
        _png(images / "S005" / "001" / f"S005_001_{t:08d}.png")
        _write(root / "Landmarks" / "S005" / "001" / f"S005_001_{t:08d}_landmarks.txt", LANDMARK_LINE * 68)
    _write(root / "Emotion" / "S005" / "001" / "S005_001_00000003_emotion.txt", "   3.0000000e+00\n")
    _write(root / "FACS" / "S005" / "001" / "S005_001_00000003_facs.txt",
           "   1.0000000e+00   3.0000000e+00\n   2.5000000e+01   0.0000000e+00\n")
    for t in (9, 10, 11):  # sorted by number, and no landmarks for this sequence
        _png(images / "S005" / "002" / f"S005_002_{t:08d}.png")
    _png(images / "S010" / "001" / "S010_001_00000001.png")
    (root / "Emotion" / "S010" / "001").mkdir(parents=True)  # empty folder: unlabelled
    _write(root / "Emotion" / "S010" / "001" / ".DS_Store", "")
    _write(images / "S005" / ".DS_Store", "")

    result = scan("ck+", root)
    s = {x.id: x for x in result.samples}
    assert list(s) == ["S005_001", "S005_002", "S010_001"]
    a = s["S005_001"]
    assert a.label == 3 and CLASSES[a.label] == "disgust" and a.subject == "S005"
    assert [p.name for p in a.frames] == [f"S005_001_{t:08d}.png" for t in (1, 2, 3)]
    assert (a.onset, a.apex, a.offset, a.fps) == (0, 2, None, 30.0)
    assert a.au_intensity == {1: 3.0, 25: 0.0}
    assert len(a.landmarks) == 3 and read_landmarks(a.landmarks[2])[0].tolist() == [259.0, 274.0]
    b = s["S005_002"]
    assert b.label is None and b.landmarks == [] and b.au_intensity == {} and b.apex == 2
    assert s["S010_001"].label is None
    assert len(result.skipped) == 2 and result.problems == []


@pytest.mark.parametrize(
    "content", ["three\n", "", "   3.0000000e+00   1.0000000e+00\n", "   9.0000000e+00\n", "   2.5000000e+00\n"]
)
def test_malformed_emotion_file_names_the_file(tmp_path, content):
    _png(tmp_path / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png")
    bad = _write(tmp_path / "Emotion" / "S005" / "001" / "S005_001_00000001_emotion.txt", content)
    with pytest.raises(DatasetError, match=re.escape(str(bad))) as e:
        scan("ck+", tmp_path)
    assert "CK+ emotion code 0-7" in str(e.value)


def test_missing_folders_and_bad_annotation_files(tmp_path):
    with pytest.raises(DatasetError, match="cohn-kanade-images"):
        scan("ck+", tmp_path)
    _png(tmp_path / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png")
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "Emotion"))):
        scan("ck+", tmp_path)
    (tmp_path / "Emotion").mkdir()
    bad = _write(tmp_path / "FACS" / "S005" / "001" / "S005_001_00000001_facs.txt", "   1.0000000e+00 strong\n")
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        scan("ck+", tmp_path)
    short = _write(tmp_path / "x_landmarks.txt", LANDMARK_LINE * 67)
    with pytest.raises(DatasetError, match="expected 68 lines"):
        read_landmarks(short)


def test_cli_error_is_one_line_with_the_file(tmp_path):
    _png(tmp_path / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png")
    bad = _write(tmp_path / "Emotion" / "S005" / "001" / "S005_001_00000001_emotion.txt", "happy\n")
    result = runner.invoke(app, ["scan", "ck+", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["synth", "ck+", str(tmp_path / "r"), "--modes", "VL"])
    assert result.exit_code == 2 and "no modes" in result.output
