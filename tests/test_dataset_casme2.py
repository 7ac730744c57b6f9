"""CASME II: the coding sheet (.xlsx and .csv), RAW/Cropped frames, and the replica round trip."""

from __future__ import annotations

import cv2
import numpy as np
import openpyxl
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.casme2 import CLASSES, Casme2Adapter
from ferbench.errors import DatasetError

runner = CliRunner()
# The real sheet's header, typed out: blank columns at positions 2 and 6.
REAL_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
               "Estimated Emotion"]


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("casme2")
    written = synth("casme2", out, subjects=3, seed=1)
    return out, written, scan("casme2", out)


def _dummy(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((6, 8, 3), value, np.uint8))


def _sheet(path, rows, header=REAL_HEADER):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)


# ---------------------------------------------------------------- replica round trip
def test_replica_scan_equals_what_was_written(replica):
    out, written, result = replica
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert (s.subject, s.label, s.onset, s.apex, s.offset) == (w.subject, w.label, w.onset, w.apex, w.offset), s.id
        assert s.frames == w.frames and s.fps == w.fps == 200.0
        assert s.au_intensity == w.au_intensity and s.apex_estimated is False
        assert s.meta == w.meta
    summary = result.summary()
    assert summary["samples"] == len(written) == 17  # 3 subjects x 5 classes + one fear + one sadness row
    assert summary["classes"] == {c: 3 for c in CLASSES}
    assert summary["subjects"] == 3 and summary["unlabelled"] == 2


def test_replica_quirks_are_written_and_reported(replica):
    out, written, result = replica
    sheet = out / "CASME2-coding-20140508.xlsx"
    rows = list(openpyxl.load_workbook(sheet).active.iter_rows(values_only=True))
    assert list(rows[0]) == REAL_HEADER
    apex_cells = [r[4] for r in rows[1:]]
    assert None in apex_cells and "/" in apex_cells
    no_apex = [s for s in result.samples if s.apex is None]
    assert len(no_apex) == 2 and all(s.id in " ".join(result.notes) for s in no_apex)
    assert {s.meta["emotion"] for s in result.samples if s.label is None} == {"fear", "sadness"}
    assert any("outside the 5 classes" in n for n in result.notes)
    # .lnk shortcuts (root and inside a clip folder) are skipped, never frames
    assert sorted(p.suffix for p in result.skipped) == [".lnk", ".lnk"]
    assert all(p.suffix == ".jpg" and p.name.startswith("img") for s in result.samples for p in s.frames)
    names = {s.meta["filename"] for s in result.samples}
    assert {"EP01_2", "EP09f", "EP06_02_01"} <= names
    # native numbers in file names equal the sheet's, positions are 0-based into the sorted frames
    for s in result.samples:
        assert s.frames[s.onset].name == f"img{s.meta['onset_frame']}.jpg"
        assert s.frames[s.offset].name == f"img{s.meta['offset_frame']}.jpg"


def test_replica_frames_rise_to_apex_and_fall_to_offset(replica):
    _, written, _ = replica
    checked = 0
    for s in written:
        if s.apex is None or not s.au_intensity:
            continue
        img = [cv2.imread(str(s.frames[i])).astype(np.float32) for i in (s.onset, s.apex, s.offset)]
        rise = np.abs(img[1] - img[0]).mean()
        back = np.abs(img[2] - img[0]).mean()
        assert rise > 0.5 and rise > 3 * back, (s.id, rise, back)
        checked += 1
    assert checked >= 10


def test_replica_cropped_copy_and_preference(tmp_path):
    written = synth("casme2", tmp_path, subjects=1, modes=["raw", "cropped"])
    raw = Casme2Adapter().scan(tmp_path)
    crop = Casme2Adapter(prefer="cropped").scan(tmp_path)
    assert [s.frames for s in raw.samples] == [s.frames for s in written]
    assert all(not s.meta["cropped"] for s in raw.samples) and all(s.meta["cropped"] for s in crop.samples)
    assert all(p.name.startswith("reg_img") and "Cropped" in p.parts for s in crop.samples for p in s.frames)
    assert [(s.onset, s.apex, s.offset) for s in crop.samples] == [(s.onset, s.apex, s.offset) for s in raw.samples]
    h, w = cv2.imread(str(crop.samples[0].frames[0])).shape[:2]
    assert h < 480 and w < 640


def test_replica_is_byte_identical_for_a_seed(tmp_path):
    for d in ("a", "b"):
        synth("casme2", tmp_path / d, subjects=1, seed=7)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 50
    for rel in files:  # the workbook too (openpyxl's save-time stamps are pinned)
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# ---------------------------------------------------------------- hand-written fixtures of the real format
def _fixture(root):
    """sub01/EP02_01f (RAW and Cropped), sub01/EP09f (RAW), sub02/EP06_02_01 (Cropped only), sub02/EP01_2 (RAW)."""
    for n in range(44, 91):
        _dummy(root / "CASME2_RAW_selected" / "sub01" / "EP02_01f" / f"img{n}.jpg")
        _dummy(root / "Cropped" / "sub01" / "EP02_01f" / f"reg_img{n}.jpg")
    for n in range(8, 22):  # img8 .. img21: a string sort would put img10 first
        _dummy(root / "CASME2_RAW_selected" / "sub01" / "EP09f" / f"img{n}.jpg")
    for n in range(100, 112):
        _dummy(root / "Cropped" / "sub02" / "EP06_02_01" / f"reg_img{n}.jpg")
    for n in range(1, 13):
        _dummy(root / "CASME2_RAW_selected" / "sub02" / "EP01_2" / f"img{n}.jpg")
    (root / "CASME2_RAW_selected" / "sub01" / "EP09f" / "Shortcut.lnk").write_bytes(b"L\x00\x00\x00")
    (root / "CASME2_RAW_selected.lnk").write_bytes(b"L\x00\x00\x00")


def _check_fixture(result, root):
    by = {s.id: s for s in result.samples}
    assert set(by) == {"sub01_EP02_01f", "sub01_EP09f", "sub02_EP06_02_01", "sub02_EP01_2"}
    a = by["sub01_EP02_01f"]
    assert a.subject == "sub01" and a.label == CLASSES.index("disgust")
    assert (a.onset, a.apex, a.offset) == (2, 15, 42)  # img46, img59, img86 among img44..img90
    assert (a.meta["onset_frame"], a.meta["apex_frame"], a.meta["offset_frame"]) == (46, 59, 86)
    assert a.au_intensity == {4: 1.0, 10: 1.0} and a.meta["au_sides"] == {10: "L"} and a.meta["action_units"] == "4+L10"
    assert a.meta["cropped"] is False and a.frames[0] == root / "CASME2_RAW_selected/sub01/EP02_01f/img44.jpg"
    b = by["sub01_EP09f"]
    assert [p.name for p in b.frames[:3]] == ["img8.jpg", "img9.jpg", "img10.jpg"]
    assert b.apex is None and b.meta["apex_cell"] == "/" and b.apex_estimated is False
    assert (b.onset, b.offset) == (2, 12) and b.au_intensity == {12: 1.0} and b.meta["au_sides"] == {12: "R"}
    assert b.label == CLASSES.index("happiness")
    c = by["sub02_EP06_02_01"]
    assert c.meta["cropped"] is True and c.frames[0].name == "reg_img100.jpg"
    assert c.apex is None and c.au_intensity == {12: 1.0, 15: 1.0} and c.label == CLASSES.index("others")
    d = by["sub02_EP01_2"]
    assert d.label is None and d.meta["emotion"] == "fear" and d.au_intensity == {12: 1.0}
    notes = " ".join(result.notes)
    assert "sub01_EP09f" in notes and "sub02_EP06_02_01" in notes and "fear/sadness" in notes
    assert len(result.skipped) == 2 and all(p.suffix == ".lnk" for p in result.skipped)
    assert result.summary()["classes"] == {"happiness": 1, "disgust": 1, "repression": 0, "surprise": 0, "others": 1}


ROWS = [
    [1, "EP02_01f", None, 46, 59, 86, None, "4+L10", "disgust"],
    [1, "EP09f", None, 10, "/", 20, None, "R12", "happiness"],
    [2, "EP06_02_01", None, 101, None, 110, None, "12+15", "others"],
    [2, "EP01_2", None, 2, 5, 11, None, 12, "fear"],
]


def test_fixture_xlsx(tmp_path):
    _fixture(tmp_path)
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", ROWS)
    _check_fixture(scan("casme2", tmp_path), tmp_path)


def test_fixture_csv_export(tmp_path):
    _fixture(tmp_path)
    (tmp_path / "CASME2-coding-20140508.csv").write_text(
        "Subject,Filename,Unnamed: 2,OnsetFrame,ApexFrame,OffsetFrame,Unnamed: 6,Action Units,Estimated Emotion\n"
        "1,EP02_01f,,46,59,86,,4+L10,disgust\n"
        "1,EP09f,,10,/,20,,R12,happiness\n"
        "2,EP06_02_01,,101,,110,,12+15,others\n"
        "\n"
        "2,EP01_2,,2,5,11,,12,fear\n"
    )
    _check_fixture(scan("casme2", tmp_path), tmp_path)


def test_fixture_prefers_cropped_on_request(tmp_path):
    _fixture(tmp_path)
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", ROWS)
    by = {s.id: s for s in Casme2Adapter(prefer="cropped").scan(tmp_path).samples}
    assert by["sub01_EP02_01f"].meta["cropped"] is True
    assert by["sub01_EP02_01f"].frames[2].name == "reg_img46.jpg"
    assert by["sub01_EP09f"].meta["cropped"] is False  # only RAW exists for it


def test_sheet_row_without_frames_and_unknown_frame_are_problems(tmp_path):
    _fixture(tmp_path)
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", ROWS + [[3, "EP05_09", None, 1, 2, 3, None, "4", "others"]])
    result = scan("casme2", tmp_path)
    assert any("sub03/EP05_09" in p for p in result.problems)
    assert "sub03_EP05_09" not in {s.id for s in result.samples}


def test_doubled_unzip_folder_is_accepted(tmp_path):
    """Unzipping often leaves CASME2_RAW_selected/CASME2_RAW_selected/subNN/...; the adapter looks inside."""
    for n in range(1, 13):
        _dummy(tmp_path / "CASME2_RAW_selected" / "CASME2_RAW_selected" / "sub02" / "EP01_2" / f"img{n}.jpg")
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", [ROWS[3]])
    (s,) = scan("casme2", tmp_path).samples
    assert s.id == "sub02_EP01_2" and len(s.frames) == 12 and (s.onset, s.apex, s.offset) == (1, 4, 10)


# ---------------------------------------------------------------- errors
def test_missing_frames_folder(tmp_path):
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", ROWS)
    with pytest.raises(DatasetError, match="CASME2_RAW_selected"):
        scan("casme2", tmp_path)


def test_missing_sheet(tmp_path):
    _fixture(tmp_path)
    with pytest.raises(DatasetError, match="CASME2-coding"):
        scan("casme2", tmp_path)


def test_garbage_xlsx_names_the_file(tmp_path):
    _fixture(tmp_path)
    bad = tmp_path / "CASME2-coding-20140508.xlsx"
    bad.write_bytes(b"\x00\xffnot a workbook" * 10)
    with pytest.raises(DatasetError) as e:
        scan("casme2", tmp_path)
    assert str(bad) in str(e.value) and "xlsx" in str(e.value)


def test_zip_that_is_not_a_workbook(tmp_path):
    import zipfile

    _fixture(tmp_path)
    bad = tmp_path / "CASME2-coding-20140508.xlsx"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(DatasetError, match="unreadable spreadsheet") as e:
        scan("casme2", tmp_path)
    assert str(bad) in str(e.value)


def test_missing_column_names_the_file_and_column(tmp_path):
    _fixture(tmp_path)
    header = [h for h in REAL_HEADER if h != "ApexFrame"]
    _sheet(tmp_path / "CASME2-coding-20140508.xlsx", [r[:4] + r[5:] for r in ROWS], header=header)
    with pytest.raises(DatasetError, match="ApexFrame") as e:
        scan("casme2", tmp_path)
    assert "CASME2-coding-20140508.xlsx" in str(e.value)


def test_malformed_frame_number(tmp_path):
    _fixture(tmp_path)
    (tmp_path / "CASME2-coding-x.csv").write_text(
        "Subject,Filename,,OnsetFrame,ApexFrame,OffsetFrame,,Action Units,Estimated Emotion\n1,EP09f,,ten,12,20,,4,others\n")
    with pytest.raises(DatasetError, match=r"row 2: OnsetFrame is 'ten'"):
        scan("casme2", tmp_path)


def test_cli_unreadable_sheet_is_one_line(tmp_path):
    _fixture(tmp_path)
    bad = tmp_path / "CASME2-coding-20140508.xlsx"
    bad.write_bytes(b"PK\x03\x04garbage")
    result = runner.invoke(app, ["scan", "casme2", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "CASME2-coding-20140508.xlsx" in result.output and "Traceback" not in result.output
