"""A researcher's own model, through the same registry and card as the bundled ones, three ways:

- a spec on the command line: `--model path/to/file.py:Name` or `--model package.module:factory`;
- an entry point in the `ferbench.models` group of an installed package (`name = "pkg.module:factory"`);
- the Python API: `ferbench.register_model` (the decorator the bundled models use).

`Name` is an `nn.Module` class or a factory `fn(num_classes, **cfg) -> nn.Module` whose module takes
`forward(x, lengths=None)` with `x` (B, T, 3, H, W) in [0, 1] and returns logits (B, num_classes). An optional
`FERBENCH_CARD` dict beside it (or a `ferbench_card` attribute on it) overrides the explicit defaults below
(`index`, `min_size`, `variable_length`, `input`, `paper`, `table`, `lr`, `iterations`, `quick_iterations`,
`batch_size`, `augment`). The registry name is `Name`; its card names its source and the sha256 of its
sources (the file and the modules of its folder that importing it loads), which is part of every task's
fingerprint: an edited model file or helper is rerun on resume. A file is imported as `python file.py` would
(its folder first on sys.path); whatever a model's module raises on import is one FerbenchError line.

Plugins (entry points) are listed without importing them (`plugins`) and loaded only when selected
(`load_plugin`, `load_selected`): one that is broken or clashes is refused by name, never blocking the others.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
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


def _installed_roots() -> tuple[Path, ...]:
    """Folders whose modules are installed code (the standard library, site-packages, ferbench itself): their
    version stands for them; they are never re-imported or fingerprinted as a user model's source."""
    import site
    import sysconfig

    import ferbench

    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= set(getattr(site, "getsitepackages", lambda: [])()) | {site.getusersitepackages()}
    return tuple(Path(p).resolve() for p in paths if p) + (Path(ferbench.__file__).parent.resolve(),)


def _module_file(module: Any) -> Path | None:
    f = getattr(module, "__file__", None)
    return Path(f).resolve() if isinstance(f, str) and f.endswith(".py") else None


def _local_modules(root: Path) -> dict[str, Path]:
    """The loaded modules whose source lies in the user's folder `root` (not installed code, not __main__)."""
    installed = _installed_roots()
    found = {}
    for name, module in list(sys.modules.items()):
        f = _module_file(module)
        if name != "__main__" and f is not None and f.is_relative_to(root) \
                and not any(f.is_relative_to(r) for r in installed):
            found[name] = f
    return found


def _import_fresh(root: Path | None, do_import: Callable[[], Any]) -> tuple[Any, list[Path]]:
    """Import a user model with the modules of its folder `root` read again from disk (so an edited helper is
    what runs, as well as what is fingerprinted); returns the module and the sources of `root` it loaded.
    `root` None (installed code): a plain import, no local sources."""
    if root is None:
        return do_import(), []
    for name in _local_modules(root):
        del sys.modules[name]
    module = do_import()
    return module, sorted(set(_local_modules(root).values()))


def _user_error(what: str, e: BaseException) -> FerbenchError:
    """The user's code raised: say where, in one line."""
    return FerbenchError(f"{what}: importing it failed ({type(e).__name__}: {e})")


def _module_from_file(path: Path) -> Any:
    """Import a model file as `python path` would: its folder first on sys.path (a `from helper import x` of a
    module beside it works), under a name of its own."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    mod_name = f"ferbench_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise FerbenchError(f"{path}: cannot be imported as a Python file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # the user's code: say where it failed, in one line
        sys.modules.pop(mod_name, None)
        raise _user_error(str(path), e) from None
    return module


def _import_module(spec: str, target: str) -> Any:
    try:
        return importlib.import_module(target)
    except ImportError as e:
        raise FerbenchError(f"{spec!r}: cannot import {target} ({e}); install it or give a file path") from None
    except (Exception, SystemExit) as e:
        raise _user_error(f"{spec!r}", e) from None


def _package_root(target: str) -> Path | None:
    """The folder of a module spec's top-level package (None when it is installed code or not found)."""
    top = importlib.util.find_spec(target.partition(".")[0]) if target else None
    if top is None or top.origin is None or not top.has_location:  # not found, built in, a namespace package
        return None
    origin = Path(top.origin).resolve()
    root = origin.parent  # a package's folder, or the folder of a top-level module
    return None if any(root.is_relative_to(r) for r in _installed_roots()) else root


def _resolve(spec: str) -> tuple[Callable[..., Any], Any, str, list[Path]]:
    """(factory, module, source text, source files) of a spec; the source files are the model's own and those
    of its folder that importing it loaded."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise FerbenchError(f"model {spec!r}: expected path/to/file.py:Name or package.module:factory")
    if target.endswith(".py") or "/" in target or target.startswith("."):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise FerbenchError(f"{path}: model file not found (from the model spec {spec!r})")
        module, files = _import_fresh(path.parent, lambda: _module_from_file(path))
        files = files or [path]
        source = f"{path}:{attr}"
    else:
        try:
            root = _package_root(target)
        except (ImportError, ValueError):  # a parent package that does not exist or cannot be found
            root = None
        except (Exception, SystemExit) as e:  # finding a submodule imports its package
            raise _user_error(f"{spec!r}", e) from None
        module, files = _import_fresh(root, lambda: _import_module(spec, target))
        own = _module_file(module)
        files = files or ([own] if own is not None else [])
        source = spec
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise FerbenchError(f"{source}: {attr!r} is not a class or function in that module")
    return factory, module, source, files


def _card_values(factory: Any, module: Any) -> dict[str, Any]:
    given = getattr(factory, "ferbench_card", None) or getattr(module, "FERBENCH_CARD", None) or {}
    if not isinstance(given, dict):
        raise FerbenchError(f"{getattr(module, '__file__', module)}: FERBENCH_CARD must be a dict")
    unknown = sorted(set(given) - set(DEFAULT_CARD))
    if unknown:
        raise FerbenchError(f"FERBENCH_CARD: unknown key(s) {', '.join(unknown)}; keys: {', '.join(DEFAULT_CARD)}")
    return {**DEFAULT_CARD, **given}


def source_files(files: list[Path]) -> tuple[tuple[str, str], ...]:
    """(path, sha256) of each source file of a user model, in path order."""
    return tuple((str(f), hashlib.sha256(f.read_bytes()).hexdigest()) for f in sorted(files) if f.is_file())


def register_spec(spec: str, name: str | None = None, source: str | None = None) -> str:
    """Import and register a user model from a spec; return its registry name. Registering the same spec again
    picks up an edited model file or helper module of its folder (a new code fingerprint)."""
    from ferbench.models._registry import _CARDS, register_model
    from ferbench.records import check_slug

    factory, module, src, paths = _resolve(spec)
    name = name or spec.rpartition(":")[2]
    check_slug(name, "model")
    if name in _CARDS and _CARDS[name].source == "ferbench":
        raise FerbenchError(f"{src}: {name!r} is the name of a bundled model; rename your class or factory")
    card = _card_values(factory, module)
    files = source_files(paths)
    code = hashlib.sha256("\n".join(f"{p} {h}" for p, h in files).encode()).hexdigest() if files else None
    it, quick, lr = int(card["iterations"]), int(card["quick_iterations"]), float(card["lr"])
    default = Recipe(stage="end-to-end", optimizer="adam", lr=lr, iterations=it, schedule_unit="iteration",
                     batch_size=int(card["batch_size"]), augment=card["augment"], source="ferbench user-model default")
    fast = Recipe(stage="end-to-end", optimizer="adam", lr=lr, iterations=quick, schedule_unit="iteration",
                  batch_size=int(card["batch_size"]), source="ferbench user-model quick")
    register_model(name, paper=str(card["paper"]), table=str(card["table"]), input=str(card["input"]),
                   index=str(card["index"]), variable_length=bool(card["variable_length"]),
                   min_size=int(card["min_size"]), recipes={"default": (default,), "paper": (default,), "quick": (fast,)},
                   departures=("A user model: ferbench's explicit defaults stand in for a card it did not give.",)
                   if card == DEFAULT_CARD else (), source=source or src, code=code, files=files,
                   replace=True)(factory)
    return name


# -- plugins: the `ferbench.models` entry points of installed packages, loaded only when selected -----------------
@dataclass(frozen=True)
class Plugin:
    """One entry point of the `ferbench.models` group; `problem` says why it cannot be used (a name that is no
    model name, the name of a bundled model, a name two distributions define), None when it may be loaded."""

    name: str
    dist: str
    value: str
    problem: str | None = None

    @property
    def source(self) -> str:
        return f"entry point {self.name} ({self.dist}: {self.value})"


def plugins() -> list[Plugin]:
    """Every `ferbench.models` entry point of the installed distributions, without importing any of them."""
    from ferbench.harness.spec import FUSION_ENTRIES
    from ferbench.models._registry import _CARDS
    from ferbench.records import check_slug

    by_name: dict[str, list[tuple[str, str]]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) or "?"
        if (dist, ep.value) not in by_name.setdefault(ep.name, []):  # one distribution seen twice on the path
            by_name[ep.name].append((dist, ep.value))
    found = []
    for name, defs in sorted(by_name.items()):
        problem = None
        try:
            check_slug(name, "model")
        except FerbenchError as e:
            problem = str(e)
        if problem is None and ((name in _CARDS and _CARDS[name].source == "ferbench") or name in FUSION_ENTRIES):
            problem = f"{name!r} is the name of a bundled model (which is used)"
        if problem is None and len(defs) > 1:
            problem = f"{name!r} is defined by {len(defs)} distributions ({', '.join(d for d, _ in defs)})"
        found += [Plugin(name, dist, value, problem) for dist, value in defs]
    return found


def load_plugin(name: str) -> str:
    """Import and register the plugin `name`; a broken or clashing one is refused in one line naming it, its
    distribution and what is wrong."""
    matches = [p for p in plugins() if p.name == name]
    if not matches:
        raise FerbenchError(f"no plugin (ferbench.models entry point) named {name!r}")
    p = matches[0]
    if p.problem:
        raise FerbenchError(f"{p.source}: {p.problem}")
    try:
        return register_spec(p.value, name=p.name, source=p.source)
    except FerbenchError as e:
        raise FerbenchError(f"{p.source}: {e}") from None


def load_plugins() -> tuple[list[str], list[tuple[Plugin, str]]]:
    """Load every plugin that can be: (names registered, [(plugin, why not)] for the others)."""
    loaded, broken = [], []
    for p in plugins():
        if p.problem:
            broken.append((p, p.problem))
            continue
        try:
            loaded.append(load_plugin(p.name))
        except FerbenchError as e:
            broken.append((p, str(e).removeprefix(f"{p.source}: ")))
    return loaded, broken


def load_selected(item: str) -> str:
    """A model named by the user -> its registry name: a spec (path/to/file.py:Name, module:factory) is imported,
    a plugin loaded only now that it is selected; a registered name is itself."""
    from ferbench.harness.spec import FUSION_ENTRIES
    from ferbench.models._registry import _CARDS

    if is_spec(item):
        return register_spec(item)
    if item.endswith(".py") and item not in _CARDS:  # a file without the model in it: say what is missing
        raise FerbenchError(f"model spec {item!r} names a file but not the model in it; expected "
                            f"{item}:Name (the class or factory to build; `ferbench models --example` shows one)")
    if item not in _CARDS and item not in FUSION_ENTRIES and item in {p.name for p in plugins()}:
        return load_plugin(item)
    return item


def _raised(e: BaseException) -> str:
    return f"raised {type(e).__name__}: {e}"


def _logits_problem(logits: Any, x: Any, batch: int, num_classes: int) -> tuple[str, str | None]:
    """(what was returned, why it is not logits (B, num_classes) on the input's device), the why None if it is."""
    import torch

    if not isinstance(logits, torch.Tensor):
        return type(logits).__name__, f"expected a tensor {(batch, num_classes)}, got {type(logits).__name__}"
    got = str(tuple(logits.shape))
    if tuple(logits.shape) != (batch, num_classes):
        return got, f"expected {(batch, num_classes)}, got {tuple(logits.shape)}"
    if logits.device != x.device:
        return got, f"the logits are on device {logits.device}, the input on {x.device}: return them where x is"
    if not logits.is_floating_point():
        return got, f"the logits are {logits.dtype}, not floating point"
    return got, None


def check_model(name: str, num_classes: int = 3, batch: int = 2, frames: int = 8, size: int | None = None,
                options: dict[str, Any] | None = None) -> list[tuple[str, bool, str]]:
    """Does a registered model fit the contract? One forward and one optimisation step on a tiny batch of the
    input its card declares (frames of `size`, default its smallest), then a forward in eval mode. Returns
    (check, passed, detail) in order; later checks are skipped after a failure they depend on. Whatever the
    model's code raises is a failed check, never an exception."""
    import torch

    from ferbench.models._registry import create_model, model_card, model_options

    card = model_card(name)
    size = int(size) if size else max(int(card.min_size), 16)
    t = 5 if card.index == "states" else frames
    accepted = model_options(name)
    cfg = dict(options or {})
    cfg |= {k: v for k, v in (("image_size", size), ("num_frames", t))
            if k not in cfg and accepted is not None and k in accepted}
    torch.manual_seed(0)
    try:
        model = create_model(name, num_classes, **cfg)
    except Exception as e:  # the user's code
        return [("builds", False, f"{name}({num_classes}{''.join(f', {k}={v}' for k, v in cfg.items())}) "
                                  f"{_raised(e)}")]
    if not isinstance(model, torch.nn.Module):
        return [("builds", False, f"returned {type(model).__name__}, not a torch.nn.Module")]
    out: list[tuple[str, bool, str]] = [("builds", True, f"{sum(p.numel() for p in model.parameters()):,} parameters")]
    x = torch.rand(batch, t, 3, size, size)
    lengths = torch.full((batch,), t, dtype=torch.int64)
    model.train()
    try:
        logits = model(x, lengths)
        out.append(("accepts forward(x, lengths)", True, f"x {tuple(x.shape)}"))
    except TypeError as e:
        return out + [("accepts forward(x, lengths)", False, f"forward(x, lengths) raised TypeError: {e}; the "
                       "harness always passes lengths (B,) = real frames per clip")]
    except Exception as e:
        return out + [("accepts forward(x, lengths)", False, f"{_raised(e)} on x {tuple(x.shape)}")]
    got, why = _logits_problem(logits, x, batch, num_classes)
    out.append(("returns logits (B, num_classes)", why is None, why or f"expected {(batch, num_classes)}, got {got}"))
    if why is not None:
        return out
    finite = bool(torch.isfinite(logits.detach()).all())
    out.append(("finite outputs", finite, "" if finite else "NaN or inf in the logits of random input"))
    if not finite:
        return out
    out.append(_eval_mode(model, x, lengths, batch, num_classes))
    if not out[-1][1]:
        return out
    out += _learns(model, logits, batch, num_classes)
    if all(ok for _, ok, _ in out) and card.variable_length and batch > 1:
        out.append(_variable_lengths(model, x, lengths, t))
    return out


def _variable_lengths(model: Any, x: Any, lengths: Any, t: int) -> tuple[str, bool, str]:
    """A batch whose second clip is shorter (padded) still gives finite logits."""
    import torch

    what = "variable lengths (a shorter clip in the batch)"
    short = lengths.clone()
    short[1] = max(1, t // 2)
    try:
        ok = bool(torch.isfinite(model(x, short)).all())
    except Exception as e:
        return what, False, f"{_raised(e)}; set FERBENCH_CARD variable_length=False if it needs fixed T"
    return what, ok, "" if ok else "non-finite output"


def _eval_mode(model: Any, x: Any, lengths: Any, batch: int, num_classes: int) -> tuple[str, bool, str]:
    """The harness predicts in eval mode (dropout off, batch-norm running statistics): check that output too."""
    import torch

    what = "eval mode: finite logits (B, num_classes)"
    try:
        model.eval()
        with torch.no_grad():
            logits = model(x, lengths)
    except Exception as e:
        return what, False, f"after model.eval() the forward {_raised(e)}"
    finally:
        model.train()
    got, why = _logits_problem(logits, x, batch, num_classes)
    if why is not None:
        return what, False, f"after model.eval(): {why}"
    if not bool(torch.isfinite(logits).all()):
        return what, False, "NaN or inf in the eval-mode logits of random input (train mode was finite)"
    return what, True, ""


def _learns(model: Any, logits: Any, batch: int, num_classes: int) -> list[tuple[str, bool, str]]:
    """Gradients reach the parameters and one Adam step changes them, finitely."""
    import torch
    from torch.nn import functional as F

    out: list[tuple[str, bool, str]] = []
    loss = F.cross_entropy(logits.float(), torch.arange(batch) % num_classes)
    model.zero_grad(set_to_none=True)
    if not loss.requires_grad:
        return out + [("gradients reach the parameters", False, "the logits are detached from every parameter "
                       "(no grad_fn): nothing can be trained")]
    try:
        loss.backward()
    except Exception as e:
        return out + [("gradients reach the parameters", False, f"the backward pass {_raised(e)}")]
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
    return out
