"""Cases the second hostile pass (issue 27's closing pass) found noisy or wrong, through the real CLI: the
leaderboard never replaces a file of the same name it did not write; a held runs folder is refused before a
plan is shown; a failed `models --check` says so in one line on stderr; a folder where config.toml belongs is
named; an --epochs no run could finish is refused; a broken plugin is warned about on stderr."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from _harness_data import write_protocol
from _leaderboard_records import make_record, write_record
from _replicas import REPLICAS
from ferbench.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _runs(folder: Path) -> Path:
    for f in range(2):
        write_record(folder, make_record("stc", "10fold", "ck+", 0, f, rng=np.random.default_rng(f)))
    return folder


def test_leaderboard_never_replaces_a_file_of_its_name_it_did_not_write(tmp_path):
    runs, out = _runs(tmp_path / "runs"), tmp_path / "lb"
    out.mkdir()
    (out / "leaderboard.md").write_text("my own notes\n")
    before = _files(tmp_path)
    res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--out", str(out)], env=WIDE)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "leaderboard.md" in res.stderr and "not a leaderboard" in res.stderr
    assert res.stdout == "" and _files(tmp_path) == before  # no table printed, nothing written or replaced
    (out / "leaderboard.md").unlink()
    for _ in range(2):  # its own files are replaced on the next run
        res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--out", str(out), "--per-fold"], env=WIDE)
        assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.html", "leaderboard.csv",
                                               "leaderboard.json", "leaderboard-folds.csv"}


def test_evaluate_names_the_run_holding_the_folder_before_any_plan(prepared_replica, tmp_path):
    data = prepared_replica("ck+", **REPLICAS["ck+"])  # the session's shared replica: 2 subjects, 2 folds
    proto = write_protocol(tmp_path, "t-2fold", splitter="stratified-group-kfold", params={"n_splits": 2})
    runs, held = tmp_path / "runs", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from ferbench.records import RunsLock; "
                               f"RunsLock({str(runs)!r}).acquire(); open({str(held)!r}, 'w').close(); time.sleep(60)"])
    try:
        for _ in range(600):
            if held.exists():
                break
            time.sleep(0.1)
        res = runner.invoke(app, ["evaluate", "--protocol", str(proto), "--data", str(data), "--model", "static",
                                  "--recipe", "quick", "--epochs", "1", "--device", "cpu", "--out", str(runs)], env=WIDE)
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: another ferbench evaluate is writing"), res.stderr
    assert "plan:" not in res.output and res.stderr.count("\n") == 1


def test_a_failed_models_check_is_one_line_on_stderr(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from torch import nn\n"
        "class Wide(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__(); self.lin = nn.Linear(3, num_classes + 3)\n"
        "    def forward(self, x, lengths=None):\n"
        "        return self.lin(x.mean(dim=(1, 3, 4)))\n")
    spec = f"{tmp_path}/mine.py:Wide"
    res = runner.invoke(app, ["models", "--check", spec], env=WIDE)
    assert res.exit_code == 2, res.output
    assert "DOES NOT FIT returns logits" in res.stdout  # the checklist stays the report
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: model 'Wide'")
    assert "mine.py:Wide" in res.stderr and "does not fit the contract: returns logits" in res.stderr


def test_a_folder_where_config_toml_belongs_is_named(tmp_path):
    (tmp_path / "home" / "config.toml").mkdir(parents=True)
    for args in (["config", "show"], ["datasets"]):
        res = runner.invoke(app, args, env={"FERBENCH_HOME": str(tmp_path / "home"), **WIDE})
        assert res.exit_code == 2, res.output
        assert "config.toml: is not a file" in res.stderr and res.stdout == ""


def test_an_epochs_no_run_could_finish_is_refused_before_any_folder(prepared_replica, tmp_path):
    data = prepared_replica("ck+", **REPLICAS["ck+"])
    res = runner.invoke(app, ["evaluate", "--protocol", "10fold", "--data", str(data), "--model", "static",
                              "--epochs", "99999999999999999999", "--out", str(tmp_path / "runs")], env=WIDE)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: --epochs must be a whole number from 1 to 10000")
    assert not (tmp_path / "runs").exists()


def test_a_broken_plugin_is_warned_about_on_stderr(tmp_path):
    site = tmp_path / "site"
    info = site / "brokenpkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ferbench.models]\nbroken = nosuchmodule_abc:make\n")
    env = {"PYTHONPATH": f"{Path(__file__).parents[1]}:{site}", "FERBENCH_HOME": str(tmp_path / "home"),
           "PATH": "/usr/bin:/bin", **WIDE}
    res = subprocess.run([sys.executable, "-m", "ferbench.cli", "models"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "plugin 'broken' of brokenpkg" in res.stderr and "broken" not in res.stdout
    assert "stc-nlstm" in res.stdout


def test_a_model_file_without_its_name_says_what_is_missing(tmp_path):
    (tmp_path / "mine.py").write_text("X = 1\n")
    res = runner.invoke(app, ["models", "--check", f"{tmp_path}/mine.py"], env=WIDE)
    assert res.exit_code == 2, res.output
    assert f"names a file but not the model in it; expected {tmp_path}/mine.py:Name" in res.stderr, res.stderr


def test_config_set_never_drops_what_the_user_wrote_in_config_toml(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    text = '# where my datasets live\n[raw]\n"ck+" = "/tmp"\n\n[mine]\nx = 1\n'
    (home / "config.toml").write_text(text)
    res = runner.invoke(app, ["config", "set", "raw.mmi", str(tmp_path)], env={"FERBENCH_HOME": str(home), **WIDE})
    assert res.exit_code == 2, res.output
    assert "config.toml: holds the table(s) mine" in res.stderr and res.stderr.count("\n") == 1
    assert (home / "config.toml").read_text() == text
    (home / "config.toml").write_text('[raw]\n"ck+" = "/tmp"\n')  # its own content is rewritten, keys kept
    for key in ("raw.mmi", "raw.casme2"):
        res = runner.invoke(app, ["config", "set", key, str(tmp_path)], env={"FERBENCH_HOME": str(home), **WIDE})
        assert res.exit_code == 0, res.output
    assert all(f'"{k}"' in (home / "config.toml").read_text() for k in ("ck+", "mmi", "casme2"))
