"""A researcher's own model, the hostile cases: a model that does not fit the contract is refused before any
work (not found out after some tasks), a model file imports its helpers as `python file.py` would and an edited
helper reruns, an edited record is not reused, whatever the user's code raises is one line, and one broken or
clashing plugin (a real installed distribution's entry point) blocks nothing but itself."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _harness_data import TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.cli import app
from ferbench.harness import evaluate
from ferbench.metrics import trial_scores
from ferbench.records import finite_or_none

runner = CliRunner()
ENV = {"COLUMNS": "300"}

#: A tiny model that fits the contract: the mean colour of the clip through a linear layer.
TINY_MODEL = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.head = nn.Linear(3, num_classes)

    def forward(self, x, lengths=None):
        out = self.head(x.mean(dim=(1, 3, 4)) * SCALE)
        return out
"""
#: What each defect changes in TINY_MODEL's `return out`, and the check that must name it.
DEFECTS = {
    "more-logits": ("return torch.cat([out, torch.zeros(len(out), 3)], 1)", "returns logits (B, num_classes)",
                    "expected (2, 3), got (2, 6)"),
    "one-logit": ("return out[:, :1]", "returns logits (B, num_classes)", "expected (2, 3), got (2, 1)"),
    "meta-device": ("return out.to('meta')", "returns logits (B, num_classes)", "on device meta"),
    "nan-in-eval": ("return out if self.training else out * float('nan')", "eval mode", "NaN or inf"),
}


def _model_file(folder: Path, body: str = TINY_MODEL, name: str = "mine.py", scale: str = "SCALE = 1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(scale + "\n" + textwrap.dedent(body))
    return path


def _dist(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """What `pip install` leaves for a distribution: <name>-0.1.dist-info with METADATA and entry_points.txt,
    found by importlib.metadata once `site` is on sys.path (a real distribution, not a mock)."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ferbench.models]\n{lines}")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("refusals")
    return {"data": make_store(base / "d.h5", subjects=2), "loso": write_protocol(base, "t-loso")}


def _evaluate(files: dict[str, Path], out: Path, model: str, *extra: str):
    return runner.invoke(app, ["evaluate", "--data", str(files["data"]), "--protocol", str(files["loso"]),
                               "--model", model, "--out", str(out), "--recipe", "quick", "--threads", "1",
                               "--epochs", "1", "--batch-size", "8", *extra], env=ENV)


def _summary(result) -> dict:
    """The run summary `evaluate --json` prints (its last line; the protocol file is named on stderr before it)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# -- 3: the contract is checked before the first task --------------------------------------------------------
@pytest.mark.parametrize("defect", sorted(DEFECTS) + ["returns-a-str"])
def test_evaluate_refuses_a_model_that_does_not_fit_before_any_work(files, tmp_path, defect):
    if defect == "returns-a-str":
        model = _model_file(tmp_path / "m", TINY_MODEL + "\n\ndef make(num_classes):\n    return 'a str'\n")
        spec, check, detail = f"{model}:make", "builds", "returned str, not a torch.nn.Module"
    else:
        new, check, detail = DEFECTS[defect]
        model = _model_file(tmp_path / "m", TINY_MODEL.replace("return out", new))
        spec = f"{model}:Tiny"
    line = _one_line(_evaluate(files, tmp_path / "runs", spec))
    assert "does not fit the contract" in line and check in line and detail in line, line
    assert not (tmp_path / "runs").exists()  # refused before the runs folder, a record or a task


def test_check_runs_the_model_in_eval_mode_too(tmp_path):
    model = _model_file(tmp_path / "m", TINY_MODEL.replace("return out", DEFECTS["nan-in-eval"][0]))
    res = runner.invoke(app, ["models", "--check", f"{model}:Tiny"], env=ENV)
    assert res.exit_code == 2, res.output
    assert "ok finite outputs" in res.output and "DOES NOT FIT eval mode" in res.output
    assert "Traceback" not in res.output


def test_check_names_an_output_on_the_meta_device(tmp_path):
    model = _model_file(tmp_path / "m", TINY_MODEL.replace("return out", DEFECTS["meta-device"][0]))
    res = runner.invoke(app, ["models", "--check", f"{model}:Tiny"], env=ENV)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "DOES NOT FIT returns logits (B, num_classes): the logits are on device meta" in res.output


# -- 4: a model file imports its helpers as `python file.py` would; an edited helper reruns ---------------------
@pytest.mark.slow
def test_a_model_file_imports_a_helper_beside_it_and_an_edited_helper_reruns(files, tmp_path):
    folder = tmp_path / "m"
    _model_file(folder, name="helper.py", body="", scale="SCALE = 1.0")
    model = _model_file(folder, scale="from helper import SCALE")
    check = runner.invoke(app, ["models", "--check", f"{model}:Tiny"], env=ENV)
    assert check.exit_code == 0 and "fits the contract" in check.output, check.output
    assert len(_summary(_evaluate(files, tmp_path / "runs", f"{model}:Tiny", "--json"))["ran"]) == 2
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("r*-f*.json")]
    assert len(records) == 2
    assert set(records[0]["config"]["model_files"]) == {str(model.resolve()), str((folder / "helper.py").resolve())}
    assert _summary(_evaluate(files, tmp_path / "runs", f"{model}:Tiny", "--json"))["ran"] == []
    (folder / "helper.py").write_text("SCALE = 2.0\n")  # only the helper is edited
    assert len(_summary(_evaluate(files, tmp_path / "runs", f"{model}:Tiny", "--json"))["ran"]) == 2


def test_an_edited_helper_of_a_package_reruns(files, tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "labhelp"
    _model_file(pkg, name="__init__.py", body="", scale="")
    _model_file(pkg, name="consts.py", body="", scale="SCALE = 1.0")
    _model_file(pkg, name="nets.py", scale="from labhelp.consts import SCALE")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    kw = dict(models="labhelp.nets:Tiny", out=tmp_path / "runs", recipe="quick", threads=1, epochs=1, batch_size=8)
    first = evaluate(files["data"], files["loso"], **kw)
    assert len(first.ran) == 2
    assert len(evaluate(files["data"], files["loso"], **kw).ran) == 0
    (pkg / "consts.py").write_text("SCALE = 3.0\n")
    edited = evaluate(files["data"], files["loso"], **kw)
    assert sorted(edited.ran) == sorted(first.ran)
    rec = json.loads(next((tmp_path / "runs").rglob("r*-f*.json")).read_text())
    assert str((pkg / "consts.py").resolve()) in rec["config"]["model_files"]


def test_a_record_whose_labels_were_edited_is_not_reused(files, tmp_path):
    kw = dict(models="static", out=tmp_path / "runs", recipe="quick", threads=1,
              model_options={"static": TINY["static"]}, **TWO_EPOCHS)
    first = evaluate(files["data"], files["loso"], **kw)
    assert len(first.ran) == 2
    path = first.records[0]
    rec = json.loads(path.read_text())
    assert rec["labels"] != rec["predictions"], "the fixture should not predict every test sample right"
    rec["labels"] = list(rec["predictions"])  # "every prediction right", scores made consistent with it
    rec["scores"] = finite_or_none(trial_scores(rec))
    path.write_text(json.dumps(rec))
    again = evaluate(files["data"], files["loso"], **kw)
    assert again.ran == [rec["task_id"]], again.rerun_reasons
    assert "the data file's is" in again.rerun_reasons[rec["task_id"]]
    assert json.loads(path.read_text())["labels"] != rec["predictions"]  # the rerun wrote the data's labels


def test_an_au_record_is_reused_until_an_au_label_is_edited(tmp_path):
    data = make_store(tmp_path / "au.h5", dataset="bp4d", subjects=2, per=2, au_names=(1, 2, 4))
    proto = write_protocol(tmp_path, "t-au", datasets=("bp4d",), task="au-detection", metric="f1")
    kw = dict(models="static", out=tmp_path / "runs", recipe="quick", threads=1,
              model_options={"static": TINY["static"]}, **TWO_EPOCHS)
    first = evaluate(data, proto, **kw)
    assert len(first.ran) == 2
    assert evaluate(data, proto, **kw).ran == []  # the data's AU labels of every coded frame: reused
    path = first.records[0]
    rec = json.loads(path.read_text())
    unit = next(i for i, (y, p) in enumerate(zip(rec["labels"], rec["predictions"])) if y[0] in (0, 1) and y[0] != p[0])
    rec["labels"][unit][0] = rec["predictions"][unit][0]
    rec["scores"] = finite_or_none(trial_scores(rec))
    path.write_text(json.dumps(rec))
    again = evaluate(data, proto, **kw)
    assert again.ran == [rec["task_id"]] and rec["sample_ids"][unit] in again.rerun_reasons[rec["task_id"]]


# -- 10: whatever the user's code raises is one line naming it ------------------------------------------------
@pytest.mark.parametrize("how", ["module", "exit"])
def test_a_model_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch, how):
    raising = {"module": "raise KeyError('W')", "exit": "import sys; sys.exit(3)"}
    folder = tmp_path / "site" / "broke"
    _model_file(folder, name="__init__.py", body="", scale="")
    model = _model_file(folder, name="nets.py", scale=raising[how])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = "broke.nets:Tiny" if how == "module" else f"{model}:Tiny"
    line = _one_line(runner.invoke(app, ["models", "--check", spec], env=ENV))
    assert "importing it failed" in line and {"module": "KeyError", "exit": "SystemExit"}[how] in line
    assert ("broke.nets" if how == "module" else "nets.py") in line


# -- 11: plugins are loaded when selected; a broken or clashing one is named ------------------------------------
@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Path:
    """Installed distributions with one good plugin, one whose module raises, and three clashing names."""
    site = tmp_path / "site"
    good = site / "goodnets"
    _model_file(good, name="__init__.py", body="", scale="")
    _model_file(good, name="nets.py")
    bad = site / "badnets"
    _model_file(bad, name="__init__.py", body="", scale="")
    _model_file(bad, name="nets.py", scale="raise RuntimeError('CUDA toolkit 9.2 required')")
    _dist(site, "goodnets", {"good-net": "goodnets.nets:Tiny"})
    _dist(site, "badnets", {"bad-net": "badnets.nets:Tiny"})
    _dist(site, "clashnets", {"static": "goodnets.nets:Tiny", "ep good": "goodnets.nets:Tiny",
                              "@sum(1)": "goodnets.nets:Tiny"})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_ferbench_models_names_a_broken_or_clashing_plugin_and_lists_the_rest(plugins):
    res = runner.invoke(app, ["models"], env=ENV)
    assert res.exit_code == 0, res.output
    assert "good-net" in res.output and "stc-nlstm" in res.output
    lines = res.output.splitlines()
    bad = [line for line in lines if "'bad-net'" in line]
    assert bad and "badnets" in bad[0] and "RuntimeError: CUDA toolkit 9.2 required" in bad[0], res.output
    for name in ("static", "ep good", "@sum(1)"):
        line = next(line for line in lines if f"plugin {name!r}" in line)
        assert "clashnets" in line, line


def test_model_all_leaves_a_broken_plugin_out_with_a_warning(plugins):
    from ferbench.harness.evaluate import resolve_models

    warnings: list[str] = []
    names = resolve_models("all", "classification", warnings=warnings)
    assert "good-net" in names and "static" in names and "bad-net" not in names
    assert any(w.startswith("entry point bad-net (badnets: badnets.nets:Tiny) is left out of --model all")
               and "CUDA toolkit 9.2 required" in w for w in warnings), warnings


def test_a_bundled_model_runs_beside_broken_plugins(plugins, files, tmp_path):
    _summary(_evaluate(files, tmp_path / "runs", "static", "--model-options", json.dumps({"static": TINY["static"]}),
                       "--json"))
    recs = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("r*-f*.json")]
    assert {r["config"]["model_source"] for r in recs} == {"ferbench"}  # the bundled static, not the plugin
    good = runner.invoke(app, ["models", "--check", "good-net"], env=ENV)
    assert good.exit_code == 0 and "fits the contract" in good.output, good.output


@pytest.mark.parametrize("name, expected", [("bad-net", "RuntimeError: CUDA toolkit 9.2 required"),
                                            ("ep good", "cannot name a folder"), ("@sum(1)", "cannot name a folder")])
def test_selecting_a_broken_plugin_is_one_line_naming_it(plugins, files, tmp_path, name, expected):
    line = _one_line(_evaluate(files, tmp_path / "runs", name))
    assert f"entry point {name}" in line and expected in line, line
    assert ("badnets" if name == "bad-net" else "clashnets") in line
    assert not (tmp_path / "runs").exists()
