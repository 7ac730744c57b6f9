"""The harness on small real stores: dask = in-process, resume that cannot lie, test labels never reach
training or selection, validation selection, AU detection records, batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _harness_data import CLASSES, TINY, TWO_EPOCHS, make_store, write_protocol
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("harness")
    return {
        "data": make_store(base / "d.h5"),
        "loso": write_protocol(base, "t-loso"),
        "au_data": make_store(base / "au.h5", dataset="bp4d", subjects=3, per=2, au_names=(1, 2, 4)),
        "au_proto": write_protocol(base, "t-au", datasets=("bp4d",), task="au-detection", metric="f1",
                                   splitter="group-kfold", params={"n_splits": 3}),
        "base": base,
    }


def _records(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("r*-f*.json"))}


def _by_task(out: Path) -> dict[str, dict]:
    """The records of a runs folder holding one run, by task id (the key folder differs between data files)."""
    recs = {r["task_id"]: r for r in _records(out).values()}
    assert len(recs) == len(_records(out))
    return recs


@pytest.mark.slow
def test_dask_two_workers_give_the_in_process_predictions(files, tmp_path):
    kw = dict(models="static,mo-cnn-lstm,fusion-svm", recipe="quick", model_options=TINY, threads=1, **TWO_EPOCHS)
    evaluate(files["data"], files["loso"], out=tmp_path / "a", **kw)
    res = evaluate(files["data"], files["loso"], out=tmp_path / "b", workers=2, **kw)
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert not res.failed and len(a) == 12 and sorted(a) == sorted(b)
    for key in a:
        for field in ("sample_ids", "labels", "predictions", "probabilities", "train_ids", "val_ids", "curve"):
            assert a[key][field] == b[key][field], (key, field)
    # and the predictions are a model's, not a constant: the painted bands are learnt by some model
    assert any(r["scores"]["accuracy"] > 0.5 for r in a.values())


def test_resume_skips_only_matching_records_and_says_why_it_reruns(files, tmp_path):
    out = tmp_path / "runs"
    kw = dict(models="static", recipe="quick", model_options=TINY, threads=1, out=out, **TWO_EPOCHS)
    first = evaluate(files["data"], files["loso"], **kw)
    assert len(first.ran) == 4
    before = {p: p.read_bytes() for p in out.rglob("*.json")}
    again = evaluate(files["data"], files["loso"], **kw)
    assert again.ran == [] and len(again.skipped) == 4
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == before
    changed = evaluate(files["data"], files["loso"], **{**kw, "epochs": 3})
    # another recipe is another key: the first run's records are kept beside the new ones, and the run says so
    assert len(changed.ran) == 4 and changed.rerun_reasons == {}
    assert sorted(len(r["curve"]) for r in _records(out).values()) == [2] * 4 + [3] * 4
    assert {p: p.read_bytes() for p in before} == before
    assert any("4 record(s) of other runs" in w and "ferbench runs prune" in w for w in changed.warnings)
    forced = evaluate(files["data"], files["loso"], **{**kw, "epochs": 3, "force": True})
    assert len(forced.ran) == 4 and set(forced.rerun_reasons.values()) == {"--force"}
    other = make_store(tmp_path / "other.h5", seed=1)  # same ids, other pixels: another data fingerprint
    moved = evaluate(other, files["loso"], **{**kw, "epochs": 3})
    assert len(moved.ran) == 4 and len(_records(out)) == 12
    # a record edited by hand is refused and its task rerun; the others are reused
    victim = sorted(moved.records)[0]  # a record of the run that is evaluated again below
    rec = json.loads(victim.read_text())
    rec["predictions"] = [(v + 1) % 3 for v in rec["predictions"]]
    victim.write_text(json.dumps(rec))
    healed = evaluate(other, files["loso"], **{**kw, "epochs": 3})
    assert len(healed.ran) == 1 and len(healed.skipped) == 3
    assert "record refused" in next(iter(healed.rerun_reasons.values()))


def test_permuting_one_subjects_labels_leaves_its_test_predictions_unchanged(files, tmp_path):
    # lstm-mean's paper recipe selects its epoch on validation subjects: the test subject must reach neither
    with open_store(files["data"]) as st:
        ids = [s.id for s in st.samples if s.subject == "S01"]
        labels = {s.id: s.label for s in st.samples if s.subject == "S01"}
    perm = dict(zip(ids, [labels[i] for i in ids[1:] + ids[:1]]))
    assert any(perm[i] != labels[i] for i in ids)
    permuted = make_store(tmp_path / "perm.h5", labels=perm)
    kw = dict(models="lstm-mean", recipe="paper", epochs=3, model_options=TINY, threads=1)
    evaluate(files["data"], files["loso"], out=tmp_path / "a", **kw)
    evaluate(permuted, files["loso"], out=tmp_path / "b", **kw)
    a, b = _by_task(tmp_path / "a"), _by_task(tmp_path / "b")
    tested = [k for k, r in a.items() if set(r["subjects"]) == {"S01"}]
    assert len(tested) == 1
    ra, rb = a[tested[0]], b[tested[0]]
    assert ra["selection"] == "validation" and ra["val_ids"]
    assert ra["labels"] != rb["labels"]  # the records do carry the permuted labels ...
    assert ra["predictions"] == rb["predictions"] and ra["probabilities"] == rb["probabilities"]  # ... unused
    # where S01 trains, its labels matter: some other fold's predictions change
    assert any(a[k]["probabilities"] != b[k]["probabilities"] for k in a if k != tested[0])


def test_validation_selection_picks_the_best_validation_epoch_on_training_subjects(files, tmp_path):
    res = evaluate(files["data"], files["loso"], models="tpool-mean", recipe="paper", epochs=4, model_options=TINY,
                   threads=1, out=tmp_path)
    assert not res.failed
    with open_store(files["data"]) as st:
        subject = {s.id: s.subject for s in st.samples}
    for rec in _records(tmp_path).values():
        assert rec["selection"] == "validation"
        val = [p["val_metric"] for p in rec["curve"]]
        assert None not in val and rec["selected_epoch"] == int(np.argmax(val)) + 1
        train, valid, test = ({subject[i] for i in rec[k]} for k in ("train_ids", "val_ids", "sample_ids"))
        assert valid and not (train & valid) and not (train & test) and not (valid & test)


def test_au_detection_records_name_each_coded_frame_and_carry_its_labels(files, tmp_path):
    res = evaluate(files["au_data"], files["au_proto"], models="stc-nlstm", recipe="quick", model_options=TINY,
                   threads=1, out=tmp_path, **TWO_EPOCHS)
    assert not res.failed
    recs = _records(tmp_path)
    assert len(recs) == 3
    with open_store(files["au_data"]) as st:
        for rec in recs.values():
            assert rec["task"] == "au-detection" and rec["classes"] == ["AU1", "AU2", "AU4"] and rec["metric"] == "f1"
            expected = []
            for sid in dict.fromkeys(u.split("@")[0] for u in rec["sample_ids"]):
                aus, src = st.aus(sid), st.source_frame(sid)
                expected += [(f"{sid}@{src[k]}", aus[k].tolist()) for k in range(len(aus)) if (aus[k] != -1).any()]
            assert list(zip(rec["sample_ids"], rec["labels"])) == expected
            probs = np.array(rec["probabilities"])
            assert probs.shape == (len(expected), 3) and ((probs >= 0) & (probs <= 1)).all()
            assert rec["predictions"] == (probs >= 0.5).astype(int).tolist()
            assert set(rec["scores"]) >= {"f1", "f1_AU1"}


def test_two_stage_model_records_both_stages_and_batch_never_exceeds_training_set(files, tmp_path):
    res = evaluate(files["data"], files["loso"], models="mo-cnn-lstm", recipe="quick", batch_size=1000, epochs=2,
                   model_options=TINY, threads=1, out=tmp_path, repeats=1)
    assert not res.failed
    rec = next(iter(_records(tmp_path).values()))
    stages = rec["recipe"]["stages"]
    assert [s["stage"] for s in stages] == ["stage1", "stage2"]
    assert all(s["batch_size"] == s["units"] == len(rec["train_ids"]) for s in stages)
    assert [p["stage"] for p in rec["curve"]] == ["stage1", "stage1", "stage2", "stage2"]
    assert rec["classes"] == list(CLASSES) and len(rec["probabilities"][0]) == 3


def test_iteration_budget_and_schedule_follow_the_recipe():
    import torch

    from ferbench.harness.train import clip_loss, lr_at, train_stage

    stage = {"stage": "end-to-end", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
             "schedule": [[0, 0.1], [5, 0.01]], "schedule_unit": "iteration", "iterations": 7, "epochs": None,
             "batch_size": 4}
    assert [lr_at(stage, s) for s in (0, 4, 5, 6)] == [0.1, 0.1, 0.01, 0.01]
    model = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Flatten(1), torch.nn.Linear(2 * 3, 2))
    forward = lambda m, inputs, targets: clip_loss(lambda x, lengths: m(x), inputs, targets)  # noqa: E731
    seen: list[int] = []
    x, y = torch.rand(10, 2, 3), torch.randint(0, 2, (10,))

    def batcher(idx, gen):
        seen.append(len(idx))
        return (x[idx], None), y[idx]

    res = train_stage(model, stage, 0, 10, batcher, forward, device=torch.device("cpu"), seed=0)
    assert len(seen) == 7 and seen[:3] == [4, 4, 2]  # 10 units in batches of 4: three steps an epoch
    assert [p["epoch"] for p in res.curve] == [1, 2, 3] and res.selected_epoch == 3


def test_every_epoch_presents_every_training_sample_exactly_once():
    """Property over n in 1..200 and batch sizes 1..64: the batches of an epoch are a partition of range(n), and
    no batch holds a single sample when n > 1 and the batch size is above 1 (batch norm cannot train on one)."""
    import torch

    from ferbench.harness.train import batches

    gen = torch.Generator().manual_seed(0)
    for n in range(1, 201):
        for bs in range(1, 65):
            got = batches(n, min(bs, n), gen)
            flat = torch.cat(got).tolist()
            assert sorted(flat) == list(range(n)), (n, bs)
            assert n == 1 or bs == 1 or min(len(b) for b in got) >= 2, (n, bs)


def test_bf16_on_the_cpu_runs_the_cuda_code_paths_end_to_end(files, tmp_path):
    """--precision bf16 puts training, selection and prediction under autocast on the CPU, as on CUDA: the
    records say so, hold float probabilities that sum to 1, and differ from the float32 run's."""
    kw = dict(models="static,lstm-mean,mo-cnn-lstm", recipe="quick", model_options=TINY, threads=1, **TWO_EPOCHS)
    bf = evaluate(files["data"], files["loso"], out=tmp_path / "bf16", precision="bf16", **kw)
    fp = evaluate(files["data"], files["loso"], out=tmp_path / "fp32", precision="fp32", **kw)
    assert not bf.failed and not fp.failed and len(bf.ran) == len(fp.ran) == 12
    a, b = _by_task(tmp_path / "bf16"), _by_task(tmp_path / "fp32")
    for task, rec in a.items():
        assert rec["status"] == "ok" and rec["config"]["dtype"] == "bfloat16 autocast"
        assert rec["config"]["precision"] == "bf16" and b[task]["config"]["dtype"] == "float32"
        probs = np.asarray(rec["probabilities"])
        assert probs.dtype == np.float64 and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert any(a[t]["probabilities"] != b[t]["probabilities"] for t in a)  # autocast really ran
    with pytest.raises(FerbenchError, match="unknown precision"):
        evaluate(files["data"], files["loso"], out=tmp_path / "x", precision="fp8", **kw)
