"""BP4D: AU occurrence CSVs (column "0" = frame, 9 = unknown), coded segments, 3/4-digit frames, replica."""

from __future__ import annotations

import csv
from collections import defaultdict

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.bp4d import AU_NAMES
from ferbench.errors import DatasetError

runner = CliRunner()


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("bp4d")
    written = synth("bp4d", out, subjects=3, seed=2)
    return out, written, scan("bp4d", out)


def _dummy(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 6, 3), np.uint8))


# ---------------------------------------------------------------- replica round trip
def test_replica_scan_equals_what_was_written(replica):
    out, written, result = replica
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert (s.subject, s.label, s.fps, s.au_names) == (w.subject, None, 25.0, AU_NAMES)
        assert s.frames == w.frames and s.meta == w.meta
        assert s.aus.dtype == np.int8 and s.aus.shape == (len(s.frames), 12)
        assert np.array_equal(s.aus, w.aus), s.id
    assert result.summary()["samples"] == 6 and result.summary()["subjects"] == 3
    assert result.classes == () and result.summary()["labelled"] == 0


def test_replica_nines_are_masked_never_zero(replica):
    out, _, result = replica
    total_nines = 0
    for s in result.samples:
        with open(out / "AUCoding" / "AU_OCC" / f"{s.id}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == [str(i) for i in range(100)]  # header 0..99 as distributed
        by_frame = {int(r[0]): r for r in rows[1:]}
        for number, labels in zip(s.meta["frame_numbers"], s.aus):
            raw = [int(by_frame[number][au]) for au in AU_NAMES]
            expected = [-1 if v == 9 else v for v in raw]
            assert labels.tolist() == expected
            total_nines += raw.count(9)
    assert total_nines >= len(result.samples)  # at least one 9 per CSV


def test_replica_segments_uncoded_frames_and_missing_frame(replica):
    out, _, result = replica
    for s in result.samples:
        on_disk = sorted((out / "Sequences(2D+3D)" / s.subject / s.meta["task"]).glob("*.jpg"))
        assert set(s.frames) < set(on_disk)  # uncoded frames before/after are on disk but not in the sample
        numbers = [int(p.stem) for p in s.frames]
        assert numbers == sorted(numbers) == s.meta["frame_numbers"]
    crossing = [s for s in result.samples if min(s.meta["frame_numbers"]) < 1000 <= max(s.meta["frame_numbers"])]
    assert crossing, "one task's names cross from 3 to 4 digits"
    missing = [s for s in result.samples if s.meta["missing_coded_frames"]]
    assert len(missing) == 1 and any(missing[0].id in p and "missing" in p for p in result.problems)
    assert [p.name for p in result.skipped] == ["Thumbs.db"]


def test_replica_au_labels_drive_the_face(replica):
    """Frames with the same fully-known AU row are the same picture; different rows give different pictures."""
    _, written, _ = replica
    for s in written:
        groups: dict[tuple, list[bytes]] = defaultdict(list)
        for path, row in zip(s.frames, s.aus):
            if (row >= 0).all():
                groups[tuple(row.tolist())].append(path.read_bytes())
        assert len(groups) >= 2, s.id
        for imgs in groups.values():
            assert all(b == imgs[0] for b in imgs)
        firsts = [imgs[0] for imgs in groups.values()]
        assert len(set(firsts)) == len(firsts)


def test_replica_frames_are_portrait_1040x1392(replica):
    _, written, _ = replica
    assert cv2.imread(str(written[0].frames[0])).shape == (1392, 1040, 3)


# ---------------------------------------------------------------- hand-written fixtures
def test_fixture_frames_in_root_subset_header_reordered(tmp_path):
    """Frames directly under the root; a CSV with only some AU columns, in another order; 3- and 4-digit names."""
    for n in (997, 998, 999, 1000, 1001, 1003):  # 997 and 1003 are not coded; 1002 is coded but missing
        _dummy(tmp_path / "F001" / "T1" / f"{n}.jpg")
    _dummy(tmp_path / "F001" / "T2" / "0050.jpg")  # a task with no CSV
    (tmp_path / "F001" / "T1" / "Thumbs.db").write_bytes(b"x")
    au = tmp_path / "AUCoding" / "AU_OCC"
    au.mkdir(parents=True)
    (au / "F001_T1.csv").write_text(
        "0,12,1,2,4,6,7,10,14,15,17,23,24,25\n"
        "1000,1,0,0,0,1,0,0,0,0,0,0,0,0\n"
        "998,0,9,0,0,0,0,0,0,0,0,0,0,1\n"
        "999,1,1,1,1,1,1,1,1,1,1,1,9,0\n"
        "1001,9,9,9,9,9,9,9,9,9,9,9,9,9\n"
        "1002,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
    )
    result = scan("bp4d", tmp_path)
    (s,) = result.samples
    assert s.id == "F001_T1" and s.subject == "F001" and s.label is None and s.meta["task"] == "T1"
    assert [p.name for p in s.frames] == ["998.jpg", "999.jpg", "1000.jpg", "1001.jpg"]
    assert s.au_names == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    assert s.aus.tolist() == [
        [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 998: AU1 = 9 -> unknown
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1],  # 999: AU24 = 9
        [0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0],  # 1000: AU12 and AU6
        [-1] * 12,                              # 1001: all unknown
    ]
    assert s.meta["missing_coded_frames"] == [1002] and s.meta["uncoded_frames_on_disk"] == 2
    assert any("1002" in p for p in result.problems) and any("F001/T2" in p for p in result.problems)
    assert [p.name for p in result.skipped] == ["Thumbs.db"]


def test_fixture_release_folder_full_header(tmp_path):
    seq = tmp_path / "Sequences(2D+3D)"
    for n in range(2440, 2444):
        _dummy(seq / "M017" / "T8" / f"{n}.jpg")
    header = ",".join(str(i) for i in range(100))
    row = {i: 9 for i in range(1, 100)}
    row.update({1: 0, 2: 0, 4: 1, 6: 0, 7: 1, 10: 1, 12: 0, 14: 0, 15: 1, 17: 1, 23: 0, 24: 0})
    lines = [header] + [",".join([str(n)] + [str(row[i]) for i in range(1, 100)]) for n in range(2440, 2444)]
    au = tmp_path / "AUCoding" / "AU_OCC"
    au.mkdir(parents=True)
    (au / "M017_T8.csv").write_text("\n".join(lines) + "\n")
    (s,) = scan("bp4d", tmp_path).samples
    assert s.subject == "M017" and len(s.frames) == 4 and s.frames[0].parent == seq / "M017" / "T8"
    assert s.aus.tolist() == [[0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0]] * 4


# ---------------------------------------------------------------- errors
def _one_task(root, text):
    _dummy(root / "F001" / "T1" / "1000.jpg")
    au = root / "AUCoding" / "AU_OCC"
    au.mkdir(parents=True)
    (au / "F001_T1.csv").write_text(text)
    return au / "F001_T1.csv"


def test_missing_au_folder(tmp_path):
    _dummy(tmp_path / "F001" / "T1" / "1000.jpg")
    with pytest.raises(DatasetError, match="AU_OCC"):
        scan("bp4d", tmp_path)


def test_missing_au_column(tmp_path):
    path = _one_task(tmp_path, "0,1,2,4,6,7,10,12,14,15,17,23\n1000,0,0,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DatasetError, match="AU column") as e:
        scan("bp4d", tmp_path)
    assert str(path) in str(e.value) and "24" in str(e.value)


def test_bad_cell_names_file_and_line(tmp_path):
    path = _one_task(tmp_path, "0,1,2,4,6,7,10,12,14,15,17,23,24\n1000,0,0,0,0,x,0,0,0,0,0,0,0\n")
    with pytest.raises(DatasetError, match=r"line 2: AU 7 cell .x.") as e:
        scan("bp4d", tmp_path)
    assert str(path) in str(e.value)


def test_empty_csv(tmp_path):
    _one_task(tmp_path, "")
    with pytest.raises(DatasetError, match="empty AU CSV"):
        scan("bp4d", tmp_path)


def test_cli_malformed_csv_is_one_line(tmp_path):
    _one_task(tmp_path, "frame;AU1\n1000;0\n")
    result = runner.invoke(app, ["scan", "bp4d", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "F001_T1.csv" in result.output and "Traceback" not in result.output
