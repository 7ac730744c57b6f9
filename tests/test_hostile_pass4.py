"""Cases the fourth hostile pass found wrong, over the plan's frames line, $FERBENCH_READ_THREADS, the streamed
read path and prepare's plain progress lines: each fails on the code before its fix.

- a data file copied over in place (`cp`, same inode) after `plan_run` failed `evaluate` with h5py's bare
  OSError naming no file: the plan's handle, still open, lent HDF5 its stale structure;
- a data file replaced during a run: the later tasks read the new file and their records were written under
  the old file's data fingerprint (reused later against the old file);
- FERBENCH_READ_THREADS=² (a digit to str.isdigit, not to int) was a traceback, not the one-line refusal;
- the plan's frames line counted the test file's expression-state frames on a cross-dataset run (no task reads
  them: "streamed" where every task's frames fit) and left out a transfer protocol's source file (read by every
  task under the same budget: "resident" where the run streams);
- reading no frames (an empty list) through the chunk reader was numpy's ValueError; h5py's path gives (0, H, W, 3);
- `ferbench prepare ... 2>&-` (stderr closed) died before writing anything (io_errors wrote to sys.stderr, None),
  and with an unwritable stderr (a script's fd 2, a broken log pipe) its first progress line stopped the whole
  prepare, blamed on the output file ("c1.h5: Bad file descriptor").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.cli import app
from ferbench.harness import evaluate, plan_run
from ferbench.store import open_store
from ferbench.store.chunks import read_threads

QUICK = dict(models="static", recipe="quick", device="cpu", model_options=TINY, **TWO_EPOCHS)


def _copy_over(src, dst) -> None:
    """What `cp src dst` does to an existing dst: the same inode, truncated and rewritten."""
    ino = os.stat(dst).st_ino
    with open(src, "rb") as a, open(dst, "r+b") as b:
        b.truncate(0)
        shutil.copyfileobj(a, b)
    assert os.stat(dst).st_ino == ino


# ------------------------------------------------------------------------------------- the plan's open files
@pytest.mark.parametrize("budget", ["1", None])
def test_a_file_copied_over_in_place_after_the_plan_is_read_as_the_new_file(tmp_path, budget):
    data = make_store(tmp_path / "d.h5", subjects=2)
    other = make_store(tmp_path / "other.h5", subjects=3, seed=5)
    proto = write_protocol(tmp_path, "t-loso")
    plan = plan_run(data, proto, out=tmp_path / "runs", memory_budget=budget, **QUICK)
    assert plan.frames.startswith("frames: d.h5 states") and plan.folds == 2
    _copy_over(other, data)
    res = evaluate(data, proto, out=tmp_path / "runs", memory_budget=budget, **QUICK)
    assert not res.failed and len(res.ran) == 3  # the new file's three subjects, read through a fresh handle
    tested = sorted(i for p in res.records for i in json.loads(p.read_text())["sample_ids"])
    assert tested == sorted(f"S{s:02d}_{j:02d}" for s in range(3) for j in range(6))


def test_a_file_replaced_during_a_run_writes_no_record_under_the_old_fingerprint(tmp_path):
    data = make_store(tmp_path / "d.h5", subjects=3)
    changed = tmp_path / "changed.h5"
    shutil.copy(data, changed)
    with h5py.File(changed, "r+") as f:
        f["frames"][...] = 255 - f["frames"][...]  # the same samples, other pixels
    proto = write_protocol(tmp_path, "t-loso")
    done: list[str] = []

    def progress(event: dict) -> None:
        if event.get("event") == "task-done" and not done:
            done.append(event["task_id"])
            os.replace(changed, data)  # a new file (inode) under the run's path after its first task

    res = evaluate(data, proto, out=tmp_path / "runs", memory_budget="1", progress=progress, **QUICK)
    assert res.ran == done and len(res.records) == 1
    assert sorted(res.failed) == ["static/t-loso/r0/f1", "static/t-loso/r0/f2"]
    assert all("changed on disk during the run" in m and str(data) in m for m in res.failed.values())
    again = evaluate(data, proto, out=tmp_path / "runs", memory_budget="1", **QUICK)  # the new file: all rerun
    assert not again.failed and len(again.ran) == 3 and not again.skipped


# ------------------------------------------------------------------------------------ $FERBENCH_READ_THREADS
@pytest.mark.parametrize("bad", ["\u00b2", "\u0663", "2.0", "1_0", "0", "-1", "abc"])
def test_a_bad_read_threads_value_is_one_line_and_exit_2_before_any_work(tmp_path, monkeypatch, bad):
    data = make_store(tmp_path / "d.h5", subjects=2)
    proto = write_protocol(tmp_path, "t-loso")
    out = tmp_path / "runs"
    monkeypatch.setenv("FERBENCH_READ_THREADS", bad)
    result = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--protocol", str(proto), "--out", str(out),
                                      "--model", "static", "--recipe", "quick", "--epochs", "1"])  # quick if let through
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: FERBENCH_READ_THREADS must be a whole number >= 1")
    assert not out.exists()


def test_read_threads_takes_a_whole_number_with_spaces_around_it(monkeypatch):
    monkeypatch.setenv("FERBENCH_READ_THREADS", " 2 ")
    assert read_threads() == 2


# --------------------------------------------------------------------------------------- the plan's frames line
def test_the_frames_line_counts_what_a_cross_dataset_task_reads_and_the_run_agrees(tmp_path):
    """kim2017's stage 1 trains on the training file's expression-state frames only: the test file's states are
    read by no task (the line listed them, and called a budget that holds every task's frames too small)."""
    from ferbench.harness.data import open_data
    from ferbench.harness.memory import format_bytes

    train = make_store(tmp_path / "train.h5", subjects=2)
    test = make_store(tmp_path / "test.h5", dataset="oulu-casia", subjects=2, seed=3)
    proto = write_protocol(tmp_path, "xd", splitter="train-on-file", test_dataset="oulu-casia",
                           class_map={c: c for c in ("anger", "happiness", "surprise")})
    native, states = (open_data(train).resident_bytes(i) for i in ("native", "states"))
    reads = native + states + open_data(test).resident_bytes("native")
    opts = dict(QUICK, models="mo-cnn-lstm", memory_budget=reads, data_test=test)
    frames = plan_run(train, proto, out=tmp_path / "runs", **opts).frames
    n = format_bytes(native)
    assert frames.startswith(f"frames: train.h5 native {n}, train.h5 states {format_bytes(states)}, test.h5 native {n};")
    assert frames.endswith("(--memory-budget): resident (loaded once per process)")
    res = evaluate(train, proto, out=tmp_path / "runs", **opts)
    assert not res.failed and [json.loads(p.read_text())["config"]["data_mode"] for p in res.records] == ["resident"]


def test_the_frames_line_names_a_transfer_protocols_source_file(tmp_path):
    """Each transfer task first trains on the source file under the task's memory budget: its frames count."""
    target = make_store(tmp_path / "target.h5", dataset="mmi", subjects=2)
    source = make_store(tmp_path / "source.h5", dataset="casme2", subjects=2, seed=2)
    proto = write_protocol(tmp_path, "tr", datasets=("mmi",), pretrain="casme2")
    frames = plan_run(target, proto, out=tmp_path / "runs", data_source=source, memory_budget=1,
                      **dict(QUICK, models="apex-cnn")).frames
    assert frames.startswith("frames: target.h5 states ") and ", source.h5 states " in frames


# ------------------------------------------------------------------------------------------ the chunk reader
def test_reading_no_frames_gives_an_empty_batch_on_either_read_path(tmp_path):
    data = make_store(tmp_path / "d.h5", subjects=1, size=16)
    plain = tmp_path / "plain.h5"
    shutil.copy(data, plain)
    with h5py.File(plain, "r+") as f:
        frames = f["frames"][...]
        del f["frames"]
        f.create_dataset("frames", data=frames)  # contiguous: read through h5py
    for path, chunked in ((data, True), (plain, False)):
        with open_store(path) as st:
            assert (st.chunk_index() is not None) == chunked
            got = st.read_frames(np.zeros(0, np.int64))
            assert got.shape == (0, 16, 16, 3) and got.dtype == np.uint8


# ------------------------------------------------------------------------------ prepare with a broken stderr
@pytest.fixture(scope="module")
def ck_replica(tmp_path_factory):
    from ferbench.datasets import synth

    root = tmp_path_factory.mktemp("ck") / "ck"
    synth("ck+", root, subjects=1)
    return root


@pytest.mark.parametrize("stderr", ["closed", "read-only"])
def test_prepare_with_a_closed_or_unwritable_stderr_still_writes_its_file(ck_replica, tmp_path, stderr):
    out = tmp_path / "ck.h5"
    code = ("import os, sys\n"
            + ("os.close(2)\n" if stderr == "closed" else "os.dup2(os.open(sys.argv[1], os.O_RDONLY), 2)\n")
            + "sys.argv = ['ferbench'] + sys.argv[2:]\nfrom ferbench.cli import main\nmain()\n")
    cmd = [sys.executable, "-c", code, str(out.parent / "ro.txt"), "prepare", "ck+", "--root", str(ck_replica),
           "--out", str(out), "--aligner", "none", "--size", "16", "--workers", "0"]
    (out.parent / "ro.txt").write_text("")
    env = {**os.environ, "FERBENCH_HOME": str(tmp_path / "home")}
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("wrote ") and out.exists()
    with open_store(out) as st:
        assert len(st.samples) > 0
