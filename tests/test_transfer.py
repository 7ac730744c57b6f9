"""kim2017's transfer protocol (section 3.3, Table 5 inter-dataset): the network is trained on CASME II, its
C1-C2 are copied and frozen, the rest is trained on MMI under leave-one-subject-out. Real replicas, the real
harness: the transferred layers must be the source-trained ones, unchanged by the target training, the same in
every fold of a repeat, and in the record; the paper's Table 5 number goes to this protocol only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from _harness_data import TINY, TWO_EPOCHS
from _protocol_files import protocol_copy
from _replicas import REPLICAS
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.protocols import load_protocol

OPTS = {m: TINY[m] for m in ("mo-cnn-lstm", "apex-cnn")}


@pytest.fixture(scope="module")
def files(prepared_replica):
    return prepared_replica("mmi", **REPLICAS["mmi"]), prepared_replica("casme2", **REPLICAS["casme2"])


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("r*-f*.json"))]


def test_protocol_names_its_source_and_refuses_what_cannot_be_a_transfer(tmp_path):
    p = load_protocol("kim2017-transfer")
    assert (p.pretrain, p.datasets, p.splitter, p.paper, p.table) == ("casme2", ("mmi",), "leave-one-subject-out",
                                                                      "kim2017", "Table 5")
    assert load_protocol("cross-dataset").paper == "ferbench" and load_protocol("cross-dataset").pretrain is None
    for bad in ({"pretrain": "mmi"}, {"pretrain": ["casme2"]}):
        with pytest.raises(FerbenchError, match="field 'pretrain'"):
            load_protocol(protocol_copy(tmp_path, "kim2017-transfer", **bad))
    with pytest.raises(FerbenchError, match="field 'pretrain'"):
        load_protocol(protocol_copy(tmp_path, "cross-dataset", name="x", pretrain="ck+"))


def test_transferred_layers_come_from_the_source_and_stay_frozen(files, tmp_path):
    from ferbench.harness import recipes as R
    from ferbench.harness.data import open_data
    from ferbench.harness.evaluate import EvaluateResult, _plan, _resolve
    from ferbench.harness.fit import Context, build_model, fit, pretrained_layers

    mmi, casme = files
    setup = _resolve(mmi, "kim2017-transfer", None, "mo-cnn-lstm", "quick", R.Overrides(**TWO_EPOCHS), "cpu", 1,
                     OPTS, 0.2, "auto", casme)
    pending, _ = _plan(setup, None, OPTS, tmp_path / "runs", False, EvaluateResult(out=tmp_path / "runs"))
    spec = pending[0][0]
    assert spec.pretrain is not None and spec.pretrain.dataset == "casme2" and set(spec.pretrain.ids).isdisjoint(
        spec.train_ids + spec.test_ids)
    torch.set_num_threads(1)
    labels = dict(zip(spec.train_ids, spec.y_train))
    ctx = Context(spec, torch.device("cpu"), open_data(spec.data), open_data(spec.data_test), labels, None)
    state, info, reused = pretrained_layers(ctx, "mo-cnn-lstm")
    assert not reused and pretrained_layers(ctx, "mo-cnn-lstm")[2]  # kept for the next fold
    assert info["samples"] == len(spec.pretrain.ids) and info["classes"] == list(open_data(casme).store.classes)
    fresh, _ = build_model("mo-cnn-lstm", 5, OPTS["mo-cnn-lstm"], 32, 8, 0)
    fresh_c1 = fresh.transfer_modules()[0].weight
    assert not torch.equal(state["0.weight"], fresh_c1), "the source training left C1 at its initial values"
    fitted = fit(ctx, "mo-cnn-lstm", list(spec.stages), spec.selection)
    layers = fitted.model.transfer_modules()
    assert [type(m).__name__ for m in layers] == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d"]  # C1, C2
    for i, m in enumerate(layers):
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[f"{i}.{k}"]), f"transferred layer {i} {k} changed in the target training"
    # C3 (the next convolution) trained on the target: not the source's, not its own initial values
    c3 = [m for m in fitted.model.cnn.conv if isinstance(m, torch.nn.Conv2d)][2]
    again, _ = build_model("mo-cnn-lstm", len(spec.classes), OPTS["mo-cnn-lstm"], 32, 8, 0)
    assert all(p.requires_grad for p in again.parameters())  # freezing is the harness's, per task
    assert not torch.equal(c3.weight, [m for m in again.cnn.conv if isinstance(m, torch.nn.Conv2d)][2].weight)


def test_evaluate_runs_the_transfer_and_records_it(files, tmp_path):
    mmi, casme = files
    out = tmp_path / "runs"
    res = evaluate(mmi, "kim2017-transfer", data_source=casme, models=("all",), recipe="quick", model_options=OPTS,
                   threads=1, out=out, **TWO_EPOCHS)
    assert not res.failed, res.failed
    records = _records(out)
    assert {r["model"] for r in records} == {"mo-cnn-lstm", "apex-cnn"}  # `all`: the models with transfer layers
    for model in ("mo-cnn-lstm", "apex-cnn"):
        mine = [r for r in records if r["model"] == model]
        assert len(mine) == 2  # leave one of the two MMI subjects out
        digests = {r["config"]["pretrain"]["weights_sha256"] for r in mine}
        assert len(digests) == 1  # every fold of the repeat starts from the same source layers
        pre = mine[0]["config"]["pretrain"]
        assert pre["dataset"] == "casme2" and pre["data"] == str(casme.resolve()) and pre["samples"] > 0
        assert pre["data_fingerprint"] == mine[0]["fingerprints"]["data_source"]
        assert pre["frame_size"] == pre["target_frame_size"] == 32  # both files' frames, pixels a side
        assert all(r["dataset"] == r["dataset_test"] == "mmi" for r in mine)
        # the source is trained once in this process and timed apart from the fold's own training
        first, second = sorted(mine, key=lambda r: r["fold"])
        assert first["config"]["pretrain"]["train_s"] > 0 and second["config"]["pretrain"]["train_s"] == 0
    again = evaluate(mmi, "kim2017-transfer", data_source=casme, models="all", recipe="quick", model_options=OPTS,
                     threads=1, out=out, **TWO_EPOCHS)
    assert again.ran == [] and len(again.skipped) == 4
    # another source file is another model: its tasks run again, under a key of their own
    other = tmp_path / "casme2-other.h5"
    shutil.copy(casme, other)
    from ferbench.store import open_store

    with open_store(other) as st:
        src_ids = [s.id for s in st.samples]
    edited = _drop_sample(other, src_ids[-1])
    third = evaluate(mmi, "kim2017-transfer", data_source=edited, models="apex-cnn", recipe="quick",
                     model_options=OPTS, threads=1, out=out, **TWO_EPOCHS)
    assert len(third.ran) == 2 and "other runs of these models" in " ".join(third.warnings)


def _drop_sample(path: Path, sample_id: str) -> Path:
    """The same source file with one sample's label removed (a different source set)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r+") as f:
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["samples/id"][()]]
        labels = f["samples/label"][()]
        labels[ids.index(sample_id)] = -1
        f["samples/label"][...] = np.asarray(labels)
    return path


def test_transfer_refusals(files, tmp_path):
    mmi, casme = files
    kw = dict(recipe="quick", model_options=OPTS, threads=1, out=tmp_path / "runs", **TWO_EPOCHS)
    with pytest.raises(FerbenchError, match="first trains on casme2; pass its prepared file with --data-source"):
        evaluate(mmi, "kim2017-transfer", models="mo-cnn-lstm", **kw)
    with pytest.raises(FerbenchError, match="but .* holds mmi"):
        evaluate(mmi, "kim2017-transfer", data_source=mmi, models="mo-cnn-lstm", **kw)
    with pytest.raises(FerbenchError, match="model 'static' names no transfer layers; models that do: apex-cnn, "
                                            "mo-cnn-lstm"):
        evaluate(mmi, "kim2017-transfer", data_source=casme, models="static,mo-cnn-lstm", **kw)
    with pytest.raises(FerbenchError, match="--data-source is for transfer protocols"):
        evaluate(mmi, "loso", data_source=casme, models="static", **kw)
    assert not (tmp_path / "runs").exists()


def test_data_home_needs_the_source_too(tmp_path, monkeypatch, files):
    from ferbench.home import prepared_path, protocol_data

    mmi, casme = files
    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path / "home"))
    prepared_path("mmi").parent.mkdir(parents=True)
    shutil.copy(mmi, prepared_path("mmi"))
    assert protocol_data("kim2017-transfer") == ([], ["casme2"])
    shutil.copy(casme, prepared_path("casme2"))
    assert protocol_data("kim2017-transfer") == ([("mmi", prepared_path("mmi"), None, prepared_path("casme2"))], [])


@pytest.mark.slow
def test_every_worker_trains_the_same_source_layers(files, tmp_path, dask_scheduler):
    """On a two-worker dask cluster each worker trains the source network itself: the folds it runs must start
    from the layers the in-process run starts from (same seed, same sha256), and predict the same."""
    mmi, casme = files
    kw = dict(data_source=casme, models="mo-cnn-lstm", recipe="quick", model_options=OPTS, threads=1, **TWO_EPOCHS)
    evaluate(mmi, "kim2017-transfer", out=tmp_path / "local", **kw)
    res = evaluate(mmi, "kim2017-transfer", out=tmp_path / "dask", scheduler=dask_scheduler, **kw)
    assert not res.failed, res.failed
    local = {(r["fold"]): r for r in _records(tmp_path / "local")}
    spread = {(r["fold"]): r for r in _records(tmp_path / "dask")}
    assert set(local) == set(spread) == {0, 1}
    for fold, r in spread.items():
        assert r["config"]["pretrain"]["weights_sha256"] == local[fold]["config"]["pretrain"]["weights_sha256"]
        assert r["predictions"] == local[fold]["predictions"]


def test_table_5_is_comparable_only_with_the_papers_source_data():
    from ferbench.leaderboard.comparable import RunFacts, judge
    from ferbench.leaderboard.reported import load_reported

    ref = load_reported()
    entry = next(e for e in ref.entries if e.table == "Table 5" and e.model == "mo-cnn-lstm")
    design = ref.design_of(entry)
    bundled = load_protocol("kim2017-transfer").fingerprint
    done = dict(trials=30, planned=30, departures=())  # every planned trial scored, the paper's network
    paper = RunFacts("kim2017-transfer", bundled, ("paper",), 6, 173, 1, 30, source="casme2", source_samples=246,
                     **done)
    assert judge(entry, design, paper) == (True, "")
    small = RunFacts("kim2017-transfer", bundled, ("paper",), 6, 173, 1, 30, source="casme2", source_samples=15,
                     **done)
    assert judge(entry, design, small) == (False, "15 casme2 samples trained the transferred layers, the paper used "
                                                  "246 (replica or other data)")
    none = RunFacts("kim2017-transfer", bundled, ("paper",), 6, 173, 1, 30, **done)
    assert judge(entry, design, none)[1] == "no layers trained on casme2 first"


def test_a_source_file_too_small_for_the_model_is_refused_before_any_work(files, prepared_replica, tmp_path):
    mmi, _ = files
    small = prepared_replica("casme2", subjects=2, aligner="none", size=24)
    with pytest.raises(FerbenchError, match=f"needs frames of at least 32x32; the source file {small} has 24x24"):
        evaluate(mmi, "kim2017-transfer", data_source=small, models="apex-cnn", out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_source_of_another_frame_size_is_refused_before_any_work(files, prepared_replica, tmp_path):
    """Layers trained on 48 px faces copied into a network that trains on 32 px ones: refused in one line (the
    same check passes an equal size, test_evaluate_runs_the_transfer_and_records_it)."""
    from typer.testing import CliRunner

    from ferbench.cli import app

    mmi, _ = files
    other = prepared_replica("casme2", subjects=2, aligner="none", size=48)
    res = CliRunner().invoke(app, ["evaluate", "--data", str(mmi), "--data-source", str(other), "--protocol",
                                   "kim2017-transfer", "--model", "apex-cnn", "--out", str(tmp_path / "runs"),
                                   "--recipe", "quick", "--epochs", "1", "--batch-size", "8", "--threads", "1",
                                   "--model-options", json.dumps({"apex-cnn": OPTS["apex-cnn"]})],
                             env={"COLUMNS": "400"})  # were it not refused: a short run, not the default recipe
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert f"{other} (48x48 frames)" in lines[0] and f"{mmi} (32x32 frames)" in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_command_line_finds_the_source_in_the_data_home(files, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ferbench.cli import app
    from ferbench.home import prepared_path

    mmi, casme = files
    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "300")
    args = ["evaluate", "--data", str(mmi), "--protocol", "kim2017-transfer", "--model", "apex-cnn", "--recipe",
            "quick", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--model-options",
            json.dumps({"apex-cnn": OPTS["apex-cnn"]}), "--out", str(tmp_path / "runs"), "--json"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "pass its prepared file with --data-source" in refused.output
    prepared_path("casme2").parent.mkdir(parents=True)
    shutil.copy(casme, prepared_path("casme2"))
    ran = CliRunner().invoke(app, args)
    assert ran.exit_code == 0, ran.output
    records = _records(tmp_path / "runs")
    assert len(records) == 2 and {r["config"]["pretrain"]["data"] for r in records} == {str(prepared_path("casme2"))}
