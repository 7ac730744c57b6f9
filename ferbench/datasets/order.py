"""The temporal-order diagnostic replica (`ferbench synth order`): the toolkit's own check that a model uses time.

Two classes that differ only in the ORDER of action-unit onsets. Every clip rises from neutral to the same apex
(upper-face AUs 1+2+5 and lower-face AUs 12+25 together) and falls back to neutral; in `upper-first` the brows
start (and end) before the mouth, in `lower-first` the mouth does. A `lower-first` clip is an `upper-first` clip
played backwards, so both classes hold the same set of frames with the same apex: no single frame, and no
order-free pooling of frames, tells them apart. A static model must stay at chance (0.5); a model that reads
the sequence can be right every time.

Layout: the generic class-folder layout of `ferbench.datasets.folder` (`<root>/<class>/<clip>/frame_N.png`,
subject = clip-name prefix), so `ferbench prepare order --root DIR` reads it with the folder adapter's scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import write_image
from ferbench.datasets.base import Sample
from ferbench.datasets.folder import FolderAdapter
from ferbench.errors import FerbenchError

CLASSES: tuple[str, ...] = ("lower-first", "upper-first")  # sorted: the folder scan labels classes in this order
UPPER: dict[int, float] = {1: 1.0, 2: 1.0, 5: 0.8}
LOWER: dict[int, float] = {12: 1.0, 25: 0.8}
FRAME_SIZE = (320, 240)
FPS = 25.0


def order_curves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Intensity curves (first group, second group) of one clip of `n` frames: neutral, the first group rises,
    then the second, a held apex, the first falls, then the second, neutral. Durations are drawn per clip."""
    parts = rng.dirichlet([2.0, 3.0, 3.0, 2.0, 3.0, 3.0, 2.0]) * (n - 1)
    knots = np.concatenate([[0.0], np.cumsum(parts)])  # 8 knots: start, on1, on2 end, ..., end
    t = np.arange(n, dtype=np.float64)

    def ramp(a: float, b: float) -> np.ndarray:
        return np.clip((t - a) / max(b - a, 1e-6), 0.0, 1.0)

    first = ramp(knots[1], knots[2]) - ramp(knots[4], knots[5])
    second = ramp(knots[2], knots[3]) - ramp(knots[5], knots[6])
    smooth = lambda c: 0.5 - 0.5 * np.cos(np.pi * c)  # noqa: E731 (cosine ease, as expression_curve)
    return smooth(first), smooth(second)


@register_dataset
class OrderAdapter(FolderAdapter):
    """Temporal-order diagnostic: class folders `lower-first` / `upper-first` (see the module docstring)."""

    name = "order"
    title = "Temporal-order diagnostic replica (class only in the order of AU onsets)"
    obtain = "ferbench itself: `ferbench synth order DIR` writes it"
    classes: tuple[str, ...] = CLASSES
    layout = "<root>/<class>/<subject>_<class>_<n>/frame_N.png, classes lower-first and upper-first"
    fps = FPS

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0, clips_per_class: int = 4) -> list[Sample]:
        """`clips_per_class` clips of each class per subject, 16 to 24 frames each; the same timing draws are
        used for the two classes of a pair, so clip length does not tell the class either."""
        if modes:
            raise FerbenchError("the order replica has no modes; leave out --modes")
        from ferbench.synth.faces import FaceAnimator

        out = Path(out)
        rng = np.random.default_rng([seed, 0x0D])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        samples: list[Sample] = []
        for s in range(subjects):
            subject = f"P{s + 1:02d}"
            ident = anim.identity(s)
            for k in range(clips_per_class):
                n = int(rng.integers(16, 25))
                first, second = order_curves(n, rng)
                cache: dict[tuple[float, float], np.ndarray] = {}
                for label, cls in enumerate(CLASSES):
                    # upper-first: the upper face leads; lower-first: the same clip played backwards
                    up, low = (first, second) if cls == "upper-first" else (first[::-1], second[::-1])
                    stem = f"{subject}_{cls}_{k + 1}"
                    folder = out / cls / stem
                    paths = []
                    for t in range(n):
                        key = (round(float(up[t]) * 24) / 24, round(float(low[t]) * 24) / 24)
                        if key not in cache:
                            aus = {**{a: v * key[0] for a, v in UPPER.items()}, **{a: v * key[1] for a, v in LOWER.items()}}
                            cache[key] = anim.render(ident, aus, FRAME_SIZE)
                        paths.append(folder / f"frame_{t + 1}.png")
                        write_image(paths[-1], cache[key])
                    samples.append(Sample(
                        id=f"{cls}/{stem}", dataset=self.name, subject=subject, label=label, frames=paths, fps=FPS,
                        meta={"clip": stem, "subject_source": "name"},
                    ))
        samples.sort(key=lambda x: (x.label, x.id))
        return samples
