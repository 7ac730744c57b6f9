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
MAX_EPOCHS = 10_000  # 100x the longest paper recipe: a larger number is a typo, and a run that never ends


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
                                        or int(self.epochs) != self.epochs or not 1 <= self.epochs <= MAX_EPOCHS):
            raise FerbenchError(f"--epochs must be a whole number from 1 to {MAX_EPOCHS}; got {self.epochs!r}")
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


# -- the paper's network and training: what `--recipe paper` builds, and how a run departs from it -----------

#: Switches whose departure reads in words: option -> (what, word when True, word when False).
_SWITCHES = {"centre": ("centring", "on", "off"), "batch_norm": ("batch norm", "on", "off"),
             "freeze_cnn": ("CNN in stage 2", "frozen", "fine-tuned"),
             "standardize": ("per-frame standardisation", "on", "off")}
#: Options that follow the data (frame size, clip length, feature width), judged apart or not at all.
_DATA_OPTIONS = ("image_size", "num_frames", "in_features", "in_channels")


def _members(model: str) -> tuple[str, ...]:
    return FUSION_MEMBERS if model in FUSION_ENTRIES else (model,)


def with_paper_options(models: list[str], kind: str, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The create_model options of every model: under `--recipe paper`, the card's paper network (no centring,
    kim2017's batch-norm-free, frozen-in-stage-2 CNN, ...) beneath the user's own options, which win."""
    if kind != "paper":
        return dict(options)
    from ferbench.models import model_card

    out = dict(options)
    for m in (x for model in models for x in _members(model)):
        paper = model_card(m).paper_options
        if paper:
            out[m] = {**paper, **options.get(m, {})}
    return out


def _say(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _option_departures(model: str, options: dict[str, Any]) -> list[str]:
    """One clause per way the network built with `options` departs from the paper's: its widths ('compact
    widths' when they are ferbench's compact ones, else 'fc 16 (paper: 512)'), a switch ('centring on (paper:
    off)'), any other option."""
    from ferbench.models import compact_options, model_card, model_defaults

    defaults = model_defaults(model)
    paper = {**defaults, **model_card(model).paper_options}
    built = {**defaults, **options}
    differ = {k: v for k, v in built.items()
              if k in paper and k not in _DATA_OPTIONS and _say(v) != _say(paper[k])}
    compact = compact_options(model)
    widths = {k: v for k, v in differ.items() if k in compact}
    out = []
    if widths and all(_say(v) == _say(compact[k]) for k, v in widths.items()):
        out.append("compact widths")
        differ = {k: v for k, v in differ.items() if k not in widths}
    for k, v in differ.items():
        if k in _SWITCHES:
            what, yes, no = _SWITCHES[k]
            out.append(f"{what} {yes if v else no} (paper: {yes if paper[k] else no})")
        else:
            out.append(f"{k} {_say(v)} (paper: {_say(paper[k])})")
    return out


def _training_departures(model: str, dataset: str | None, ov: Overrides) -> list[str]:
    """One clause per override of the paper recipe (`--epochs`, `--lr`, `--augment`; `--batch-size` where the
    paper states a batch size -- none of the papers does, so ferbench's choice is no more the paper's than yours)."""
    paper = card_recipe(model, "paper", dataset)
    out = []
    for key, value in ov.as_dict().items():
        if key == "epochs":
            was = "/".join(f"{r.epochs} epochs" if r.epochs else f"{r.iterations} iterations" for r in paper)
            out.append(f"epochs {value} (paper recipe: {was})")
        elif key == "lr" and any(float(value) != r.lr for r in paper):
            out.append(f"lr {value:g} (paper recipe: {'/'.join(dict.fromkeys(f'{r.lr:g}' for r in paper))})")
        elif key == "augment" and any((None if value.strip().lower() == "none" else value.strip().lower())
                                      != r.augment for r in paper[:1]):
            out.append(f"augmentation {value} (paper recipe: {paper[0].augment or 'none'})")
        elif key == "batch_size" and any(r.batch_size is not None and r.batch_size != value for r in paper):
            out.append(f"batch size {value} (paper recipe: {'/'.join(str(r.batch_size) for r in paper)})")
    return out


def paper_departures(model: str, kind: str, dataset: str | None, ov: Overrides, options: dict[str, dict[str, Any]],
                     frame_size: int) -> list[str]:
    """How a run departs from the paper's network and training as the paper describes them, one clause each
    (empty: the paper's own); the leaderboard sets a paper's number beside the run as comparable only when empty.
    Under another recipe only the network and frame size are listed (the leaderboard names the recipe itself;
    overrides of a ferbench recipe are no departure from the paper's). Frame size: the card's `paper_size`
    against the data's."""
    from ferbench.models import model_card

    out: list[str] = []
    for m in _members(model):
        card = model_card(m)
        if card.source != "ferbench":
            return [*out, "a user model (no paper network)"]
        mine = _option_departures(m, options.get(m, {}))
        if kind == "paper":
            mine += _training_departures(m, dataset, ov)
        if card.paper_size is not None and frame_size != card.paper_size:
            mine.append(f"frame size {frame_size} (paper: {card.paper_size})")
        out += [f"{m}: {d}" for d in mine] if len(_members(model)) > 1 else mine
    return list(dict.fromkeys(out))
