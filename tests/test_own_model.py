"""A researcher's own model, three ways (a file, a module, an entry point), through the same registry, records
and leaderboard as the bundled ones; `ferbench models --check` says plainly what does not fit; an edited model
file reruns; a user model runs on a two-worker dask cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.cli import app
from ferbench.harness import evaluate
from ferbench.leaderboard import build_board

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_model.py"
runner = CliRunner()

MISFITS = {
    "shape": ("return self.head(pooled)", "return self.head(pooled)[:, :1]", "returns logits (B, num_classes)"),
    "grad": ("return self.head(pooled)", "return self.head(pooled).detach() + 0 * pooled.sum().detach()",
             "gradients reach the parameters"),
    "lengths": ("def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None)",
                "def forward(self, x: torch.Tensor)", "accepts forward(x, lengths)"),
    "nan": ("return self.head(pooled)", "return self.head(pooled) * float('nan')", "finite outputs"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("own")
    return {"data": make_store(base / "d.h5"), "loso": write_protocol(base, "t-loso"), "base": base}


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in out.rglob("r*-f*.json")]


def test_a_model_from_a_file_is_evaluated_recorded_and_on_the_board(files, tmp_path):
    model = tmp_path / "mine.py"
    shutil.copy(EXAMPLE, model)
    kw = dict(recipe="quick", threads=1, model_options={"static": TINY["static"]}, out=tmp_path / "runs", **TWO_EPOCHS)
    res = evaluate(files["data"], files["loso"], models=[f"{model}:TinyTemporalNet", "static"], **kw)
    assert not res.failed and len(res.ran) == 8
    mine = [r for r in _records(tmp_path / "runs") if r["model"] == "TinyTemporalNet"]
    assert len(mine) == 4 and all(r["config"]["model_source"] == f"{model.resolve()}:TinyTemporalNet" for r in mine)
    board = build_board(tmp_path / "runs")
    assert {r["model"] for r in board.rows() if not r["reported_only"]} == {"TinyTemporalNet", "static"}
    assert any("a user model, from" in n for s in board.sections for n in s.notes)
    again = evaluate(files["data"], files["loso"], models=[f"{model}:TinyTemporalNet", "static"], **kw)
    assert again.ran == [] and len(again.skipped) == 8
    model.write_text(model.read_text().replace("width: int = 16", "width: int = 8"))  # an edited model file ...
    edited = evaluate(files["data"], files["loso"], models=[f"{model}:TinyTemporalNet", "static"], **kw)
    assert sorted(edited.ran) == sorted(r for r in res.ran if r.startswith("TinyTemporalNet"))  # ... reruns


def test_a_model_from_a_module_and_from_an_entry_point(files, tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "labnets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, pkg / "nets.py")
    (pkg / "nets.py").write_text((pkg / "nets.py").read_text() + "\n\ndef make(num_classes, **cfg):\n"
                                 "    return TinyTemporalNet(num_classes, **cfg)\n")
    dist = tmp_path / "site" / "labnets-0.1.dist-info"  # what `pip install` leaves: metadata + entry points
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: labnets\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ferbench.models]\nlab-net = labnets.nets:make\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    kw = dict(recipe="quick", threads=1, **TWO_EPOCHS)
    res = evaluate(files["data"], files["loso"], models="labnets.nets:make", out=tmp_path / "a", **kw)
    assert not res.failed and {r["model"] for r in _records(tmp_path / "a")} == {"make"}
    res = evaluate(files["data"], files["loso"], models="lab-net", out=tmp_path / "b", **kw)
    assert not res.failed
    recs = _records(tmp_path / "b")
    assert {r["model"] for r in recs} == {"lab-net"}
    assert recs[0]["config"]["model_source"] == "entry point lab-net (labnets: labnets.nets:make)"
    listing = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "lab-net" in listing.output and "entry point lab-net" in listing.output


@pytest.mark.parametrize("misfit", sorted(MISFITS))
def test_check_says_what_does_not_fit(tmp_path, misfit):
    old, new, check = MISFITS[misfit]
    bad = tmp_path / f"bad_{misfit}.py"
    text = EXAMPLE.read_text()
    assert old in text
    bad.write_text(text.replace(old, new))
    res = runner.invoke(app, ["models", "--check", f"{bad}:TinyTemporalNet"], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert f"DOES NOT FIT {check}" in res.output and "Traceback" not in res.output
    good = runner.invoke(app, ["models", "--check", f"{EXAMPLE}:TinyTemporalNet"], env={"COLUMNS": "300"})
    assert good.exit_code == 0 and "DOES NOT FIT" not in good.output and "fits the contract" in good.output


@pytest.mark.slow
def test_a_user_model_runs_on_a_two_worker_dask_cluster(files, tmp_path, dask_scheduler):
    """The worker processes load the model from its file themselves (the session's shared two-worker cluster;
    test_harness_core checks `workers=2`, the cluster evaluate starts itself)."""
    kw = dict(recipe="quick", threads=1, **TWO_EPOCHS)
    local = evaluate(files["data"], files["loso"], models=f"{EXAMPLE}:TinyTemporalNet", out=tmp_path / "a", **kw)
    dask = evaluate(files["data"], files["loso"], models=f"{EXAMPLE}:TinyTemporalNet", out=tmp_path / "b",
                    scheduler=dask_scheduler, **kw)
    assert not local.failed and not dask.failed, dask.failed
    a = {r["task_id"]: r["predictions"] for r in _records(tmp_path / "a")}
    b = {r["task_id"]: r["predictions"] for r in _records(tmp_path / "b")}
    assert a == b and len(a) == 4
