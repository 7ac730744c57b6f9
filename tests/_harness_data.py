"""Small real stores (written by the real StoreWriter) and protocol files for the harness tests.

Each class paints its own band of the frame, so a tiny model learns it in an epoch or two; the frames are
32x32 with T=6 so that every bundled model (the Table 1 CNN needs 32x32) runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ferbench.store import SampleRecord, StoreWriter

CLASSES = ("anger", "happiness", "surprise")

#: create_model overrides that make every bundled model tiny (tests only).
TINY: dict[str, dict] = {
    "stc-nlstm": {"width": 4, "hidden": 8}, "stc-lstm": {"width": 4, "hidden": 8},
    "stc-slstm": {"width": 4, "hidden": 8}, "stc": {"width": 4},
    "mo-cnn-lstm": {"widths": (4, 8, 8), "fc": 16, "lstm_hidden": 8, "lstm_layers": 1},
    "apex-cnn": {"widths": (4, 8, 8), "fc": 16},
    "mv-lstm": {"widths": (4, 8, 8), "fc": 16, "hidden": 8},
    "static": {"widths": (4, 8), "features": 16},
    "former-dfer": {"widths": (4, 4, 8, 8), "s_heads": 2, "s_dim_head": 4, "s_mlp": 8, "t_heads": 2, "t_dim_head": 4,
                    "t_mlp": 16},
}
for _m in ("lstm-mean", "lstm-last", "tpool-mean", "tpool-max"):
    TINY[_m] = {"feature_dim": 16, "cnn_widths": (4, 8), "hidden": 8} | ({"lstm_hidden": 8} if _m.startswith("lstm") else {})

#: The harness tests' training length: the `quick` recipe's stages cut to two epochs of batch 8, so that the
#: plumbing (records, resume, dask, protocols) is tested in seconds; whether models learn is tested elsewhere.
TWO_EPOCHS: dict[str, int] = {"epochs": 2, "batch_size": 8}


def make_store(path: Path, *, dataset: str = "ck+", subjects: int = 4, per: int = 6, size: int = 32, length: int = 6,
               seed: int = 0, au_names: tuple[int, ...] | None = None, labels: dict[str, int] | None = None) -> Path:
    """A finished store: `subjects` x `per` samples, label j % 3 (or `labels[id]`), 8 native frames each."""
    rng = np.random.default_rng(seed)
    w = StoreWriter(path, dataset=dataset, classes=CLASSES, config={"length": length, "size": size},
                    au_names=au_names)
    for s in range(subjects):
        for j in range(per):
            sid = f"S{s:02d}_{j:02d}"
            painted = j % len(CLASSES)
            label = painted if labels is None else labels.get(sid, painted)
            k = length + 2
            frames = (rng.random((k, size, size, 3)) * 60).astype(np.uint8)
            band = size // len(CLASSES)
            frames[:, :, painted * band:(painted + 1) * band] += 120
            aus = None
            if au_names:
                aus = rng.integers(-1, 2, (k, len(au_names))).astype(np.int8)
                aus[:, 0] = np.where(aus[:, 0] >= 0, int(painted == 0), -1)
            rec = SampleRecord(id=sid, subject=f"S{s:02d}", label=None if au_names else label,
                               clip=np.arange(length) + 1, states=np.array([0, 2, 4, 5, length + 1]),
                               mode={"system": "VL", "illumination": "Strong" if j % 2 else "Dark"})
            w.add(rec, frames, np.zeros((k, 5, 2), np.float32), np.ones(k, np.uint8), aus=aus,
                  source_frame=np.arange(k) + 100)
    return w.finalize()


def write_protocol(folder: Path, name: str, *, datasets: tuple[str, ...] = ("ck+",),
                   splitter: str = "leave-one-subject-out", params: dict | None = None, task: str = "classification",
                   metric: str = "accuracy", validation: dict | None = None, repeats: int = 1, **extra) -> Path:
    """A protocol YAML file (the real schema, loaded by the real load_protocol)."""
    body = {"name": name, "description": f"test protocol {name}", "paper": "ferbench", "table": "-", "task": task,
            "datasets": list(datasets), "splitter": splitter, "params": params or {}, "repeats": repeats, "seed": 0,
            "metric": metric, "metrics": [metric], "validation": validation, **extra}
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path
