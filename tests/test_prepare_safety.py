"""`prepare` never keeps a wrong answer (issue 12): options refused before any work, resume keyed on the
input, one-line I/O errors with shards kept, sidecars before the rename, faces that are not faces, frames of
another size, bad samples excluded by name, damaged files refused on read, `folder` not reading its output.

Most runs use `--aligner none` (a plain resize: the store and the resume logic are under test, not the
detector) on one CK+ subject, so the module stays fast; face tests run the real MTCNN on a few frames.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from _h5 import assert_same_arrays
from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets.base import Sample
from ferbench.issues import PARTLY_COVERED, RESIZED
from ferbench.preprocess.pipeline import PrepareConfig, prepare, process_sample
from ferbench.store import FLAG_DETECTED, FLAG_INTERPOLATED, open_store

runner = CliRunner()
NONE = ["--aligner", "none", "--workers", "0"]


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ck") / "CK+"
    synth("ck+", root, subjects=1, seed=11)
    return root


@pytest.fixture(scope="module")
def reference(replica, tmp_path_factory) -> Path:
    """An uninterrupted run: the file every interrupted-then-resumed run must equal."""
    out = tmp_path_factory.mktemp("ref") / "ck.h5"
    prepare("ck+", replica, out, PrepareConfig(aligner="none"), workers=0)
    return out


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(result.output) < 800, result.output
    return result.output


# ------------------------------------------------------------------------------------ options, up front
@pytest.mark.parametrize("args, says", [
    (["--template", "seed02"], "--template 'seed02'"),
    (["--template", "seed002"], "--template 'seed002'"),  # the old name is gone: yu2018 or arcface only
    (["--template", "bogus"], "yu2018, arcface"),
    (["--length", "1000000000000"], "--length"),
    (["--min-coverage", "2"], "--min-coverage"),
    (["--min-face", "0"], "--min-face"),
    (["--scheduler", "localhost"], "tcp://HOST:8786"),
    (["--materialize-augmentation", "stc"], "augmentation preset"),
])
def test_bad_option_with_overwrite_leaves_the_good_file_byte_identical(replica, reference, tmp_path, args, says):
    good = tmp_path / "good.h5"
    shutil.copyfile(reference, good)
    before = good.read_bytes()
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(replica), "--out", str(good), *NONE, "--overwrite", *args])
    assert says in _one_line_error(result)
    assert good.read_bytes() == before and not Path(f"{good}.tmp").exists()


def test_a_folder_at_out_is_refused_up_front(replica, tmp_path):
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(replica), "--out", str(tmp_path), *NONE])
    assert "is a folder" in _one_line_error(result) and list(tmp_path.iterdir()) == []


def test_a_run_where_every_sample_fails_keeps_the_file_and_exits_non_zero(replica, reference, tmp_path):
    root = tmp_path / "CK+"
    shutil.copytree(replica, root)
    for png in (root / "cohn-kanade-images").rglob("*.png"):
        png.write_bytes(png.read_bytes()[:100])  # every frame truncated
    good = tmp_path / "good.h5"
    shutil.copyfile(reference, good)
    before = good.read_bytes()
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(root), "--out", str(good), *NONE, "--overwrite"])
    out = _one_line_error(result)
    assert "every one of the" in out and "failed" in out and "could be read" in out  # not "no face found"
    assert good.read_bytes() == before


# ------------------------------------------------------------------------------------ resume keyed on input
def _interrupt_after(monkeypatch, shards: int, where: str = "frames"):
    """Make the store's writes fail like a full disk after `shards` sample shards (the OSError ENOSPC a plain
    write gets), or (`where="final"`) while HDF5 merges the final file (h5py raises RuntimeError, errno 28)."""
    import builtins
    import errno

    import ferbench.store.writer as store

    real = h5py.File
    state = {"shards": 0}

    def full_open(file, mode="r", *args, **kwargs):
        if where == "frames" and "w" in mode and str(file).endswith(".h5.part") and "shards" in str(file):
            if state["shards"] >= shards:
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
            state["shards"] += 1
        return builtins.open(file, mode, *args, **kwargs)

    class FullDisk(real):  # type: ignore[misc, valid-type]
        def create_dataset(self, name, *args, **kwargs):
            target = str(self.filename)
            if name == "frames" and where == "final" and target.endswith("final.h5.part"):
                raise RuntimeError("Can't write data (file write failed: time = Mon Nov 30 08:00:00 2026, filename = "
                                   f"'{target}', file descriptor = 7, errno = 28, error message = 'No space left on "
                                   "device', buf = 0x1, total write size = 4096, bytes this sub-write = 4096)")
            return super().create_dataset(name, *args, **kwargs)

    monkeypatch.setattr(store, "open", full_open, raising=False)
    monkeypatch.setattr(store.h5py, "File", FullDisk)
    return real


def _space_again(monkeypatch, real) -> None:
    import ferbench.store.writer as store

    monkeypatch.delattr(store, "open", raising=False)
    monkeypatch.setattr(h5py, "File", real)


def test_full_disk_is_one_line_then_the_rerun_equals_an_uninterrupted_run(replica, reference, tmp_path, monkeypatch):
    out = tmp_path / "full.h5"
    cmd = ["prepare", "ck+", "--root", str(replica), "--out", str(out), *NONE, "--json"]
    real = _interrupt_after(monkeypatch, shards=3)
    says = _one_line_error(runner.invoke(app, cmd))
    assert "no space left on device" in says and "rerun" in says
    shards = list((Path(f"{out}.tmp") / "shards").glob("*"))
    assert len(shards) == 3 and all(p.suffix == ".h5" for p in shards)  # finished shards kept, no .part left
    assert not out.exists() and not Path(f"{out}.lock").exists()

    _space_again(monkeypatch, real)
    _interrupt_after(monkeypatch, shards=0, where="final")  # space runs out again while merging
    assert "no space left on device" in _one_line_error(runner.invoke(app, cmd))
    assert not out.exists() and len(list((Path(f"{out}.tmp") / "shards").glob("*.h5"))) == len(scan("ck+", replica).samples)

    _space_again(monkeypatch, real)  # space freed
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["resumed"] == summary["samples"] and summary["written"] == 0
    assert_same_arrays(reference, out)
    with open_store(out) as store:  # the summary of a resumed run counts the whole file
        assert summary["frames"] == store.n_frames == summary["faces_detected"] + summary["frames_interpolated"]


def test_a_label_changed_between_interrupt_and_rerun_is_redone(replica, tmp_path, monkeypatch):
    root = tmp_path / "CK+"
    shutil.copytree(replica, root)
    out = tmp_path / "relabel.h5"
    cmd = ["prepare", "ck+", "--root", str(root), "--out", str(out), *NONE, "--json"]
    real = _interrupt_after(monkeypatch, shards=0, where="final")  # every sample done, then the merge fails
    _one_line_error(runner.invoke(app, cmd))
    _space_again(monkeypatch, real)

    labelled = next(s for s in scan("ck+", root).samples if s.label not in (None, 7))
    emotion = next((root / "Emotion" / labelled.subject).rglob(f"{labelled.frames[-1].stem}_emotion.txt"))
    emotion.write_text("   7.0000000e+00\n")  # the user corrects the label to surprise, then reruns
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["redone"] == 1 and summary["written"] == 1 and summary["resumed"] == summary["samples"] - 1
    assert any("input changed" in w and labelled.id in w for w in summary["warnings"])
    with open_store(out) as store:
        assert store.sample(labelled.id).label == 7


# ------------------------------------------------------------------------------------ sidecars first
def test_sidecars_are_written_before_the_file_goes_live(replica, tmp_path):
    out = tmp_path / "side.h5"
    blocker = tmp_path / "side.qc.png"
    blocker.mkdir()  # the contact sheet cannot be written: the output must not appear without it
    cmd = ["prepare", "ck+", "--root", str(replica), "--out", str(out), *NONE, "--json"]
    _one_line_error(runner.invoke(app, cmd))
    assert not out.exists() and len(list((Path(f"{out}.tmp") / "shards").glob("*.h5"))) > 0
    blocker.rmdir()
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["resumed"] == summary["samples"]
    assert out.exists() and Path(summary["contact_sheet"]).stat().st_size > 1000
    assert Path(summary["failures_csv"]).read_text().startswith("sample,kind,reason")
    assert not list(tmp_path.glob("*.part"))


def test_augmentation_is_part_of_the_publish(replica, reference, tmp_path):
    out = tmp_path / "aug.h5"
    prepare("ck+", replica, out, PrepareConfig(aligner="none", length=4), workers=0, materialize_augmentation="stc-nlstm")
    with h5py.File(out, "r") as f:
        assert f["augmented/stc-nlstm"].shape[:2] == (f.attrs["n_samples"] * 14, 4)
    assert not Path(f"{out}.aug.part").exists() and not Path(f"{out}.tmp").exists()


# ------------------------------------------------------------------------------------ bad samples
def test_a_garbage_label_file_excludes_one_sample_and_the_run_goes_on(replica, tmp_path):
    root = tmp_path / "CK+"
    shutil.copytree(replica, root)
    samples = scan("ck+", root).samples
    bad_one = next(s for s in samples if s.label is not None)
    emotion = next((root / "Emotion" / bad_one.subject).rglob(f"{bad_one.frames[-1].stem}_emotion.txt"))
    emotion.write_text("\x00\x17garbage, not a number\n")
    two = next(s for s in samples if s.label is not None and s.id != bad_one.id)
    folder = root / "Emotion" / two.subject / two.frames[0].parent.name
    (folder / f"{two.frames[0].stem}_emotion.txt").write_text("   1.0000000e+00\n")  # two emotion files
    found = scan("ck+", root)
    assert dict(found.excluded).keys() == {bad_one.id, two.id} and len(found.samples) == len(samples) - 2
    summary = prepare("ck+", root, tmp_path / "x.h5", PrepareConfig(aligner="none"), workers=0)
    reasons = {f.sample: f.reason for f in summary.failures}
    assert str(emotion) in reasons[bad_one.id] and "emotion code" in reasons[bad_one.id]
    assert "at most one" in reasons[two.id]
    with open_store(tmp_path / "x.h5") as store:
        assert len(store) == len(samples) - 2 and {f.sample for f in store.failures} == {bad_one.id, two.id}


@pytest.mark.parametrize("cell", ["inf", "1.9", "-0.5", "nan"])
def test_bp4d_cells_are_strict(tmp_path, cell):
    from ferbench.datasets.bp4d import read_au_csv
    from ferbench.errors import DatasetError

    path = tmp_path / "F001_T1.csv"
    path.write_text("0,1,2,4,6,7,10,12,14,15,17,23,24\n1000,0,0,0,0,0,0,0,0,0,0,0,0\n"
                    f"1001,0,{cell},0,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DatasetError, match=rf"F001_T1.csv: line 3: AU 2 cell '{cell}'"):
        read_au_csv(path)


# ------------------------------------------------------------------------------------ faces
def _face_frames(t1: np.ndarray) -> list[np.ndarray]:
    """320x240 windows of a real photo around one face, shifted one pixel per frame."""
    return [np.ascontiguousarray(t1[200 + t : 440 + t, 380 + t : 700 + t]) for t in range(12)]


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    import insightface

    return cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"))


def _sample(tmp_path: Path, frames: list[np.ndarray], sid: str = "clip") -> Sample:
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"{sid}_{i:03d}.png")
        cv2.imwrite(str(paths[-1]), frame)
    return Sample(id=sid, dataset="afew", subject="s", label=0, frames=paths, fps=25.0)


def test_an_isolated_detection_is_not_a_face(tmp_path, t1):
    from ferbench.synth.faces import FaceAnimator

    sky = [FaceAnimator(0).render_no_face((320, 240), seed=s) for s in range(12)]
    sky[0] = _face_frames(t1)[0]  # one frame with a face, eleven without: no track confirms it
    result = process_sample(_sample(tmp_path, sky), PrepareConfig(detect_every=5).resolved("afew"))
    assert result.record is None and "face found on 1 of 12 frames" in result.failure


def test_coverage_is_stored_and_partly_covered_samples_are_named(tmp_path, t1):
    from ferbench.synth.faces import FaceAnimator

    frames = _face_frames(t1)
    for t in range(8, 12):  # the face leaves the frame for the last third
        frames[t] = FaceAnimator(0).render_no_face((320, 240), seed=t)
    sample = _sample(tmp_path, frames)
    kept = process_sample(sample, PrepareConfig().resolved("afew"))
    assert kept.record is not None and kept.record.coverage == pytest.approx(8 / 12)
    assert [(w.sample, w.kind) for w in kept.warnings] == [(sample.id, PARTLY_COVERED)]
    assert "face found on 8 of 12 frames" in kept.warnings[0].reason
    strict = process_sample(sample, PrepareConfig(min_coverage=0.9).resolved("afew"))
    assert strict.record is None and "face found on 8 of 12 frames" in strict.failure

    from ferbench.store import StoreWriter

    out = tmp_path / "cov.h5"
    w = StoreWriter(out, dataset="afew", classes=["a"], config={"length": 22}, durable=False)
    w.add(kept.record, kept.frames, kept.landmarks, kept.flags)
    w.finalize()
    with open_store(out) as store:
        assert store.samples[0].coverage == pytest.approx(8 / 12)
    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0 and "face coverage" in shown.output and "clip 67%" in shown.output


def test_a_frame_of_another_size_is_detected_again_and_named(tmp_path, t1):
    frames = _face_frames(t1)
    frames[6] = cv2.resize(frames[6], (160, 120), interpolation=cv2.INTER_AREA)  # one half-size frame
    result = process_sample(_sample(tmp_path, frames), PrepareConfig().resolved("ck+"))
    assert result.record is not None
    assert result.flags[6] == FLAG_DETECTED and set(result.flags[5:8].tolist()) <= {FLAG_DETECTED, FLAG_INTERPOLATED}
    assert any(w.kind == RESIZED and "clip_006.png is 160x120" in w.reason for w in result.warnings)
    # the half-size frame's crop is the same face as its neighbours', not a garbage crop
    diff = np.abs(result.frames[6].astype(int) - result.frames[5].astype(int)).mean()
    assert diff < 20, diff


# ------------------------------------------------------------------------------------ damaged files
def _damage(src: Path, dst: Path, edit) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data)


@pytest.mark.parametrize("what, edit, says", [
    ("cut frames", lambda f: _replace(f, "frames", f["frames"][:-3]), "/frames has"),
    ("short column", lambda f: _replace(f, "samples/label", f["samples/label"][:-1]), "/samples/label has"),
    ("label outside the classes", lambda f: _replace(f, "samples/label", np.full(len(f["samples/label"]), 99, np.int32)), "label 99 outside"),
    ("frames outside /frames", lambda f: _replace(f, "samples/frame_count", f["samples/frame_count"][...] + 500), "outside /frames"),
])
def test_damaged_files_are_refused_by_inspect_with_the_reason(reference, tmp_path, what, edit, says):
    bad = _damage(reference, tmp_path / "bad.h5", edit)
    out = _one_line_error(runner.invoke(app, ["inspect", str(bad)]))
    assert says in out and "bad.h5" in out, what


def test_a_version_1_file_is_still_read_with_coverage_from_its_flags(reference, tmp_path):
    def downgrade(f: h5py.File) -> None:
        f.attrs["schema_version"] = 1
        del f["samples/coverage"]
        del f["samples/subject_source"]

    old = _damage(reference, tmp_path / "v1.h5", downgrade)
    with open_store(old) as v1, open_store(reference) as v3:
        assert [s.coverage for s in v1.samples] == pytest.approx([s.coverage for s in v3.samples])
        assert all(s.coverage == 1.0 for s in v1.samples)  # aligner none: every frame is a detected face
        assert all(s.subject_source is None for s in v1.samples)


def test_a_version_2_file_is_read_without_subject_sources(reference, tmp_path):
    from ferbench.protocols import SampleTable

    def downgrade(f: h5py.File) -> None:
        f.attrs["schema_version"] = 2
        del f["samples/subject_source"]

    old = _damage(reference, tmp_path / "v2.h5", downgrade)
    with open_store(old) as v2:
        assert v2.schema_version == 2 and all(s.subject_source is None for s in v2.samples)
        assert SampleTable.from_store(v2).subject_sources is None  # unknown, not "none recorded"
    with open_store(reference) as v3:
        assert SampleTable.from_store(v3).subject_sources is not None


# ------------------------------------------------------------------------------------ folder
def test_folder_never_reads_its_own_output(tmp_path, monkeypatch):
    root = tmp_path / "mine"
    synth("folder", root, subjects=1, seed=3)
    (root / "unused_class").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("FERBENCH_HOME", str(root))  # the default output, prepared/folder.h5, lands in the root
    cmd = ["prepare", "folder", "--root", ".", *NONE, "--length", "4"]
    first = runner.invoke(app, cmd)
    assert first.exit_code == 0, first.output
    with open_store(root / "prepared" / "folder.h5") as store:
        classes, labels = store.classes, {s.id: s.label for s in store.samples}
    assert "prepared" not in classes and "unused_class" not in classes
    again = runner.invoke(app, [*cmd, "--overwrite"])  # `prepared/` now holds folder.h5 and its sidecars
    assert again.exit_code == 0, again.output
    with open_store(root / "prepared" / "folder.h5") as store:
        assert store.classes == classes and {s.id: s.label for s in store.samples} == labels


@pytest.mark.slow
def test_a_real_full_disk_then_the_rerun_with_space(replica, reference, tmp_path):
    """The same on a real 160 KiB tmpfs, in a real process (where h5py used to print a traceback per open
    object and segfault): one line, exit 2; after space is freed the rerun resumes to the same arrays."""
    import subprocess
    import sys

    small = tmp_path / "small"
    small.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(small)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = small / "ck.h5"
        cmd = [sys.executable, "-m", "ferbench.cli", "prepare", "ck+", "--root", str(replica), "--out", str(out), *NONE, "--json"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        full = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert full.returncode == 2, full.stderr
        assert "no space left on device" in full.stderr and "Traceback" not in full.stderr, full.stderr
        assert len([line for line in full.stderr.splitlines() if line.strip()]) == 1, full.stderr
        assert list((Path(f"{out}.tmp") / "shards").glob("*.h5")) and not out.exists()
        subprocess.run(["mount", "-o", "remount,size=8m", str(small)], check=True)
        again = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["resumed"] > 0
        assert_same_arrays(reference, out)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_an_unwritable_output_place_is_one_line_exit_2(replica, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(replica), "--out", str(blocker / "x.h5"), *NONE])
    assert f"the folder of --out {blocker}: is a file" in _one_line_error(result)  # exit 2, not 1, before the scan
