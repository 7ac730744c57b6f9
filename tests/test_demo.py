"""`ferbench demo`: synth -> prepare -> evaluate -> leaderboard on the temporal-order replica, end to end."""

import json

import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.metrics import summarize

runner = CliRunner()


@pytest.mark.slow
def test_demo_runs_every_stage_and_its_leaderboard_matches_the_records(tmp_path):
    work = tmp_path / "demo"
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--workdir", str(work), "--model", "static", "--subjects", "3", "--workers", "0"],
                           env={"FERBENCH_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert not home.exists()  # the demo keeps to its own folder: leaderboards under --workdir, not the data home
    # not on a terminal (as under CliRunner, or with stderr redirected): a plan line, then one line per task
    assert "plan: 3 task(s) to run, 0 reused" in result.output
    assert [line.split(":")[0] for line in result.output.splitlines() if line.startswith("done ")] == [
        f"done {i + 1}/3 order static/subject-3fold/r0/f{i}" for i in range(3)]
    for stage in ("1/4 synth", "2/4 prepare", "3/4 evaluate", "4/4 leaderboard"):
        assert stage in result.output
    assert "Replica data" in result.output
    html = work / "leaderboards" / "leaderboard.html"
    assert f"leaderboard (html): {html}" in result.output.replace("\n", "")
    records = [json.loads(p.read_text()) for p in sorted((work / "runs").rglob("*.json"))]
    assert len(records) == 3  # subject-3fold: one record per fold
    subjects = {s for r in records for s in r["subjects"]}
    assert len(subjects) == 3 and all(r["model"] == "static" and r["dataset"] == "order" for r in records)
    rows = json.loads((work / "leaderboards" / "leaderboard.json").read_text())["rows"]
    (row,) = [r for r in rows if r.get("model") == "static" and not r.get("reported_only")]
    expected = summarize(records)["scores"]["accuracy"]
    assert row["trials"] == 3 and row["mean"] == pytest.approx(expected["mean"])
    assert "static" in html.read_text()


def test_demo_refuses_too_few_subjects_before_any_work(tmp_path):
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "d"), "--subjects", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_protocol_for_another_dataset_before_any_work(tmp_path):
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "d"), "--protocol", "3fold"])
    assert result.exit_code == 2 and "3fold" in result.output and "order" in result.output
    assert not (tmp_path / "d").exists()
