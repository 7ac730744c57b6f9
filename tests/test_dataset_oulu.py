"""Oulu-CASIA: replica -> scan round trip with all six modes, literal native layout, and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.oulu import CLASSES, parse_modes
from ferbench.errors import DatasetError, FerbenchError

runner = CliRunner()


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("oulu")
    return out, synth("oulu-casia", out)


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((6, 8, 3), 128, np.uint8))


def test_replica_scans_back_exactly_as_written(replica):
    out, written = replica
    result = scan("oulu-casia", out)
    by_id = {s.id: s for s in written}
    assert sorted(by_id) == sorted(s.id for s in result.samples)
    for s in result.samples:
        assert s.summary() == by_id[s.id].summary(), s.id  # label, subject, frames, apex, mode ...
    summary = result.summary()
    assert (summary["samples"], summary["subjects"]) == (3 * 6 * 6, 3)
    assert summary["classes"] == {c: 18 for c in CLASSES}
    modes = {(s.mode["system"], s.mode["illumination"]) for s in result.samples}
    assert modes == {(a, b) for a in ("VL", "NI") for b in ("Strong", "Weak", "Dark")}
    assert by_id["VL_Strong_P001_Anger"].frames[0].name == "000.jpeg"
    assert summary["skipped"] == 12 and all(p.name == "Thumbs.db" for p in result.skipped)
    assert result.problems == []
    assert all(s.onset == 0 and s.apex == len(s.frames) - 1 and s.offset is None and s.fps == 25 for s in written)


def test_replica_modes_look_different(replica):
    _, written = replica
    by_id = {s.id: s for s in written}

    def apex(mode: str) -> np.ndarray:
        return cv2.imread(str(by_id[f"{mode}_P002_Happiness"].frames[-1])).astype(float)

    strong, dark, nir = apex("VL_Strong"), apex("VL_Dark"), apex("NI_Strong")
    assert strong.shape == (240, 320, 3)
    assert dark.mean() < 0.7 * strong.mean()
    assert np.abs(nir[..., 0] - nir[..., 2]).mean() < 2 < np.abs(strong[..., 0] - strong[..., 2]).mean()  # NIR is grey


@pytest.mark.slow
def test_modes_restrict_the_replica_and_it_is_deterministic(tmp_path):
    a = synth("oulu-casia", tmp_path / "a", subjects=1, seed=5, modes=["VL/Strong", "ni_dark"])
    b = synth("oulu-casia", tmp_path / "b", subjects=1, seed=5, modes=["VL/Strong", "ni_dark"])
    assert sorted(p.name for p in (tmp_path / "a" / "OriginalImg").glob("*/*")) == ["Dark", "Strong"]
    assert {(s.mode["system"], s.mode["illumination"]) for s in a} == {("VL", "Strong"), ("NI", "Dark")}
    assert len(a) == 12 and [s.id for s in a] == [s.id for s in b]
    assert [len(s.frames) for s in a] == [len(s.frames) for s in b]
    assert a[7].frames[-1].read_bytes() == b[7].frames[-1].read_bytes()
    assert len(scan("oulu-casia", tmp_path / "a").samples) == 12


def test_parse_modes():
    assert len(parse_modes(None)) == 6
    assert parse_modes(["VL"]) == [("VL", "Strong"), ("VL", "Weak"), ("VL", "Dark")]
    assert parse_modes(["dark", "NI/Dark"]) == [("VL", "Dark"), ("NI", "Dark")]
    for bad in (["VIS/Strong"], ["VL/NI"], ["VL/Strong/Weak"]):
        with pytest.raises(FerbenchError, match="unknown Oulu-CASIA mode"):
            parse_modes(bad)


def test_literal_native_layout(tmp_path):
    top = tmp_path / "OriginalImg"
    for t in (0, 1, 2, 9, 10):
        _jpeg(top / "VL" / "Strong" / "P001" / "Anger" / f"{t:03d}.jpeg")
    for t in (0, 1):
        _jpeg(top / "NI" / "Dark" / "P002" / "Happiness" / f"{t:03d}.jpeg")
    (top / "VL" / "Strong" / "P001" / "Anger" / "Thumbs.db").write_bytes(b"x")
    (top / "VL" / "Strong" / "P001" / "Neutral").mkdir()  # not an expression folder
    (top / "VL" / "Weak" / "P001" / "Sadness").mkdir(parents=True)  # no frames
    (tmp_path / "Preprocess Img").mkdir()  # the release's cropped copy, ignored

    result = scan("oulu-casia", tmp_path)
    s = {x.id: x for x in result.samples}
    assert sorted(s) == ["NI_Dark_P002_Happiness", "VL_Strong_P001_Anger"]
    a = s["VL_Strong_P001_Anger"]
    assert a.label == CLASSES.index("anger") and a.subject == "P001"
    assert [p.name for p in a.frames] == ["000.jpeg", "001.jpeg", "002.jpeg", "009.jpeg", "010.jpeg"]
    assert (a.onset, a.apex, a.offset, a.fps) == (0, 4, None, 25.0)
    assert a.mode == {"system": "VL", "illumination": "Strong"}
    h = s["NI_Dark_P002_Happiness"]
    assert h.label == CLASSES.index("happiness") and h.mode == {"system": "NI", "illumination": "Dark"}
    assert len(result.skipped) == 1
    assert any("Neutral" in p for p in result.problems) and any("Sadness" in p and "no image frames" in p for p in result.problems)
    assert scan("oulu-casia", top).summary()["samples"] == 2  # OriginalImg itself as the root


def test_wrong_root_names_the_expected_folder(tmp_path):
    (tmp_path / "P001").mkdir()
    with pytest.raises(DatasetError, match="OriginalImg"):
        scan("oulu-casia", tmp_path)
    result = runner.invoke(app, ["scan", "oulu-casia", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path / "OriginalImg") in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["synth", "oulu-casia", str(tmp_path / "r"), "--modes", "IR/Strong"])
    assert result.exit_code == 2 and "IR/Strong" in result.output
