"""A researcher's own model, through the same registry and card as the bundled ones, three ways:

- a spec on the command line: `--model path/to/file.py:Name` or `--model package.module:factory`;
- an entry point in the `ferbench.models` group of an installed package (`name = "pkg.module:factory"`);
- the Python API: `ferbench.register_model` (the decorator the bundled models use).

`Name` is an `nn.Module` class or a factory `fn(num_classes, **cfg) -> nn.Module` whose module takes
`forward(x, lengths=None)` with `x` (B, T, 3, H, W) in [0, 1] and returns logits (B, num_classes). An optional
`FERBENCH_CARD` dict beside it (or a `ferbench_card` attribute on it) overrides the explicit defaults below
(`index`, `min_size`, `variable_length`, `input`, `paper`, `table`, `lr`, `iterations`, `quick_iterations`,
`batch_size`, `augment`). The registry name is `Name`; its card names its source and the sha256 of its
source file, which is part of every task's fingerprint: an edited model file is rerun on resume.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from ferbench.errors import FerbenchError
from ferbench.models._common import Recipe

ENTRY_POINT_GROUP = "ferbench.models"
#: What a model without a card gets (all overridable by FERBENCH_CARD or --model-options for create_model's).
DEFAULT_CARD: dict[str, Any] = {
    "index": "clip", "min_size": 16, "variable_length": True, "paper": "user", "table": "-",
    "input": "(B, T, 3, H, W) in [0, 1] + lengths -> logits (B, num_classes)", "lr": 1e-3, "iterations": 400,
    "quick_iterations": 80, "batch_size": 16, "augment": None,
}


def is_spec(text: str) -> bool:
    """A model spec (file.py:Name or module:factory) rather than a registry name."""
    return ":" in text


def _module_from_file(path: Path) -> Any:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    mod_name = f"ferbench_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise FerbenchError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: say where it failed, in one line
        raise FerbenchError(f"{path}: importing it failed ({type(e).__name__}: {e})") from None
    return module


def _resolve(spec: str) -> tuple[Callable[..., Any], Any, str, Path | None]:
    """(factory, module, source text, source file) of a spec."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise FerbenchError(f"--model {spec!r}: expected path/to/file.py:Name or package.module:factory")
    if target.endswith(".py") or "/" in target or target.startswith("."):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise FerbenchError(f"{path}: model file not found (from the model spec {spec!r})")
        module = _module_from_file(path)
        source = f"{path}:{attr}"
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise FerbenchError(f"--model {spec!r}: cannot import {target} ({e}); install it or give a file path") from None
        path = Path(inspect.getfile(module)) if getattr(module, "__file__", None) else None
        source = spec
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise FerbenchError(f"{source}: {attr!r} is not a class or function in that module")
    return factory, module, source, path


def _card_values(factory: Any, module: Any) -> dict[str, Any]:
    given = getattr(factory, "ferbench_card", None) or getattr(module, "FERBENCH_CARD", None) or {}
    if not isinstance(given, dict):
        raise FerbenchError(f"{getattr(module, '__file__', module)}: FERBENCH_CARD must be a dict")
    unknown = sorted(set(given) - set(DEFAULT_CARD))
    if unknown:
        raise FerbenchError(f"FERBENCH_CARD: unknown key(s) {', '.join(unknown)}; keys: {', '.join(DEFAULT_CARD)}")
    return {**DEFAULT_CARD, **given}


def register_spec(spec: str, name: str | None = None, source: str | None = None) -> str:
    """Import and register a user model from a spec; return its registry name. Registering the same spec again
    picks up an edited source file (a new code fingerprint)."""
    from ferbench.models._registry import _CARDS, register_model
    from ferbench.records import check_slug

    factory, module, src, path = _resolve(spec)
    name = name or spec.rpartition(":")[2]
    check_slug(name, "model")
    if name in _CARDS and _CARDS[name].source == "ferbench":
        raise FerbenchError(f"{src}: {name!r} is the name of a bundled model; rename your class or factory")
    card = _card_values(factory, module)
    code = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None
    it, quick, lr = int(card["iterations"]), int(card["quick_iterations"]), float(card["lr"])
    default = Recipe(stage="end-to-end", optimizer="adam", lr=lr, iterations=it, schedule_unit="iteration",
                     batch_size=int(card["batch_size"]), augment=card["augment"], source="ferbench user-model default")
    fast = Recipe(stage="end-to-end", optimizer="adam", lr=lr, iterations=quick, schedule_unit="iteration",
                  batch_size=int(card["batch_size"]), source="ferbench user-model quick")
    register_model(name, paper=str(card["paper"]), table=str(card["table"]), input=str(card["input"]),
                   index=str(card["index"]), variable_length=bool(card["variable_length"]),
                   min_size=int(card["min_size"]), recipes={"default": (default,), "paper": (default,), "quick": (fast,)},
                   departures=("A user model: ferbench's explicit defaults stand in for a card it did not give.",)
                   if card == DEFAULT_CARD else (), source=source or src, code=code, replace=True)(factory)
    return name


def load_entry_points() -> list[str]:
    """Register every model of the `ferbench.models` entry-point group (installed packages); their names."""
    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) or "?"
        names.append(register_spec(ep.value, name=ep.name, source=f"entry point {ep.name} ({dist}: {ep.value})"))
    return names


def check_model(name: str, num_classes: int = 3, batch: int = 2, frames: int = 8) -> list[tuple[str, bool, str]]:
    """Does a registered model fit the contract? One forward and one optimisation step on a tiny batch of the
    input its card declares. Returns (check, passed, detail) in order; later checks are skipped after a
    failure they depend on."""
    import torch
    from torch.nn import functional as F

    from ferbench.models._registry import create_model, model_card, model_options

    card = model_card(name)
    size = max(int(card.min_size), 16)
    t = 5 if card.index == "states" else frames
    accepted = model_options(name) or ()
    cfg = {k: v for k, v in (("image_size", size), ("num_frames", t)) if k in accepted}
    out: list[tuple[str, bool, str]] = []
    torch.manual_seed(0)
    try:
        model = create_model(name, num_classes, **cfg)
    except Exception as e:  # the user's code
        return [("builds", False, f"{name}({num_classes}{''.join(f', {k}={v}' for k, v in cfg.items())}) raised "
                                  f"{type(e).__name__}: {e}")]
    if not isinstance(model, torch.nn.Module):
        return [("builds", False, f"returned {type(model).__name__}, not a torch.nn.Module")]
    out.append(("builds", True, f"{sum(p.numel() for p in model.parameters()):,} parameters"))
    x = torch.rand(batch, t, 3, size, size)
    lengths = torch.full((batch,), t, dtype=torch.int64)
    try:
        logits = model(x, lengths)
        out.append(("accepts forward(x, lengths)", True, f"x {tuple(x.shape)}"))
    except TypeError as e:
        return out + [("accepts forward(x, lengths)", False, f"forward(x, lengths) raised TypeError: {e}; the "
                       "harness always passes lengths (B,) = real frames per clip")]
    except Exception as e:
        return out + [("accepts forward(x, lengths)", False, f"raised {type(e).__name__}: {e} on x {tuple(x.shape)}")]
    shape_ok = isinstance(logits, torch.Tensor) and tuple(logits.shape) == (batch, num_classes)
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    out.append(("returns logits (B, num_classes)", shape_ok, f"expected {(batch, num_classes)}, got {got}"))
    if not shape_ok:
        return out
    finite = bool(torch.isfinite(logits).all())
    out.append(("finite outputs", finite, "" if finite else "NaN or inf in the logits of random input"))
    if not finite:
        return out
    loss = F.cross_entropy(logits.float(), torch.arange(batch) % num_classes)
    model.zero_grad(set_to_none=True)
    if not loss.requires_grad:
        return out + [("gradients reach the parameters", False, "the logits are detached from every parameter "
                       "(no grad_fn): nothing can be trained")]
    loss.backward()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    out.append(("gradients reach the parameters", bool(with_grad),
                f"{len(with_grad)} of {len(list(model.parameters()))} parameter tensors get a gradient"
                if with_grad else "no parameter gets a gradient (detached output, or no trainable parameters)"))
    if not with_grad:
        return out
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    moved = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    out.append(("one optimisation step", moved and finite, "" if moved and finite else
                "the weights did not change" if not moved else "the weights went non-finite"))
    if card.variable_length and batch > 1:
        short = lengths.clone()
        short[1] = max(1, t // 2)
        try:
            ok = bool(torch.isfinite(model(x, short)).all())
            out.append(("variable lengths (a shorter clip in the batch)", ok, "" if ok else "non-finite output"))
        except Exception as e:
            out.append(("variable lengths (a shorter clip in the batch)", False,
                        f"raised {type(e).__name__}: {e}; set FERBENCH_CARD variable_length=False if it needs fixed T"))
    return out
