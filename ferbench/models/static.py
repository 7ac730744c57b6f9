"""A static single-frame baseline (SPEC section 4): one frame of the clip through a frame CNN, so every
leaderboard has a floor that cannot use time. Not from a paper (card paper key "ferbench")."""

from __future__ import annotations

from torch import Tensor, nn

from ferbench.models._common import STANDARDIZE_DEPARTURE, FrameCNN, check_clips, ferbench_recipe, quick_recipe, full_lengths, gather_time, xavier_init_
from ferbench.models._registry import register_model

STATIC_DEFAULT = ferbench_recipe("end-to-end", 3e-4, 400, augment="stc-nlstm")
STATIC_QUICK = quick_recipe("end-to-end", 3e-4)


@register_model(
    "static", paper="ferbench", table="-",
    input="(B, T, 3, H, W) + lengths; classifies one frame (frame='middle'|'last'|'first', or apex= indices)",
    index="states", variable_length=True, min_size=16,
    recipes={"default": (STATIC_DEFAULT,), "paper": (STATIC_DEFAULT,), "quick": (STATIC_QUICK,)},
    departures=("Not from a paper: ferbench's floor for the leaderboards; its 'paper' recipe is its default.",
                STANDARDIZE_DEPARTURE),
)
class StaticFrame(nn.Module):
    """Static single-frame baseline: FrameCNN on one frame (the apex if `apex` is given, else `frame` of the
    real frames: 'middle' (default; on the five expression-state frames it reads the apex), 'last' or
    'first') -> linear softmax."""

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128),
                 features: int = 256, frame: str = "middle", dropout: float = 0.0):
        super().__init__()
        if frame not in ("last", "middle", "first"):
            raise ValueError("frame must be 'last', 'middle' or 'first'")
        self.num_classes, self.frame = num_classes, frame
        self.cnn = FrameCNN(in_channels, widths, features)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        xavier_init_(self)

    def frame_index(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Which frame of each clip is classified (B,)."""
        lengths = full_lengths(x) if lengths is None else lengths
        if self.frame == "last":
            return lengths - 1
        if self.frame == "middle":
            return (lengths - 1) // 2
        return lengths * 0

    def forward(self, x: Tensor, lengths: Tensor | None = None, apex: Tensor | None = None) -> Tensor:
        check_clips(x, lengths)
        idx = apex if apex is not None else self.frame_index(x, lengths)
        return self.fc(self.drop(self.cnn(gather_time(x, idx))))
