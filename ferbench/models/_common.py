"""Small pieces shared by the model files: masking helpers, the training-recipe record, init, a frame CNN.

Kept here once so that no model file copies another's helpers. Uses torch only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Recipe:
    """How a paper trains its model, as data a harness can read (one record per training stage).

    `schedule` lists `(start, lr)` pairs in `schedule_unit` ("iteration" or "epoch"): the learning rate from
    `start` on. `None` means the paper does not say; `notes` says which values are ours, not the paper's.
    """

    stage: str
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    momentum: float | None = None
    schedule: tuple[tuple[int, float], ...] = ()
    schedule_unit: str = "epoch"
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int | None = None
    source: str = ""
    notes: str = ""

    def lr_at(self, step: int) -> float:
        """Learning rate in effect at `step` (an epoch or an iteration, per `schedule_unit`)."""
        lr = self.lr
        for start, value in self.schedule:
            if step >= start:
                lr = value
        return lr


@dataclass(frozen=True)
class ModelCard:
    """What `model_info` reports for a registered model."""

    name: str
    paper: str
    table: str
    input: str
    departures: tuple[str, ...] = field(default_factory=tuple)


def check_clips(x: Tensor, lengths: Tensor | None) -> tuple[int, int]:
    """Validate the one input layout (B, T, C, H, W) and optional lengths (B,); return (B, T)."""
    if x.dim() != 5:
        raise ValueError(f"expected clips shaped (B, T, C, H, W), got {tuple(x.shape)}")
    b, t = x.shape[:2]
    if lengths is not None:
        if lengths.shape != (b,):
            raise ValueError(f"lengths must be shaped ({b},), got {tuple(lengths.shape)}")
        if int(lengths.min()) < 1 or int(lengths.max()) > t:
            raise ValueError(f"lengths must lie in [1, {t}]")
    return b, t


def full_lengths(x: Tensor) -> Tensor:
    """Lengths for a batch with no padding: every clip uses all T frames."""
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)


def lengths_to_mask(lengths: Tensor, t: int) -> Tensor:
    """Boolean (B, T) mask, True on real frames, False on padding."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(seq: Tensor, lengths: Tensor) -> Tensor:
    """Mean over time of (B, T, D) counting only real frames, so padding never enters the encoding."""
    mask = lengths_to_mask(lengths.to(seq.device), seq.shape[1]).unsqueeze(-1).to(seq.dtype)
    return (seq * mask).sum(1) / mask.sum(1).clamp_min(1)


def masked_max(seq: Tensor, lengths: Tensor) -> Tensor:
    """Max over time of (B, T, D) over real frames only (padding set to -inf before the max)."""
    mask = lengths_to_mask(lengths.to(seq.device), seq.shape[1]).unsqueeze(-1)
    return seq.masked_fill(~mask, float("-inf")).amax(1)


def gather_time(seq: Tensor, index: Tensor) -> Tensor:
    """Pick one time step per sample: (B, T, ...) and index (B,) -> (B, ...)."""
    idx = index.to(seq.device).long().view(-1, *([1] * (seq.dim() - 1)))
    idx = idx.expand(-1, 1, *seq.shape[2:])
    return seq.gather(1, idx).squeeze(1)


def last_valid(seq: Tensor, lengths: Tensor) -> Tensor:
    """The output at each clip's last real frame. For causal (unidirectional) recurrences this equals running
    on the unpadded clip, because later padding cannot reach earlier outputs."""
    return gather_time(seq, lengths - 1)


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform weights, zero biases, for conv/linear/LSTM weights (BN left at its defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if "weight" in name:
                    nn.init.xavier_uniform_(p)
                else:
                    nn.init.zeros_(p)


class FrameCNN(nn.Module):
    """A plain per-frame CNN (conv3x3-BN-ReLU-maxpool blocks, average pool to a `grid` x `grid` map, linear) for
    any frame size. The final grid keeps *where* things are (global pooling would make every frame of a moving
    face look alike). Used where a paper's frame network is unavailable or irrelevant (static baseline, seed-004
    front-end).
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), out_features: int = 256,
                 grid: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.body = nn.Sequential(*layers)
        self.grid = grid
        self.fc = nn.Linear(c * grid * grid, out_features)
        self.out_features = out_features

    def forward(self, frames: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, out_features)."""
        return F.relu(self.fc(F.adaptive_avg_pool2d(self.body(frames), self.grid).flatten(1)))


def per_frame(net: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Run a frame network on every real frame of (B, T, C, H, W); returns (B, T, ...) with zeros on padding.

    Padded frames are never passed through `net`, so they cannot leak into batch-norm statistics.
    """
    b, t = x.shape[:2]
    if lengths is None or bool((lengths == t).all()):
        out = net(x.reshape(b * t, *x.shape[2:]))
        return out.reshape(b, t, *out.shape[1:])
    mask = lengths_to_mask(lengths.to(x.device), t)
    real = net(x[mask])
    out = real.new_zeros(b, t, *real.shape[1:])
    out[mask] = real
    return out
