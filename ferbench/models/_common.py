"""Small pieces shared by the model files: masking helpers, the training-recipe record, init, a frame CNN.

Kept here once so that no model file copies another's helpers. Uses torch only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ferbench.errors import FerbenchError
from ferbench.store.schema import INDEXES  # the frame selections a card's `index` names


STAGES = ("end-to-end", "stage1", "stage2")
SELECTIONS = ("last-epoch", "validation")
RECIPE_KINDS = ("default", "paper", "quick")
#: The recipe vocabulary, defined once: `Recipe` checks it, the harness runs it, the docs list it.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@dataclass(frozen=True)
class Recipe:
    """How to train one stage of a model, as data a harness can read (one record per training stage).

    `stage`: "end-to-end" (cross entropy on ``model(x, lengths)``), "stage1" (kim2017 CNN stage on the five
    expression-state frames, ``model.stage1_loss``) or "stage2" (kim2017 LSTM stage on clips).
    `schedule` lists `(start, lr)` pairs in `schedule_unit` ("iteration" or "epoch"): the learning rate from
    `start` on. `augment` names a preset of ``ferbench.preprocess.augment`` (None = no augmentation).
    `selection`: keep the last epoch, or the epoch best on a validation set carved from training subjects.
    `source` says where the values come from; `notes` which values are ours, not the paper's.
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
    augment: str | None = None
    selection: str = "last-epoch"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Recipe.stage must be one of {STAGES}, got {self.stage!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"Recipe.selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Recipe.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule_unit not in ("epoch", "iteration"):
            raise ValueError(f"Recipe.schedule_unit must be 'epoch' or 'iteration', got {self.schedule_unit!r}")
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("a Recipe gives exactly one of epochs and iterations")

    def lr_at(self, step: int) -> float:
        """Learning rate in effect at `step` (an epoch or an iteration, per `schedule_unit`)."""
        lr = self.lr
        for start, value in self.schedule:
            if step >= start:
                lr = value
        return lr


#: Departures every bundled model shares (written once here, listed on each card).
STANDARDIZE_DEPARTURE = (
    "Frames are standardised per frame and channel inside the model (standardize_frames): models receive [0, 1] "
    "pixels from a generic harness; without it the dark and near-infrared Oulu modes sat at chance."
)
CENTRE_DEPARTURE = (
    "Frame features are centred per clip before the temporal model (centre_over_time: each clip's mean feature "
    "over its real frames is subtracted, as speech systems normalise each utterance); centre=False gives the "
    "paper's network, and --recipe paper builds it. Measured on the order replica (9 subjects, 6 clips per class "
    "and subject, 32x32, the "
    "learnability widths): an LSTM-mean on the frame features of a frozen random frame CNN reached 0.50 held-out "
    "accuracy uncentred and 0.78 centred after 400 Adam steps; the within-clip variation of raw frame features "
    "is 8% of their norm, so identity, not expression, dominated the sequence."
)
DEFAULT_RECIPE_DEPARTURE = (
    "The 'default' recipe (Adam, a fixed number of steps, flip/rotation augmentation) is not the paper's optimizer "
    "and schedule, kept as 'paper': SGD rates do not transfer from the papers' frameworks and data sizes to small "
    "PyTorch folds, and epoch counts give a small fold too few updates; the learnability benchmark in "
    "docs/models.md measures the default."
)


def ferbench_recipe(stage: str, lr: float, iterations: int, *, batch_size: int = 16, augment: str | None = None,
                    notes: str = "") -> Recipe:
    """A ferbench `default` stage: Adam, a fixed number of optimiser steps (not epochs, so a small training set
    still gets enough updates and a large one is not over-trained), the lr measured to keep units alive."""
    return Recipe(stage=stage, optimizer="adam", lr=lr, iterations=iterations, schedule_unit="iteration",
                  batch_size=batch_size, augment=augment, source="ferbench (measured: docs/models.md)", notes=notes)


def quick_recipe(stage: str, lr: float, iterations: int = 80) -> Recipe:
    """A `quick` stage: Adam for a few dozen steps of batch 16, no augmentation -- for `ferbench demo` and CI on
    small CPUs. At the compact widths (`ferbench.models.sizes`) it is enough for the temporal models to learn the
    order replica (docs/models.md); on real data it is a smoke test, not a result."""
    return Recipe(stage=stage, optimizer="adam", lr=lr, iterations=iterations, schedule_unit="iteration",
                  batch_size=16, source="ferbench", notes=f"{iterations} Adam steps for demos and CI")


@dataclass(frozen=True)
class ModelCard:
    """Everything a harness or a reader needs to know about a registered model, as fields (timm's cfg habit).

    `index`: which frames the model consumes at prediction time -- "clip" (the fixed-length temporally
    normalised clip), "states" (the five expression-state frames) or "native" (every stored frame, variable
    length). `min_size`: the smallest H = W it runs on. `recipes`: "default" (the one that learns here),
    "paper" (the paper's values), "quick" (a few dozen steps for the demo and CI), and optionally
    "paper:<dataset>" where the paper gives dataset-specific values; each a tuple of stage recipes in order.
    `departures`: every way the implementation or its default recipe departs from the paper, written once.
    """

    name: str
    paper: str
    table: str
    input: str
    index: str
    variable_length: bool
    min_size: int
    departures: tuple[str, ...] = ()
    recipes: dict[str, tuple[Recipe, ...]] = field(default_factory=dict, hash=False, compare=True)
    #: Where the model comes from: "ferbench" (bundled), or a user's "file.py:Name", "module:factory" or
    #: "entry point <name> (<dist>)"; `code` is the sha256 of a user model's sources (in its fingerprint), `files`
    #: those sources as (path, sha256): the model's file and the modules it imports from its own folder.
    source: str = "ferbench"
    code: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    #: The layers a transfer protocol (e.g. kim2017-transfer) copies from the source-trained network and freezes,
    #: in words; the model then has `transfer_modules() -> list[nn.Module]`. None: the model takes no part in one.
    transfer: str | None = None
    #: The create_model options that build the paper's network where ferbench's defaults depart from it (per-clip
    #: centring, batch norm, a fine-tuned CNN...); `--recipe paper` builds with them. The factory's own defaults
    #: are the paper's widths.
    paper_options: dict = field(default_factory=dict, hash=False, compare=True)
    #: The frame size (H = W) the paper's network reads (None: no paper, or the paper does not read pixels).
    paper_size: int | None = None

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise ValueError(f"ModelCard.index must be one of {INDEXES}, got {self.index!r}")
        missing = [k for k in RECIPE_KINDS if k not in self.recipes]
        if missing:
            raise ValueError(f"model {self.name!r} card lacks recipe(s): {', '.join(missing)}")
        for kind, stages in self.recipes.items():
            if kind not in RECIPE_KINDS and not kind.startswith("paper:"):
                raise ValueError(f"model {self.name!r}: unknown recipe kind {kind!r}")
            if not stages or not all(isinstance(r, Recipe) for r in stages):
                raise ValueError(f"model {self.name!r}: recipe {kind!r} must be a non-empty tuple of Recipe")

    def recipe_for(self, kind: str = "default", dataset: str | None = None) -> tuple[Recipe, ...]:
        """The stage recipes of `kind` ("default", "paper", "quick" or "paper:<dataset>"); with `dataset`,
        the dataset-specific variant "<kind>:<dataset>" when the paper gives one, else `kind`."""
        if dataset is not None:
            specific = f"{kind}:{dataset.strip().lower()}"
            if specific in self.recipes:
                return self.recipes[specific]
        if kind not in self.recipes:
            raise FerbenchError(f"model {self.name!r} has no recipe {kind!r}; recipes: {', '.join(self.recipes)}")
        return self.recipes[kind]


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


def centre_over_time(seq: Tensor, lengths: Tensor) -> Tensor:
    """Subtract each clip's mean over its real frames from every real frame of (B, T, D); padding stays zero.

    What is constant over a clip (who the subject is, the lighting, the camera) leaves the sequence, and what the
    face does over time stays: the per-sequence mean normalisation of speech features (cepstral mean
    normalisation), applied to frame features. Without it a temporal model fed raw frame features sees a
    within-clip variation of about 8% of the feature norm and does not learn the order of events (see the
    departure on the cards that use it).
    """
    mask = lengths_to_mask(lengths.to(seq.device), seq.shape[1]).unsqueeze(-1).to(seq.dtype)
    return (seq - masked_mean(seq, lengths).unsqueeze(1)) * mask


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


def standardize_frames(x: Tensor, eps: float = 1e-2) -> Tensor:
    """Per-frame, per-channel standardisation over the last two (H, W) axes.

    Models receive [0, 1] pixels; this makes a dark, a near-infrared and a normally lit frame of the same face
    look alike to the first layer and puts every input at unit scale, so that no harness-side normalisation is
    needed. Flat frames (padding) map to zeros.
    """
    x = x.float()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def kaiming_init_(module: nn.Module) -> None:
    """He (fan-in, ReLU) weights and zero biases for conv/linear layers: keeps activations at unit scale through
    ReLU stacks without batch norm, where Xavier shrinks them layer by layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


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
    face look alike). Used where a paper's frame network is unavailable or irrelevant (static baseline, chao2016
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
        """(N, C, H, W) in [0, 1] -> (N, out_features); frames are standardised first (`standardize_frames`)."""
        return F.relu(self.fc(F.adaptive_avg_pool2d(self.body(standardize_frames(frames)), self.grid).flatten(1)))


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
