"""The own-model example (`examples/my_model.py` in a checkout), shipped inside the package as
`ferbench._examples` so that `ferbench models --example > my_model.py` works from any install."""

from __future__ import annotations

from pathlib import Path

from ferbench.errors import FerbenchError

NAME = "my_model.py"
CLASS = "TinyTemporalNet"


def example_path() -> Path:
    """The example file: the checkout's `examples/` (edits take effect at once), else the installed copy."""
    import ferbench

    root = Path(ferbench.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "examples" / NAME).is_file():
        return root / "examples" / NAME
    try:
        import ferbench._examples as shipped

        for where in map(Path, shipped.__path__):
            if (where / NAME).is_file():
                return where / NAME
    except ImportError:
        pass
    raise FerbenchError(f"the own-model example is missing (looked in {root / 'examples'} and the package "
                        "ferbench._examples); reinstall ferbench")


def example_source() -> str:
    return example_path().read_text(encoding="utf-8")
