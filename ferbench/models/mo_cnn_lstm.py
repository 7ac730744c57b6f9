"""kim2017: Kim, Baddar, Jang, Ro, "Multi-Objective based Spatio-Temporal Feature Representation Learning
Robust to Expression Intensity Variations for Facial Expression Recognition", IEEE TAFFC 2017.
Models ``mo-cnn-lstm`` (two-stage CNN + LSTM) and ``apex-cnn`` (its spatial baseline, Table 3).

Stage 1 (section 2.2, Table 1): a LeNet-like CNN C1/S1/C2/S2/C3/S3/F4/F5 with heads Fc (expression) and Fp
(expression state) trained on representative expression-state frames (eq. 1) with E1..E5 (eqs. 2-11).
Stage 2 (section 2.3, Table 2): the CNN is fixed; F5 features of every frame feed three 512-unit LSTM layers
(L6-L8) and a softmax layer F9.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ferbench.models._common import (
    CENTRE_DEPARTURE, DEFAULT_RECIPE_DEPARTURE, STANDARDIZE_DEPARTURE, Recipe, centre_over_time, check_clips, ferbench_recipe, full_lengths, quick_recipe, gather_time, kaiming_init_, last_valid, per_frame, standardize_frames, xavier_init_,
)
from ferbench.models._registry import register_model

PAPER = "kim2017"

# Section 3.1: initial lr 0.08 (MMI) / 0.01 (CASME II); 40 epochs for the CNN, 50 for the LSTM; ReLU.
_PAPER_NOTE = "optimizer, momentum, weight decay and batch size are not given (plain SGD is ours)"


def _paper(lr: float, dataset: str) -> tuple[Recipe, Recipe]:
    src = f"kim2017 section 3.1 ({dataset})"
    return (Recipe(stage="stage1", optimizer="sgd", lr=lr, epochs=40, source=src, notes=_PAPER_NOTE,
                   augment="kim2017"),
            Recipe(stage="stage2", optimizer="sgd", lr=lr, epochs=50, source=src, notes=_PAPER_NOTE))


PAPER_MMI = _paper(0.08, "MMI")
PAPER_CASME2 = _paper(0.01, "CASME II")
DEFAULT = (ferbench_recipe("stage1", 3e-4, 300, augment="stc-nlstm"), ferbench_recipe("stage2", 3e-4, 400))
QUICK = (quick_recipe("stage1", 3e-4, 60), quick_recipe("stage2", 1e-3))
#: What a transfer protocol copies and freezes (kim2017 section 3.3, the inter-dataset row of Table 5).
TRANSFER = "C1-C2 (the first two convolutions of the Table 1 CNN, with their batch norm where built with one)"
RECIPES = {"default": DEFAULT, "paper": PAPER_MMI, "paper:mmi": PAPER_MMI, "paper:casme2": PAPER_CASME2,
           "quick": QUICK}


def smooth_hinge(w: Tensor, beta: float) -> Tensor:
    """g(w) = log(1 + exp(beta w)) / beta (eq. 4): a smooth max(0, w); beta is the sharpness."""
    return F.softplus(w, beta=beta)


class Table1CNN(nn.Module):
    """The CNN of kim2017 Table 1: C1 3x3/32, S1 3x3/2, C2 3x3/64, S2, C3 3x3/64, S3, F4 512, F5 512, Fc, Fp.

    No padding and ceil-mode pooling reproduce Table 1's shapes (62, 31, 29, 14, 12, 6). Needs >= 32x32 frames.
    ``batch_norm=True`` adds batch norm between each convolution and its ReLU (not in Table 1).
    """

    def __init__(self, num_classes: int, num_states: int = 5, in_channels: int = 3, image_size: int = 64,
                 widths: tuple[int, int, int] = (32, 64, 64), fc: int = 512, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3), *([nn.BatchNorm2d(w)] if batch_norm else []), nn.ReLU(inplace=True),
                       nn.MaxPool2d(3, 2, ceil_mode=True)]
            c = w
        self.conv = nn.Sequential(*layers)
        if image_size < 32:
            raise ValueError(f"the Table 1 CNN needs frames of at least 32x32, got image_size={image_size}")
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.image_size = image_size
        self.f4 = nn.Linear(flat, fc)
        self.f5 = nn.Linear(fc, fc)
        self.fc_head = nn.Linear(fc, num_classes)  # Fc: expression
        self.fp_head = nn.Linear(fc, num_states)  # Fp: expression state
        self.feature_dim = fc

    def early_layers(self, n: int = 2) -> list[nn.Module]:
        """The first `n` convolution blocks (C1, C2, ...: each convolution with its batch norm, if any): what
        kim2017's inter-dataset experiment (section 3.3) copies from the source network and freezes."""
        convs = [i for i, m in enumerate(self.conv) if isinstance(m, nn.Conv2d)]
        end = convs[n] if n < len(convs) else len(self.conv)
        return [m for m in list(self.conv)[:end] if any(True for _ in m.parameters(recurse=False))]

    def features(self, frames: Tensor) -> Tensor:
        """F5 activations (the spatial feature representation): (N, C, H, W) -> (N, fc)."""
        h = F.relu(self.f4(self.conv(standardize_frames(frames)).flatten(1)))
        return F.relu(self.f5(h))

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C, H, W) -> (F5 features, Fc logits, Fp logits)."""
        f = self.features(frames)
        return f, self.fc_head(f), self.fp_head(f)


def _group_means(f: Tensor, index: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Mean of rows of f per group id; returns (means (groups, D), present mask (groups,))."""
    sums = f.new_zeros(groups, f.shape[1]).index_add(0, index, f)
    counts = torch.bincount(index, minlength=groups).to(f.dtype)
    return sums / counts.clamp_min(1).unsqueeze(1), counts > 0


def _half_min_distance(means: Tensor, avail: Tensor) -> Tensor:
    """d_min: half the distance from each mean to the nearest *other* available mean; inf where undefined.

    means (..., K, D), avail (..., K) -> (..., K).
    """
    d = torch.cdist(means, means)
    k = means.shape[-2]
    bad = torch.eye(k, dtype=torch.bool, device=means.device) | ~avail.unsqueeze(-2) | ~avail.unsqueeze(-1)
    d = d.masked_fill(bad, float("inf"))
    return 0.5 * d.amin(-1)


def _mean_or_zero(values: Tensor, valid: Tensor, anchor: Tensor) -> Tensor:
    """Mean of values[valid], or a graph-connected zero when nothing is valid."""
    if bool(valid.any()):
        return values[valid].mean()
    return anchor.sum() * 0.0


class MultiObjectiveLoss(nn.Module):
    """E1..E5 of kim2017 (eqs. 2, 4, 6, 8, 10), with the gradients of eqs. 3, 5, 7, 9, 11.

    * E1 = CE(Fc), E3 = CE(Fp)  (eqs. 2, 6).
    * E2 = 1/2 g(||f - m_c||^2 - (d^c)^2), d^c = half the min distance between m_c and the other class means (eq. 4).
    * E4 = 1/2 g(||f - m_{c,p}||^2 - (d^{c,p}/tau)^2), d^{c,p} = half the min distance between m_{c,p} and the
      other state means of class c (eq. 8).
    * E5 = 1/2 g(||m_{c,q} - m_{c,p}||^2 - (2 d^{c,p}/tau)^2) for p != apex, q the neighbour toward the apex (eq. 10).

    Means are constants (detached) as the paper assumes for eqs. 5 and 9; in E5, m_{c,p} is the batch mean of the
    samples of (c, p), so its gradient reaches them with weight 1/N_{c,p} as in eq. 11, and m_{c,q} is constant.
    `means="batch"` takes the constants from the batch; `means="running"` from running means (EMA, `momentum`).
    Each term is averaged over its samples (or (c, p) pairs) instead of summed, so weights do not depend on batch
    size. A term with nothing to compare (e.g. one class in the batch) is 0.
    """

    TERMS = ("E1", "E2", "E3", "E4", "E5")

    def __init__(self, num_classes: int, num_states: int = 5, feature_dim: int = 512, apex_state: int | None = None,
                 tau: float = 1.0, beta: float = 1.0, means: str = "batch", momentum: float = 0.9,
                 weights: dict[str, float] | None = None, distance: str = "sum"):
        super().__init__()
        if distance not in ("sum", "mean"):
            raise ValueError("distance must be 'sum' (the paper's squared Euclidean) or 'mean' (per feature)")
        # "mean" divides every squared distance and squared radius by the feature width, so E2/E4/E5 stay O(1)
        self.scale = 1.0 if distance == "sum" else 1.0 / feature_dim
        if means not in ("batch", "running"):
            raise ValueError("means must be 'batch' or 'running'")
        self.num_classes, self.num_states = num_classes, num_states
        self.apex_state = num_states // 2 if apex_state is None else apex_state
        self.tau, self.beta, self.means, self.momentum = tau, beta, means, momentum
        self.weights = {t: 1.0 for t in self.TERMS} | dict(weights or {})
        self.register_buffer("class_means", torch.zeros(num_classes, feature_dim))
        self.register_buffer("class_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("state_means", torch.zeros(num_classes, num_states, feature_dim))
        self.register_buffer("state_seen", torch.zeros(num_classes, num_states, dtype=torch.bool))
        q = [p + 1 if p < self.apex_state else p - 1 for p in range(num_states)]
        q[self.apex_state] = self.apex_state
        self.register_buffer("neighbour", torch.tensor(q, dtype=torch.long))

    @torch.no_grad()
    def _constants(self, fd: Tensor, y: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        nc, ns = self.num_classes, self.num_states
        mc, pc = _group_means(fd, y, nc)
        ms, ps = _group_means(fd, y * ns + s, nc * ns)
        ms, ps = ms.view(nc, ns, -1), ps.view(nc, ns)
        if self.means == "batch":
            return mc, pc, ms, ps
        if self.training:
            for buf, seen, new, present in ((self.class_means, self.class_seen, mc, pc),
                                            (self.state_means, self.state_seen, ms, ps)):
                mixed = torch.where(seen.unsqueeze(-1), self.momentum * buf + (1 - self.momentum) * new, new)
                buf.copy_(torch.where(present.unsqueeze(-1), mixed, buf))
                seen |= present
        return self.class_means, self.class_seen, self.state_means, self.state_seen

    def forward(self, f: Tensor, logits_c: Tensor, logits_p: Tensor, y: Tensor, s: Tensor) -> dict[str, Tensor]:
        """f (N, D) F5 features, logits (N, Nc)/(N, Np), y class (N,), s state (N,) -> {E1..E5, total}."""
        f = f.float()
        y, s = y.long(), s.long()
        mc, pc, ms, ps = self._constants(f.detach(), y, s)
        out: dict[str, Tensor] = {}
        out["E1"] = F.cross_entropy(logits_c.float(), y)
        out["E3"] = F.cross_entropy(logits_p.float(), s)

        d_c = _half_min_distance(mc, pc)  # (Nc,)
        e2 = self.scale * ((f - mc[y]).pow(2).sum(1) - d_c[y].pow(2))
        out["E2"] = 0.5 * _mean_or_zero(smooth_hinge(e2, self.beta), torch.isfinite(e2), f)

        d_cp = _half_min_distance(ms, ps)  # (Nc, Np)
        e4 = self.scale * ((f - ms[y, s]).pow(2).sum(1) - (d_cp[y, s] / self.tau).pow(2))
        out["E4"] = 0.5 * _mean_or_zero(smooth_hinge(e4, self.beta), torch.isfinite(e4), f)

        nc, ns = self.num_classes, self.num_states
        mb, pb = _group_means(f, y * ns + s, nc * ns)  # differentiable batch means m_{c,p}
        mb, pb = mb.view(nc, ns, -1), pb.view(nc, ns)
        mq = ms[:, self.neighbour]  # constant m_{c,q}
        e5 = self.scale * ((mq - mb).pow(2).sum(-1) - (2 * d_cp / self.tau).pow(2))
        not_apex = torch.arange(ns, device=f.device) != self.apex_state
        valid = pb & ps[:, self.neighbour] & not_apex.unsqueeze(0) & torch.isfinite(e5)
        out["E5"] = 0.5 * _mean_or_zero(smooth_hinge(e5, self.beta), valid, f)

        out["total"] = sum(self.weights[t] * out[t] for t in self.TERMS)
        return out


class _Stage1Mixin:
    """Stage-1 training of the Table 1 CNN on expression-state frames (shared by mo-cnn-lstm and apex-cnn)."""

    cnn: Table1CNN
    objective: MultiObjectiveLoss

    def stage1_loss(self, frames: Tensor, labels: Tensor, states: Tensor) -> dict[str, Tensor]:
        """Frames (N, C, H, W) with expression labels and state indices (0..Np-1, eq. 1 order) -> E1..E5, total."""
        f, lc, lp = self.cnn(frames)
        return self.objective(f, lc, lp, labels, states)


DEPARTURES_CNN = (
    "E1..E5 are averaged over samples (E5 over (class, state) pairs) instead of summed; all weights 1; "
    "loss_weights (e.g. {'E2': 0, 'E4': 0, 'E5': 0}) switches terms off, as in the Table 6 ablation.",
    "tau and beta are not given in the paper; defaults tau=1, beta=1 (options).",
    "Class and state means are batch means by default (means='running' for an EMA); radii use the same means.",
    "Optimizer, momentum, weight decay and batch size are not given; the 'paper' recipe uses plain SGD at the "
    "paper's lr.",
    "E2/E4/E5 use squared distances per feature (distance='mean': divided by the F5 width; 'sum' is the paper's): "
    "unscaled, E2 reached 3-11 against E1 near 2, and after 40 Adam steps 35% of F5 units were active on replica "
    "faces (71% with 'mean').",
    "He initialisation of the Table 1 CNN (init not given): with Xavier and raw [0, 1] input, F5 started at mean "
    "0.016 with 223 of 512 units never active on 24 replica faces; He + standardised input: mean 1.6, 159 of 512.",
    STANDARDIZE_DEPARTURE,
    DEFAULT_RECIPE_DEPARTURE,
    "The default stage 1 augments with the stc-nlstm preset (flips, rotations up to 7.5 degrees), not the paper's "
    "150x kim2017 preset: on the 12-subject CK+ replica at 32x32 (3 folds) apex-cnn reached 0.24 with kim2017's "
    "and 0.33 with stc-nlstm's.",
)


@register_model(
    "mo-cnn-lstm", paper=PAPER, table="Tables 1 and 2 (eqs. 2-11); results Tables 3-6",
    input="(B, T, 3, 64, 64) + lengths (variable length); stage 1 takes expression-state frames",
    index="native", variable_length=True, min_size=32, recipes=RECIPES, transfer=TRANSFER, paper_size=64,
    # Table 1 has no batch norm; section 3.1 extracts the learned CNN's F5 features to train the LSTM (the CNN is
    # fixed in stage 2); the LSTM reads them uncentred; eqs. 4, 8, 10 are plain squared distances ('sum').
    paper_options={"centre": False, "batch_norm": False, "freeze_cnn": True, "distance": "sum"},
    departures=DEPARTURES_CNN + (
        "The L8 output at each clip's last real frame feeds F9 (the text is cut where it says which output).",
        CENTRE_DEPARTURE + " Stage 1 trains on single frames, uncentred; stage 2's LSTM reads the centred F5 features.",
        "Stage 2 fine-tunes the CNN with the LSTM (freeze_cnn=False; the paper fixes it) and the Table 1 CNN has "
        "batch norm after each convolution (batch_norm=True; not in Table 1). On the 9-subject CK+ replica at 32x32 "
        "(3 subject-disjoint folds, compact widths, default recipe; static baseline 0.60, chance 0.14) the paper's "
        "frozen CNN gave 0.30, fine-tuning 0.49, fine-tuning with batch norm 0.56 (0.84 at 64x64, static 0.76): the "
        "frozen F5 features of 6 training subjects carried identity more than expression; on the temporal-order "
        "replica fine-tuning took it from 0.61 to 0.97. create_model('mo-cnn-lstm', n, freeze_cnn=True, "
        "batch_norm=False, centre=False, distance='sum') is the paper's network; --recipe paper builds it.",
    ),
)
class MOCnnLstm(_Stage1Mixin, nn.Module):
    """Multi-objective CNN-LSTM (kim2017, Table 1 CNN + Table 2 LSTM, objective eqs. 2-11). Two stages:

    1. ``set_stage(1)``; minimise ``stage1_loss(frames, labels, states)["total"]`` (E1..E5) over the parameters
       ``stage_parameters(1)`` on representative expression-state frames (eq. 1: onset, onset-apex, apex,
       apex-offset, offset -> states 0..4, apex state 2).
    2. ``set_stage(2)``; F5 features of all frames go through L6-L8 (3 x 512 LSTM) and F9; minimise cross
       entropy of ``forward(clips, lengths)`` over ``stage_parameters(2)``: the LSTM, F9 and (by default; the
       paper fixes it, ``freeze_cnn=True``) the CNN.

    """

    def __init__(self, num_classes: int, num_states: int = 5, apex_state: int | None = None, in_channels: int = 3,
                 image_size: int = 64, widths: tuple[int, int, int] = (32, 64, 64), fc: int = 512,
                 lstm_hidden: int = 512, lstm_layers: int = 3, tau: float = 1.0, beta: float = 1.0,
                 means: str = "batch", loss_weights: dict[str, float] | None = None, freeze_cnn: bool = False,
                 distance: str = "mean", centre: bool = True, batch_norm: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.centre = centre
        self.cnn = Table1CNN(num_classes, num_states, in_channels, image_size, widths, fc, batch_norm)
        self.objective = MultiObjectiveLoss(num_classes, num_states, fc, apex_state, tau, beta, means,
                                            weights=loss_weights, distance=distance)
        self.lstm = nn.LSTM(fc, lstm_hidden, num_layers=lstm_layers, batch_first=True)  # L6-L8
        self.f9 = nn.Linear(lstm_hidden, num_classes)
        self.freeze_cnn = freeze_cnn
        self.stage = 2
        xavier_init_(self)
        kaiming_init_(self.cnn)

    def set_stage(self, stage: int) -> None:
        """Select the training stage: 1 trains the CNN (E1..E5), 2 trains the LSTM on the fixed CNN."""
        if stage not in (1, 2):
            raise ValueError("stage must be 1 or 2")
        self.stage = stage
        for p in self.cnn.parameters():
            p.requires_grad_(stage == 1 or not self.freeze_cnn)
        for p in list(self.lstm.parameters()) + list(self.f9.parameters()):
            p.requires_grad_(stage == 2)
        self.train(self.training)

    def train(self, mode: bool = True) -> "MOCnnLstm":
        """As nn.Module.train, except that a frozen CNN stays in eval mode in stage 2 (its batch-norm statistics
        must not drift while its weights are fixed)."""
        super().train(mode)
        if self.stage == 2 and self.freeze_cnn:
            self.cnn.eval()
        return self

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """The parameters an optimizer should update in `stage`."""
        if stage == 1:
            return list(self.cnn.parameters())
        head = list(self.lstm.parameters()) + list(self.f9.parameters())
        return head if self.freeze_cnn else head + list(self.cnn.parameters())

    def transfer_modules(self) -> list[nn.Module]:
        """C1-C2: the layers a transfer protocol (kim2017-transfer) copies from the source network and freezes."""
        return self.cnn.early_layers(2)

    def frame_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """F5 features of every real frame: (B, T, C, H, W) -> (B, T, fc), zeros on padding."""
        if self.freeze_cnn and self.stage == 2:
            with torch.no_grad():
                return per_frame(self.cnn.features, x, lengths)
        return per_frame(self.cnn.features, x, lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_clips(x, lengths)
        lengths = full_lengths(x) if lengths is None else lengths
        feats = self.frame_features(x, lengths)
        seq = self.lstm(centre_over_time(feats, lengths) if self.centre else feats)[0]
        return self.f9(last_valid(seq, lengths))


@register_model(
    "apex-cnn", paper=PAPER, table="Table 1 CNN; 'proposed spatial feature representation' row of Tables 3, 4, 6",
    input="(B, T, 3, 64, 64) + lengths; classifies one frame (apex= index, default the middle real frame)",
    index="states", variable_length=True, min_size=32, transfer=TRANSFER, paper_size=64,
    paper_options={"batch_norm": False, "distance": "sum"},
    recipes={k: v[:1] for k, v in RECIPES.items()},
    departures=DEPARTURES_CNN + (
        "Without annotated apex indices the middle frame is used: on the five expression-state frames, the apex.",
    ),
)
class ApexCNN(_Stage1Mixin, nn.Module):
    """Apex-frame CNN (kim2017 spatial baseline, Table 3 "proposed spatial feature representation", Table 6):
    the Table 1 CNN trained with E1..E5 (``stage1_loss``), classifying the apex frame through Fc.

    ``forward(x, lengths=None, apex=None)``: ``apex`` (B,) picks the frame; default the middle real frame.
    Trained by stage 1 only (``set_stage(1)``, ``stage_parameters(1)``).

    """

    def __init__(self, num_classes: int, num_states: int = 5, apex_state: int | None = None, in_channels: int = 3,
                 image_size: int = 64, widths: tuple[int, int, int] = (32, 64, 64), fc: int = 512,
                 tau: float = 1.0, beta: float = 1.0, means: str = "batch",
                 loss_weights: dict[str, float] | None = None, distance: str = "mean", batch_norm: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.cnn = Table1CNN(num_classes, num_states, in_channels, image_size, widths, fc, batch_norm)
        self.objective = MultiObjectiveLoss(num_classes, num_states, fc, apex_state, tau, beta, means,
                                            weights=loss_weights, distance=distance)
        xavier_init_(self)
        kaiming_init_(self.cnn)

    def forward(self, x: Tensor, lengths: Tensor | None = None, apex: Tensor | None = None) -> Tensor:
        check_clips(x, lengths)
        if apex is None:
            apex = ((full_lengths(x) if lengths is None else lengths) - 1) // 2
        return self.cnn(gather_time(x, apex))[1]

    def transfer_modules(self) -> list[nn.Module]:
        """C1-C2: the layers a transfer protocol (kim2017-transfer) copies from the source network and freezes."""
        return self.cnn.early_layers(2)

    def set_stage(self, stage: int) -> None:
        """Only stage 1 exists: the CNN and its heads train on expression-state frames."""
        if stage != 1:
            raise ValueError("apex-cnn has only stage 1")

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """The parameters an optimizer should update in stage 1 (all of them)."""
        self.set_stage(stage)
        return list(self.cnn.parameters())
