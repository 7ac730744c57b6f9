"""Data larger than memory: a memory budget picks resident or streamed frames; streamed batches are the resident
ones, byte for byte, so predictions do not depend on the mode; a streamed source holds a bounded number of
batches whatever the size of the file; a bad `--memory-budget` is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.cli import app
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.harness.data import held_bytes, open_data
from ferbench.harness.memory import Budget, parse_bytes
from ferbench.harness.sources import PREFETCH_DEPTH, ResidentFrames, StreamedFrames
from ferbench.harness.train import batches
from ferbench.records import read_record
from ferbench.store import open_store

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def au_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("stream") / "bp.h5", dataset="bp4d", subjects=2, au_names=(1, 2))


def _both(path: Path, index: str) -> tuple[ResidentFrames, StreamedFrames]:
    """The resident and the streamed source of one index of one file."""
    d = open_data(path)
    resident = d.source(index, CPU, Budget(2**40, explicit=True))
    streamed = d.source(index, CPU, Budget(1, explicit=True))
    assert (resident.mode, streamed.mode) == ("resident", "streamed")
    return resident, streamed


@pytest.mark.parametrize("index", ["clip", "states", "native"])
def test_streamed_batches_are_the_resident_ones(au_store, index):
    resident, streamed = _both(au_store, index)
    assert resident.ids == streamed.ids
    gen = torch.Generator().manual_seed(3)
    order = batches(len(resident.ids), 5, gen)
    streamed.plan_clips(order[:-1])  # read ahead all but the last; the last is read when asked for
    for pos in order:
        (xr, lr), (xs, ls) = resident.gather_clips(pos), streamed.gather_clips(pos)
        assert xr.dtype == xs.dtype == torch.uint8 and torch.equal(xr, xs) and torch.equal(lr, ls)
    shuffled = order[::-1]
    streamed.plan_clips(shuffled)
    assert torch.equal(streamed.gather_clips(shuffled[1])[0], resident.gather_clips(shuffled[1])[0])  # off plan


def test_streamed_windows_and_au_labels_are_the_resident_ones(au_store):
    resident, streamed = _both(au_store, "native")
    pos = torch.tensor([0, 3, 3, 7, 11])
    local = torch.tensor([0, 2, 7, 5, 1])  # windows reaching before the first frame repeat it
    streamed.plan_windows([(pos, local)], 6)
    assert torch.equal(resident.gather_windows(pos, local, 6), streamed.gather_windows(pos, local, 6))
    assert torch.equal(resident.unit_aus(pos, local), streamed.unit_aus(pos, local))


def test_other_chunk_layouts_read_the_same_frames(tmp_path, au_store):
    """A store whose frames are not one-frame chunks (older or hand-made files) is read by slices: same frames."""
    copy = tmp_path / "contiguous.h5"
    copy.write_bytes(au_store.read_bytes())
    with h5py.File(copy, "r+") as f:
        frames = f["frames"][...]
        del f["frames"]
        f.create_dataset("frames", data=frames)  # contiguous, uncompressed
    wanted = np.array([0, 1, 2, 9, 10, 30])
    with open_store(au_store) as a, open_store(copy) as b:
        assert np.array_equal(a.read_frames(wanted), frames[wanted])
        assert np.array_equal(b.read_frames(wanted), frames[wanted])


@pytest.mark.parametrize("layout", [{}, {"compression": "gzip", "shuffle": True}, {"compression": "lzf"}])
def test_one_frame_chunks_raw_or_with_other_filters_read_the_same_frames(tmp_path, au_store, layout):
    """One-frame chunks stored raw are read chunk by chunk as they are; with a filter zlib alone cannot undo
    (shuffle, lzf) they are read by slices: the same frames either way, never raw filtered bytes."""
    copy = tmp_path / "layout.h5"
    copy.write_bytes(au_store.read_bytes())
    with h5py.File(copy, "r+") as f:
        frames = f["frames"][...]
        del f["frames"]
        f.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]), **layout)
    wanted = np.array([0, 1, 2, 9, 10, 30, len(frames) - 1])
    with open_store(copy) as b:
        assert np.array_equal(b.read_frames(wanted), frames[wanted])


def test_a_budget_smaller_than_the_frames_streams_them_and_holds_at_most_the_prefetch_depth(tmp_path):
    """The streamed source's own buffer never holds more than PREFETCH_DEPTH batches (the stated constant,
    beside the batch in use), read through a whole shuffled epoch; nothing of the file stays resident."""
    path = make_store(tmp_path / "big.h5", subjects=6, per=8)
    d = open_data(path)
    need = d.resident_bytes("clip")
    budget = Budget(need - 1, explicit=True)
    src = d.source("clip", CPU, budget)
    assert src.mode == "streamed" and budget.mode() == "streamed" and budget.used == 0
    assert d.held_bytes("cpu") == 0
    bs = 4
    order = batches(len(src.ids), bs, torch.Generator().manual_seed(0))
    src.plan_clips(order)
    for pos in order:
        src.gather_clips(pos)
    per_batch = bs * d.length * 3 * d.size * d.size
    assert 0 < src.prefetch.peak <= PREFETCH_DEPTH * per_batch
    assert d.source("clip", CPU, Budget(need, explicit=True)).mode == "resident"  # the same frames fit exactly


def test_a_budget_releases_frames_another_task_left_resident(tmp_path):
    """A worker process keeps frames between tasks; a task whose budget cannot hold them beside its own frames
    releases them first, so the process holds at most the budget."""
    a, b = make_store(tmp_path / "a.h5", subjects=2), make_store(tmp_path / "b.h5", subjects=2, seed=1)
    da, db = open_data(a), open_data(b)
    da.source("clip", CPU, Budget(2**40, explicit=True))
    before = held_bytes("cpu")
    assert da.held_bytes("cpu") > 0
    room = Budget(db.resident_bytes("clip"), explicit=True)
    assert db.source("clip", CPU, room).mode == "resident"
    assert da.held_bytes("cpu") == 0 and held_bytes("cpu") <= before - da.resident_bytes("clip") + room.total


@pytest.mark.slow
def test_predictions_are_identical_resident_and_streamed(prepared_replica, tmp_path):
    """The same seed gives the same records (curve, probabilities) with the frames resident or streamed:
    a clip model with augmentation, and a two-stage model whose stage 1 reads the expression-state frames."""
    data = prepared_replica("ck+", 2, aligner="none", size=32)
    proto = write_protocol(tmp_path, "t-loso")
    runs = {}
    for mode, budget in (("resident", None), ("streamed", "1")):
        res = evaluate(data, proto, models="static,mo-cnn-lstm", recipe="quick", device="cpu", out=tmp_path / mode,
                       model_options=TINY, augment="stc-nlstm", memory_budget=budget, **TWO_EPOCHS)
        assert not res.failed and len(res.records) == 4
        runs[mode] = {r["task_id"]: r for r in map(read_record, res.records)}
    assert runs["resident"].keys() == runs["streamed"].keys()
    for task, r in runs["resident"].items():
        s = runs["streamed"][task]
        assert (r["config"]["data_mode"], s["config"]["data_mode"]) == ("resident", "streamed")
        assert s["config"]["memory_budget"] == 1 and r["config"]["memory_budget"] > 1
        assert r["probabilities"] == s["probabilities"] and r["curve"] == s["curve"]
        assert r["fingerprints"] == s["fingerprints"]  # the mode is not part of the task's identity


@pytest.mark.parametrize("text, expected", [("4GiB", 4 * 2**30), ("500MB", 500 * 10**6), ("123", 123),
                                            ("1.5 KiB", 1536), ("2g", 2 * 10**9), (4096, 4096)])
def test_memory_budget_sizes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "0", "-1GiB", "4 XB", "1e9", "", "1" + "0" * 400])
def test_a_bad_memory_budget_is_one_line_and_exit_2_before_any_work(tmp_path, bad):
    data = make_store(tmp_path / "d.h5", subjects=2)
    proto = write_protocol(tmp_path, "t-loso")
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--protocol", str(proto), "--out", str(out),
                                      "--memory-budget", bad])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "--memory-budget" in lines[0] and "Traceback" not in result.output
    assert not out.exists()
    with pytest.raises(FerbenchError, match="--memory-budget"):
        parse_bytes(bad)


def test_the_plan_says_how_many_bytes_of_frames_and_whether_they_stream(tmp_path):
    """Before a long run the plan names the frames every task reads against the budget, so a researcher knows
    that FERV39k will stream before the first epoch, not after an out-of-memory kill."""
    from ferbench.harness import plan_run
    from ferbench.harness.memory import format_bytes, frames_line

    data = make_store(tmp_path / "d.h5", subjects=2)
    proto = write_protocol(tmp_path, "t-loso")
    d = open_data(data)
    states, native, clip = (d.resident_bytes(i) for i in ("states", "native", "clip"))
    # static reads the expression-state frames; mo-cnn-lstm its clips' native frames, and states in stage 1
    default = plan_run(data, proto, out=tmp_path / "runs", models="static,mo-cnn-lstm", recipe="quick").frames
    assert default.startswith(f"frames: d.h5 states {format_bytes(states)}, d.h5 native {format_bytes(native)}; "
                              "budget ")
    assert default.endswith("(default: half the available memory): resident (loaded once per process)")
    # stc-nlstm reads clips only: each task's frames fit, both indexes at once do not
    fits_each = plan_run(data, proto, out=tmp_path / "runs", models="static,stc-nlstm", recipe="quick",
                         memory_budget=max(clip, states)).frames
    assert fits_each.endswith("(--memory-budget): resident (frames a task does not read are released for those "
                              "it reads)")
    needs = {"d.h5 states": states, "d.h5 native": native}
    assert frames_line(needs, states + native, 1, CPU, False) == (
        f"frames: d.h5 states {format_bytes(states)}, d.h5 native {format_bytes(native)}; budget 1 B per task "
        "process (--memory-budget): streamed from the file where a task's frames exceed it (same predictions, "
        "bounded memory)")
    assert "each worker decides" in frames_line(needs, native, None, CPU, True)
    assert "budget 1 B per task process (--memory-budget): streamed" in frames_line(needs, native, 1, CPU, True)
