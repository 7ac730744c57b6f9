"""A model of one's own for ferbench: a small frame CNN, mean over the real frames, a linear classifier.

    ferbench models --example > my_model.py       # this file, from any install
    ferbench models --check my_model.py:TinyTemporalNet
    ferbench evaluate --data ck+ --protocol 10fold --model my_model.py:TinyTemporalNet,static
    ferbench leaderboard
"""

import torch
from torch import nn

# Optional: what ferbench should know about it (every key has a default; see ferbench/models/user.py).
FERBENCH_CARD = {"index": "clip", "min_size": 16, "lr": 1e-3, "iterations": 300, "quick_iterations": 60}


class TinyTemporalNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        self.frame = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, t = x.shape[:2]  # x: (B, T, 3, H, W) in [0, 1]; lengths: real frames per clip
        feats = self.frame(x.flatten(0, 1)).view(b, t, -1)
        if lengths is None:
            lengths = torch.full((b,), t, device=x.device)
        mask = (torch.arange(t, device=x.device)[None] < lengths[:, None]).unsqueeze(-1)
        pooled = (feats * mask).sum(1) / mask.sum(1).clamp(min=1)  # mean over the real frames only
        return self.head(pooled)
