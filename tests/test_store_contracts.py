"""The store's single sources: the column table drives write and read, failures and warnings are typed
records end to end, flag codes have one definition, the CLI's dataset list comes from the registry."""

from __future__ import annotations

import ast
import csv
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import ferbench
from ferbench.cli import app
from _replicas import REPLICAS
from ferbench.datasets import BUILTIN, list_datasets, scan
from ferbench.errors import DatasetError
from ferbench.issues import EXCLUDED, REPAIRED, SCAN, Issue
from ferbench.preprocess.pipeline import PrepareConfig, prepare
from ferbench.store import COLUMNS, SampleRecord, StoreWriter, open_store
from ferbench.store.flags import FLAG_NAMES
from ferbench.store.schema import FRAME_ARRAYS, UTF8

T = 4
K = 7
# A value for every column that differs from its default, so that a column the writer or reader skipped
# (or swapped with another) shows up as a mismatch.
RECORD = dict(
    id="S010_002", subject="S010", label=2, split="train", mode={"system": "VL", "light": "Dark"}, fps=12.5,
    onset=1, apex=4, offset=6, apex_estimated=True, coverage=0.75, subject_source="csv",
    clip=np.array([0, 2, 4, 6]), states=np.array([1, 2, 4, 5, 6]),
)


def _write(tmp_path: Path, records: list[dict]) -> Path:
    out = tmp_path / "cols.h5"
    w = StoreWriter(out, dataset="ck+", classes=("a", "b", "c"), config={"length": T}, au_names=(1, 12), durable=False)
    rng = np.random.default_rng(0)
    for kw in records:
        frames = rng.integers(0, 255, (K, 8, 8, 3), dtype=np.uint8)
        w.add(SampleRecord(**kw), frames, rng.random((K, 5, 2)), np.ones(K, np.uint8),
              aus=np.zeros((K, 2), np.int8), source_frame=np.arange(10, 10 + K))
    w.add_failure("S011_001", "no face found in any of 7 frames")
    return w.finalize()


def test_every_column_of_the_table_round_trips_through_a_real_writer_and_reader(tmp_path):
    bare = dict(id="S001_001", subject="S001", clip=np.arange(T))  # every optional column left at its default
    out = _write(tmp_path, [RECORD, bare])
    with open_store(out) as store, h5py.File(out, "r") as f:
        full, empty = store.sample(RECORD["id"]), store.sample(bare["id"])
        assert {c.name for c in COLUMNS} - {"frame_start", "frame_count"} <= set(RECORD)
        for c in COLUMNS:
            assert c.path in f, c.path
            assert (f[c.path].dtype == np.dtype(c.dtype)) if not c.is_text else h5py.check_string_dtype(f[c.path].dtype), c.path
            if c.origin == "layout":
                continue
            got, want = getattr(full, c.name), RECORD[c.name]
            if c.width is not None:
                np.testing.assert_array_equal(got, want, err_msg=c.name)
            else:
                assert got == want, c.name
        assert (empty.label, empty.split, empty.states, empty.onset, empty.mode, empty.subject_source) == (
            None, None, None, None, {}, None)
        assert empty.coverage == 1.0  # from the flags: every frame detected
        assert [(s.row, s.frame_start, s.frame_count) for s in store.samples] == [(0, 0, K), (1, K, K)]
        # the tables describe the whole file: no dataset the column and frame tables do not name
        found: list[str] = []
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        named = {c.path for c in COLUMNS} | {a.name for a in FRAME_ARRAYS} | {"failures/id", "failures/reason"}
        assert set(found) == named
        assert f["samples/id"].dtype == UTF8 or h5py.check_string_dtype(f["samples/id"].dtype)


def test_from_sample_copies_exactly_the_columns_that_come_from_a_sample():
    class Native:  # an adapter's Sample, duck-typed as the store reads it
        def __getattr__(self, name: str):
            return {"id": "x", "subject": "s", "mode": {}}.get(name, 3)

    record = SampleRecord.from_sample(Native())
    from_sample = {c.name for c in COLUMNS if c.origin == "sample"}
    assert from_sample == {"id", "subject", "split", "mode", "label", "fps", "onset", "apex", "offset", "apex_estimated",
                           "subject_source"}
    assert all(getattr(record, n) == 3 for n in from_sample - {"id", "subject", "mode"})
    assert (record.clip, record.states, record.coverage) == (None, None, None)  # prepare computes those


def test_failures_and_warnings_are_typed_records_from_the_run_to_the_file_and_the_csv(tmp_path, prepared_replica):
    # the native replica the shared fixture synthesised (next to its .h5), copied so that it can be damaged
    root = tmp_path / "CK+"
    shutil.copytree(prepared_replica("ck+", **REPLICAS["ck+"]).parent / "native", root)
    samples = scan("ck+", root).samples
    bad_label = next(s for s in samples if s.label is not None)
    next((root / "Emotion" / bad_label.subject).rglob(f"{bad_label.frames[-1].stem}_emotion.txt")).write_text("x\n")
    victim_sample = next(s for s in samples if s.id != bad_label.id)
    victim = victim_sample.frames[len(victim_sample.frames) // 2]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated frame: repaired from its neighbours
    (root / "cohn-kanade-images" / "notes").mkdir()  # not a subject folder: nothing, or a scan problem

    out = tmp_path / "typed.h5"
    summary = prepare("ck+", root, out, PrepareConfig(aligner="none", length=T), workers=0)
    assert summary.failures == [Issue(bad_label.id, EXCLUDED, summary.failures[0].reason)]
    assert "emotion" in summary.failures[0].reason
    repaired = [w for w in summary.warnings if w.kind == REPAIRED]
    assert [w.sample for w in repaired] == [victim_sample.id] and victim.name in repaired[0].reason
    with open_store(out) as store:
        assert store.failures == summary.failures  # the file's strings come back as the same records
    with open(summary.failures_csv, newline="") as fh:
        rows = [Issue(*row) for row in list(csv.reader(fh))[1:]]
    assert rows == [*summary.failures, *summary.warnings]
    as_json = summary.to_dict()
    assert as_json["failures"] == [{"id": bad_label.id, "reason": summary.failures[0].reason}]
    assert as_json["warnings"] == [str(w) for w in summary.warnings]
    assert f"{victim_sample.id}: {repaired[0].reason}" in as_json["warnings"]


def test_an_issue_names_its_kind_and_reads_as_one_line():
    assert str(Issue("S1", EXCLUDED, "no face")) == "S1: no face"
    assert str(Issue("", SCAN, "odd folder")) == "scan problem: odd folder"
    assert Issue.from_dict(Issue("S1", REPAIRED, "frame 3").to_dict()) == Issue("S1", REPAIRED, "frame 3")
    with pytest.raises(ValueError, match="unknown issue kind"):
        Issue("S1", "oops", "x")


def test_flag_codes_have_one_definition():
    from ferbench.preprocess import track
    from ferbench.store import FLAG_DETECTED, FLAG_FILLED, FLAG_INTERPOLATED, FLAG_MEANINGS
    from ferbench.store import flags

    assert (track.DETECTED, track.INTERPOLATED, track.FILLED) == (FLAG_DETECTED, FLAG_INTERPOLATED, FLAG_FILLED)
    assert track.FLAG_NAMES is flags.FLAG_NAMES is FLAG_MEANINGS
    package = Path(ferbench.__file__).parent
    pattern = re.compile(r"^\s*(FLAG_)?(NONE|DETECTED|INTERPOLATED|FILLED)\s*(,|=)", re.M)
    defining = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if pattern.search(p.read_text()))
    assert defining == ["store/flags.py"]
    for p in package.rglob("*.py"):  # no module spells out the code -> name table again
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and p.name != "flags.py":
                values = [v.value for v in node.values if isinstance(v, ast.Constant)]
                assert not {"detected", "interpolated", "filled"} <= set(values) or not all(
                    isinstance(k, ast.Constant) and isinstance(k.value, int) for k in node.keys), p


def test_the_file_and_inspect_name_flags_from_the_one_table(tmp_path):
    out = _write(tmp_path, [RECORD])
    with h5py.File(out, "r") as f:
        assert {int(k): v for k, v in json.loads(f["flags"].attrs["meanings"]).items()} == FLAG_NAMES
    from ferbench.store import inspect

    assert inspect(out)["flags"] == {FLAG_NAMES[1]: K}


def test_the_cli_lists_the_registered_datasets():
    assert list(BUILTIN) == list_datasets()
    shown = CliRunner().invoke(app, ["scan", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    for name in list_datasets():
        assert name in shown.output


@pytest.mark.parametrize("name, hint", [("ck+", "an existing folder"), ("afew", "the AFEW folder"),
                                        ("folder", "a folder of class folders")])
def test_a_missing_root_is_one_error_naming_it(tmp_path, name, hint):
    with pytest.raises(DatasetError, match=re.escape(hint)) as e:
        scan(name, tmp_path / "nowhere")
    assert "nowhere" in str(e.value)


def test_unilateral_au_keys_are_parsed_and_mirrored_in_one_place():
    from ferbench.synth.faces import au_key, au_numbers, au_side, mirror_au

    assert [au_side(k) for k in (12, "R12", "l4")] == [(None, 12), ("R", 12), ("L", 4)]
    assert [mirror_au(k) for k in (12, "R12", "L4")] == [12, "L12", "R4"]
    assert all(au_key(*au_side(k)) == k for k in (12, "R12", "L4"))
    assert au_numbers({"R12": 1.0, 12: 0.5, 4: 1.0, "L14": 1.0}) == (4, 12, 14)


def test_the_replica_annotations_sit_where_the_face_is_rendered():
    from ferbench.synth.faces import FaceAnimator

    anim = FaceAnimator(0)
    ident = anim.identity(1)
    frame = anim.render(ident, {}, (160, 120)).astype(np.int16)
    x, y, side = ident.face_square((160, 120))
    blank = np.clip(anim._background(ident, 160, 120), 0, 255).astype(np.uint8).astype(np.int16)
    changed = np.argwhere(np.abs(frame - blank).max(axis=2) > 40)
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    assert x <= x0 and y <= y0 and x1 < x + side and y1 < y + side  # the face lies inside the placed square
    assert (x1 - x0) > side // 2 and (y1 - y0) > side // 2  # and fills it (not a square far too large)


def test_the_code_fingerprint_covers_the_store_package():
    from ferbench.harness import fingerprint

    fingerprint.code_fingerprint.cache_clear()
    assert len(fingerprint.code_fingerprint()) == 64  # every part exists (a moved one raises, never drops out)
    assert "store" in fingerprint._CODE_PARTS and "protocols" in fingerprint._CODE_PARTS


def test_the_documented_layout_names_every_column_of_the_table():
    import ferbench.store as store

    doc = store.__doc__ or ""
    for c in COLUMNS:
        assert re.search(rf"\b{re.escape(c.name)}\b", doc), c.name
    for a in FRAME_ARRAYS:
        assert f"/{a.name} " in doc, a.name
