"""Every bundled model, quick recipe, end to end on prepared replicas under every kind of protocol: 10fold (a
small copy), loso, 3fold (BP4D, a copy listing the replica's subjects in two folds), val (AFEW), unseen-mode (a small copy)
and cross-dataset, run on a dask cluster on loopback (through `scheduler=`, as `--scheduler` does; 3fold with
its frames streamed by the workers). Every record must be complete, subject-disjoint, and recomputable from its
own lists.

The replicas are the session's shared ones (same arguments as the protocol tests, so they are prepared once).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from _harness_data import TINY, TWO_EPOCHS
from _protocol_files import protocol_copy
from _replicas import REPLICAS
from ferbench.harness import evaluate
from ferbench.metrics import trial_scores
from ferbench.records import finite_or_none
from ferbench.models import list_models
from ferbench.protocols import load_protocol
from ferbench.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FUSION = ["fusion-avg", "fusion-svm"]


def _copy(folder: Path, name: str, **params) -> Path:
    """A one-repeat copy of a bundled protocol with splitter parameters changed (fewer folds for a replica)."""
    raw_params = yaml.safe_load(load_protocol(name).path.read_text()).get("params", {})
    return protocol_copy(folder, name, name=f"{name}-small", repeats=1, params={**raw_params, **params})


def _subjects(path: Path) -> dict[str, str]:
    with open_store(path) as st:
        return {s.id: s.subject for s in st.samples}


CASES = ["10fold", "loso", "3fold", "val", "unseen-mode", "cross-dataset"]


@pytest.mark.parametrize("case", CASES)
def test_every_model_runs_under_the_protocol(case, prepared_replica, dask_scheduler, tmp_path):
    data_test = None
    if case == "10fold":
        data, proto = prepared_replica("ck+", **REPLICAS["ck+"]), _copy(tmp_path, "10fold", n_splits=2)
    elif case == "loso":
        data, proto = prepared_replica("mmi", **REPLICAS["mmi"]), "loso"
    elif case == "3fold":
        data = prepared_replica("bp4d", **REPLICAS["bp4d"])
        subjects = sorted(set(_subjects(data).values()))  # two folds: the first subject, then the others
        proto = _copy(tmp_path, "3fold", folds=[subjects[:1], subjects[1:]])
    elif case == "val":
        data, proto = prepared_replica("afew", **REPLICAS["afew"]), "val"
    elif case == "unseen-mode":
        data, proto = prepared_replica("oulu-casia", **REPLICAS["oulu-casia"]), _copy(tmp_path, "unseen-mode", n_splits=2)
    else:
        data, proto = prepared_replica("casme2", **REPLICAS["casme2"]), "cross-dataset"
        data_test = prepared_replica("mmi", **REPLICAS["mmi"])
    out = tmp_path / "runs"
    # BP4D (AU windows over the native index, clips, expression states) runs with frames streamed from each
    # worker's own file handle: a budget of one byte fits no frames
    budget = "1" if case == "3fold" else None
    res = evaluate(data, proto, data_test=data_test, models="all", recipe="quick", model_options=TINY, threads=1, **TWO_EPOCHS,
                   out=out, scheduler=dask_scheduler, memory_budget=budget)
    assert not res.failed, res.failed
    records = [json.loads(p.read_text()) for p in sorted(out.rglob("r*-f*.json"))]
    au = case == "3fold"
    expected_models = set(list_models()) | (set() if au else set(FUSION))
    assert {r["model"] for r in records} == expected_models
    folds = {(r["repeat"], r["fold"]) for r in records}
    assert len(records) == len(expected_models) * len(folds)
    train_subject = _subjects(data)
    test_subject = _subjects(data_test) if data_test else train_subject
    for r in records:
        assert r["config"]["data_mode"] == ("streamed" if budget else "resident")
        n = len(r["sample_ids"])
        assert n > 0 and len(r["labels"]) == len(r["predictions"]) == len(r["probabilities"]) == len(r["subjects"]) == n
        assert r["task"] == ("au-detection" if au else "classification")
        assert r["recipe"]["name"] == "quick" and r["fingerprints"]["data"] and r["versions"]["torch"]
        probs = np.asarray(r["probabilities"])
        assert probs.shape == (n, len(r["classes"])) and np.isfinite(probs).all()
        if not au:
            assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
            assert r["predictions"] == probs.argmax(1).tolist() or r["model"] == "fusion-svm"
        # subject-disjoint: train, validation and test subjects never meet
        train = {train_subject[i] for i in r["train_ids"]}
        val = {train_subject[i] for i in r["val_ids"]}
        test = {test_subject[u.split("@")[0]] for u in r["sample_ids"]}
        assert test == set(r["subjects"])
        if data_test is None:
            assert not (train & test) and not (val & test) and not (train & val)
        # the scores are recomputable from the record's lists
        assert r["scores"] == finite_or_none(trial_scores(r))  # undefined (NaN) scores are null in the JSON
    if case == "val":
        # the protocol's validation set, carved from Train for the recipes that select on it, and only for them
        assert all(bool(r["val_ids"]) == (r["selection"] == "validation") for r in records)
    if case == "unseen-mode":
        assert all("VL/Strong" not in r["modes"] for r in records)
