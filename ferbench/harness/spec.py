"""What one task needs to run anywhere (in-process or on a dask worker): a small, picklable description.

A `TaskSpec` names files, not arrays: each worker opens the data file itself (nothing large goes through
the scheduler). It carries the training labels it may use and *no test labels at all*: the client attaches
those to the record only after the task has returned its predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Harness-level entries that fuse the four chao2016 encoders (section 2.3 of that paper).
FUSION_MEMBERS = ("lstm-mean", "lstm-last", "tpool-mean", "tpool-max")
FUSION_ENTRIES = {"fusion-svm": "feature", "fusion-avg": "decision"}


@dataclass(frozen=True)
class TaskSpec:
    """One (model, protocol, repeat, fold) task, fully resolved by the client."""

    model: str
    protocol: str
    dataset: str
    dataset_test: str
    task: str  # "classification" | "au-detection"
    repeat: int
    fold: int
    seed: int
    data: str  # training store path
    data_test: str  # test store path (same as data unless cross-dataset)
    classes: tuple[str, ...]
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    y_train: tuple[int, ...]  # labels of train_ids in `classes` order (unused for au-detection)
    y_val: tuple[int, ...]  # labels of val_ids (used only for selection)
    train_subjects: tuple[str, ...]  # for grouped cross-validation inside a task (fusion C grid search)
    stages: tuple[dict[str, Any], ...]  # resolved recipe stages (see recipes.resolve)
    recipe_name: str
    selection: str  # "last-epoch" | "validation"
    model_options: dict[str, Any]  # create_model overrides (user's), before size-dependent ones
    index: str  # which frames the model consumes ("clip" | "states" | "native")
    device: str  # "cpu" | "cuda" | "cuda:N"
    threads: int
    metric: str
    fingerprints: dict[str, str] = field(default_factory=dict)
    precision: str = "auto"  # harness.train.PRECISIONS
    model_source: str | None = None  # a user model's spec (file.py:Name, module:factory, entry point): workers load it
    model_files: dict[str, str] = field(default_factory=dict)  # a user model's source files -> sha256 (the record's)
    pretrain: Any = None  # a transfer protocol's source side (harness.transfer.Pretrain), seeded for this repeat
    memory_budget: int | None = None  # bytes of frames a task's process may keep resident (None: the default share)

    @property
    def task_id(self) -> str:
        return f"{self.model}/{self.protocol}/r{self.repeat}/f{self.fold}"

    @property
    def frame_index(self) -> str:
        """The frame index the task trains and predicts on: AU detection reads native frames (its units are
        windows of them), everything else the model's own index."""
        return "native" if self.task == "au-detection" else self.index

    @property
    def frame_indexes(self) -> tuple[str, ...]:
        """Every frame index the task reads: its own, plus the expression-state frames where a recipe has
        kim2017's stage 1 (which trains on them)."""
        return _with_stage1(self.frame_index, self.stages)

    @property
    def frame_reads(self) -> tuple[tuple[str, str], ...]:
        """Every (file, frame index) the task reads: the training file's `frame_indexes`; the test file's own
        index (stage 1 trains on the training file only); a transfer task's source file, in the indexes of the
        source recipe (its source training runs under the task's memory budget)."""
        reads = [(self.data, i) for i in self.frame_indexes] + [(self.data_test, self.frame_index)]
        if self.pretrain is not None:
            reads += [(self.pretrain.data, i) for i in _with_stage1(self.index, self.pretrain.stages)]
        return tuple(dict.fromkeys(reads))


def _with_stage1(index: str, stages: tuple[dict[str, Any], ...]) -> tuple[str, ...]:
    """`index`, plus the expression-state frames where the stages have kim2017's stage 1 (which trains on them)."""
    stage1 = ("states",) if any(s.get("stage") == "stage1" for s in stages) else ()
    return tuple(dict.fromkeys((index, *stage1)))


def stage_seed(seed: int, *keys: int) -> int:
    """A seed for one part of a task (model init, batch order, augmentation) derived from the task seed."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]]).generate_state(1)[0])
