"""Every dataset's replica goes through `prepare` into a file that matches what the replica holds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ferbench.datasets import get_dataset, scan, synth
from ferbench.preprocess.frames import resample_indices
from ferbench.preprocess.pipeline import PrepareConfig, prepare
from ferbench.preprocess.states import rising_state_indices
from ferbench.store import open_store

DATASETS = ["ck+", "oulu-casia", "mmi", "casme2", "bp4d", "afew", "folder"]


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """Factory: the dataset's replica folder, synthesised once for both fixtures below (prepare only reads it)."""
    roots: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in roots:
            root = tmp_path_factory.mktemp("native-" + name.replace("+", "p")) / "native"
            synth(name, root, subjects=1, seed=4, **({"modes": ["VL/Strong", "NI/Dark"]} if name == "oulu-casia" else {}))
            roots[name] = root
        return roots[name]

    return make


@pytest.fixture(scope="module", params=DATASETS)
def prepared(request, tmp_path_factory, native):
    name = request.param
    base = tmp_path_factory.mktemp(name.replace("+", "p"))
    root = native(name)
    summary = prepare(name, root, base / "out.h5", workers=0)
    return name, scan(name, root), summary, base / "out.h5"


@pytest.fixture(scope="module", params=DATASETS)
def annotated(request, tmp_path_factory, native):
    """The same replicas prepared without face detection (whole frames resized): annotations and frame
    numbers do not depend on the detector, and this keeps the check in the fast selection."""
    name = request.param
    base = tmp_path_factory.mktemp("annotated-" + name.replace("+", "p"))
    root = native(name)
    prepare(name, root, base / "out.h5", PrepareConfig(aligner="none", size=32), workers=0)
    return name, scan(name, root), None, base / "out.h5"


@pytest.mark.slow
def test_every_sample_is_written_or_reported(prepared):
    name, found, summary, out = prepared
    with open_store(out) as store:
        stored = {s.id for s in store.samples}
        failed = {f.sample for f in store.failures}
    assert stored | failed == {s.id for s in found.samples} and not stored & failed
    assert summary.written == len(stored) and summary.failed == len(failed)
    if name == "afew":  # the replica has a clip whose frames hold no face: excluded and named, not dropped
        assert failed and all("no face" in f.reason for f in store.failures)
    else:  # lab datasets: the real detector finds the replica faces; hardly any frame needs filling
        assert not failed, store.failures
        assert summary.frames_filled <= 0.05 * summary.frames


@pytest.mark.slow
def test_labels_subjects_modes_and_frame_counts_match(prepared):
    name, found, _, out = prepared
    by_id = {s.id: s for s in found.samples}
    with open_store(out) as store:
        assert store.classes == found.classes
        for row in store.samples:
            native = by_id[row.id]
            assert (row.subject, row.label, row.split, row.mode) == (native.subject, native.label, native.split, native.mode)
            n_native = len(native.frames) if native.frames else None
            if n_native is not None:  # image sequences: the stored count follows the frame-rate rule
                target = get_dataset(name).target_fps
                assert row.frame_count == len(resample_indices(n_native, native.fps, target))
            assert row.clip.shape == (store.length,) and row.clip.max() < row.frame_count
            assert row.states is not None
            if native.apex is not None and native.offset is None:  # neutral -> apex: post-apex states from the rise
                assert list(row.states) == rising_state_indices(0, row.frame_count - 1).tolist()
            else:
                assert list(row.states) == sorted(row.states)


def test_annotated_key_frames_and_au_labels_survive(annotated):
    name, found, _, out = annotated
    by_id = {s.id: s for s in found.samples}
    with open_store(out) as store:
        for row in store.samples:
            native = by_id[row.id]
            if name == "casme2":
                assert (row.onset, row.offset) == (native.onset, native.offset)
                # the fixed-length clip spans the coded onset -> offset segment, not the whole folder
                assert (row.clip[0], row.clip[-1]) == (row.onset, row.offset)
                if native.apex is None:
                    assert row.apex_estimated and row.onset <= row.apex <= row.offset
                else:
                    assert row.apex == native.apex and not row.apex_estimated
            if name == "bp4d":
                names = list(store.au_names)
                got = store.aus(row.id)
                want = np.full_like(got, -1)
                for j, au in enumerate(native.au_names):
                    want[:, names.index(au)] = native.aus[:, j]
                assert np.array_equal(got, want)
            if get_dataset(name).target_fps is not None:  # MMI: resampled to 10 fps
                assert store.attrs["config"]["target_fps"] == row.fps == get_dataset(name).target_fps
            # every stored frame knows its native frame number (file-name number, or video frame index)
            src = store.source_frame(row.id)
            if native.frames:
                names = [int(re.findall(r"\d+", p.stem)[-1]) for p in native.frames]
                target = get_dataset(name).target_fps
                assert src.tolist() == [names[i] for i in resample_indices(len(names), native.fps, target)]
            else:  # video: decoded frame indices, resampled to 10 fps for MMI (24 fps source: steps of 2-3)
                assert src[0] == 0 and np.all(np.diff(src) >= (2 if get_dataset(name).target_fps else 1))
