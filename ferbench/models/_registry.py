"""The model registry (timm/torchvision style): a name -> factory map plus each model's card."""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from torch import nn

from ferbench.errors import FerbenchError
from ferbench.models._common import ModelCard

F = TypeVar("F", bound=Callable[..., nn.Module])

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_CARDS: dict[str, ModelCard] = {}


def register_model(name: str, *, paper: str, table: str, input: str, departures: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator: register a model class or factory `fn(num_classes, **cfg) -> nn.Module` under `name`."""

    def deco(fn: F) -> F:
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} registered twice")
        _FACTORIES[name] = fn
        _CARDS[name] = ModelCard(name=name, paper=paper, table=table, input=input, departures=tuple(departures))
        return fn

    return deco


def _known() -> str:
    return ", ".join(sorted(_FACTORIES))


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_FACTORIES)


def model_info(name: str) -> dict:
    """The card of a model: name, paper, table, input, departures (a list of strings)."""
    if name not in _CARDS:
        raise FerbenchError(f"unknown model {name!r}; known models: {_known()}")
    c = _CARDS[name]
    return {"name": c.name, "paper": c.paper, "table": c.table, "input": c.input, "departures": list(c.departures)}


def create_model(name: str, num_classes: int, **cfg) -> nn.Module:
    """Build model `name` for `num_classes` classes; `cfg` overrides its paper-sized defaults."""
    if name not in _FACTORIES:
        raise FerbenchError(f"unknown model {name!r}; known models: {_known()}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise FerbenchError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    fn = _FACTORIES[name]
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = [k for k in params if k not in ("self", "num_classes")]
        bad = sorted(set(cfg) - set(allowed))
        if bad:
            raise FerbenchError(f"model {name!r} has no option(s) {', '.join(bad)}; options: {', '.join(allowed)}")
    return fn(num_classes, **cfg)
