"""chao2016: Chao, Tao, Yang, Li, Wen, "Long short term memory recurrent neural network based encoding method
for emotion recognition in video", ICASSP 2016. Models ``lstm-mean``, ``lstm-last``, ``tpool-mean``,
``tpool-max``, plus feature-level (linear SVM) and decision-level (averaged probabilities) fusion.

Section 4.1 / Table 1: input features -> one hidden layer (64) -> an LSTM layer (64 memory cells) or a temporal
pooling layer -> softmax ("2048/64/64/7" and "2048/64/7"); dropout 0.5 in every layer except the LSTM; weight
decay 0.0005 on the softmax layer; at most 100 epochs. Encodings: eq. 3 (last hidden state) and eq. 4 (mean of the
hidden states). Section 2.3: decision-level fusion averages predicted probabilities; feature-level fusion
concatenates the encodings of several feature streams and feeds a linear SVM (LibLinear, one-vs-rest, C by grid
search).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ferbench.models._common import (
    CENTRE_DEPARTURE, DEFAULT_RECIPE_DEPARTURE, STANDARDIZE_DEPARTURE, FrameCNN, centre_over_time, Recipe, check_clips, ferbench_recipe, quick_recipe, full_lengths, last_valid, masked_max, masked_mean, kaiming_init_, per_frame, xavier_init_,
)
from ferbench.models._registry import register_model

PAPER = "chao2016"
INPUT = "(B, T, 3, H, W) + lengths, or a feature stream (B, T, D) + lengths when built with in_features=D"

ENC_PAPER = Recipe(
    stage="end-to-end", optimizer="sgd", lr=0.01, epochs=100, weight_decay=0.0005, selection="validation",
    source="chao2016 section 4.1",
    notes="max 100 epochs, dropout 0.5 (built into the model), weight decay 0.0005 on the softmax layer only "
    "(see `decay_parameters`); optimizer, lr and batch size are not given (plain SGD lr 0.01 is ours); the paper "
    "picks the best epoch on the validation set -- never on a test fold",
)
ENC_DEFAULT = ferbench_recipe("end-to-end", 1e-3, 400, augment="stc-nlstm")
ENC_QUICK = quick_recipe("end-to-end", 1e-3)
RECIPES = {"default": (ENC_DEFAULT,), "paper": (ENC_PAPER,), "quick": (ENC_QUICK,)}
#: chao2016 feeds its encoders uncentred feature streams (it reads no pixels: no paper frame size).
CARD = dict(paper=PAPER, input=INPUT, index="native", variable_length=True, min_size=16, recipes=RECIPES,
            paper_options={"centre": False})

DEPARTURES = (
    "The paper encodes pre-extracted streams (landmarks; pool5/conv4/conv3 features of a face-recognition CNN, "
    "reduced to 2048 by random-forest selection). Built without in_features, a small trainable frame CNN "
    "(2048 outputs) stands in for that extractor, trained end to end; with in_features=D the model takes a "
    "(B, T, D) stream as in the paper.",
    "The hidden layer's activation is not given; ReLU.",
    "Optimizer, lr and batch size are not given (the 'paper' recipe's plain SGD lr 0.01 is ours).",
    "He initialisation of the frame CNN and hidden layer (init not given).",
    STANDARDIZE_DEPARTURE,
    CENTRE_DEPARTURE,
    DEFAULT_RECIPE_DEPARTURE,
    "Default lr 1e-3 with per-clip centring (1e-4 before it): uncentred, 60 Adam steps at lr 1e-3 on replica "
    "faces left 3 of 64 tpool-mean hidden units active (lstm-mean 24); centred, 40 steps at 1e-3 keep at least "
    "a third alive (tests/test_models_learn.py) and lstm-mean learns the order replica within 100 steps.",
)


class _Encoder(nn.Module):
    """Shared front of the chao2016 encoders: optional frame CNN -> (per-clip centring) -> dropout -> hidden layer
    (64) -> dropout. `centre=False` feeds the features uncentred, as the paper does."""

    def __init__(self, num_classes: int, in_features: int | None = None, feature_dim: int = 2048, hidden: int = 64,
                 dropout: float = 0.5, cnn_widths: tuple[int, ...] = (32, 64, 128), in_channels: int = 3,
                 centre: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.centre = centre
        self.frontend = None if in_features is not None else FrameCNN(in_channels, cnn_widths, feature_dim)
        d = in_features if in_features is not None else feature_dim
        self.in_features = in_features
        self.drop = nn.Dropout(dropout)
        self.hidden = nn.Linear(d, hidden)
        self.encoding_dim = hidden
        self.out = nn.Linear(hidden, num_classes)

    def _frames(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.frontend is None:
            if x.dim() != 3 or x.shape[-1] != self.in_features:
                raise ValueError(f"expected a feature stream (B, T, {self.in_features}), got {tuple(x.shape)}")
            if lengths is not None and lengths.shape != (x.shape[0],):
                raise ValueError("lengths must be shaped (B,)")
            feats = x
        else:
            check_clips(x, lengths)
            feats = per_frame(self.frontend, x, lengths)
        lengths = full_lengths(x) if lengths is None else lengths
        if self.centre:
            feats = centre_over_time(feats, lengths)
        return F.relu(self.hidden(self.drop(feats))), lengths

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The fixed-length encoding vector of each clip/stream (B, encoding_dim)."""
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.out(self.drop(self.encode(x, lengths)))

    def decay_parameters(self) -> list[nn.Parameter]:
        """The parameters the paper's weight decay (0.0005) applies to: the softmax layer only."""
        return list(self.out.parameters())


class _LSTMEncoder(_Encoder):
    pool = "mean"

    def __init__(self, num_classes: int, in_features: int | None = None, feature_dim: int = 2048, hidden: int = 64,
                 lstm_hidden: int = 64, dropout: float = 0.5, cnn_widths: tuple[int, ...] = (32, 64, 128),
                 in_channels: int = 3, centre: bool = True):
        super().__init__(num_classes, in_features, feature_dim, hidden, dropout, cnn_widths, in_channels, centre)
        self.lstm = nn.LSTM(hidden, lstm_hidden, batch_first=True)
        self.encoding_dim = lstm_hidden
        self.out = nn.Linear(lstm_hidden, num_classes)
        xavier_init_(self)
        kaiming_init_(self.hidden)
        if self.frontend is not None:
            kaiming_init_(self.frontend)

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, lengths = self._frames(x, lengths)
        seq = self.lstm(h)[0]  # causal: padding after a clip's end cannot change its earlier outputs
        return masked_mean(seq, lengths) if self.pool == "mean" else last_valid(seq, lengths)


class _PoolEncoder(_Encoder):
    pool = "mean"

    def __init__(self, num_classes: int, in_features: int | None = None, feature_dim: int = 2048, hidden: int = 64,
                 dropout: float = 0.5, cnn_widths: tuple[int, ...] = (32, 64, 128), in_channels: int = 3,
                 centre: bool = True):
        super().__init__(num_classes, in_features, feature_dim, hidden, dropout, cnn_widths, in_channels, centre)
        xavier_init_(self)
        kaiming_init_(self.hidden)
        if self.frontend is not None:
            kaiming_init_(self.frontend)

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, lengths = self._frames(x, lengths)
        return masked_mean(h, lengths) if self.pool == "mean" else masked_max(h, lengths)


@register_model("lstm-mean", table="Table 1 (2048/64/64/7), Table 2; eq. 4", departures=DEPARTURES, **CARD)
class LSTMMean(_LSTMEncoder):
    __doc__ = "LSTM-mean encoder (chao2016, eq. 4, Table 1 2048/64/64/7): the mean of the LSTM hidden states over the real frames."
    pool = "mean"


@register_model("lstm-last", table="Table 1 (2048/64/64/7); eq. 3", departures=DEPARTURES, **CARD)
class LSTMLast(_LSTMEncoder):
    __doc__ = "LSTM-last encoder (chao2016, eq. 3, Table 1 2048/64/64/7): the hidden state at each clip's last real frame."
    pool = "last"


@register_model("tpool-mean", table="Table 1 (2048/64/7, temporal mean pooling)", departures=DEPARTURES, **CARD)
class TPoolMean(_PoolEncoder):
    __doc__ = "Temporal mean-pooling encoder (chao2016 section 2.2, Table 1 2048/64/7): hidden layer, then the mean over real frames."
    pool = "mean"


@register_model("tpool-max", table="Table 1 (2048/64/7 and 2048/256/7, temporal max pooling)", departures=DEPARTURES, **CARD)
class TPoolMax(_PoolEncoder):
    __doc__ = "Temporal max-pooling encoder (chao2016 section 2.2, Table 1 2048/64/7): hidden layer, then the max over real frames."
    pool = "max"


Streams = Sequence[Tensor]


def _lengths_list(lengths: Sequence[Tensor | None] | Tensor | None, n: int) -> list[Tensor | None]:
    if lengths is None or isinstance(lengths, Tensor):
        return [lengths] * n
    if len(lengths) != n:
        raise ValueError(f"expected {n} lengths entries, one per stream")
    return list(lengths)


class FeatureLevelFusion:
    """Feature-level fusion (chao2016 section 2.3, Table 2): concatenate each stream's encoding and classify with a
    linear SVM (scikit-learn LinearSVC = LibLinear, one-vs-rest), C chosen by grid search (stratified k-fold) on
    the training data passed to :meth:`fit` only -- nothing else is ever seen.

    The encoders are trained beforehand (each on its own stream); fusion only reads ``encode``.
    """

    def __init__(self, encoders: Sequence[_Encoder], Cs: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
                 cv: int = 3, seed: int = 0, batch_size: int = 256):
        if not encoders:
            raise ValueError("feature-level fusion needs at least one encoder")
        self.encoders = list(encoders)
        self.Cs, self.cv, self.seed, self.batch_size = tuple(Cs), cv, seed, batch_size
        self.svm = None
        self.best_C_: float | None = None

    @torch.no_grad()
    def encodings(self, streams: Streams, lengths: Sequence[Tensor | None] | Tensor | None = None) -> np.ndarray:
        """Concatenated encodings (N, sum of encoding dims) of the streams, encoders in eval mode."""
        if len(streams) != len(self.encoders):
            raise ValueError(f"expected {len(self.encoders)} streams, got {len(streams)}")
        lens = _lengths_list(lengths, len(streams))
        parts = []
        for enc, x, ln in zip(self.encoders, streams, lens):
            was = enc.training
            enc.eval()
            chunks = []
            for i in range(0, x.shape[0], self.batch_size):
                sl = slice(i, i + self.batch_size)
                chunks.append(enc.encode(x[sl], None if ln is None else ln[sl]).float().cpu())
            enc.train(was)
            parts.append(torch.cat(chunks))
        return torch.cat(parts, dim=1).numpy()

    def fit(self, streams: Streams, y: Tensor | np.ndarray, lengths=None) -> "FeatureLevelFusion":
        """Grid-search C on these training data only, then refit the SVM on all of them."""
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.svm import LinearSVC

        feats = self.encodings(streams, lengths)
        y = np.asarray(y)
        grid = GridSearchCV(
            LinearSVC(max_iter=20000), {"C": list(self.Cs)},
            cv=StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.seed),
        )
        grid.fit(feats, y)
        self.svm, self.best_C_ = grid.best_estimator_, float(grid.best_params_["C"])
        return self

    def decision_function(self, streams: Streams, lengths=None) -> np.ndarray:
        """One-vs-rest SVM scores (N, classes)."""
        if self.svm is None:
            raise RuntimeError("call fit() first")
        return self.svm.decision_function(self.encodings(streams, lengths))

    def predict(self, streams: Streams, lengths=None) -> np.ndarray:
        """Predicted class per sample (N,)."""
        if self.svm is None:
            raise RuntimeError("call fit() first")
        return self.svm.predict(self.encodings(streams, lengths))


class DecisionLevelFusion:
    """Decision-level fusion (chao2016 section 2.3, Table 2): the average of each stream model's softmax
    probabilities. Optional `weights` give a weighted average (the paper uses equal weights)."""

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None):
        if not models:
            raise ValueError("decision-level fusion needs at least one model")
        self.models = list(models)
        w = torch.ones(len(models)) if weights is None else torch.tensor(list(weights), dtype=torch.float32)
        self.weights = w / w.sum()

    @torch.no_grad()
    def predict_proba(self, streams: Streams, lengths=None) -> Tensor:
        """Averaged class probabilities (N, classes)."""
        if len(streams) != len(self.models):
            raise ValueError(f"expected {len(self.models)} streams, got {len(streams)}")
        lens = _lengths_list(lengths, len(streams))
        total = None
        for w, model, x, ln in zip(self.weights, self.models, streams, lens):
            was = model.training
            model.eval()
            p = torch.softmax(model(x, ln).float(), dim=1).cpu() * w
            model.train(was)
            total = p if total is None else total + p
        return total

    def predict(self, streams: Streams, lengths=None) -> Tensor:
        """Predicted class per sample (N,)."""
        return self.predict_proba(streams, lengths).argmax(1)
