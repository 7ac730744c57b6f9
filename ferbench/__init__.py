"""ferbench: dynamic facial-expression recognition datasets, protocols, models and leaderboards.

`ferbench.register_model` (the decorator the bundled models use) registers a model of your own; it is loaded
on first use so that `import ferbench` stays light (the leaderboard never imports torch).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "register_model":
        from ferbench.models import register_model

        return register_model
    raise AttributeError(f"module 'ferbench' has no attribute {name!r}")
