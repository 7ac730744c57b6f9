"""Seed 003 objective terms E1..E5 (eqs. 2-11): each is (near) zero where its constraint holds, positive where it
is violated, and its gradients are finite."""

from __future__ import annotations

import math

import torch

from ferbench.models.mo_cnn_lstm import MultiObjectiveLoss, smooth_hinge

BETA = 20.0  # a sharp g, so "satisfied" reads as ~0


def loss(**kw) -> MultiObjectiveLoss:
    return MultiObjectiveLoss(num_classes=2, num_states=5, feature_dim=3, beta=BETA, **kw)


def layout(spread: float, state_gap: float = 1.0, class_gap: float = 100.0, order=(0, 1, 2, 3, 4), n: int = 4):
    """Features for 2 classes x 5 states x n samples: state means on a line (position order[p] * state_gap),
    classes far apart on another axis, samples jittered by `spread` around their state mean."""
    g = torch.Generator().manual_seed(0)
    feats, ys, ss = [], [], []
    for c in range(2):
        for p in range(5):
            centre = torch.tensor([order[p] * state_gap, c * class_gap, 0.0])
            feats.append(centre + spread * torch.randn(n, 3, generator=g))
            ys += [c] * n
            ss += [p] * n
    return torch.cat(feats).requires_grad_(True), torch.tensor(ys), torch.tensor(ss)


def terms(obj: MultiObjectiveLoss, f, y, s, lc=None, lp=None) -> dict:
    lc = torch.zeros(len(y), 2) if lc is None else lc
    lp = torch.zeros(len(y), 5) if lp is None else lp
    return obj(f, lc, lp, y, s)


def test_smooth_hinge_is_softplus_over_beta() -> None:
    w = torch.tensor([-5.0, 0.0, 5.0])
    expected = torch.log1p(torch.exp(2.0 * w)) / 2.0
    torch.testing.assert_close(smooth_hinge(w, 2.0), expected)
    assert smooth_hinge(torch.tensor(-100.0), 1.0) < 1e-6 and abs(smooth_hinge(torch.tensor(100.0), 1.0) - 100) < 1e-4


def test_e1_e3_zero_when_confidently_right_positive_when_wrong() -> None:
    f, y, s = layout(0.01)
    right_c, right_p = 50 * torch.nn.functional.one_hot(y, 2).float(), 50 * torch.nn.functional.one_hot(s, 5).float()
    out = terms(loss(), f, y, s, right_c, right_p)
    assert out["E1"] < 1e-6 and out["E3"] < 1e-6
    out = terms(loss(), f, y, s, -right_c, -right_p)
    assert out["E1"] > 10 and out["E3"] > 10


def test_e2_zero_inside_class_sphere_positive_outside() -> None:
    # classes 100 apart -> radius 50; tight clusters lie well inside.
    f, y, s = layout(spread=0.1, state_gap=1.0, class_gap=100.0)
    assert terms(loss(), f, y, s)["E2"] < 1e-3
    # classes only 2 apart (radius 1) while the states spread samples over 40 units: violated.
    f, y, s = layout(spread=0.1, state_gap=10.0, class_gap=2.0)
    assert terms(loss(), f, y, s)["E2"] > 10


def test_e4_zero_inside_state_sphere_positive_outside_and_tau_tightens() -> None:
    f, y, s = layout(spread=0.01, state_gap=1.0)  # state radius 0.5, samples within ~0.02
    assert terms(loss(), f, y, s)["E4"] < 1e-3
    f, y, s = layout(spread=2.0, state_gap=1.0)  # samples far outside their state's sphere
    assert terms(loss(), f, y, s)["E4"] > 1
    f, y, s = layout(spread=0.2, state_gap=1.0)
    assert terms(loss(tau=8.0), f, y, s)["E4"] > 3 * terms(loss(tau=1.0), f, y, s)["E4"]


def test_e5_small_when_states_are_continuous_positive_when_order_broken() -> None:
    f, y, s = layout(spread=0.0, state_gap=1.0)  # neighbours toward the apex are the nearest states
    e5_ordered = terms(loss(), f, y, s)["E5"]
    assert e5_ordered <= 0.5 * math.log(2) / BETA + 1e-6  # g(0): on the sphere's edge, the tightest tau=1 allows
    f, y, s = layout(spread=0.0, state_gap=1.0, order=(4, 0, 2, 1, 3))  # onset lies far from its neighbour
    assert terms(loss(), f, y, s)["E5"] > 1


def test_e5_gradient_pulls_each_state_mean_toward_its_neighbour() -> None:
    f, y, s = layout(spread=0.0, state_gap=1.0, order=(4, 0, 2, 1, 3))
    obj = loss(weights={"E1": 0, "E2": 0, "E3": 0, "E4": 0, "E5": 1})
    terms(obj, f, y, s)["total"].backward()
    onset = (y == 0) & (s == 0)  # at x=4, its neighbour (state 1) at x=0: descent moves it toward smaller x
    assert (f.grad[onset, 0] > 0).all()
    apex = s == 2
    assert (f.grad[apex] == 0).all()  # the apex state has no E5 term of its own


def test_all_terms_have_finite_gradients_and_means_are_constants_in_e2() -> None:
    f, y, s = layout(spread=1.0, state_gap=2.0, class_gap=3.0)
    lc = torch.randn(len(y), 2, requires_grad=True)
    lp = torch.randn(len(y), 5, requires_grad=True)
    out = terms(loss(), f, y, s, lc, lp)
    assert all(out[t] > 0 for t in ("E1", "E2", "E3", "E4", "E5"))
    out["total"].backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(lc.grad).all() and torch.isfinite(lp.grad).all()
    # E2 with m_c constant (eq. 5): d E2 / d f_i = g'(e2) (f_i - m_c) / N -- check one sample by hand.
    f2 = f.detach().clone().requires_grad_(True)
    terms(loss(weights={"E1": 0, "E2": 1, "E3": 0, "E4": 0, "E5": 0}), f2, y, s)["total"].backward()
    m0 = f2.detach()[y == 0].mean(0)
    m1 = f2.detach()[y == 1].mean(0)
    d = 0.5 * (m0 - m1).norm()
    e2 = (f2.detach()[0] - m0).pow(2).sum() - d**2
    expected = torch.sigmoid(BETA * e2) * (f2.detach()[0] - m0) / len(y)
    torch.testing.assert_close(f2.grad[0], expected)


def test_running_means_follow_batches() -> None:
    obj = loss(means="running")
    f, y, s = layout(spread=0.1)
    terms(obj, f, y, s)
    assert obj.class_seen.all() and obj.state_seen.all()
    torch.testing.assert_close(obj.class_means[1], f.detach()[y == 1].mean(0))
    terms(obj, f + 10.0, y, s)
    torch.testing.assert_close(obj.class_means[1], f.detach()[y == 1].mean(0) + 1.0)  # momentum 0.9


def test_single_class_batch_gives_zero_e2_not_nan() -> None:
    f, y, s = layout(spread=0.5)
    keep = y == 0
    out = terms(loss(), f[keep], y[keep], s[keep])
    assert out["E2"] == 0 and torch.isfinite(out["total"])
