"""zhao2021: Zengqun Zhao, Qingshan Liu, "Former-DFER: Dynamic Facial Expression Recognition Transformer",
ACM MM 2021, pp. 1553-1561. Model ``former-dfer``.

The paper's text is not available to us; the network and its training follow the authors' public code
(github.com/zengqunzhao/Former-DFER, ``models/{S,T,ST}_Former.py``, ``dataloader/dataset_DFEW.py``,
``main_DFEW.py``), written here afresh in plain torch:

* **S-Former**: a ResNet-18 (BasicBlock, [2, 2, 2, 2]; random init, no pre-training) on every sampled frame. After
  stage 3 (256 channels, 7x7 at a 112 input) the map's 49 positions, plus a learned position embedding, pass
  through one pre-norm transformer encoder layer (8 heads x 32, MLP 512, no class token); the tokens are folded
  back into the map, which goes through stage 4 (512 channels) and global average pooling: 512 values per frame.
* **T-Former**: a learned class token and position embedding on the 16 frame vectors, three pre-norm encoder
  layers (8 heads x 64, MLP 1024); the class token's output is classified by one linear layer.
* **Frames**: 16 = 8 segments x 2 consecutive frames. Training: one random start per segment (TSN sampling);
  test: the centre of each segment. Input 112 x 112.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ferbench.models._common import (CENTRE_DEPARTURE, DEFAULT_RECIPE_DEPARTURE, STANDARDIZE_DEPARTURE, Recipe,
                                     check_clips, ferbench_recipe, full_lengths, quick_recipe, standardize_frames)
from ferbench.models._registry import register_model

PAPER = "zhao2021"

#: main_DFEW.py: SGD lr 0.01, momentum 0.9, weight decay 1e-4, StepLR(40, 0.1), 100 epochs, batch 32; the code
#: keeps the best test epoch, which ferbench never does (the recipe's selection is the last epoch).
FORMER_PAPER = Recipe(
    stage="end-to-end", optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4,
    schedule=((0, 0.01), (40, 0.001), (80, 0.0001)), schedule_unit="epoch", epochs=100, batch_size=32,
    source="zhao2021, the authors' code (main_DFEW.py, dataloader/dataset_DFEW.py)", augment="former-dfer",
    notes="the authors keep the epoch best on the test fold; ferbench keeps the last epoch. Their random-sized "
          "crop is approximated by the former-dfer preset (flip x centred zooms)",
)
FORMER_DEFAULT = ferbench_recipe("end-to-end", 1e-3, 400, augment="former-dfer")
FORMER_QUICK = quick_recipe("end-to-end", 3e-3, 60)


def _grid(size: int) -> int:
    """Side of the stage-3 map for a size x size frame: the stem's stride-2 conv and pooling, then stages 2 and 3
    each halve it (ceil), 112 -> 56 -> 28 -> 14 -> 7."""
    for _ in range(4):
        size = (size + 1) // 2
    return size


class Encoder(nn.Module):
    """Pre-norm transformer encoder layers (LayerNorm -> multi-head self-attention -> residual, LayerNorm ->
    Linear-GELU-Linear -> residual), as the authors' S- and T-Former; no final norm."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, dropout
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * inner, bias=False),
                "out": nn.Linear(inner, dim), "norm2": nn.LayerNorm(dim),
                "mlp": nn.Sequential(nn.Linear(dim, mlp), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                     nn.Linear(mlp, dim), nn.Dropout(dropout)),
            }) for _ in range(depth))

    def _attend(self, layer: nn.ModuleDict, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = layer["qkv"](layer["norm1"](x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
        return F.dropout(layer["out"](out), self.dropout, self.training)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        for layer in self.layers:
            x = x + self._attend(layer, x)
            x = x + layer["mlp"](layer["norm2"](x))
        return x


class BasicBlock(nn.Module):
    """The ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus the (projected) input, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.down is None else self.down(x)))


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), *(BasicBlock(cout, cout) for _ in range(blocks - 1)))


class SFormer(nn.Module):
    """ResNet-18 with a spatial transformer between stages 3 and 4: (N, C, H, W) -> (N, widths[3])."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int], blocks: tuple[int, int, int, int],
                 image_size: int, depth: int, heads: int, dim_head: int, mlp: int, dropout: float):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.layer1 = _stage(widths[0], widths[0], blocks[0], 1)
        self.layer2 = _stage(widths[0], widths[1], blocks[1], 2)
        self.layer3 = _stage(widths[1], widths[2], blocks[2], 2)
        self.layer4 = _stage(widths[2], widths[3], blocks[3], 2)
        self.grid = _grid(image_size)
        self.pos = nn.Parameter(torch.randn(1, widths[2], self.grid, self.grid))
        self.transformer = Encoder(widths[2], depth, heads, dim_head, mlp, dropout)
        self.out_features = widths[3]

    def position(self, h: int, w: int) -> Tensor:
        """The position embedding for an h x w map: the learned grid, resized (bilinear, as ViTs do at another
        resolution) when the frames are not the size the model was built for."""
        if (h, w) == (self.grid, self.grid):
            return self.pos
        return F.interpolate(self.pos, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, frames: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(frames))))
        n, c, h, w = x.shape
        tokens = (x + self.position(h, w).to(x.dtype)).flatten(2).transpose(1, 2)  # (N, h*w, c)
        x = self.transformer(tokens).transpose(1, 2).reshape(n, c, h, w)
        return F.adaptive_avg_pool2d(self.layer4(x), 1).flatten(1)


class TFormer(nn.Module):
    """Class token + position embedding + encoder over the frame vectors: (B, T, D) -> (B, D), the class token."""

    def __init__(self, dim: int, frames: int, depth: int, heads: int, dim_head: int, mlp: int, dropout: float):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, frames + 1, dim))
        self.transformer = Encoder(dim, depth, heads, dim_head, mlp, dropout)

    def forward(self, seq: Tensor) -> Tensor:
        x = torch.cat([self.cls.expand(seq.shape[0], -1, -1).to(seq.dtype), seq], dim=1)
        return self.transformer(x + self.pos.to(seq.dtype))[:, 0]


def segment_indices(lengths: Tensor, segments: int, duration: int, training: bool,
                    generator: torch.Generator | None = None) -> Tensor:
    """Which frames of each clip the model reads: (B,) real lengths -> (B, segments * duration) frame indices.

    A clip of at least segments x duration frames is cut into `segments` equal parts of its first n - duration + 1
    frames; training takes a random start in each part, test the part's centre (the authors' dataset_DFEW.py), and
    `duration` consecutive frames follow each start (the last frame repeats at the clip's end). A shorter clip
    (the authors drop those) gets evenly spaced starts from its first to its last, in training and test alike,
    so every frame is read, in order of the starts (frames repeat).
    """
    n = lengths.detach().to("cpu", torch.long)
    span = (n - duration + 1).clamp_min(1)  # how many starts a clip has
    k = torch.arange(segments)
    if training:
        part = span // segments
        u = torch.rand(len(n), segments, generator=generator)
        starts = k[None] * part[:, None] + (u * part[:, None]).long()
    else:
        tick = span.double() / segments
        starts = (tick[:, None] / 2 + tick[:, None] * k[None]).long()
    short = n < segments * duration
    even = torch.round(torch.linspace(0, 1, segments)[None] * (span - 1)[:, None]).long()  # first to last start
    starts = torch.where(short[:, None], even, starts)
    idx = starts[:, :, None] + torch.arange(duration)[None, None]
    return torch.minimum(idx, (n - 1)[:, None, None]).flatten(1)


@register_model(
    "former-dfer", paper=PAPER,
    table="no table (paper text unavailable): the architecture and recipe of the authors' public code",
    input="(B, T, 3, H, W) + lengths (variable length); reads 16 frames (8 segments x 2), paper 112x112",
    index="native", variable_length=True, min_size=16,
    recipes={"default": (FORMER_DEFAULT,), "paper": (FORMER_PAPER,), "quick": (FORMER_QUICK,)},
    paper_options={"standardize": False, "centre": False}, paper_size=112,
    departures=(
        "The paper's text is not available: the network, frame sampling and recipe follow the authors' public code "
        "(zengqunzhao/Former-DFER), not the paper's prose.",
        "Epoch selection: the authors' code scores the test fold after every epoch and reports the best epoch "
        "(DFEW has no validation set); ferbench keeps the last epoch of the 'paper' recipe and never selects on "
        "test data, so its numbers are not comparable with the reported ones.",
        "The authors drop clips of fewer than 16 frames from training and test; ferbench keeps and scores every "
        "clip, reading a shorter one at 8 evenly spaced starts (frames repeat), in training and test alike.",
        "Augmentation: the authors' random-sized crop (one crop of 8-100% of the area, aspect 3/4-4/3, for all 16 "
        "frames) and flip are approximated by the 'former-dfer' preset: flip x centred zooms 1-2 (square crops of "
        "100-25% of the area), since ferbench's presets are fixed lists of whole-clip transforms.",
        "Frame sampling runs inside the model (a random start per segment in train mode, the segment centres in "
        "eval mode), on the stored frames of the native index at the prepared size; the authors read 16 JPEG "
        "files resized to 112x112.",
        "The spatial position embedding is sized for the frames the model is built for (image_size; 7x7 at 112) "
        "and resized bilinearly for other frame sizes; the authors' is fixed at 49 positions.",
        "The classifier has one output per protocol class (the authors' is 7: DFEW, FERV39k).",
        STANDARDIZE_DEPARTURE + " standardize=False gives the authors' [0, 1] input; --recipe paper builds it.",
        CENTRE_DEPARTURE + " Here the 16 frame vectors are centred before the T-Former. On the order replica (9 "
        "subjects, 32x32, compact widths, 3 subject-disjoint folds, 60 Adam steps at 3e-3) former-dfer reached 0.75 "
        "centred and 0.65 uncentred (0.67 and 0.60 at lr 1e-3).",
        DEFAULT_RECIPE_DEPARTURE,
    ),
)
class FormerDFER(nn.Module):
    """Former-DFER (zhao2021): S-Former (ResNet-18 with a spatial transformer after stage 3) on 16 sampled frames,
    T-Former (class token, 3 encoder layers) over them, linear classifier. Widths, depths and heads are options;
    the defaults are the authors'."""

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), image_size: int = 112, segments: int = 8, duration: int = 2,
                 s_depth: int = 1, s_heads: int = 8, s_dim_head: int = 32, s_mlp: int = 512,
                 t_depth: int = 3, t_heads: int = 8, t_dim_head: int = 64, t_mlp: int = 1024,
                 dropout: float = 0.0, standardize: bool = True, centre: bool = True):
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError("widths and blocks give the four ResNet stages, e.g. (64, 128, 256, 512), (2, 2, 2, 2)")
        if segments < 1 or duration < 1:
            raise ValueError("segments and duration must be >= 1")
        self.num_classes, self.segments, self.duration = num_classes, segments, duration
        self.standardize, self.centre = standardize, centre
        self.s_former = SFormer(in_channels, tuple(widths), tuple(blocks), image_size, s_depth, s_heads, s_dim_head,
                                s_mlp, dropout)
        self.t_former = TFormer(widths[3], segments * duration, t_depth, t_heads, t_dim_head, t_mlp, dropout)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # the authors' ResNet init; linear layers keep PyTorch's default
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def sampled(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The 16 (segments x duration) frames the model reads from each clip: (B, 16, C, H, W)."""
        idx = segment_indices(lengths, self.segments, self.duration, self.training).to(x.device)
        return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        b, _ = check_clips(x, lengths)
        frames = self.sampled(x, full_lengths(x) if lengths is None else lengths).flatten(0, 1)
        if self.standardize:
            frames = standardize_frames(frames)
        feats = self.s_former(frames).view(b, self.segments * self.duration, -1)
        if self.centre:  # every one of the 16 frames is real: the clip's mean frame vector is subtracted
            feats = feats - feats.mean(dim=1, keepdim=True)
        return self.fc(self.t_former(feats))
