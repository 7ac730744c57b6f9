"""`ferbench synth DATASET DIR --json` then `ferbench scan DATASET --root DIR --json`: the counts agree."""

import json

import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import list_datasets

runner = CliRunner()


@pytest.mark.parametrize("dataset", list_datasets())
@pytest.mark.slow
def test_cli_synth_then_scan_counts_agree(dataset, tmp_path):
    extra = ["--modes", "VL/Strong"] if dataset == "oulu-casia" else []
    made = runner.invoke(app, ["synth", dataset, str(tmp_path), "--subjects", "1", "--seed", "3", "--json", *extra])
    assert made.exit_code == 0, made.output
    scanned = runner.invoke(app, ["scan", dataset, "--root", str(tmp_path), "--json"])
    assert scanned.exit_code == 0, scanned.output
    a, b = json.loads(made.stdout), json.loads(scanned.stdout)
    assert a["samples"] > 0
    assert (a["samples"], a["labelled"], a["subjects"], a["classes"]) == (b["samples"], b["labelled"], b["subjects"], b["classes"])


@pytest.mark.slow
def test_synth_modes_as_the_readme_writes_them(tmp_path):
    """The README's form (`--modes VL/Strong,NI/Strong`) and the repeated form write the same modes."""
    a = runner.invoke(app, ["synth", "oulu-casia", str(tmp_path / "a"), "--subjects", "1", "--json",
                            "--modes", "VL/Strong,NI/Dark"])
    b = runner.invoke(app, ["synth", "oulu-casia", str(tmp_path / "b"), "--subjects", "1", "--json",
                            "--modes", "VL/Strong", "--modes", "NI/Dark"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    for root in (tmp_path / "a", tmp_path / "b"):
        written = sorted(p.relative_to(root / "OriginalImg").parts[:2] for p in (root / "OriginalImg").glob("*/*"))
        assert written == [("NI", "Dark"), ("VL", "Strong")]
