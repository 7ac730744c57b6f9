"""The HDF5 store: real files round-trip, a really killed writer resumes, writers exclude each other, and
bad files are named in one clear error."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import ferbench
from _h5 import assert_same_arrays
from ferbench.errors import FerbenchError
from ferbench.issues import EXCLUDED, Issue
from ferbench.preprocess.states import state_indices
from ferbench.preprocess.temporal import normalise_length
from ferbench.store import (
    FLAG_DETECTED,
    FLAG_FILLED,
    FLAG_INTERPOLATED,
    SCHEMA_VERSION,
    SampleRecord,
    StoreWriter,
    inspect,
    open_store,
)

HW = 32
T = 6
CLASSES = ("anger", "disgust", "happiness")
AU_NAMES = (1, 2, 12)
FORK = mp.get_context("fork")


def writer_kwargs(**over):
    kw = dict(
        dataset="ck+",
        classes=CLASSES,
        config={"aligner": "mtcnn", "size": HW, "template": "yu2018-eyes", "length": T},
        aligner="mtcnn",
        source_root="/data/CK+",
        au_names=AU_NAMES,
        durable=False,  # fsync adds nothing to what the tests check and costs time on shared disks
    )
    kw.update(over)
    return kw


def make_sample(sid: str, n: int | None = None):
    """Deterministic content for a sample id: (record, frames, landmarks, flags, aus)."""
    seed = int.from_bytes(hashlib.sha1(sid.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    k = int(n if n is not None else rng.integers(3, 12))
    frames = rng.integers(0, 256, size=(k, HW, HW, 3), dtype=np.uint8)
    landmarks = rng.normal(16, 4, size=(k, 5, 2)).astype(np.float32)
    flags = rng.choice([FLAG_DETECTED, FLAG_INTERPOLATED, FLAG_FILLED], size=k).astype(np.uint8)
    aus = rng.integers(-1, 2, size=(k, len(AU_NAMES))).astype(np.int8)
    label = int(rng.integers(-1, len(CLASSES)))
    rec = SampleRecord(
        id=sid,
        subject=sid.split("_")[0],
        label=None if label < 0 else label,
        clip=normalise_length(k, T),
        states=state_indices(0, k - 1, k - 1) if label != 0 else None,
        split="train" if label == 1 else None,
        mode={"light": "strong"} if label == 2 else {},
        fps=float(rng.choice([10.0, 25.0])),
        onset=0,
        apex=k - 1,
        offset=None,
        apex_estimated=bool(label == 1),
    )
    return rec, frames, landmarks, flags, aus


IDS = ["S010_002", "S005_001", "S022_003", "S005_003", "S130_001", "S011_004"]


def write_store(path: Path, order, failures=(), **over) -> Path:
    w = StoreWriter(path, **writer_kwargs(**over))
    for sid in order:
        w.add(*make_sample(sid))
    for sid, reason in failures:
        w.add_failure(sid, reason)
    return w.finalize()


# ------------------------------------------------------------------------------------------ round trip
def test_round_trip_out_of_order_comes_back_sorted_and_identical(tmp_path):
    out = tmp_path / "ck+.h5"
    path = write_store(out, IDS, failures=[("S099_001", "no face found in any of 12 frames")])
    assert path == out and out.is_file()
    assert not Path(f"{out}.tmp").exists() and not Path(f"{out}.lock").exists()

    with open_store(out) as st:
        assert [s.id for s in st.samples] == sorted(IDS)
        assert st.classes == CLASSES and st.dataset == "ck+" and st.length == T
        assert st.au_names == AU_NAMES
        start = 0
        for i, s in enumerate(st.samples):
            rec, frames, lms, flags, aus = make_sample(s.id)
            assert (s.row, s.frame_start, s.frame_count) == (i, start, len(frames))
            start += len(frames)
            np.testing.assert_array_equal(st.native_frames(i), frames)
            np.testing.assert_array_equal(st.native_frames(s.id), frames)
            np.testing.assert_array_equal(st.landmarks(i), lms)
            np.testing.assert_array_equal(st.flags(i), flags)
            np.testing.assert_array_equal(st.aus(i), aus)
            np.testing.assert_array_equal(s.clip, rec.clip)
            np.testing.assert_array_equal(st.frames(i, "clip"), frames[rec.clip])
            if rec.states is None:
                assert s.states is None
            else:
                np.testing.assert_array_equal(s.states, rec.states)
                np.testing.assert_array_equal(st.frames(i, "states"), frames[rec.states])
            assert (s.subject, s.label, s.split, s.mode, s.fps) == (rec.subject, rec.label, rec.split, rec.mode, rec.fps)
            assert (s.onset, s.apex, s.offset, s.apex_estimated) == (0, len(frames) - 1, None, rec.apex_estimated)
        assert st.n_frames == start
        assert st.failures == [Issue("S099_001", EXCLUDED, "no face found in any of 12 frames")]

        # self-describing attributes
        a = st.attrs
        assert a["schema_version"] == SCHEMA_VERSION and a["format"] == "ferbench-store"
        assert a["classes"] == list(CLASSES)
        assert a["config"] == writer_kwargs()["config"]
        assert a["aligner"] == "mtcnn" and a["source_root"] == "/data/CK+"
        assert a["ferbench_version"] == ferbench.__version__
        assert a["created"].endswith("+00:00")

    # storage properties a reader outside ferbench relies on: chunked, compressed, no pickled objects
    with h5py.File(out, "r") as f:
        assert f["frames"].dtype == np.uint8 and f["frames"].chunks == (1, HW, HW, 3)
        assert f["frames"].compression == "gzip"
        assert f["index/clip"].dtype == np.int32 and f["index/clip"].shape == (len(IDS), T)
        assert json.loads(f["aus"].attrs["au_names"]) == list(AU_NAMES)
        for name in ("samples/id", "samples/mode", "failures/reason"):
            assert h5py.check_string_dtype(f[name].dtype).encoding == "utf-8"
        objects: list[str] = []
        f.visititems(
            lambda n, o: objects.append(n)
            if isinstance(o, h5py.Dataset) and o.dtype.kind == "O" and h5py.check_string_dtype(o.dtype) is None
            else None
        )
        assert objects == []

    info = inspect(out)
    labels = [make_sample(i)[0].label for i in IDS]
    assert info["samples"] == len(IDS)
    assert info["frames"] == sum(len(make_sample(i)[1]) for i in IDS)
    assert info["classes"] == {c: labels.count(k) for k, c in enumerate(CLASSES)}
    assert info["labelled"] == sum(lab is not None for lab in labels)
    assert info["subjects"] == len({i.split("_")[0] for i in IDS}) == 5
    assert info["shapes"]["frames"] == [info["frames"], HW, HW, 3]
    assert info["shapes"]["index/states"] == [len(IDS), 5]
    assert info["config"]["length"] == T and info["schema_version"] == SCHEMA_VERSION
    assert info["failures"] == [{"id": "S099_001", "reason": "no face found in any of 12 frames"}]
    all_flags = np.concatenate([make_sample(i)[3] for i in IDS])
    assert info["flags"]["filled"] == int((all_flags == FLAG_FILLED).sum())
    json.dumps(info)  # what `ferbench inspect --json` prints


def test_load_gives_device_tensors_for_each_index(tmp_path):
    out = write_store(tmp_path / "s.h5", IDS[::-1])
    with open_store(out) as st:
        ids = sorted(IDS)
        clip = st.load("cpu", index="clip")
        assert clip.x.dtype == torch.uint8 and tuple(clip.x.shape) == (len(IDS), T, 3, HW, HW)
        assert clip.ids == ids
        for i, sid in enumerate(ids):
            rec, frames, *_ = make_sample(sid)
            want = torch.from_numpy(frames[rec.clip]).permute(0, 3, 1, 2)
            assert torch.equal(clip.x[i], want)
            assert clip.labels[i].item() == (-1 if rec.label is None else rec.label)
            assert clip.subject_names[clip.subject_index[i]] == rec.subject
        assert tuple(clip.aus.shape) == (len(IDS), T, len(AU_NAMES))

        native = st.load(index="native", samples=[1, 3])
        sel = [ids[1], ids[3]]
        cat = np.concatenate([make_sample(s)[1] for s in sel])
        assert torch.equal(native.x, torch.from_numpy(cat).permute(0, 3, 1, 2))
        assert native.offsets.tolist() == [[0, len(make_sample(sel[0])[1])], [len(make_sample(sel[0])[1]), len(make_sample(sel[1])[1])]]

        with_states = [i for i, s in enumerate(st.samples) if s.states is not None]
        states = st.load(index="states", samples=with_states)
        assert tuple(states.x.shape) == (len(with_states), 5, 3, HW, HW)
        with pytest.raises(FerbenchError, match="no expression-state index"):
            st.load(index="states")


# ---------------------------------------------------------------------------------------- kill + resume
def _add_then_die(path: str, ids: list[str], big_id: str, q) -> None:
    """Child: add some samples, start one more, and SIGKILL itself while that one is being written.

    The shard is built in memory and written in one call, so its `.part` file lives for microseconds: a
    poll for it races the rename. The child instead dies at the rename itself, after cutting the part to
    half its bytes: exactly what a kill in the middle of the write leaves on disk."""
    w = StoreWriter(path, **writer_kwargs())
    for sid in ids:
        w.add(*make_sample(sid))
        q.put(sid)
    rename = os.replace

    def die_before_rename(src, dst, *a, **kw):
        if str(src).endswith(".part"):
            size = os.path.getsize(src)
            os.truncate(src, size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return rename(src, dst, *a, **kw)

    os.replace = die_before_rename  # this forked child only; it never returns
    w.add(*make_sample(big_id, n=400))
    raise AssertionError("the child should have been killed while writing")


def test_killed_writer_resumes_and_equals_uninterrupted_run(tmp_path):
    out = tmp_path / "resumed.h5"
    first, big = ["S022_003", "S005_001", "S130_001"], "S077_009"
    q = FORK.Queue()
    child = FORK.Process(target=_add_then_die, args=(str(out), first, big, q))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    reported = {q.get(timeout=5) for _ in first}
    assert reported == set(first)

    # what the killed run left: no output, a stale lock, whole readable shards plus one half-written part
    tmp = Path(f"{out}.tmp")
    assert not out.exists() and Path(f"{out}.lock").exists()
    assert len(list((tmp / "shards").glob("*.part"))) == 1
    for shard in (tmp / "shards").glob("*.h5"):
        with h5py.File(shard, "r") as f:
            assert f["frames"].shape[1:] == (HW, HW, 3)

    w = StoreWriter(out, **writer_kwargs())  # takes over the dead child's lock
    assert w.resumed and w.done_ids == set(first)
    assert not list((tmp / "shards").glob("*.part"))
    rest = [big] + [i for i in IDS if i not in first]
    for sid in rest:
        if sid not in w.finished_ids:
            w.add(*make_sample(sid, n=400 if sid == big else None))
    w.finalize()

    ref = tmp_path / "single.h5"
    wr = StoreWriter(ref, **writer_kwargs())
    for sid in sorted(first + rest, reverse=True):  # another arrival order, in one go
        wr.add(*make_sample(sid, n=400 if sid == big else None))
    wr.finalize()
    assert_same_arrays(out, ref)
    with open_store(out) as st:
        assert [s.id for s in st.samples] == sorted(first + rest)


def test_leftover_from_another_config_is_refused_then_restart_starts_over(tmp_path):
    out = tmp_path / "x.h5"
    w = StoreWriter(out, **writer_kwargs())
    w.add(*make_sample(IDS[0]))
    w.close()  # interrupted: temp kept, lock released
    other = writer_kwargs(config={**writer_kwargs()["config"], "length": T + 1})
    with pytest.raises(FerbenchError, match=r"different configuration \(differs in: config\).*--restart"):
        StoreWriter(out, **other)
    w2 = StoreWriter(out, **other, restart=True)
    assert not w2.resumed and w2.done_ids == set()
    w2.close()
    w3 = StoreWriter(out, **other)  # the new run's temp is now resumable
    assert w3.resumed
    w3.close()


def test_existing_output_kept_unless_overwrite(tmp_path):
    out = write_store(tmp_path / "o.h5", IDS[:2])
    before = out.read_bytes()
    with pytest.raises(FerbenchError, match="already exists.*--overwrite"):
        StoreWriter(out, **writer_kwargs())
    assert out.read_bytes() == before
    write_store(out, IDS[:3], overwrite=True)
    assert inspect(out)["samples"] == 3


# ----------------------------------------------------------------------------------------------- locks
def _hold(path: str, ready, release) -> None:
    StoreWriter(path, **writer_kwargs())
    ready.set()
    release.wait(30)


def test_second_writer_refused_and_stale_lock_taken_over(tmp_path):
    out = tmp_path / "locked.h5"
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(FerbenchError) as err:
            StoreWriter(out, **writer_kwargs())
        assert f"another ferbench prepare is writing {out} (pid {holder.pid})" in str(err.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    # the holder died without cleaning up: its lock is stale and is taken over
    lock = Path(f"{out}.lock")
    assert lock.read_text().split()[0] == str(holder.pid)
    w = StoreWriter(out, **writer_kwargs())
    assert lock.read_text().split()[0] == str(os.getpid())
    with pytest.raises(FerbenchError, match=f"pid {os.getpid()}"):  # a second writer in this process too
        StoreWriter(out, **writer_kwargs())
    w.close()
    assert not lock.exists()

    # a hand-left lock naming a dead pid (no flock held) is taken over as well
    gone = FORK.Process(target=os._exit, args=(0,))
    gone.start()
    gone.join(30)
    lock.write_text(f"{gone.pid} {socket.gethostname()}\n")
    w = StoreWriter(out, **writer_kwargs())
    assert lock.read_text().split()[0] == str(os.getpid())
    w.close()

    # ...but one naming a live process is not
    lock.write_text(f"1 {socket.gethostname()}\n")
    with pytest.raises(FerbenchError, match=r"\(pid 1\)"):
        StoreWriter(out, **writer_kwargs())


# --------------------------------------------------------------------------------------- schema + files
def test_bad_files_give_one_clear_error_naming_the_file(tmp_path):
    good = write_store(tmp_path / "good.h5", IDS[:2])

    newer = tmp_path / "newer.h5"
    newer.write_bytes(good.read_bytes())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(FerbenchError) as err:
        open_store(newer)
    msg = str(err.value)
    assert str(newer) in msg and f"schema version {SCHEMA_VERSION + 1}" in msg
    assert f"reads schema version {SCHEMA_VERSION}" in msg and "upgrade ferbench" in msg

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(FerbenchError, match=r"empty\.h5.*0 bytes"):
        open_store(empty)

    text = tmp_path / "notes.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(FerbenchError, match=r"notes\.h5.*not an HDF5 file"):
        inspect(text)

    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FerbenchError, match=r"cut\.h5.*truncated"):
        open_store(cut)

    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(FerbenchError, match=r"plain\.h5.*schema_version"):
        open_store(plain)

    with pytest.raises(FerbenchError, match="missing.*not found"):
        open_store(tmp_path / "missing.h5")


def test_bad_samples_rejected_before_anything_is_written(tmp_path):
    w = StoreWriter(tmp_path / "v.h5", **writer_kwargs())
    rec, frames, lms, flags, aus = make_sample(IDS[0])
    rec.clip = np.array([0, 1, 2, 99, 3, 4])
    with pytest.raises(FerbenchError, match="clip index .* outside"):
        w.add(rec, frames, lms, flags, aus)
    with pytest.raises(FerbenchError, match="uint8"):
        w.add(make_sample(IDS[1])[0], frames.astype(np.float32), lms, flags, aus)
    w.add(*make_sample(IDS[1]))
    with pytest.raises(FerbenchError, match="already written"):
        w.add(*make_sample(IDS[1]))
    assert w.done_ids == {IDS[1]}
    w.close()


def test_record_from_sample_and_a_store_where_every_sample_failed(tmp_path):
    from ferbench.datasets.base import Sample

    s = Sample(id="S005_001", dataset="ck+", subject="S005", label=2, fps=30.0, onset=0, mode={"view": "front"})
    rec = SampleRecord.from_sample(s, clip=normalise_length(4, T), fps=10.0, apex=3)
    assert (rec.id, rec.subject, rec.label, rec.fps, rec.apex, rec.mode) == ("S005_001", "S005", 2, 10.0, 3, {"view": "front"})

    w = StoreWriter(tmp_path / "none.h5", **writer_kwargs())
    w.add_failure("S005_001", "no face found")
    w.finalize()
    info = inspect(tmp_path / "none.h5")
    assert (info["samples"], info["frames"], info["shapes"]["frames"]) == (0, 0, [0, HW, HW, 3])
    assert info["failures"] == [{"id": "S005_001", "reason": "no face found"}]
    with open_store(tmp_path / "none.h5") as st:
        assert tuple(st.load().x.shape) == (0, T, 3, HW, HW)
