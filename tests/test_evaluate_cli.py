"""`ferbench evaluate` from the command line: bad input is one line and exit 2, before any work; a kill -9
loses at most the task in flight, and a rerun keeps finished records byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _harness_data import TINY, make_store, write_protocol
from ferbench.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    data = make_store(base / "d.h5")
    truncated = base / "truncated.h5"
    blob = data.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 2])
    text = base / "notes.h5"
    text.write_text("not a store\n")
    many = write_protocol(base, "t-50fold", splitter="stratified-group-kfold", params={"n_splits": 50})
    absent = write_protocol(base, "t-absent", classes=["anger", "contempt"])  # the store has no contempt
    return {"data": data, "truncated": truncated, "text": text, "loso": write_protocol(base, "t-loso"), "base": base,
            "50fold": many, "absent": absent}


def _cli(*args: str) -> list[str]:
    return ["evaluate", *args]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "file not found"),
        ("text", "not an HDF5 file"),
        ("truncated", "truncated"),
        ("protocol", "unknown protocol"),
        ("model", "unknown model 'nope'"),
        ("other-dataset", "is for mmi, casme2"),
        ("epochs", "--epochs must be a whole number from 1 to"),
        ("recipe", "unknown recipe 'fast'"),
        ("scheduler", "cannot reach the dask scheduler"),
        # refused only once the folds are made (make_plan): still before the runs folder is created
        ("50fold", "n_splits"),
        ("absent", "contempt"),
        # an --out that cannot be a folder: refused before the data is opened
        ("out-file", "is a file, not a folder"),
        ("out-under-file", "lies under"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, case, expected):
    data, proto, extra = str(files["data"]), str(files["loso"]), []
    if case == "missing":
        data = str(tmp_path / "nope.h5")
    elif case in ("text", "truncated"):
        data = str(files[case])
    elif case == "protocol":
        proto = "no-such-protocol"
    elif case == "model":
        extra = ["--model", "static,nope"]
    elif case == "other-dataset":
        proto = "loso"
    elif case == "epochs":
        extra = ["--epochs", "0"]
    elif case == "recipe":
        extra = ["--recipe", "fast"]
    elif case == "scheduler":
        import socket

        with socket.socket() as free:  # a port nobody listens on
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        extra = ["--scheduler", f"tcp://127.0.0.1:{port}"]
    elif case in ("50fold", "absent"):
        proto = str(files[case])
    out = tmp_path / "runs"
    if case.startswith("out-"):
        (tmp_path / "afile").write_text("mine\n")
        out = tmp_path / "afile" / ("runs" if case == "out-under-file" else "")
    result = runner.invoke(app, _cli("--data", data, "--protocol", proto, "--out", str(out), *extra))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.output
    if case in ("missing", "text", "truncated"):
        assert data in lines[0]
    if case.startswith("out-"):
        assert str(out).rstrip("/") in lines[0] and (tmp_path / "afile").read_text() == "mine\n"
    else:
        assert not out.exists()  # refused before any work: not even the runs folder is made


@pytest.mark.slow
def test_kill_9_loses_only_the_task_in_flight(files, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ferbench.cli", "evaluate", "--data", str(files["data"]), "--protocol",
           str(files["loso"]), "--model", "static", "--recipe", "quick", "--epochs", "60", "--threads", "1",
           "--model-options", json.dumps({"static": TINY["static"]}), "--out", str(out), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("r*-f*.json")) and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.read_bytes() for p in out.rglob("r*-f*.json")}
    assert 1 <= len(kept) < 4, "the run must be killed after its first task and before its last"
    for blob in kept.values():
        assert json.loads(blob)["schema"] == "ferbench.record/1"  # whole files only, never half-written
    rerun = runner.invoke(app, cmd[3:])  # the same command again, in process (the kill needed a real one)
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert len(summary["skipped"]) == len(kept) and len(summary["ran"]) == 4 - len(kept)
    assert all(p.read_bytes() == blob for p, blob in kept.items())
    assert len(list(out.rglob("r*-f*.json"))) == 4
    assert summary["summary"][0]["model"] == "static" and summary["summary"][0]["trials"] == 4


def test_a_later_dataset_of_the_protocol_is_refused_before_the_first_runs(prepared_replica, tmp_path, monkeypatch):
    """`evaluate --protocol loso` without --data runs MMI then CASME II from the data home: CASME II's frames
    (24 px) are too small for apex-cnn, and that is said before MMI trains, with no runs folder made."""
    import shutil

    from _replicas import REPLICAS
    from ferbench.home import prepared_path

    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path / "home"))
    prepared_path("mmi").parent.mkdir(parents=True)
    shutil.copy(prepared_replica("mmi", **REPLICAS["mmi"]), prepared_path("mmi"))
    shutil.copy(prepared_replica("casme2", subjects=2, aligner="none", size=24), prepared_path("casme2"))
    out = tmp_path / "runs"
    res = runner.invoke(app, _cli("--protocol", "loso", "--model", "apex-cnn", "--recipe", "quick", "--epochs", "1",
                                  "--batch-size", "8", "--threads", "1", "--model-options",
                                  json.dumps({"apex-cnn": TINY["apex-cnn"]}), "--out", str(out)),
                        env={"COLUMNS": "400"})
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and "needs frames of at least 32x32" in lines[-1], res.output
    assert str(prepared_path("casme2")) in lines[-1] and "Traceback" not in res.output
    assert len(lines) == 2 and lines[0].startswith("prepared in the data home: mmi, casme2"), res.output
    assert not out.exists()  # MMI did not run first
