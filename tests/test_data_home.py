"""The three commands as a new user types them, in a temporary data home ($FERBENCH_HOME): `ferbench prepare ck+`
finds raw/ck+ and writes prepared/ck+.h5; `ferbench evaluate --protocol loso` finds the prepared datasets the
protocol lists; `ferbench leaderboard` reads runs/ with no option. Missing data is one line, checked word for word."""

from __future__ import annotations

import re

import json

import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import synth

runner = CliRunner()


def _run(*args: str):
    res = runner.invoke(app, list(args))
    assert "Traceback" not in res.output, res.output
    return res


def _one_line(res) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    return lines[0]


@pytest.mark.slow
def test_the_three_commands_as_typed(home, tmp_path):
    raw = home / "raw" / "ck+"
    assert _one_line(_run("prepare", "ck+")) == (
        f"error: no raw ck+ data at {raw} (looked there because of the data home; FERBENCH_HOME={home}). "
        "Expected layout: cohn-kanade-images/S005/001/S005_001_00000011.png; "
        "Emotion/S005/001/S005_001_00000011_emotion.txt (one float 0-7, labels the last frame; none = unlabelled); "
        "optional FACS/.../*_facs.txt and Landmarks/.../*_landmarks.txt. Obtain it from its owners at the University "
        "of Pittsburgh / Carnegie Mellon University (the CK+ request form on Jeffrey Cohn's site, "
        "jeffcohn.net/Resources; a signed licence agreement). Then put it (or a symlink to it) at "
        f"{raw}, run `ferbench config set raw.ck+ /path/to/it`, or pass --root /path/to/it. To try the tool first "
        "on a replica: `ferbench synth ck+ ck+-replica`, then `ferbench prepare ck+ --root ck+-replica --out "
        "ck+-replica.h5`.")
    assert _one_line(_run("evaluate", "--protocol", "loso")) == (
        f"error: protocol loso found no prepared file in the data home ({home / 'prepared'}) for mmi, casme2; "
        "prepare them first: `ferbench prepare mmi`; `ferbench prepare casme2` (or pass --data FILE.h5)")

    synth("ck+", tmp_path / "CK+", subjects=1, seed=0)  # one subject: what is tested is where files are found
    raw.parent.mkdir(parents=True)
    raw.symlink_to(tmp_path / "CK+", target_is_directory=True)  # symlinks welcome
    res = _run("prepare", "ck+")  # exactly as typed: the default MTCNN aligner, the default output
    assert res.exit_code == 0, res.output
    assert (home / "prepared" / "ck+.h5").is_file()

    synth("casme2", home / "raw" / "casme2", subjects=2, seed=0)
    res = _run("prepare", "casme2", "--aligner", "none")
    assert res.exit_code == 0, res.output
    assert re.search(r"^prepare casme2: (\d+)/\1 \(100%\), \d+ s elapsed$", res.output, re.M), res.output  # plain lines
    res = _run("evaluate", "--protocol", "loso", "--model", "static", "--recipe", "quick", "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "prepared in the data home: casme2; missing: mmi (`ferbench prepare mmi`)" in res.output
    assert len(list((home / "runs").rglob("r*-f*.json"))) == 2  # leave-one-subject-out over two subjects
    res = _run("leaderboard", "--format", "md", "--out", str(tmp_path / "lb"))
    assert res.exit_code == 0, res.output
    assert "casme2 · loso" in (tmp_path / "lb" / "leaderboard.md").read_text()

    # --data takes a dataset name; `ferbench datasets` is the status page
    res = _run("evaluate", "--protocol", "loso", "--data", "casme2", "--model", "static", "--recipe", "quick",
               "--epochs", "1", "--json")  # the name resolves to prepared/casme2.h5: the same tasks, reused
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["ran"] == [] and len(summary["skipped"]) == 2
    assert _one_line(_run("evaluate", "--protocol", "loso", "--data", "mmi")) == (
        f"error: no prepared mmi file at {home / 'prepared' / 'mmi.h5'}; run `ferbench prepare mmi` first "
        "(or pass the path of a .h5 file)")
    status = {r["dataset"]: r for r in json.loads(_run("datasets", "--json").output)["datasets"]}
    from ferbench.harness.fingerprint import data_fingerprint

    ck = status["ck+"]
    assert ck["raw_present"] and ck["prepared_present"] and ck["subjects"] == 1 and ck["samples"] > 0
    assert ck["fingerprint"] == data_fingerprint(home / "prepared" / "ck+.h5")[:10]
    assert not status["mmi"]["raw_present"] and not status["mmi"]["prepared_present"]
    text = _run("datasets").output
    assert f"found: {raw}" in text and "none (first the raw data: `ferbench datasets --layout`; or try the tool on " \
        "a replica: `ferbench synth mmi DIR`)" in text  # no raw mmi: `ferbench prepare mmi` would only fail


def test_config_points_a_dataset_elsewhere(home, tmp_path):
    elsewhere = tmp_path / "datasets" / "CK+"
    elsewhere.mkdir(parents=True)
    res = _run("config", "set", "raw.ck+", str(elsewhere))
    assert res.exit_code == 0 and (home / "config.toml").is_file()
    line = _one_line(_run("prepare", "ck+"))
    assert str(elsewhere) in line and "cohn-kanade-images" in line  # it looked there, and says what it expected
    assert _one_line(_run("config", "set", "raw.nope", str(elsewhere))).startswith("error: unknown dataset")
    assert _run("--version").output.startswith("ferbench ")
