"""`inspect(path)`: what a store holds, as the JSON-friendly dict `ferbench inspect --json` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferbench.errors import DatasetError
from ferbench.issues import failures_json

from .flags import flag_name
from .reader import open_store
from .schema import COLUMNS, FRAME_ARRAYS


def inspect(path: str | Path) -> dict[str, Any]:
    """What a store holds: identity, counts per class/split/flag, array shapes, coverage and failures."""
    with open_store(path) as st:
        f = st._f
        counts = {name: 0 for name in st.classes}
        for s in st.samples:
            if s.label is not None and 0 <= s.label < len(st.classes):
                counts[st.classes[s.label]] += 1
        flags = f["flags"][...]
        if st.n_frames:  # the last frame's chunk is where a cut file fails: read it now, not in a training run
            try:
                f["frames"][st.n_frames - 1]
            except (OSError, RuntimeError) as e:
                raise DatasetError(st.path, f"damaged ferbench store: /frames unreadable ({e}); run `ferbench prepare` again") from None
        flag_counts = {flag_name(c): int((flags == c).sum()) for c in np.unique(flags)}
        arrays = [a.name for a in FRAME_ARRAYS] + [c.path for c in COLUMNS if c.width is not None]
        shapes = {name: list(f[name].shape) for name in arrays if name in f}
        splits: dict[str, int] = {}
        for s in st.samples:
            splits[s.split or ""] = splits.get(s.split or "", 0) + 1
        return {
            "path": str(st.path),
            "dataset": st.dataset,
            "schema_version": int(st.attrs["schema_version"]),
            "ferbench_version": st.attrs.get("ferbench_version"),
            "created": st.attrs.get("created"),
            "aligner": st.attrs.get("aligner"),
            "source_root": st.attrs.get("source_root"),
            "samples": len(st.samples),
            "frames": st.n_frames,
            "labelled": sum(s.label is not None for s in st.samples),
            "classes": counts,
            "subjects": len({s.subject for s in st.samples}),
            "splits": splits,
            "length": st.length,
            "shapes": shapes,
            "config": st.config,
            "au_names": list(st.au_names),
            "flags": flag_counts,
            "apex_estimated": sum(s.apex_estimated for s in st.samples),
            "coverage": {
                "min": round(min((s.coverage for s in st.samples), default=0.0), 4),
                "mean": round(float(np.mean([s.coverage for s in st.samples])) if st.samples else 0.0, 4),
                "partial": {s.id: round(s.coverage, 4) for s in st.samples if s.coverage < 1.0},
            },
            "failures": failures_json(st.failures),
        }
