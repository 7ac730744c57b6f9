"""From a plan to task descriptions: one seeded `TaskSpec` per (model, repeat, fold), with its fingerprints.

The spec carries the ids of the task's training, validation and test samples, the labels of the training and
validation ids (in the plan's class order), and no test label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferbench.harness.fingerprint import hash_json
from ferbench.harness.recipes import selection_of
from ferbench.harness.spec import FUSION_ENTRIES, FUSION_MEMBERS, TaskSpec


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares (resolved by `evaluate` before any work)."""

    recipe: str
    dataset: str
    dataset_test: str
    data: Path
    data_test: Path
    device: str
    threads: int
    fingerprints: dict[str, str]  # data, data_test, protocol, code
    precision: str = "auto"
    pretrain: dict[str, Any] = field(default_factory=dict)  # model -> harness.transfer.Pretrain (transfer protocols)
    memory_budget: int | None = None  # bytes a task's process may keep resident (not in any fingerprint: see docs)


def model_fingerprint(model: str, ctx: RunContext, stages: tuple[dict[str, Any], ...], options: dict[str, Any],
                      classes: tuple[str, ...], task: str, index: str, val_fraction: float | None) -> str:
    """Everything about the model and its training that changes predictions."""
    return hash_json({"model": model, "recipe": ctx.recipe, "stages": stages, "options": options, "classes": classes,
                      "task": task, "index": index, "selection": selection_of(stages), "val_fraction": val_fraction,
                      "precision": ctx.precision, "user_code": user_model_source(model),
                      **({"pretrain": ctx.pretrain[model].describe()} if model in ctx.pretrain else {})})


def user_model_source(model: str) -> list[Any] | None:
    """(source, code sha256) of a user model (its edits rerun its tasks); None for a bundled one."""
    from ferbench.harness.spec import FUSION_ENTRIES
    from ferbench.models import model_card

    if model in FUSION_ENTRIES:
        return None
    card = model_card(model)
    return None if card.source == "ferbench" else [card.source, card.code]


def user_model_files(model: str) -> dict[str, str]:
    """The source files of a user model (its file and the modules of its folder it imports) -> sha256."""
    from ferbench.models import model_card

    return {} if model in FUSION_ENTRIES else dict(model_card(model).files)


def make_specs(plan: Any, model: str, stages: tuple[dict[str, Any], ...], options: dict[str, Any], index: str,
               classes: tuple[str, ...], ctx: RunContext, val_fraction: float | None) -> list[TaskSpec]:
    """The tasks of one model over every fold of `plan`."""
    proto, tr, te = plan.protocol, plan.train_table, plan.test_table
    members = FUSION_MEMBERS if model in FUSION_ENTRIES else (model,)
    options = {m: options[m] for m in members if m in options}  # another model's options never rerun this one
    fp_model = model_fingerprint(model, ctx, stages, options, classes, proto.task, index, val_fraction)
    specs = []
    for fold in plan.folds:
        train_ids = tuple(tr.ids[i] for i in fold.train)
        val_ids = tuple(tr.ids[i] for i in fold.val)
        test_ids = tuple(te.ids[i] for i in fold.test)
        folds_fp = hash_json({"train": train_ids, "val": val_ids, "test": test_ids, "seed": int(fold.seed)})
        specs.append(TaskSpec(
            model=model, protocol=proto.name, dataset=ctx.dataset, dataset_test=ctx.dataset_test, task=proto.task,
            repeat=int(fold.repeat), fold=int(fold.fold), seed=int(fold.seed), data=str(ctx.data),
            data_test=str(ctx.data_test), classes=classes, train_ids=train_ids, val_ids=val_ids, test_ids=test_ids,
            y_train=tuple(int(plan.y_train[i]) for i in fold.train), y_val=tuple(int(plan.y_train[i]) for i in fold.val),
            train_subjects=tuple(tr.subjects[i] for i in fold.train), stages=stages, recipe_name=ctx.recipe,
            selection=selection_of(stages), model_options=options, index=index, device=ctx.device,
            threads=ctx.threads, metric=proto.metric, precision=ctx.precision,
            model_source=(user_model_source(model) or [None])[0], model_files=user_model_files(model),
            pretrain=ctx.pretrain[model].seeded(proto.seed, fold.repeat) if model in ctx.pretrain else None,
            memory_budget=ctx.memory_budget,
            fingerprints={**ctx.fingerprints, "folds": folds_fp, "model": fp_model},
        ))
    return specs
