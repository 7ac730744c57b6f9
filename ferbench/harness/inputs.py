"""The inputs of a task's model, gathered from a data file already on the device: clips in the model's frame
index (classification), or fixed-length windows ending at each coded frame (AU detection), with augmentation
applied as batched tensor ops on the device."""

from __future__ import annotations

import numpy as np
import torch

from ferbench.harness.data import DataFile, gather_clips, gather_windows, to_float


def augment(x: torch.Tensor, preset: str | None, gen: torch.Generator | None) -> torch.Tensor:
    """The recipe's augmentation preset on a uint8 batch (none without a preset or a generator)."""
    if not preset or preset == "none" or gen is None:
        return x
    from ferbench.preprocess.augment import augment_batch

    return augment_batch(x, preset, generator=gen)


class ClipSource:
    """Classification inputs of one sample list from one data file, in the model's index."""

    def __init__(self, data: DataFile, index: str, ids: tuple[str, ...], device: torch.device):
        self.loaded, _ = data.loaded(index, str(device))
        self.pos = data.positions(index, str(device), ids)
        self.n = len(ids)

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = gather_clips(self.loaded, self.pos[idx])
        return to_float(augment(x, preset, gen)), lengths


class WindowSource:
    """AU-detection inputs: fixed-length windows ending at each coded frame of the given samples."""

    def __init__(self, data: DataFile, ids: tuple[str, ...], columns: list[int], device: torch.device):
        self.data = data
        self.loaded, _ = data.loaded("native", str(device))
        rows, local = data.coded_units(ids, columns)
        self.rows, self.local = torch.from_numpy(rows), torch.from_numpy(local)
        self.columns = torch.tensor(columns, dtype=torch.int64)
        self.n = len(rows)
        self.length = data.length

    def inputs(self, idx: torch.Tensor, preset: str | None = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = gather_windows(self.loaded, self.rows[idx], self.local[idx], self.length)
        return to_float(augment(x, preset, gen)), torch.full((len(idx),), self.length, dtype=torch.int64, device=x.device)

    def targets(self, idx: torch.Tensor) -> torch.Tensor:
        starts = self.loaded.offsets[self.rows[idx].to(self.loaded.x.device), 0]
        frames = starts + self.local[idx].to(starts.device)
        return self.loaded.aus[frames][:, self.columns.to(starts.device)].long()

    def store_frames(self) -> np.ndarray:
        """Each unit's absolute frame number in the store (to name it and to look up its labels later)."""
        starts = np.array([self.data.store.samples[r].frame_start for r in self.rows.tolist()], dtype=np.int64)
        return starts + self.local.numpy()
