"""Cases the fourth hostile pass found wrong, over the plan's frames line, $FERBENCH_READ_THREADS, the streamed
read path and prepare's plain progress lines: each fails on the code before its fix.

- a data file copied over in place (`cp`, same inode) after `plan_run` failed `evaluate` with h5py's bare
  OSError naming no file: the plan's handle, still open, lent HDF5 its stale structure;
- a data file replaced during a run: the later tasks read the new file and their records were written under
  the old file's data fingerprint (reused later against the old file);
- FERBENCH_READ_THREADS=² (a digit to str.isdigit, not to int) was a traceback, not the one-line refusal;
"""

from __future__ import annotations

import json
import os
import shutil

import h5py
import pytest

from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.cli import app
from ferbench.harness import evaluate, plan_run
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
