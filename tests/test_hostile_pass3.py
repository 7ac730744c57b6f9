"""Cases the third hostile pass found wrong, over streaming and the memory budget, the in-the-wild adapters, the
stored-folds / fixed-split splitters, metric_names and synth: each fails on the code before its fix.

- a --memory-budget too long for a float crashed (OverflowError) and a long one was rounded;
- a data file truncated while a task streamed it failed with h5py's bare RuntimeError, naming no file;
- two tasks on two threads of one worker shared one prefetcher (crashes, or one task's batch handed to the other);
- a task that stopped before its planned batches (a divergence) left its read-ahead thread holding batches;
- samples whose stored split no fold names were dropped from every fold without a word;
- metric_names could show one metric under another metric's name;
- synth moved half a replica in before finding a file where it writes a folder (and a file above the output
  folder was an OSError, exit 1);
- a clip listed twice in one list was reported as "in 2 test lists" (FERV39k: also its train list).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _harness_data import TINY, make_store, write_protocol
from _protocol_files import protocol_copy
from ferbench.cli import app
from ferbench.datasets import scan
from ferbench.errors import FerbenchError
from ferbench.harness import evaluate
from ferbench.harness.data import open_data
from ferbench.harness.memory import Budget, parse_bytes
from ferbench.harness.train import batches
from ferbench.protocols import load_protocol, make_plan
from ferbench.protocols.table import SampleTable

CPU = torch.device("cpu")
runner = CliRunner()


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ferbench-prefetch" and t.is_alive()]


# ------------------------------------------------------------------------------- memory budget and streaming
def test_a_memory_budget_is_parsed_exactly_and_an_absurd_one_is_one_error():
    assert parse_bytes("12345678901234567") == 12345678901234567  # a float would round it
    assert parse_bytes("0.5 KiB") == 512
    with pytest.raises(FerbenchError, match="at most 8 EiB"):
        parse_bytes("1" + "0" * 400)  # float() gives inf: OverflowError before the fix
    with pytest.raises(FerbenchError, match="at most 8 EiB"):
        parse_bytes(2**70)


def test_a_file_truncated_while_streaming_is_one_error_naming_it(tmp_path):
    path = make_store(tmp_path / "d.h5", subjects=2, per=6, size=16)
    src = open_data(path).source("clip", CPU, Budget(1, explicit=True))
    order = batches(len(src.ids), 3, torch.Generator().manual_seed(0))
    src.plan_clips(order)
    src.gather_clips(order[0])
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with pytest.raises(FerbenchError, match=r"d\.h5: frames? .* could not be read") as err:
        for pos in order[1:]:
            src.gather_clips(pos)
    assert "truncated" in str(err.value)
    assert not _prefetch_threads()  # the reader ended with its error: no hang, no thread left


def test_tasks_on_two_threads_of_one_worker_each_get_their_own_batches(tmp_path):
    """A dask worker with several threads runs tasks side by side on one process's files: each thread's streamed
    batches are the resident ones (one shared prefetcher crashed, or handed one task's batch to the other)."""
    d = open_data(make_store(tmp_path / "d.h5", subjects=3, per=4, size=16))
    resident = d.source("clip", CPU, Budget(2**40, explicit=True))
    sources, wrong, errors = {}, [], []

    def task(seed: int) -> None:
        try:
            src = sources[seed] = d.source("clip", CPU, Budget(1, explicit=True))
            for epoch in range(15):
                order = batches(len(src.ids), 2, torch.Generator().manual_seed(100 * seed + epoch))
                src.plan_clips(order)
                wrong.extend(seed for pos in order
                             if not torch.equal(src.gather_clips(pos)[0], resident.gather_clips(pos)[0]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=task, args=(s,), daemon=True) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a task hung on the shared prefetcher"
    assert not errors and not wrong
    assert sources[0] is not sources[1] and sources[0].mode == "streamed"


def test_a_task_that_stops_early_leaves_no_read_ahead_thread(tmp_path):
    """A diverging task stops in the middle of its planned batches; its prefetcher must not stay behind
    (holding batches and polling) in a worker that runs many tasks."""
    data = make_store(tmp_path / "d.h5", subjects=2, per=12, size=16)  # 6 batches: it diverges at the 2nd
    res = evaluate(data, write_protocol(tmp_path, "t-loso"), models="static", recipe="quick", device="cpu",
                   out=tmp_path / "runs", model_options=TINY, epochs=1, batch_size=2, lr=1e30, memory_budget="1")
    assert res.diverged and not res.failed
    assert not _prefetch_threads()


# ------------------------------------------------------------------------------- protocols
def _table(splits: list[str | None], subjects: list[str]) -> SampleTable:
    n = len(splits)
    return SampleTable(path=None, dataset="dfew", classes=("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust",
                                                           "Fear"),
                       ids=[f"{i:05d}" for i in range(n)], subjects=subjects, labels=np.arange(n) % 7,
                       splits=splits, modes=[{}] * n)


def test_stored_folds_report_clips_no_fold_names_and_refuse_a_subject_on_both_sides(tmp_path):
    splits = [f"set_{k}" for k in range(1, 6) for _ in range(3)] + ["set_6", None]
    plan = make_plan("dfew-5fold", _table(splits, [f"c{i}" for i in range(len(splits))]))
    assert sum(f.test.size for f in plan.folds) == 15  # the two unnamed clips are in no fold ...
    assert any("2 sample(s)" in w and "set_6: 1" in w and "(none): 1" in w for w in plan.warnings), plan.warnings
    subjects = [f"c{i}" for i in range(len(splits))]
    subjects[0] = subjects[3]  # one person in set_1 and set_2
    with pytest.raises(FerbenchError, match="subject leakage .* subject 'c3'"):
        make_plan("dfew-5fold", _table(splits, subjects))
    with pytest.raises(FerbenchError, match="fold 5 has no test samples"):  # a fold no clip holds: refused
        make_plan(protocol_copy(tmp_path, "dfew-5fold", params={"folds": [f"set_{k}" for k in range(1, 7)]}),
                  _table(splits[:15], subjects[:15]))


def test_fixed_split_names_a_split_no_sample_holds(tmp_path):
    proto = protocol_copy(tmp_path, "ferv39k", datasets=["dfew"], params={"train": ["train", "trian"],
                                                                          "test": ["test"]})
    plan = make_plan(proto, _table(["train"] * 4 + ["test"] * 3 + ["val"], [f"c{i}" for i in range(8)]))
    assert any("no sample" in w and "trian" in w for w in plan.warnings), plan.warnings
    assert any("1 sample(s)" in w and "val: 1" in w for w in plan.warnings), plan.warnings


@pytest.mark.parametrize("names", [{"accuracy": "UAR"}, {"accuracy": "R", "uar": "R"}])
def test_metric_names_never_show_one_metric_under_anothers_name(tmp_path, names):
    with pytest.raises(FerbenchError, match="metric_names.*distinct names"):
        load_protocol(protocol_copy(tmp_path, "dfew-5fold", metric_names=names))


# ------------------------------------------------------------------------------- adapters
def test_a_clip_listed_twice_in_one_list_is_named_as_such(tmp_path):
    root = tmp_path / "f"
    rows = {"train": ["Action/Happy/0001 Happy", "War/Sad/0002 Sad", "Action/Happy/0001 Happy"],
            "test": ["War/Sad/0002 Sad", "Crime/Fear/0003 Fear"]}
    (root / "4_setups/All_scenes").mkdir(parents=True)
    for split, lines in rows.items():
        (root / f"4_setups/All_scenes/{split}_All.csv").write_text("\n".join(lines) + "\n")
        for line in lines:
            (root / "2_ClipsforFaceCrop" / line.split()[0]).mkdir(parents=True, exist_ok=True)
            (root / "2_ClipsforFaceCrop" / line.split()[0] / "01.jpg").write_bytes(b"")
    reasons = dict(scan("ferv39k", root).excluded)
    assert "train_All.csv: clip Action/Happy/0001 is listed 2 times in this list (lines 1, 3)" in \
        reasons["Action/Happy/0001"]
    assert "is in 2 split lists" in reasons["War/Sad/0002"] and "expected exactly one split" in reasons["War/Sad/0002"]


# ------------------------------------------------------------------------------- synth
def test_synth_refuses_a_file_where_it_writes_a_folder_before_moving_anything(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "sad").write_text("the user's file")  # the folder replica writes sad/<clip>/..., after happy/ and neutral/
    res = runner.invoke(app, ["synth", "folder", str(out), "--subjects", "1"])
    assert res.exit_code == 2 and f"{out / 'sad'}: is a file where this replica writes a folder" in res.output, \
        res.output
    assert [p.name for p in out.iterdir()] == ["sad"] and (out / "sad").read_text() == "the user's file"
    (tmp_path / "plain").write_text("x")
    res = runner.invoke(app, ["synth", "folder", str(tmp_path / "plain" / "o")])
    assert res.exit_code == 2 and "plain: is a file where the folder of" in res.output, res.output
