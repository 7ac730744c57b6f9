"""A runs folder under hostile conditions (issue 27, the second hostile pass): `runs prune` never deletes a
valid record, a nested runs folder or a link; refusals reach stderr in every format; a linked or huge record is
refused by name without stopping the board; a lock names the command that holds it."""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _leaderboard_records import make_record, write_record
from ferbench import records
from ferbench.cli import app

runner = CliRunner()


def _run(runs: Path, model: str, folds: int, created: str, *, fingerprint: str = "a", seed: int = 0) -> list[Path]:
    """One run (key) of `model` on ck+/10fold: `folds` real records written by the record writer."""
    rng = np.random.default_rng(seed)
    paths = []
    for f in range(folds):
        rec = make_record(model, "10fold", "ck+", 0, f, rng=rng)
        rec["fingerprints"]["model"] = fingerprint * 64
        rec["created"] = created
        paths.append(write_record(runs, rec))
    return paths


def _diverged_run(runs: Path, model: str, folds: int, created: str, fingerprint: str) -> list[Path]:
    """A run in which every task diverged (no predictions, no scores), as `evaluate` records it."""
    paths = []
    for f in range(folds):
        rec = make_record(model, "10fold", "ck+", 0, f, rng=np.random.default_rng(f))
        rec.update(status="diverged", sample_ids=[], subjects=[], modes=[], labels=[], predictions=[],
                   probabilities=[], scores={}, created=created, divergence={
                       "what": "training loss", "stage": "end-to-end", "epoch": 2, "last_finite_loss": 1.7})
        rec["fingerprints"]["model"] = fingerprint * 64
        paths.append(write_record(runs, rec))
    return paths


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# item 1 ----------------------------------------------------------------------------------------------------
def test_prune_leaves_a_nested_runs_folder_alone(tmp_path):
    runs = tmp_path / "runs"
    ours = _run(runs, "stc", 2, "2026-11-30T08:00:00+00:00")
    nested = _run(runs / "experiment2", "stc", 6, "2026-11-30T08:00:00+00:00")  # valid at their own keys
    locked = runs / "exp3"  # a runs folder known by its lock only, holding one damaged record
    bad = _run(locked, "lstm", 1, "2026-11-30T08:00:00+00:00")[0]
    bad.write_text("{")
    (locked / records.LOCK_NAME).write_text("")
    for extra in ([], ["--remove-refused"]):
        res = runner.invoke(app, ["runs", "prune", "--runs", str(runs), *extra])
        assert res.exit_code == 0, res.output
        assert all(p.exists() for p in ours + nested + [bad]), res.output
        assert f"left alone: {runs / 'experiment2'} is a runs folder of its own" in res.stderr
        assert f"left alone: {locked} is a runs folder of its own" in res.stderr
        assert "removed 0 record(s) of older runs and 0 refused file(s)" in res.stdout


def test_prune_removes_refused_files_only_when_asked_and_lists_each_first(tmp_path):
    runs = tmp_path / "runs"
    good, damaged = _run(runs, "stc", 2, "2026-11-30T08:00:00+00:00")
    damaged.write_text(damaged.read_text()[:100])
    res = runner.invoke(app, ["runs", "prune", "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    assert damaged.exists() and good.exists()
    assert f"refused: {damaged}: not valid strict JSON" in res.stderr  # refusals go to stderr
    assert "--remove-refused removes 1 of them" in res.stderr
    seen = {}
    plan = records.prune(runs, remove_refused=True,
                         show=lambda plan: seen.update({p: p.exists() for p in plan.removed}))
    assert seen == {damaged: True} and plan.removed == [damaged]  # shown while it still existed ...
    assert not damaged.exists() and good.exists()  # ... then removed; the valid record kept
    damaged.write_text("{")
    res = runner.invoke(app, ["runs", "prune", "--runs", str(runs), "--remove-refused"])
    assert res.exit_code == 0, res.output
    assert res.stdout.index(f"removing (refused): {damaged}") < res.stdout.index("removed 0 record(s) of older runs "
                                                                                 "and 1 refused file(s)")
    assert not damaged.exists() and good.exists()


@pytest.mark.parametrize("case", ["missing-dry-run", "missing", "a-file"])
def test_prune_refuses_a_runs_folder_that_is_not_one_and_creates_nothing(tmp_path, case):
    target = tmp_path / "missing" / "deep"
    if case == "a-file":
        target = tmp_path / "data.h5"
        target.write_bytes(b"\x89HDF\r\n")
    before = _files(tmp_path)
    res = runner.invoke(app, ["runs", "prune", "--runs", str(target)] + (["--dry-run"] if "dry" in case else []))
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0], res.stderr
    assert ("is a file, not a folder" if case == "a-file" else "no such folder") in lines[0]
    assert _files(tmp_path) == before  # nothing created (no missing/, no lock)
    assert target.read_bytes() == b"\x89HDF\r\n" if case == "a-file" else not (tmp_path / "missing").exists()


def test_a_dry_run_writes_nothing_not_even_a_lock(tmp_path):
    runs = tmp_path / "runs"
    old = _run(runs, "stc", 1, "2026-11-29T08:00:00+00:00", fingerprint="a")
    _run(runs, "stc", 1, "2026-11-30T08:00:00+00:00", fingerprint="b")
    os.utime(runs, ns=(10**18, 10**18))  # a lock file made and removed would move the folder's mtime
    res = runner.invoke(app, ["runs", "prune", "--runs", str(runs), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert runs.stat().st_mtime_ns == 10**18 and old[0].exists()
    assert f"would remove (older run): {old[0]}" in res.stdout


# item 13 ---------------------------------------------------------------------------------------------------
def test_prune_keeps_the_latest_run_with_finite_results_and_says_why(tmp_path):
    runs = tmp_path / "runs"
    oldest = _run(runs, "stc", 2, "2026-11-28T08:00:00+00:00", fingerprint="a")
    finite = _run(runs, "stc", 2, "2026-11-29T08:00:00+00:00", fingerprint="b")
    diverged = _diverged_run(runs, "stc", 2, "2026-11-30T08:00:00+00:00", fingerprint="c")
    res = runner.invoke(app, ["runs", "prune", "--runs", str(runs)])
    assert res.exit_code == 0, res.output
    assert all(p.exists() for p in finite + diverged) and not any(p.exists() for p in oldest)
    key = finite[0].parent.name
    assert f"keeping ck+/10fold/stc/{key}: the latest run with finite results; the newer run(s) " \
           f"{diverged[0].parent.name} diverged in every task and are kept too" in res.stdout
    assert "removed 2 record(s) of older runs" in res.stdout


def test_a_lock_names_the_command_that_holds_it(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    kept = _run(runs, "stc", 1, "2026-11-29T08:00:00+00:00", fingerprint="a")
    _run(runs, "stc", 1, "2026-11-30T08:00:00+00:00", fingerprint="b")
    monkeypatch.setattr(sys, "argv", ["ferbench", "evaluate", "--out", str(runs)])
    with records.RunsLock(runs):  # an evaluate writing the folder (this process; flock is per open file)
        res = runner.invoke(app, ["runs", "prune", "--runs", str(runs)])
    assert res.exit_code == 2, res.output
    assert f"another ferbench evaluate is writing {runs} (pid {os.getpid()}) running `ferbench evaluate --out " \
           f"{runs}`" in res.stderr
    assert kept[0].exists()


# item 12 ---------------------------------------------------------------------------------------------------
def test_refusals_reach_stderr_in_every_format(tmp_path):
    runs = tmp_path / "runs"
    good, damaged = _run(runs, "stc", 2, "2026-11-30T08:00:00+00:00")
    damaged.write_text("{")
    for fmt in ("json", "rich"):
        res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--format", fmt, "--out", str(tmp_path / "o")])
        assert res.exit_code == 0, res.output
        assert "1 record file(s) refused" in res.stderr and f"{damaged}: not valid strict JSON" in res.stderr
        assert str(damaged) not in res.stdout  # said once, on stderr
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert [d["path"] for d in doc["refused"]] == [str(damaged)]


def test_links_out_of_the_runs_folder_are_refused_by_name_and_never_removed(tmp_path):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    (good,) = _run(runs, "stc", 1, "2026-11-30T08:00:00+00:00")
    (elsewhere,) = _run(outside, "static", 1, "2026-11-30T08:00:00+00:00")
    linked_record = runs / elsewhere.relative_to(outside)  # at its own key, but a link to a file outside
    linked_record.parent.mkdir(parents=True)
    linked_record.symlink_to(elsewhere)
    (lstm,) = _run(outside / "more", "lstm", 1, "2026-11-30T08:00:00+00:00")
    linked_model = runs / "ck+" / "10fold" / "lstm"  # a model folder linked outside
    linked_model.symlink_to(outside / "more" / "ck+" / "10fold" / "lstm", target_is_directory=True)

    res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--format", "json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "refusing to write" not in res.output
    assert f"{linked_record}: is a link to {elsewhere}; links in a runs folder are not read" in res.stderr
    assert f"{linked_model}: a folder linked to" in res.stderr and "its records are not read" in res.stderr
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert {d["path"] for d in doc["refused"]} == {str(linked_record), str(linked_model)}
    assert {r["model"] for r in doc["rows"] if not r["reported_only"]} == {"stc"}

    for extra in (["--dry-run"], ["--remove-refused"]):
        res = runner.invoke(app, ["runs", "prune", "--runs", str(runs), *extra])
        assert res.exit_code == 0, res.output
        assert f"refused: {linked_record}: is a link" in res.stderr and f"refused: {linked_model}" in res.stderr
        assert "prune never removes the 2 link(s)" in res.stderr
    assert linked_record.is_symlink() and linked_model.is_symlink() and elsewhere.exists() and lstm.exists()
    assert good.exists()


def test_an_oversized_record_is_refused_before_it_is_read(tmp_path):
    runs = tmp_path / "runs"
    (good,) = _run(runs, "stc", 1, "2026-11-30T08:00:00+00:00")
    huge = good.with_name("r00-f01.json")
    with open(huge, "wb") as f:  # sparse: no disk, no time
        f.truncate(records.MAX_RECORD_BYTES + 1)
    tracemalloc.start()
    try:
        scan = records.scan_records(runs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scan.refused == [(huge, f"{records.MAX_RECORD_BYTES + 1} bytes, larger than a task record may be "
                                   f"({records.MAX_RECORD_BYTES} bytes); not read")]
    assert peak < 16 * 2**20, peak  # the 256 MiB were never loaded
    assert [p for p, _ in scan.records] == [good]
    with pytest.raises(records.RecordError, match="larger than a task record may be"):  # a real record, a low cap
        records.read_record(good, runs, max_bytes=good.stat().st_size - 1)


def test_a_record_naming_a_folder_outside_is_refused_not_fatal(tmp_path):
    runs = tmp_path / "runs"
    (good,) = _run(runs, "stc", 1, "2026-11-30T08:00:00+00:00")
    rec = json.loads(good.read_text())
    rec.update(model="..", task_id="../10fold/r0/f0")  # a valid record but for a name no folder may have
    hostile = runs / "ck+" / "10fold" / "x" / good.parent.name / good.name
    hostile.parent.mkdir(parents=True)
    hostile.write_text(json.dumps(rec))
    scan = records.scan_records(runs)
    assert [p for p, _ in scan.records] == [good]
    assert [(p, "cannot name a folder" in why) for p, why in scan.refused] == [(hostile, True)]
