"""Folders the CLI writes into (the data home, leaderboard --out; prepare's in test_prepare_safety) and paths it
stores: one line naming the folder and what is wrong with it, exit 2, before any work, nothing written; never an
OS error after the work (exit 1), never a data home that is a file read as an empty one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _harness_data import make_store, write_protocol
from _leaderboard_records import make_record, write_record
from ferbench.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one line stays one line


def _one_line(res) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    """A regular file of the user's where a folder is expected (what the commands must leave as it is)."""
    path = tmp_path / "notes.txt"
    path.write_text("mine\n")
    return path


def test_an_empty_raw_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # the folder an empty path would have been resolved to
    line = _one_line(runner.invoke(app, ["config", "set", "raw.ck+", ""], env=WIDE))
    assert line == "error: raw.ck+: empty path; expected the folder of the ck+ dataset as its owners distribute it"
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("under", [False, True], ids=["home-is-a-file", "home-under-a-file"])
@pytest.mark.parametrize("args", [["config", "set", "raw.ck+", "."], ["config", "show"], ["datasets"],
                                  ["datasets", "--json"], ["leaderboard"]], ids=" ".join)
def test_a_data_home_that_is_a_file_is_named(a_file, monkeypatch, args, under):
    home = a_file / "home" if under else a_file
    monkeypatch.setenv("FERBENCH_HOME", str(home))
    line = _one_line(runner.invoke(app, args, env=WIDE))
    what = f"lies under {a_file}, a file" if under else "is a file, not a folder"
    assert line == f"error: the data home ($FERBENCH_HOME) {home}: {what}", line
    assert a_file.read_text() == "mine\n"


def _runs(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for model in ("static", "stc-nlstm"):
        for fold in range(2):
            write_record(folder, make_record(model, "10fold", "ck+", 0, fold, rng=rng))
    return folder


def test_a_leaderboard_out_under_a_file_is_refused_before_the_table(tmp_path, a_file):
    out = a_file / "boards"
    res = runner.invoke(app, ["leaderboard", "--runs", str(_runs(tmp_path / "runs")), "--out", str(out)], env=WIDE)
    line = _one_line(res)  # not the whole table first, then an OS error and exit 1
    assert line == f"error: --out (the folder of the leaderboard files) {out}: lies under {a_file}, a file", line
    assert a_file.read_text() == "mine\n"


def test_a_fold_list_under_a_file_is_refused_before_the_folds(tmp_path, a_file):
    data = make_store(tmp_path / "d.h5")
    out = a_file / "folds.csv"
    res = runner.invoke(app, ["folds", "--data", str(data), "--protocol", str(write_protocol(tmp_path, "t-loso")),
                              "--out", str(out)], env=WIDE)
    assert _one_line(res) == f"error: the folder of --out {a_file}: is a file, not a folder"  # no fold table first


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a folder without write permission, and a "
                    "read-only mount needs privileges a test should not take; the check is os.access, which also "
                    "answers for a read-only mount as root")
def test_read_only_folders_are_refused_before_any_work(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    boards = tmp_path / "boards"
    boards.mkdir()
    runs = _runs(tmp_path / "runs")
    home.chmod(0o555)
    boards.chmod(0o555)
    try:
        line = _one_line(runner.invoke(app, ["config", "set", "raw.ck+", str(tmp_path)], env={
            **WIDE, "FERBENCH_HOME": str(home)}))
        assert line == f"error: the data home ($FERBENCH_HOME) {home}: is not writable", line
        line = _one_line(runner.invoke(app, ["leaderboard", "--runs", str(runs), "--out", str(boards)], env=WIDE))
        assert line == f"error: --out (the folder of the leaderboard files) {boards}: is not writable", line
    finally:
        home.chmod(0o755)
        boards.chmod(0o755)
    assert list(home.iterdir()) == [] and list(boards.iterdir()) == []
