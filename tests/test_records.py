"""The record contract under hostile use (issue 20): one writer per runs folder, paths that stay inside it,
inert exports, fold lists that never overwrite data, damaged or copied records refused by name, options
checked before any work, a full disk, bundled protocol names that a local file cannot shadow, and API types."""

from __future__ import annotations

import csv
import doctest
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from _leaderboard_records import make_record, rescore, write_record
from ferbench import records
from ferbench.cli import app
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.leaderboard import build_board, write_leaderboard

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(models="static", recipe="quick", model_options={"static": TINY["static"]}, threads=1, **TWO_EPOCHS)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("records")
    return {"data": make_store(base / "d.h5"), "loso": write_protocol(base, "t-loso"), "base": base}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def test_module_examples_hold():
    import ferbench.leaderboard.safe as safe

    for module in (records, safe):
        assert doctest.testmod(module).failed == 0


# 1 -------------------------------------------------------------------------------------------------------
def test_second_writer_refused_with_holder_and_a_killed_holders_lock_recovered(files, tmp_path):
    out = tmp_path / "runs"
    holder_code = ("import sys, time; sys.argv = ['ferbench', 'evaluate', '--out', sys.argv[1]]; "
                   "from ferbench.records import RunsLock; RunsLock(sys.argv[-1]).acquire(); "
                   "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(out)], env=_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FerbenchError) as err:
            evaluate(files["data"], files["loso"], out=out, **QUICK)
        msg = str(err.value)
        assert f"another ferbench evaluate is writing {out} (pid {holder.pid})" in msg
        assert f"running `ferbench evaluate --out {out}`" in msg
        assert not list(out.rglob("r*-f*.json"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / records.LOCK_NAME).exists()  # left behind by kill -9 ...
    res = evaluate(files["data"], files["loso"], out=out, **QUICK)  # ... and recovered
    assert len(res.ran) == 4 and not (out / records.LOCK_NAME).exists()


# 2 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/x", "..", ""])
def test_protocol_names_cannot_leave_the_runs_folder(files, tmp_path, name):
    body = yaml.safe_load(files["loso"].read_text())
    body["name"] = name
    proto = tmp_path / "evil.yaml"
    proto.write_text(yaml.safe_dump(body))
    out = tmp_path / "a" / "b" / "c" / "runs"
    with pytest.raises(FerbenchError, match="cannot name a folder|non-empty string"):
        evaluate(files["data"], proto, out=out, **QUICK)
    assert not out.exists() and not (tmp_path / "escaped").exists()


def test_record_paths_resolve_inside_the_runs_folder(tmp_path):
    rec = make_record("static", "10fold", "ck+", 0, 0, rng=np.random.default_rng(0))
    runs = tmp_path / "runs"
    path = records.write_record(runs, rec)
    assert path.resolve().is_relative_to(runs.resolve())
    assert path.parent.name == records.record_key(rec["fingerprints"]) and path.name == "r00-f00.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (runs / "mmi").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(FerbenchError, match="resolves outside the runs folder"):
        records.write_record(runs, make_record("static", "10fold", "mmi", 0, 0, rng=np.random.default_rng(0)))
    assert not any(elsewhere.iterdir())
    for bad in ("../x", "-rf", "a/b", "x" * 81):
        with pytest.raises(FerbenchError, match="cannot name a folder"):
            records.check_slug(bad, "model")


# 3 -------------------------------------------------------------------------------------------------------
HOSTILE_CLASSES = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "[click](http://evil.example)",
                   "abc\u202edef", "**bold**"]


def test_exports_are_inert(tmp_path):
    rng = np.random.default_rng(3)
    runs = tmp_path / "runs"
    for model in ("static", "stc"):
        for fold in range(2):
            write_record(runs, make_record(model, "10fold", "mmi", 0, fold, rng=rng, classes=HOSTILE_CLASSES, n=14))
    board = build_board(runs)
    out = tmp_path / "out"
    buf = io.StringIO()
    from rich.console import Console

    write_leaderboard(board, ["rich", "md", "csv", "json", "html"], out, per_fold=True,
                      console=Console(file=buf, width=300))
    texts = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    texts["terminal"] = buf.getvalue()
    for name, text in texts.items():
        assert "\u202e" not in text, name  # no bidi override survives in any format
    # CSV: no cell a spreadsheet would run as a formula
    for name in ("leaderboard.csv", "leaderboard-folds.csv"):
        for row in csv.reader(io.StringIO(texts[name])):
            for cell in row:
                assert not cell.startswith(("=", "+", "@")), (name, cell)
                assert not (cell.startswith("-") and not _number(cell)), (name, cell)
    # Markdown: no link, no emphasis, no raw HTML
    md = texts["leaderboard.md"]
    import re

    assert not re.search(r"(?<!\\)\]\(", md)  # no unescaped "](": no link
    assert "[click]" not in md and "**bold**" not in md and "http://evil" not in md
    assert "\\[click\\](http\\://evil.example)" in md
    # JSON keeps the names (minus control characters) as data
    doc = json.loads(texts["leaderboard.json"])
    assert "abcdef" in doc["sections"][0]["classes"]["static"]
    assert "=HYPERLINK(\"http://evil\",\"x\")" in doc["sections"][0]["classes"]["static"]
    assert "Content-Security-Policy" in texts["leaderboard.html"] and "abcdef" in texts["leaderboard.html"]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# 4 -------------------------------------------------------------------------------------------------------
def test_folds_out_never_overwrites_the_data_or_a_foreign_file(files, tmp_path):
    import shutil

    data = tmp_path / "d.h5"
    shutil.copyfile(files["data"], data)
    blob = data.read_bytes()
    base = ["folds", "--data", str(data), "--protocol", str(files["loso"])]
    for extra in ([], ["--force"]):
        res = runner.invoke(app, [*base, "--out", str(data), *extra])
        assert res.exit_code == 2 and "is the data file this command reads" in res.output, res.output
    assert data.read_bytes() == blob
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    res = runner.invoke(app, [*base, "--out", str(notes)])
    assert res.exit_code == 2 and "not a fold list ferbench wrote" in res.output and "--force" in res.output
    assert notes.read_text() == "my,own\n1,2\n"
    folds = tmp_path / "folds.csv"
    for _ in range(2):  # a fold list ferbench wrote may be rewritten
        res = runner.invoke(app, [*base, "--out", str(folds)])
        assert res.exit_code == 0, res.output
    assert folds.read_text().startswith("# fingerprint: ")
    res = runner.invoke(app, [*base, "--out", str(notes), "--force"])
    assert res.exit_code == 0 and notes.read_text().startswith("# fingerprint: ")


# 5 -------------------------------------------------------------------------------------------------------
def _damage(path: Path, how: str) -> str:
    """Damage the record at `path` in one way; return the words the refusal must contain."""
    rec = json.loads(path.read_text())
    text = path.read_text()
    if how == "edited-predictions":
        rec["predictions"] = [(p + 1) % len(rec["classes"]) for p in rec["predictions"]]
        rec["probabilities"] = [[1.0 if j == p else 0.0 for j in range(len(rec["classes"]))]
                                for p in rec["predictions"]]
        text, words = json.dumps(rec), "disagrees with its own predictions"
    elif how == "truncated-float":
        value = rec["scores"]["accuracy"]
        text, words = text.replace(repr(value), f"{value:.2f}", 1), "stored score accuracy"
    elif how == "string-for-number":
        rec["fold"] = str(rec["fold"])
        text, words = json.dumps(rec), "field 'fold' must be an integer"
    elif how == "missing-field":
        del rec["labels"]
        text, words = json.dumps(rec), "lacks field(s) labels"
    elif how == "nan":
        text, words = text.replace(repr(rec["scores"]["uf1"]), "NaN", 1), "not valid strict JSON"
    elif how == "cut-short":
        text, words = text[: len(text) // 2], "not valid strict JSON"
    else:  # argmax: the prediction does not follow from the stored probabilities
        rec["probabilities"][0] = [1.0 if j != rec["predictions"][0] else 0.0 for j in range(len(rec["classes"]))]
        text, words = json.dumps(rec), "not the argmax"
    path.write_text(text)
    return words


DAMAGES = ["edited-predictions", "truncated-float", "string-for-number", "missing-field", "nan", "cut-short", "argmax"]


def test_damaged_and_copied_records_are_refused_by_name_and_the_board_renders_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    runs = tmp_path / "runs"
    paths = [write_record(runs, make_record("stc", "10fold", "ck+", 0, f, rng=rng, hit=0.8)) for f in range(10)]
    expected = {}
    for path, how in zip(paths, DAMAGES):
        expected[path] = _damage(path, how)
    # a good record copied into another model's folder, and into another run's key
    copied = runs / "ck+" / "10fold" / "static" / paths[-1].parent.name / paths[-1].name
    copied.parent.mkdir(parents=True)
    copied.write_text(paths[-1].read_text())
    expected[copied] = "copied from another run"
    board = build_board(runs)
    refused = dict(board.refused)
    assert set(refused) == set(expected)
    for path, words in expected.items():
        assert words in refused[path], (path, refused[path])
    (row,) = [r for r in board.rows() if not r["reported_only"]]
    assert row["model"] == "stc" and row["trials"] == 10 - len(DAMAGES)
    res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "o"), "--format", "md,json"])
    assert res.exit_code == 0, res.output
    assert f"{len(expected)} record file(s) refused" in (tmp_path / "o" / "leaderboard.md").read_text()
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert {d["path"] for d in doc["refused"]} == {str(p) for p in expected}


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    rec = make_record("stc", "10fold", "ck+", 0, 0, rng=np.random.default_rng(2))
    rec["scores"]["accuracy"] = 1.0
    with pytest.raises(records.RecordError, match="disagrees"):
        records.write_record(tmp_path, rec)
    rec = rescore(rec)
    rec["sample_ids"][0] = rec["train_ids"][0]
    with pytest.raises(records.RecordError, match="also a training/validation id"):
        records.write_record(tmp_path, rec)
    assert not list(tmp_path.rglob("*.json"))


def test_prune_keeps_the_latest_run_of_each_model(tmp_path):
    rng = np.random.default_rng(4)
    runs = tmp_path / "runs"
    old = make_record("stc", "10fold", "ck+", 0, 0, rng=rng)
    new = make_record("stc", "10fold", "ck+", 0, 0, rng=rng)
    new["fingerprints"]["model"] = "f" * 64
    new["created"] = "2026-12-01T00:00:00+00:00"
    old_path, new_path = write_record(runs, old), write_record(runs, new)
    assert len(build_board(runs).rows()) >= 2  # two runs: two rows
    res = runner.invoke(app, ["runs", "prune", "--runs", str(runs)])
    assert res.exit_code == 0 and "removed 1 record(s) of older runs" in res.output, res.output
    assert new_path.exists() and not old_path.exists() and not old_path.parent.exists()


# 6 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, expected", [
    ("model-options", "model 'stc' has no option(s) nope"),
    ("out-unwritable", "lies under"),
    ("repeats", "--repeats must be a whole number from 1 to 100"),
    ("protocol-repeats", "field 'repeats': expected an integer >= 1 and <= 100"),
    ("val-fraction", "--val-fraction must be a fraction in (0, 0.5]"),
    ("workers", "--workers must be a whole number from 1 to"),
    ("duplicate-ids", "sample id 'S00_00' appears more than once"),
])
def test_options_checked_before_any_work(files, tmp_path, case, expected):
    data, proto, out = files["data"], files["loso"], tmp_path / "runs"
    extra = ["--model", "static,stc", "--recipe", "quick"]
    if case == "model-options":
        extra += ["--model-options", json.dumps({"static": TINY["static"], "stc": {"nope": 1}})]
    elif case == "out-unwritable":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "runs"
    elif case == "repeats":
        extra += ["--repeats", "100000"]
    elif case == "protocol-repeats":
        proto = write_protocol(tmp_path, "many", repeats=100000)
    elif case == "val-fraction":
        extra += ["--val-fraction", "0.99"]
    elif case == "workers":
        extra += ["--workers", str((os.cpu_count() or 1) + 1)]
    else:
        data = tmp_path / "dup.h5"
        data.write_bytes(files["data"].read_bytes())
        with h5py.File(data, "a") as f:
            ids = f["samples/id"]
            ids[1] = ids[0]
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--protocol", str(proto), "--out", str(out), *extra])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and expected in lines[0], res.output
    assert "Traceback" not in res.output and not out.exists()


def test_empty_dataset_filter_is_a_plain_message(tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, make_record("stc", "10fold", "ck+", 0, 0, rng=np.random.default_rng(0)))
    res = runner.invoke(app, ["leaderboard", "--runs", str(runs), "--dataset", "", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--dataset is empty" in res.output, res.output


# 7 -------------------------------------------------------------------------------------------------------
def _limit_file_size() -> None:  # the child may write files of at most 3000 bytes (a record is larger)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))


@pytest.mark.slow
def test_full_disk_is_one_line_keeps_earlier_records_and_resumes(files, tmp_path):
    out = tmp_path / "runs"
    first = evaluate(files["data"], files["loso"], out=out, **QUICK)
    kept = {p: p.read_bytes() for p in out.rglob("r*-f*.json")}
    assert len(first.ran) == 4 and len(kept) == 4
    options = {"static": TINY["static"], "stc": TINY["stc"]}
    cmd = [sys.executable, "-m", "ferbench.cli", "evaluate", "--data", str(files["data"]), "--protocol",
           str(files["loso"]), "--model", "static,stc", "--recipe", "quick", "--epochs", "2", "--batch-size", "8",
           "--threads", "1", "--model-options", json.dumps(options), "--out", str(out)]
    full = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)
    err = [x for x in full.stderr.splitlines() if x.strip()]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert "could not write the task record" in err[-1] and "/stc/" in err[-1] and "r00-f0" in err[-1]
    assert {p: p.read_bytes() for p in out.rglob("r*-f*.json")} == kept  # earlier records intact
    assert not list(out.rglob("*.tmp")) and not (out / records.LOCK_NAME).exists()
    again = runner.invoke(app, [*cmd[3:], "--json"])  # with space again: in process (the limit needed a child)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert len(summary["skipped"]) == 4 and len(summary["ran"]) == 4


# 8 -------------------------------------------------------------------------------------------------------
def test_a_local_file_does_not_shadow_a_bundled_protocol(tmp_path, monkeypatch):
    from ferbench.protocols import bundled_dir, load_protocol

    monkeypatch.chdir(tmp_path)
    Path("10fold").write_text("name: 10fold\nnot: a protocol\n")
    assert load_protocol("10fold").path.parent == bundled_dir()
    with pytest.raises(FerbenchError, match="10fold: field|expected"):
        load_protocol("./10fold")  # a path that looks like a path is read as the file
    Path("mine").write_text("x: 1\n")
    with pytest.raises(FerbenchError, match=r"write \./mine"):
        load_protocol("mine")


# 9 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, expected", [
    ({"models": None}, "models must be"),
    ({"batch_size": True}, "--batch-size must be a whole number"),
    ({"threads": 1.5}, "--threads must be a whole number"),
    ({"repeats": "2"}, "--repeats must be a whole number"),
    ({"val_fraction": "0.2"}, "--val-fraction must be a fraction"),
    ({"model_options": ["static"]}, "model options must map"),
])
def test_api_types_are_checked_like_the_cli(files, tmp_path, kwargs, expected):
    args = {**QUICK, **kwargs}
    with pytest.raises(FerbenchError, match=expected):
        evaluate(files["data"], files["loso"], out=tmp_path / "runs", **args)
    assert not (tmp_path / "runs").exists()


def test_leaderboard_formats_must_be_a_list(tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, make_record("stc", "10fold", "ck+", 0, 0, rng=np.random.default_rng(0)))
    with pytest.raises(FerbenchError, match="formats must be a list"):
        write_leaderboard(build_board(runs), "md", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_records_are_strict_json(files, tmp_path):
    evaluate(files["data"], files["loso"], out=tmp_path, **QUICK)
    for p in tmp_path.rglob("r*-f*.json"):
        json.loads(p.read_text(), parse_constant=lambda name: pytest.fail(f"{p}: {name}"))
