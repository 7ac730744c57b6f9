"""The model registry (timm/torchvision style): a name -> factory map plus each model's card."""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from typing import Callable, TypeVar

from torch import nn

from ferbench.errors import FerbenchError
from ferbench.models._common import ModelCard, Recipe

F = TypeVar("F", bound=Callable[..., nn.Module])

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_CARDS: dict[str, ModelCard] = {}


def register_model(name: str, *, paper: str, table: str, input: str, index: str, variable_length: bool,
                   min_size: int, recipes: dict[str, tuple[Recipe, ...]],
                   departures: tuple[str, ...] = (), source: str = "ferbench", code: str | None = None,
                   files: tuple[tuple[str, str], ...] = (), transfer: str | None = None,
                   paper_options: dict | None = None, paper_size: int | None = None,
                   replace: bool = False) -> Callable[[F], F]:
    """Decorator: register a model class or factory `fn(num_classes, **cfg) -> nn.Module` under `name`,
    with its card (see `ModelCard` for the fields). `replace` lets a user model be registered again (an edited
    file); a bundled model is never replaced."""
    card = ModelCard(name=name, paper=paper, table=table, input=input, index=index,
                     variable_length=variable_length, min_size=min_size, departures=tuple(departures),
                     recipes=dict(recipes), source=source, code=code, files=tuple(files),
                     transfer=transfer, paper_options=dict(paper_options or {}), paper_size=paper_size)

    def deco(fn: F) -> F:
        if name in _FACTORIES and not (replace and _CARDS[name].source != "ferbench"):
            raise ValueError(f"model {name!r} registered twice")
        _FACTORIES[name] = fn
        _CARDS[name] = card
        return fn

    return deco


def _known() -> str:
    return ", ".join(sorted(_FACTORIES))


def model_card(name: str) -> ModelCard:
    """The card of model `name`."""
    if name not in _CARDS:
        raise FerbenchError(f"unknown model {name!r}; known models: {_known()}")
    return _CARDS[name]


def list_models(filter: str | None = None, paper: str | None = None,
                variable_length: bool | None = None) -> list[str]:
    """Registered model names, sorted; `filter` is a shell pattern on the name ("stc*"), `paper` a paper key
    ("yu2018"), `variable_length` keeps only models that do (True) or do not (False) take ragged clips."""
    names = sorted(_FACTORIES)
    if filter is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
    if paper is not None:
        names = [n for n in names if _CARDS[n].paper == paper]
    if variable_length is not None:
        names = [n for n in names if _CARDS[n].variable_length == bool(variable_length)]
    return names


def _recipe_dict(r: Recipe) -> dict:
    d = dataclasses.asdict(r)
    d["schedule"] = [list(p) for p in r.schedule]
    return d


def model_info(name: str) -> dict:
    """The card of a model as a JSON-friendly dict: name, paper, table, input, index, variable_length, min_size,
    departures (list of strings), recipes ({kind: [stage recipe dicts]})."""
    c = model_card(name)
    return {
        "name": c.name, "paper": c.paper, "table": c.table, "input": c.input, "index": c.index,
        "variable_length": c.variable_length, "min_size": c.min_size, "departures": list(c.departures),
        "recipes": {k: [_recipe_dict(r) for r in v] for k, v in c.recipes.items()}, "transfer": c.transfer,
        "paper_options": dict(c.paper_options), "paper_size": c.paper_size,
    }


def model_options(name: str) -> tuple[str, ...] | None:
    """The options (`cfg` keys) model `name` accepts, in signature order; None when its factory takes any."""
    if name not in _FACTORIES:
        raise FerbenchError(f"unknown model {name!r}; known models: {_known()}")
    params = inspect.signature(_FACTORIES[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(k for k in params if k not in ("self", "num_classes"))


def model_defaults(name: str) -> dict:
    """The options model `name` takes with their defaults (a bundled model's defaults are its paper's sizes)."""
    model_options(name)  # unknown names are one clear error
    params = inspect.signature(_FACTORIES[name]).parameters
    return {k: p.default for k, p in params.items()
            if k not in ("self", "num_classes") and p.default is not inspect.Parameter.empty}


def create_model(name: str, num_classes: int, **cfg) -> nn.Module:
    """Build model `name` for `num_classes` classes; `cfg` overrides its paper-sized defaults."""
    if name not in _FACTORIES:
        raise FerbenchError(f"unknown model {name!r}; known models: {_known()}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise FerbenchError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    allowed = model_options(name)
    bad = sorted(set(cfg) - set(allowed)) if allowed is not None else []
    if bad:
        raise FerbenchError(f"model {name!r} has no option(s) {', '.join(bad)}; options: {', '.join(allowed or ())}")
    return _FACTORIES[name](num_classes, **cfg)
