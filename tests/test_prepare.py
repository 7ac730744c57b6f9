"""`ferbench prepare` end to end on replicas: the file matches the replica, dask gives the same arrays,
a killed run resumes to the same file, and bad media is reported by name without losing the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from _h5 import assert_same_arrays
from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.issues import REPAIRED, RESUME, Issue
from ferbench.preprocess.pipeline import PrepareConfig, prepare
from ferbench.preprocess.temporal import normalise_length
from ferbench.store import FLAG_FILLED, open_store

runner = CliRunner()


@pytest.fixture(scope="module")
def ck_replica(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ck") / "CK+"
    synth("ck+", root, subjects=2, seed=1)
    return root


@pytest.fixture(scope="module")
def ck_local(ck_replica, tmp_path_factory) -> Path:
    """The reference output: prepared in this process, no dask."""
    out = tmp_path_factory.mktemp("ck-out") / "ck+.h5"
    prepare("ck+", ck_replica, out, workers=0)
    return out


def test_prepared_file_matches_the_replica(ck_replica, ck_local):
    found = scan("ck+", ck_replica)
    with open_store(ck_local) as store:
        assert store.dataset == "ck+" and store.classes == found.classes
        assert store.config["length"] == 18 and store.frame_shape == (64, 64, 3)
        assert [s.id for s in store.samples] == sorted(s.id for s in found.samples)
        by_id = {s.id: s for s in found.samples}
        for stored in store.samples:
            native = by_id[stored.id]
            assert stored.subject == native.subject and stored.label == native.label
            assert stored.frame_count == len(native.frames)  # stored once, at native length
            assert np.array_equal(stored.clip, normalise_length(len(native.frames), 18))
            last = len(native.frames) - 1  # CK+ runs neutral -> apex: states on the rising part
            assert stored.states.tolist() == [0, last // 2, last, (3 * last) // 4, last // 4]
            assert store.flags(stored.id).max() <= 2  # every frame has a detected or tracked face
            lm = store.landmarks(stored.id)
            # yu2018 template: eyes level and at the template's place in every aligned frame
            assert np.abs(lm[:, 0, 1] - lm[:, 1, 1]).max() < 1.5
    info = json.loads(runner.invoke(app, ["inspect", str(ck_local), "--json"]).output)
    assert info["samples"] == len(found.samples) and info["classes"] == found.class_counts()


@pytest.mark.slow
def test_same_arrays_on_a_real_dask_cluster(ck_replica, ck_local, tmp_path, dask_scheduler):
    out = tmp_path / "dask.h5"
    summary = prepare("ck+", ck_replica, out, scheduler=dask_scheduler)
    assert summary.written == len(scan("ck+", ck_replica).samples)
    assert_same_arrays(ck_local, out)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_file(ck_replica, ck_local, tmp_path):
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "ferbench.cli", "prepare", "ck+", "--root", str(ck_replica),
           "--out", str(out), "--workers", "0", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    shards = Path(f"{out}.tmp") / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.h5"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(shards.glob("*.h5")))
    assert done_before >= 2 and not out.exists()

    result = runner.invoke(app, ["prepare", "ck+", "--root", str(ck_replica), "--out", str(out), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["resumed"] >= done_before and summary["written"] == summary["samples"] - summary["resumed"]
    assert_same_arrays(ck_local, out)


def test_second_writer_is_refused(ck_replica, tmp_path):
    out = tmp_path / "busy.h5"
    Path(f"{out}.lock").write_text(f"{os.getppid()} {os.uname().nodename}\n")  # a live process holds it
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(ck_replica), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 2 and "another ferbench prepare" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_bad_media_is_reported_by_name_and_the_run_completes(tmp_path):
    root = tmp_path / "CK+"
    written = synth("ck+", root, subjects=1, seed=2)
    # 1) a truncated JPEG/PNG frame in the middle of one sequence -> repaired from neighbours and named
    victim = written[0].frames[len(written[0].frames) // 2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    # 2) a sequence whose frames hold no face at all -> excluded and named
    from ferbench.synth.faces import FaceAnimator
    import cv2

    blank = FaceAnimator(0).render_no_face((640, 490), seed=3)
    for path in written[1].frames:
        cv2.imwrite(str(path), blank)
    out = tmp_path / "bad.h5"
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(root), "--out", str(out), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert [f["id"] for f in summary["failures"]] == [written[1].id]
    assert "no face" in summary["failures"][0]["reason"]
    assert any(victim.name in w for w in summary["warnings"]) and summary["frames_filled"] >= 1
    with open_store(out) as store:
        assert written[1].id not in {s.id for s in store.samples}
        assert [f.sample for f in store.failures] == [written[1].id]
        assert store.flags(written[0].id)[len(written[0].frames) // 2] == FLAG_FILLED
        assert len(store) == len(written) - 1
    csv_text = Path(summary["failures_csv"]).read_text()
    assert written[1].id in csv_text and victim.name in csv_text
    assert Path(summary["contact_sheet"]).stat().st_size > 1000


@pytest.mark.slow
def test_materialized_augmentation_written_into_the_file(ck_replica, tmp_path):
    out = tmp_path / "aug.h5"
    prepare("ck+", ck_replica, out, PrepareConfig(length=6), workers=0, materialize_augmentation="stc-nlstm")
    with open_store(out) as store, h5py.File(out, "r") as f:
        aug = f["augmented/stc-nlstm"]
        assert aug.shape == (len(store) * 14, 6, 64, 64, 3)
        first = store.frames(0, "clip")
        assert np.array_equal(aug[0], first)  # transform 0 of the preset is the identity
        assert np.array_equal(aug[7], first[:, :, ::-1])  # transform 7 is the plain mirror


@pytest.mark.slow
def test_zero_byte_video_is_reported_by_name_and_the_run_completes(tmp_path):
    root = tmp_path / "AFEW"
    written = synth("afew", root, subjects=1, seed=5)
    victim = next(s.video for s in written if s.video is not None and s.label is not None)
    victim.write_bytes(b"")
    keep = [s for s in written if s.video != victim]
    for s in keep[3:]:  # keep the run short: three clips and the broken one
        s.video.unlink()
    out = tmp_path / "afew.h5"
    result = runner.invoke(app, ["prepare", "afew", "--root", str(root), "--out", str(out), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert any(victim.name in w for w in summary["warnings"])
    assert victim.name in Path(summary["failures_csv"]).read_text()
    with open_store(out) as store:
        assert len(store) + len(store.failures) == 3


def test_missing_insightface_pack_is_one_clear_line(ck_replica, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.insightface/models here
    out = tmp_path / "if.h5"
    result = runner.invoke(app, ["prepare", "ck+", "--root", str(ck_replica), "--out", str(out), "--aligner", "insightface"])
    assert result.exit_code == 2 and "buffalo_l" in result.output and "Traceback" not in result.output
    assert not out.exists() and not Path(f"{out}.tmp").exists()


def test_bad_annotation_excludes_the_sample_instead_of_stopping_the_run(ck_replica):
    from ferbench.preprocess.pipeline import process_sample

    sample = scan("ck+", ck_replica).samples[0]
    sample.onset, sample.apex, sample.offset = 4, 6, 2  # offset before apex: a broken coding-sheet row
    result = process_sample(sample, PrepareConfig().resolved("ck+"))
    assert result.record is None and "onset <= apex <= offset" in result.failure


def test_aligner_none_is_a_plain_resize_for_either_template(tmp_path):
    import cv2

    from ferbench.datasets.base import Sample
    from ferbench.preprocess.pipeline import process_sample

    yy, xx = np.mgrid[0:128, 0:128]
    paths = []
    for i in range(3):  # smooth but position-revealing images: a shifted or scaled crop would not match
        path = tmp_path / f"reg_img{i}.png"
        blob = 255 * np.exp(-((xx - 40 - 10 * i) ** 2 + (yy - 70) ** 2) / 300.0)
        cv2.imwrite(str(path), np.stack([blob, 2 * xx, 2 * yy], -1).clip(0, 255).astype(np.uint8))
        paths.append(path)
    sample = Sample(id="c", dataset="casme2", subject="1", label=0, frames=paths, fps=200, onset=0, apex=1, offset=2)
    for template in ("yu2018", "arcface"):
        result = process_sample(sample, PrepareConfig(aligner="none", template=template).resolved("casme2"))
        want = cv2.cvtColor(cv2.resize(cv2.imread(str(paths[1])), (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        assert np.abs(result.frames[1].astype(int) - want.astype(int)).mean() < 2, template


def test_leftover_from_another_config_needs_restart(ck_replica, tmp_path):
    out = tmp_path / "cfg.h5"
    cmd = ["prepare", "ck+", "--root", str(ck_replica), "--out", str(out), "--workers", "0"]
    from ferbench.store import StoreWriter

    StoreWriter(out, dataset="ck+", classes=["x"], config={"length": 3}).close()  # an unfinished other run
    refused = runner.invoke(app, cmd)
    assert refused.exit_code == 2 and "--restart" in refused.output and not out.exists()
    assert runner.invoke(app, [*cmd, "--restart"]).exit_code == 0 and out.exists()


def test_empty_dataset_is_refused(tmp_path):
    (tmp_path / "Sessions").mkdir()
    result = runner.invoke(app, ["prepare", "mmi", "--root", str(tmp_path), "--out", str(tmp_path / "m.h5")])
    assert result.exit_code == 2 and "no mmi samples" in result.output
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.h5.tmp").exists()


@pytest.mark.slow
def test_resume_drops_samples_no_longer_in_the_input(tmp_path):
    import dataclasses
    import shutil

    from ferbench.preprocess.pipeline import process_sample
    from ferbench.store import StoreWriter

    root = tmp_path / "CK+"
    written = synth("ck+", root, subjects=1, seed=6)
    out = tmp_path / "stale.h5"
    # an interrupted run that had finished the first sample
    cfg = PrepareConfig().resolved("ck+")
    gone = written[0]
    first = process_sample(gone, cfg)
    w = StoreWriter(out, dataset="ck+", classes=scan("ck+", root).classes, config=dataclasses.asdict(cfg),
                    aligner="mtcnn", source_root=str(root.resolve()))
    prints = {s.id: s.fingerprint() for s in scan("ck+", root).samples}  # the input each shard was made from
    w.add(first.record, first.frames, first.landmarks, first.flags, warnings=[Issue(gone.id, REPAIRED, "frame 3 repaired")],
          fingerprint=prints[gone.id])
    kept = process_sample(written[1], cfg)
    w.add(kept.record, kept.frames, kept.landmarks, kept.flags, warnings=[Issue(written[1].id, REPAIRED, "frame 2 repaired")],
          fingerprint=prints[written[1].id])
    w.close()
    shutil.rmtree(gone.frames[0].parent)  # the user removes that sequence, then resumes
    summary = prepare("ck+", root, out, workers=0)
    with open_store(out) as store:
        assert gone.id not in {s.id for s in store.samples} and len(store) == len(written) - 1
    assert any(w.kind == RESUME and gone.id in w.reason and "dropped" in w.reason for w in summary.warnings)
    # what the interrupted run repaired is still reported after the resume; the dropped sample's is not
    assert Issue(written[1].id, REPAIRED, "frame 2 repaired") in summary.warnings
    assert not [w for w in summary.warnings if w.sample == gone.id]


def test_dask_gets_the_longest_sequences_first_and_unknown_lengths_last(tmp_path):
    from ferbench.datasets.base import Sample
    from ferbench.preprocess.pipeline import longest_first

    def sample(sid, n):
        return Sample(id=sid, dataset="ck+", subject="S1", label=1, frames=[tmp_path / f"{sid}_{i}.png" for i in range(n)])

    video = Sample(id="v", dataset="afew", subject="S1", label=1, video=tmp_path / "v.avi")  # length unknown until decoded
    order = longest_first([sample("a", 3), video, sample("b", 9), sample("c", 3), sample("d", 12)])
    assert [s.id for s in order] == ["d", "b", "a", "c", "v"]
