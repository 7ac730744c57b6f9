"""Compact widths: the bundled models shrunk to train in seconds on a laptop CPU at 32x32 faces.

The papers' sizes are for 64x64 faces on GPUs. `ferbench demo` and `benchmarks/learnability.py` build every model
with these overrides (``create_model(name, n, **compact_options(name))``) so that the whole zoo trains on two CPU
cores within minutes; the architecture (layers, pooling, recurrences, objectives) is the paper's, only the
number of channels and hidden units is smaller. Figures measured at these widths say so.
"""

from __future__ import annotations

from typing import Any

#: create_model overrides per model name (the frame size and clip length are filled in by the harness).
COMPACT: dict[str, dict[str, Any]] = {
    "static": dict(widths=(16, 32, 64), features=64),
    "lstm-mean": dict(feature_dim=128, cnn_widths=(16, 32, 64)),
    "lstm-last": dict(feature_dim=128, cnn_widths=(16, 32, 64)),
    "tpool-mean": dict(feature_dim=128, cnn_widths=(16, 32, 64)),
    "tpool-max": dict(feature_dim=128, cnn_widths=(16, 32, 64)),
    "stc": dict(width=16),
    "stc-lstm": dict(width=16, hidden=64, lstm_layers=1),
    "stc-slstm": dict(width=16, hidden=64, lstm_layers=1),
    "stc-nlstm": dict(width=16, hidden=64, lstm_layers=1),
    "apex-cnn": dict(widths=(16, 32, 32), fc=128),
    "mo-cnn-lstm": dict(widths=(16, 32, 32), fc=128, lstm_hidden=128, lstm_layers=1),
    "mv-lstm": dict(widths=(16, 32, 64), fc=128, hidden=128),
    "former-dfer": dict(widths=(16, 32, 64, 128), s_heads=4, s_dim_head=16, s_mlp=128, t_heads=4, t_dim_head=32,
                        t_mlp=256),
}


def compact_options(name: str) -> dict[str, Any]:
    """The compact create_model overrides of `name` ({} for a model without any)."""
    return dict(COMPACT.get(name, {}))
