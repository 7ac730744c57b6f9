"""Training recipes as plain dicts: a model card's recipe for a kind (default | paper | quick) and dataset,
with the user's overrides applied, checked before any work starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ferbench.errors import FerbenchError
from ferbench.harness.spec import FUSION_ENTRIES, FUSION_MEMBERS
from ferbench.models import OPTIMIZERS, RECIPE_KINDS, SELECTIONS, STAGES  # the one recipe vocabulary

#: Batch size where a recipe gives none (the papers mostly do not): small on CPU, large on a GPU.
DEFAULT_BATCH = {"cpu": 32, "cuda": 128}


@dataclasses.dataclass(frozen=True)
class Overrides:
    """CLI/API overrides applied to every stage of every model's recipe (None = keep the recipe's)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    augment: str | None = None

    def check(self) -> None:
        """Refuse impossible values before any data is read."""
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float))
                                        or int(self.epochs) != self.epochs or self.epochs < 1):
            raise FerbenchError(f"--epochs must be a whole number >= 1; got {self.epochs!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, float))
                                            or int(self.batch_size) != self.batch_size or self.batch_size < 1):
            raise FerbenchError(f"--batch-size must be a whole number >= 1; got {self.batch_size!r}")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not 0 < float(self.lr) < float("inf")):
            raise FerbenchError(f"--lr must be a positive number; got {self.lr!r}")
        if self.augment is not None:
            from ferbench.preprocess.augment import get_preset

            get_preset(self.augment)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _stage_dict(recipe: Any) -> dict[str, Any]:
    d = dataclasses.asdict(recipe)
    d["schedule"] = [list(p) for p in d.get("schedule") or ()]
    d.setdefault("augment", None)
    d.setdefault("selection", "last-epoch")
    return d


def _apply(stage: dict[str, Any], ov: Overrides, device_type: str) -> dict[str, Any]:
    s = dict(stage)
    if ov.epochs is not None:
        s["epochs"], s["iterations"] = int(ov.epochs), None
    if ov.lr is not None:
        old = float(s["lr"])
        s["lr"] = float(ov.lr)  # the schedule keeps its shape, scaled to the new initial lr
        s["schedule"] = [[start, value * float(ov.lr) / old if old else float(ov.lr)] for start, value in s["schedule"]]
    if ov.batch_size is not None:
        s["batch_size"] = int(ov.batch_size)
    if s.get("batch_size") is None:
        s["batch_size"] = DEFAULT_BATCH["cuda" if device_type == "cuda" else "cpu"]
    if ov.augment is not None:
        s["augment"] = None if ov.augment.strip().lower() == "none" else ov.augment.strip().lower()
    return s


def _check_stage(model: str, s: dict[str, Any]) -> None:
    where = f"model {model!r}, stage {s.get('stage')!r}"
    if s.get("stage") not in STAGES:
        raise FerbenchError(f"{where}: unknown recipe stage; the harness runs {', '.join(STAGES)}")
    if str(s.get("optimizer", "")).lower() not in OPTIMIZERS:
        raise FerbenchError(f"{where}: unknown optimizer {s.get('optimizer')!r}; choose {', '.join(OPTIMIZERS)}")
    if not s.get("epochs") and not s.get("iterations"):
        raise FerbenchError(f"{where}: the recipe gives neither epochs nor iterations; pass --epochs N")
    if s.get("selection", "last-epoch") not in SELECTIONS:
        raise FerbenchError(f"{where}: selection must be one of {', '.join(SELECTIONS)}")


def card_recipe(model: str, kind: str, dataset: str | None) -> tuple[Any, ...]:
    """The model card's recipe (one Recipe per stage) for this kind and dataset."""
    from ferbench.models import model_card

    if kind not in RECIPE_KINDS:
        raise FerbenchError(f"unknown recipe {kind!r}; choose one of {', '.join(RECIPE_KINDS)}")
    return tuple(model_card(model).recipe_for(kind, dataset))


def resolve(model: str, kind: str, dataset: str | None, ov: Overrides, device_type: str) -> tuple[dict[str, Any], ...]:
    """Resolved stages for a model (fusion entries: every member's stages, each tagged with `member`)."""
    if model in FUSION_ENTRIES:
        out = []
        for member in FUSION_MEMBERS:
            for s in resolve(member, kind, dataset, ov, device_type):
                out.append({**s, "member": member})
        return tuple(out)
    stages = tuple(_apply(_stage_dict(r), ov, device_type) for r in card_recipe(model, kind, dataset))
    if not stages:
        raise FerbenchError(f"model {model!r} has no {kind!r} recipe")
    for s in stages:
        _check_stage(model, s)
    return stages


def selection_of(stages: tuple[dict[str, Any], ...]) -> str:
    """How the final weights are chosen: the last stage's selection (fusion: validation if any member's says so)."""
    if any("member" in s for s in stages):
        return "validation" if any(s.get("selection") == "validation" for s in stages) else "last-epoch"
    return stages[-1].get("selection") or "last-epoch"
