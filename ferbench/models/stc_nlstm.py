"""yu2018: Yu, Liu, Liu, Deng, "Spatio-temporal convolutional features with nested LSTM for facial
expression recognition", Neurocomputing 317 (2018). Models ``stc``, ``stc-lstm``, ``stc-slstm``, ``stc-nlstm``.

Section 3 / Table 2: a 3DCNN of five 3x3x3 convolutions with 64 filters (BN after conv1 and conv2; 1x2x2
spatial max pooling after conv1, conv2 and conv4), an MSPP-norm after every conv layer (per frame, max pooling
over 2x2, 4x4 and 8x8 grids: 64 x (4 + 16 + 64) = 5376 values), one T-LSTM per conv layer over time, a C-LSTM
over the sequence h = {h_1, ..., h_I} of T-LSTM outputs, and softmax. Section 4.2 defines the baselines.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ferbench.models._common import CENTRE_DEPARTURE, DEFAULT_RECIPE_DEPARTURE, STANDARDIZE_DEPARTURE, Recipe, centre_over_time, check_clips, full_lengths, ferbench_recipe, quick_recipe, standardize_frames, xavier_init_
from ferbench.models._registry import register_model

PAPER = "yu2018"
INPUT = "(B, T, 3, H, W) fixed T; paper 18x64x64x3 (CK+), 22 for Oulu/MMI"

# Section 4.2: "Xavier" init; lr 0.0025 for 300 iterations, then 0.000025 for 200; weight decay 0.0015.
STC_PAPER = Recipe(
    stage="end-to-end", optimizer="sgd", lr=0.0025, weight_decay=0.0015, momentum=0.9,
    schedule=((0, 0.0025), (300, 0.000025)), schedule_unit="iteration", iterations=500, batch_size=None,
    source="yu2018 section 4.2", augment="stc-nlstm",
    notes="optimizer type, momentum and batch size are not given in the paper; SGD with momentum 0.9 is ours",
)
STC_DEFAULT = ferbench_recipe("end-to-end", 3e-4, 500, augment="stc-nlstm")
STC_QUICK = quick_recipe("end-to-end", 3e-4, 80)
RECIPES = {"default": (STC_DEFAULT,), "paper": (STC_PAPER,), "quick": (STC_QUICK,)}
CARD = dict(paper=PAPER, input=INPUT, index="clip", variable_length=False, min_size=16, recipes=RECIPES,
            paper_size=64)  # section 4.1: faces resized to 64 x 64
#: The recurrent three read their MSPP-norm sequences uncentred in the paper (section 3).
RECURRENT_PAPER = dict(paper_options={"centre": False})

COMMON_DEPARTURES = (
    "ReLU after every conv is assumed (the paper names no activation).",
    "The optimizer (SGD, momentum 0.9) and batch size are not in the paper; the lr schedule and weight decay are "
    "(the 'paper' recipe).",
    "Conv padding 1 ('same') so the sizes of Table 2 hold (64->64 at conv1).",
    "Fixed-length clips only, as the paper's video normalisation (section 4.1); ragged lengths are rejected.",
    STANDARDIZE_DEPARTURE,
    DEFAULT_RECIPE_DEPARTURE,
)


def mspp_norm(feat: Tensor, levels: Sequence[int] = (2, 4, 8)) -> Tensor:
    """MSPP-norm (section 3.2.1): per frame, max-pool each channel over n x n grids (n in `levels`).

    feat (B, C, T, h, w) -> (B, T, C * sum(n*n)); 64 channels and levels (2, 4, 8) give 5376 per frame,
    whatever h and w are (a grid finer than the map repeats cells, as adaptive pooling does).
    """
    b, c, t, h, w = feat.shape
    frames = feat.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    parts = [F.adaptive_max_pool2d(frames, n).reshape(b * t, c * n * n) for n in levels]
    return torch.cat(parts, dim=1).reshape(b, t, -1)


class STC3DCNN(nn.Module):
    """The 3DCNN of Table 2: returns the five conv-layer feature maps (after activation, before pooling)."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()

        def conv(cin: int) -> nn.Conv3d:
            return nn.Conv3d(cin, width, kernel_size=3, stride=1, padding=1)

        self.conv1, self.bn1 = conv(in_channels), nn.BatchNorm3d(width)
        self.conv2, self.bn2 = conv(width), nn.BatchNorm3d(width)
        self.conv3, self.conv4, self.conv5 = conv(width), conv(width), conv(width)
        self.pool = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, C, T, H, W) -> [f1..f5], each (B, width, T, h_j, w_j)."""
        f1 = F.relu(self.bn1(self.conv1(x)))
        f2 = F.relu(self.bn2(self.conv2(self.pool(f1))))
        f3 = F.relu(self.conv3(self.pool(f2)))
        f4 = F.relu(self.conv4(f3))
        f5 = F.relu(self.conv5(self.pool(f4)))
        return [f1, f2, f3, f4, f5]


class _STCBase(nn.Module):
    """Shared 3DCNN + MSPP-norm front of the four yu2018 models. `centre` (the recurrent three): the MSPP-norm
    sequences are centred per clip before their LSTMs (`centre_over_time`); False gives the paper's network."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, hidden: int = 128,
                 lstm_layers: int = 2, mspp_levels: Sequence[int] = (2, 4, 8), centre: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.centre = centre
        self.cnn = STC3DCNN(in_channels, width)
        self.mspp_levels = tuple(mspp_levels)
        self.mspp_dim = width * sum(n * n for n in self.mspp_levels)
        self.hidden = hidden
        self.lstm_layers = lstm_layers

    def _check(self, x: Tensor, lengths: Tensor | None) -> None:
        _, t = check_clips(x, lengths)
        if lengths is not None and bool((lengths != t).any()):
            raise ValueError(
                "STC models take fixed-length clips (yu2018 section 4.1 normalises every video to one length); "
                "resample or replicate the last frame before calling"
            )

    def conv_features(self, x: Tensor) -> list[Tensor]:
        """The five conv-layer maps for clips (B, T, C, H, W). The 3DCNN reads them channels-last (NDHWC): the
        same values, about 30% less time per training step for stc-nlstm at the compact widths on 32 px frames
        on a 2-core CPU, no difference at the paper's sizes there (docs/evaluate.md); untested on a GPU."""
        x = standardize_frames(x).permute(0, 2, 1, 3, 4)
        return self.cnn(x.contiguous(memory_format=torch.channels_last_3d))

    def mspp_features(self, x: Tensor) -> list[Tensor]:
        """MSPP-norm of each conv layer: five tensors (B, T, mspp_dim); 5376 per frame at paper sizes."""
        return [self._centred(mspp_norm(f, self.mspp_levels)) for f in self.conv_features(x)]

    def _centred(self, seq: Tensor) -> Tensor:
        return centre_over_time(seq, full_lengths(seq)) if self.centre else seq


@register_model(
    "stc-nlstm", table="Table 2 (CK+); results Tables 3, 5, 7, 9", **CARD, **RECURRENT_PAPER,
    departures=COMMON_DEPARTURES + (
        "T-LSTM/C-LSTM hidden size is not given; 128 units ('two-level' = two stacked layers each).",
        "h_j is the T-LSTM output at the last frame; o is the C-LSTM output at the last layer.",
        CENTRE_DEPARTURE + " Here the MSPP-norm sequences are centred before the T-LSTMs; on that replica "
        "stc-nlstm (compact widths) reached 0.97 and 0.86 on two held-out folds after 80 Adam steps at 3e-4.",
    ),
)
class STCNLSTM(_STCBase):
    """STC-NLSTM (yu2018, section 3, Table 2): 3DCNN -> MSPP-norm per layer -> T-LSTM_j -> C-LSTM -> softmax.

    f_j = 3DCNN(x); f_j^mspp = MSPP-norm(f_j); h_j = T-LSTM_j(f_j^mspp); o = C-LSTM(h_1..h_I) (section 3.2.2).

    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, hidden: int = 128,
                 lstm_layers: int = 2, mspp_levels: Sequence[int] = (2, 4, 8), num_conv_layers: int = 5,
                 centre: bool = True):
        super().__init__(num_classes, in_channels, width, hidden, lstm_layers, mspp_levels, centre)
        self.t_lstms = nn.ModuleList(
            nn.LSTM(self.mspp_dim, hidden, num_layers=lstm_layers, batch_first=True) for _ in range(num_conv_layers)
        )
        self.c_lstm = nn.LSTM(hidden, hidden, num_layers=lstm_layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)
        xavier_init_(self)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        self._check(x, lengths)
        hs = [lstm(f)[0][:, -1] for lstm, f in zip(self.t_lstms, self.mspp_features(x))]
        o = self.c_lstm(torch.stack(hs, dim=1))[0][:, -1]
        return self.fc(o)


class _STCOneLSTM(_STCBase):
    """The two single-LSTM baselines: a per-frame MSPP sequence (`sequence`) -> one LSTM -> softmax."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, hidden: int = 128,
                 lstm_layers: int = 2, mspp_levels: Sequence[int] = (2, 4, 8), centre: bool = True):
        super().__init__(num_classes, in_channels, width, hidden, lstm_layers, mspp_levels, centre)
        self.lstm = nn.LSTM(self.mspp_dim, hidden, num_layers=lstm_layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)
        xavier_init_(self)

    def sequence(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        self._check(x, lengths)
        return self.fc(self.lstm(self.sequence(x))[0][:, -1])


@register_model(
    "stc-lstm", table="section 4.2 baseline (Table 2 3DCNN); Tables 3, 5, 7", **CARD, **RECURRENT_PAPER,
    departures=COMMON_DEPARTURES + (
        "The last conv layer enters the LSTM through its MSPP-norm (5376 per frame), the same configuration "
        "as STC-NLSTM; LSTM of 2 layers x 128 units.",
        CENTRE_DEPARTURE,
    ),
)
class STCLSTM(_STCOneLSTM):
    """STC-LSTM baseline (yu2018, section 4.2): the last conv layer's features -> one LSTM -> softmax.

    """

    def sequence(self, x: Tensor) -> Tensor:
        return self._centred(mspp_norm(self.conv_features(x)[-1], self.mspp_levels))


@register_model(
    "stc-slstm", table="section 4.2 baseline (Table 2 3DCNN); Tables 3, 5, 7", **CARD, **RECURRENT_PAPER,
    departures=COMMON_DEPARTURES + (
        "Sum fusion is done on the MSPP-norm vectors (same pyramid cell, same channel), the only place where all "
        "layers have one size; LSTM of 2 layers x 128 units.",
        CENTRE_DEPARTURE,
    ),
)
class STCSLSTM(_STCOneLSTM):
    """STC-SLSTM baseline (yu2018, section 4.2): sum fusion of all conv layers -> one LSTM -> softmax.

    """

    def sequence(self, x: Tensor) -> Tensor:
        return torch.stack(self.mspp_features(x), dim=0).sum(0)


@register_model(
    "stc", table="section 4.2 baseline (Table 2 3DCNN); Tables 3, 5, 7", **CARD,
    departures=COMMON_DEPARTURES + (
        "The flattened conv5 output feeds one linear softmax layer; its size fixes num_frames and image_size "
        "at build time (defaults 18 and 64). The 'FC18' of the paper's layer string is not modelled.",
    ),
)
class STC(_STCBase):
    """STC baseline (yu2018, section 4.2): the 3DCNN alone; the last conv layer's output -> softmax.

    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, num_frames: int = 18,
                 image_size: int = 64):
        super().__init__(num_classes, in_channels, width, hidden=0, lstm_layers=0)
        self.num_frames, self.image_size = num_frames, image_size
        side = image_size // 8
        self.fc = nn.Linear(width * num_frames * side * side, num_classes)
        xavier_init_(self)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        self._check(x, lengths)
        if x.shape[1] != self.num_frames or x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"stc was built for {self.num_frames} frames of {self.image_size}x{self.image_size}; got "
                f"{tuple(x.shape)} (pass num_frames/image_size to create_model)"
            )
        return self.fc(self.conv_features(x)[-1].flatten(1))
