"""The inputs of a task's model, gathered from a frame source (resident or streamed, `harness.sources`):
clips in the model's frame index (classification), or fixed-length windows ending at each coded frame (AU
detection), with augmentation applied as batched tensor ops on the device, on the caller's thread."""

from __future__ import annotations

import numpy as np
import torch

from ferbench.harness.data import DataFile, to_float
from ferbench.harness.sources import FrameSource


def augment(x: torch.Tensor, preset: str | None, gen: torch.Generator | None) -> torch.Tensor:
    """The recipe's augmentation preset on a uint8 batch (none without a preset or a generator)."""
    if not preset or preset == "none" or gen is None:
        return x
    from ferbench.preprocess.augment import augment_batch

    return augment_batch(x, preset, generator=gen)


class ClipSource:
    """Classification inputs of one sample list from one frame source, in the source's index."""

    def __init__(self, frames: FrameSource, ids: tuple[str, ...]):
        self.frames = frames
        self.pos = frames.positions(ids)
        self.n = len(ids)

    def raw(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 clips of units `idx` and their lengths."""
        return self.frames.gather_clips(self.pos[idx])

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = self.raw(idx)
        return to_float(augment(x, preset, gen)), lengths

    def plan(self, batches: list[torch.Tensor]) -> None:
        """The unit batches asked for next, in order (a streamed source reads them ahead)."""
        self.frames.plan_clips([self.pos[b] for b in batches])


class WindowSource:
    """AU-detection inputs: fixed-length windows ending at each coded frame of the given samples."""

    def __init__(self, frames: FrameSource, data: DataFile, ids: tuple[str, ...], columns: list[int]):
        self.data, self.frames = data, frames
        rows, local = data.coded_units(ids, columns)
        self.rows, self.local = torch.from_numpy(rows), torch.from_numpy(local)
        self.pos = frames.positions([data.store.samples[r].id for r in rows.tolist()]) if len(rows) else self.rows
        self.columns = torch.tensor(columns, dtype=torch.int64)
        self.n = len(rows)
        self.length = data.length

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.frames.gather_windows(self.pos[idx], self.local[idx], self.length)
        return to_float(augment(x, preset, gen)), torch.full((len(idx),), self.length, dtype=torch.int64, device=x.device)

    def targets(self, idx: torch.Tensor) -> torch.Tensor:
        aus = self.frames.unit_aus(self.pos[idx], self.local[idx])
        return aus[:, self.columns.to(aus.device)].long()

    def plan(self, batches: list[torch.Tensor]) -> None:
        self.frames.plan_windows([(self.pos[b], self.local[b]) for b in batches], self.length)

    def store_frames(self) -> np.ndarray:
        """Each unit's absolute frame number in the store (to name it and to look up its labels later)."""
        starts = np.array([self.data.store.samples[r].frame_start for r in self.rows.tolist()], dtype=np.int64)
        return starts + self.local.numpy()
