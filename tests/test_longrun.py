"""What a researcher sees during and after a long run, through the real command line: the plan before the first
task, progress over the whole run (plain lines when stderr is not a terminal; totals and ETA kept at 80 columns
on one), leaderboards at 80 columns that keep the trial count and the paper's number, leaderboard files in the
data home, plain flags in --help, and the words and hints a new user meets."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from _harness_data import TINY, make_store, write_protocol
from _leaderboard_records import make_record, write_record
from ferbench.cli import app
from ferbench.harness.progress import ProgressView

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.slow
def test_evaluate_prints_the_plan_then_one_line_per_task_counted_over_every_dataset(home, tmp_path):
    for dataset in ("ck+", "mmi"):
        make_store(home / "prepared" / f"{dataset}.h5", dataset=dataset, subjects=2, per=4)
    proto = write_protocol(tmp_path, "t-two", datasets=("ck+", "mmi"))
    res = runner.invoke(app, ["evaluate", "--protocol", str(proto), "--model", "static", "--recipe", "quick",
                              "--epochs", "1", "--model-options", json.dumps({"static": TINY["static"]})])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "plan: ck+ t-two: 1 model x 1 repeat x 2 folds = 2 tasks (2 to run, 0 reused)" in out
    assert "plan: mmi t-two: 1 model x 1 repeat x 2 folds = 2 tasks (2 to run, 0 reused)" in out
    assert "plan: 4 task(s) to run on cpu, one task at a time" in out
    assert re.search(r"^plan: frames: ck\+\.h5 states [\d.]+ KiB; budget [\d.]+ GiB per task process \(default: "
                     r"half the available memory\): resident \(loaded once per process\)$", out, re.M), out
    assert out.index("plan: mmi") < out.index("done 1/4")  # every dataset planned before the first task
    done = re.findall(r"^done (\d)/(\d) (\S+) static/t-two/r0/f(\d): accuracy (\d+\.\d\d) in \d+ s; "
                      r"elapsed \d+ (?:s|min \d\d s), ETA \d+ (?:s|min \d\d s)$", out, re.M)
    assert [(d[0], d[1], d[2]) for d in done] == [("1", "4", "ck+"), ("2", "4", "ck+"), ("3", "4", "mmi"),
                                                 ("4", "4", "mmi")], out
    assert re.search(r"^estimate: about \d+ s left for 3 task\(s\)$", out, re.M), out
    assert "train s, all folds" in out and "evaluate ━" not in out  # no bar leaked into a non-terminal


def _rendered(width: int, events: list[dict]) -> str:
    """What a terminal of `width` columns last showed of the bar (the final frame, escapes removed)."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, color_system=None)
    with ProgressView(console) as view:
        for ev in events:
            view(ev)
    frames = [ANSI.sub("", f).rstrip() for f in re.split(r"[\r\n]", buf.getvalue())]
    return "\n".join(f for f in frames if f.strip())


def _long_cpu_run() -> list[dict]:
    """A run of 140 mv-lstm tasks on a CPU whose first task took 6 minutes, now in its second task's epoch 3."""
    plan = {"event": "plan", "total": 140, "skipped": 0, "pending": 140, "pending_by_model": {"mv-lstm": 140},
            "rerun": {}, "warnings": [], "protocol": "loso.yaml", "device": "cpu"}
    done = {"event": "task-done", "task_id": "mv-lstm/loso/r0/f0", "model": "mv-lstm", "dataset": "casme2",
            "metric": "uf1", "scores": {"uf1": 0.5}, "seconds": 360.0}
    epoch = {"event": "epoch", "model": "mv-lstm", "repeat": 0, "fold": 1, "stage": "end-to-end", "epoch": 3,
             "epochs": 50, "loss": 1.2345, "val_metric": None}
    return [plan, {"event": "start", "model": "mv-lstm", "repeat": 0, "fold": 0}, done, epoch]


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_bar_keeps_total_elapsed_and_eta_at_80_columns(width):
    shown = _rendered(width, _long_cpu_run())
    bar = [line for line in shown.splitlines() if line.startswith("evaluate")][-1]
    assert len(bar) <= width and "…" not in bar, bar
    # 139 tasks left at the first task's 6 minutes: 13 h 54 min, an estimate rather than -:--:--
    assert re.search(r" 1/140 \d:\d\d:\d\d ETA 13 h 54 min mv-lstm r0 f1 ", bar), bar
    if width == 80:  # the epoch detail goes first: stage and loss dropped, the epoch kept short
        assert bar.endswith("mv-lstm r0 f1 e3/50") and "loss" not in bar, bar
    else:
        assert bar.endswith("mv-lstm r0 f1 end-to-end epoch 3/50 loss 1.2345"), bar
    told = [line for line in shown.splitlines() if line.startswith("estimate:")]
    assert len(told) == 1 and "13 h 54 min left for 139 task(s)" in told[0]
    for way in ("--model", "--recipe quick", "--device cuda", "--workers", "--scheduler"):
        assert way in shown, shown


def _incomplete_board_runs(runs: Path) -> None:
    rng = np.random.default_rng(0)
    for model, trials in (("stc-nlstm", 10), ("static", 3)):  # static is incomplete: 3 of the 10 trials
        for i in range(trials):
            write_record(runs, make_record(model, "10fold", "ck+", i // 5, i % 5, rng=rng, hit=0.8, n=24))


def test_leaderboard_at_80_columns_keeps_trials_and_the_papers_numbers(tmp_path):
    _incomplete_board_runs(tmp_path / "runs")
    res = runner.invoke(app, ["leaderboard", "--runs", str(tmp_path / "runs"), "--format", "rich"],
                        env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert all(len(line) <= 80 for line in lines), res.output
    head = next(line for line in lines if "model" in line and "┃" in line)
    cols = [c.strip() for c in head.strip("┃").split("┃")]
    essential = ["#", "model", "accuracy", "n", "paper"]
    assert [c for c in cols if c in essential] == essential, head
    static = next(line for line in lines if "│ static" in line)
    cell = dict(zip(cols, (c.strip() for c in static.strip("│").split("│"))))
    assert cell["n"] == "3 of 10"  # 3 of the 10 planned trials, visible, not hidden
    dcpn = next(line for line in lines if "│ DCPN" in line)  # a reference row shows the paper's figure
    assert "99.6 ref" in dcpn, dcpn
    assert any(line.startswith("  paper: from yu2018 Table 3") for line in lines), res.output
    assert any(line.startswith("  static: pooled") for line in lines), res.output  # what did not fit, below


def test_leaderboard_files_go_to_the_data_home_and_say_where(home, tmp_path, monkeypatch):
    _incomplete_board_runs(home / "runs")
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    res = runner.invoke(app, ["leaderboard", "--format", "md,csv"])
    assert res.exit_code == 0, res.output
    assert (home / "leaderboards" / "leaderboard.md").is_file() and (home / "leaderboards" / "leaderboard.csv").is_file()
    assert not (cwd / "leaderboards").exists()
    assert f"wrote md: {home / 'leaderboards' / 'leaderboard.md'}" in res.output


def test_help_shows_flags_without_a_value_and_every_kind_of_model():
    res = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    force = next(line for line in res.output.splitlines() if "--force" in line)
    assert "<bool>" not in force and "redo every task" in force, force
    text = " ".join(res.output.split())
    for words in ("path/to/file.py:Name", "package.module:factory", "`ferbench models`"):
        assert words in text, res.output


def test_models_check_names_the_option_the_user_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["models", "--check", "nothere.py:X"], env={"COLUMNS": "300"})
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "nothere.py: model file not found" in lines[0] and "--model" not in lines[0], lines[0]


def test_the_shipped_example_passes_models_check(tmp_path):
    res = runner.invoke(app, ["models", "--example"])
    assert res.exit_code == 0 and res.output == (ROOT / "examples" / "my_model.py").read_text()
    mine = tmp_path / "my_model.py"
    mine.write_text(res.output)
    check = runner.invoke(app, ["models", "--check", f"{mine}:TinyTemporalNet"], env={"COLUMNS": "300"})
    assert check.exit_code == 0 and "TinyTemporalNet fits the contract" in check.output, check.output


def test_missing_raw_data_points_to_a_replica_not_to_prepare(home):
    status = runner.invoke(app, ["datasets"]).output
    mmi = next(line for line in status.splitlines() if "│ mmi" in line)
    assert "ferbench synth mmi DIR" in mmi and "ferbench prepare mmi" not in mmi, mmi
    res = runner.invoke(app, ["prepare", "mmi"])
    assert res.exit_code == 2 and "`ferbench synth mmi mmi-replica`, then `ferbench prepare mmi --root mmi-replica " \
        "--out mmi-replica.h5`" in res.output, res.output


def test_heatmap_with_a_long_class_name_renders_without_layout_warnings():
    from ferbench.leaderboard.html import _png

    names = ["anger", "disgust", "fear", "happiness", "sadness", "a class name far too long for the margin " * 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tight_layout's "Tight layout not applied" was a UserWarning
        png = _png(np.full((6, 6), 1 / 6), names, "mv-lstm")
    assert len(png) > 1000


def test_a_local_dask_cluster_starts_quietly_when_port_8787_is_taken():
    import socket

    from ferbench.cluster import dask_client

    taken = socket.socket()
    try:
        taken.bind(("0.0.0.0", 8787))  # another cluster's (or notebook's) dashboard
    except OSError:
        pass  # already taken by something else: the same situation
    taken.listen()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(2, None) as client:
                assert client.submit(abs, -3).result() == 3
    finally:
        taken.close()
    assert not [w for w in caught if "8787" in str(w.message)], [str(w.message) for w in caught]


def test_plain_progress_lines_come_at_each_tenth_each_minute_and_the_end():
    """A long prepare redirected to a log shows where it is as it goes (a live bar would show nothing until the
    end): a line at each further tenth (not within 10 s of the last), one at least every minute while it moves,
    one at the end, no repeats."""
    from rich.console import Console

    from ferbench.progress_lines import PlainProgress

    console, now = Console(record=True, width=200, force_terminal=False), [0.0]
    lines = PlainProgress("prepare ck+", console, every=60, clock=lambda: now[0])
    for done, at in [(1, 5), (5, 10), (10, 30), (20, 35), (21, 100), (22, 110), (100, 400), (100, 401)]:
        now[0] = at
        lines.update(done, 100)
    assert console.export_text().splitlines() == [
        "prepare ck+: 10/100 (10%), 30 s elapsed, about 4 min 30 s left",
        "prepare ck+: 21/100 (21%), 1 min 40 s elapsed, about 6 min 16 s left",
        "prepare ck+: 100/100 (100%), 6 min 40 s elapsed",
    ]
