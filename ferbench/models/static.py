"""A static single-frame baseline (SPEC section 4): one frame of the clip through a frame CNN, so every
leaderboard has a floor that cannot use time. Not from a paper."""

from __future__ import annotations

from torch import Tensor, nn

from ferbench.models._common import FrameCNN, Recipe, check_clips, full_lengths, gather_time, xavier_init_
from ferbench.models._registry import register_model

STATIC_RECIPE = Recipe(
    stage="end-to-end", optimizer="adam", lr=1e-3, epochs=30, batch_size=64,
    source="ferbench (no paper)", notes="a plain baseline recipe of our own",
)


@register_model(
    "static", paper="ferbench baseline (no paper)", table="-",
    input="(B, T, 3, H, W) + lengths; classifies one frame (frame='last'|'middle'|'first', or apex= indices)",
    departures=("Not from a paper: a floor for the leaderboards.",),
)
class StaticFrame(nn.Module):
    """Static single-frame baseline: FrameCNN on one frame (the apex if `apex` is given, else `frame` of the
    real frames: 'last' (default; CK+/Oulu clips end at the peak), 'middle' or 'first') -> linear softmax.

    Departures from the paper: none -- it is ferbench's own floor, not a published model.
    """

    recipes = (STATIC_RECIPE,)
    recipe = STATIC_RECIPE

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128),
                 features: int = 256, frame: str = "last", dropout: float = 0.0):
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
