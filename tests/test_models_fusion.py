"""Seed 004 fusion over several feature streams: feature-level (concatenated encodings -> linear SVM, C by grid
search on training data only) and decision-level (averaged probabilities)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ferbench.models import create_model
from ferbench.models.lstm_encoding import DecisionLevelFusion, FeatureLevelFusion


def trajectories(n: int, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 'landmark' streams (B, T, 2): a point moving up (class 0) or down (class 1) from a random start,
    observed with noise; stream 2 is a noisier second view. Variable lengths 6..10."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 2
    t = torch.arange(10).float()
    start = torch.randn(n, 1, generator=g) * 3
    pos = start + (1 - 2 * y.float())[:, None] * 0.5 * t
    a = torch.stack([pos + noise * torch.randn(n, 10, generator=g), torch.randn(n, 10, generator=g)], -1)
    b = torch.stack([-pos + 2 * noise * torch.randn(n, 10, generator=g), torch.randn(n, 10, generator=g)], -1)
    lengths = torch.randint(6, 11, (n,), generator=g)
    return torch.stack([a, b]), y, lengths


def fit(model, x, y, lengths, steps: int = 150) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(y), (32,), generator=g)
        loss = F.cross_entropy(model(x[i], lengths[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    (xa, xb), y, ln = trajectories(200, seed=1, noise=0.8)
    (ta, tb), ty, tln = trajectories(200, seed=2, noise=0.8)
    enc_a = create_model("lstm-mean", 2, in_features=2, hidden=16, lstm_hidden=16, dropout=0.0)
    enc_b = create_model("lstm-mean", 2, in_features=2, hidden=16, lstm_hidden=16, dropout=0.0)
    fit(enc_a, xa, y, ln)
    fit(enc_b, xb, y, ln)
    return (enc_a, enc_b), ([xa, xb], y, ln), ([ta, tb], ty, tln)


def test_feature_level_fusion_svm_on_concatenated_encodings(trained) -> None:
    encoders, (xs, y, ln), (ts, ty, tln) = trained
    fusion = FeatureLevelFusion(encoders, Cs=(0.01, 0.1, 1.0, 10.0)).fit(xs, y, ln)
    feats = fusion.encodings(ts, tln)
    assert feats.shape == (200, 16 + 16)
    assert fusion.best_C_ in (0.01, 0.1, 1.0, 10.0)
    assert fusion.svm.coef_.shape[1] == 32
    acc = (fusion.predict(ts, tln) == ty.numpy()).mean()
    assert acc >= 0.9, acc


def test_feature_level_fusion_is_reproducible_from_training_data(trained) -> None:
    """fit() takes only training streams; its stratified grid search is seeded, so two fits agree exactly."""
    encoders, (xs, y, ln), _ = trained
    a = FeatureLevelFusion(encoders, Cs=(0.1, 1.0)).fit(xs, y, ln)
    b = FeatureLevelFusion(encoders, Cs=(0.1, 1.0)).fit(xs, y, ln)
    assert a.best_C_ == b.best_C_ and np.allclose(a.svm.coef_, b.svm.coef_)


def test_decision_level_fusion_averages_probabilities(trained) -> None:
    encoders, _, (ts, ty, tln) = trained
    fused = DecisionLevelFusion(encoders).predict_proba(ts, tln)
    with torch.no_grad():
        for e in encoders:
            e.eval()
        expected = sum(torch.softmax(e(x, tln), 1) for e, x in zip(encoders, ts)) / 2
    torch.testing.assert_close(fused, expected)
    assert (DecisionLevelFusion(encoders).predict(ts, tln) == ty).float().mean() >= 0.9


def test_fusion_rejects_wrong_number_of_streams(trained) -> None:
    encoders, (xs, y, ln), _ = trained
    with pytest.raises(ValueError, match="expected 2 streams"):
        FeatureLevelFusion(encoders).fit(xs[:1], y, ln)
    with pytest.raises(ValueError, match="expected 2 streams"):
        DecisionLevelFusion(encoders).predict_proba(xs[:1], ln)
