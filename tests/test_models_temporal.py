"""Temporal models use time: on a synthetic problem whose class lives only in the order of frames, each temporal
model trained for a few hundred CPU steps beats chance clearly, while single-frame and order-free models do not.

The problem: a bright blob moves with wrap-around across the frame, right (class 0) or left (class 1), from a
random start. Every frame position is equally likely at every time step for both classes, so no single frame,
and no unordered set of frames, carries class information; only the order does.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.nn import functional as F

from ferbench.models import create_model

SEED = int(os.environ.get("FERBENCH_TEST_SEED", "0"))
T = 8


def moving_blob_clips(n: int, size: int, seed: int, step: float, sigma: float, t: int = T,
                      noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (n, t, 3, size, size) and labels: class 0 moves right, class 1 left, wrapping around the frame.

    The blob's brightness rises to the middle frame and falls (onset/apex/offset), the same for both classes.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 2
    x0 = torch.rand(n, generator=g) * size
    yc = size * (0.3 + 0.4 * torch.rand(n, generator=g))
    direction = (1 - 2 * y).float()
    xs = x0[:, None] + direction[:, None] * step * torch.arange(t)[None]
    u = torch.arange(size).float()
    dx = torch.remainder(u[None, None, :] - xs[..., None] + size / 2, size) - size / 2  # periodic distance
    dy = u[None, :] - yc[:, None]
    img = torch.exp(-(dx[:, :, None, :] ** 2 + dy[:, None, :, None] ** 2) / (2 * sigma**2))
    amp = 0.3 + 0.7 * torch.sin(torch.pi * torch.arange(t) / (t - 1))
    img = img * amp[None, :, None, None] + noise * torch.randn(img.shape, generator=g)
    return img[:, :, None].expand(-1, -1, 3, -1, -1).contiguous(), y


DATA: dict[int, tuple] = {}


def data(size: int) -> tuple:
    """Train (384) and held-out (256) clips at `size`, generated once per size."""
    if size not in DATA:
        step, sigma = (2.0, 1.5) if size == 16 else (3.0, 2.5)
        DATA[size] = (moving_blob_clips(384, size, SEED * 10 + 1, step, sigma),
                      moving_blob_clips(256, size, SEED * 10 + 2, step, sigma))
    return DATA[size]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, params=None,
          lr: float = 3e-3, batch: int = 32) -> None:
    """A minimal Adam loop on random mini-batches (the harness owns real training; this proves learnability)."""
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(params if params is not None else [p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


ENC = dict(feature_dim=32, cnn_widths=(8, 16), hidden=16, dropout=0.1)
TINY_T1 = dict(image_size=32, widths=(8, 16, 16), fc=32)
CASES = {
    # name: (frame size, cfg, steps, uses time?)
    "stc": (16, dict(width=8, num_frames=T, image_size=16), 120, True),
    "stc-lstm": (16, dict(width=8, hidden=16, mspp_levels=(1, 2)), 120, True),
    "stc-slstm": (16, dict(width=8, hidden=16, mspp_levels=(1, 2)), 120, True),
    "stc-nlstm": (16, dict(width=8, hidden=16, mspp_levels=(1, 2)), 120, True),
    "lstm-mean": (16, dict(ENC, lstm_hidden=16), 200, True),
    "lstm-last": (16, dict(ENC, lstm_hidden=16), 200, True),
    "mv-lstm": (16, dict(widths=(8, 16), fc=32, hidden=32), 150, True),
    "tpool-mean": (16, ENC, 200, False),
    "tpool-max": (16, ENC, 200, False),
    "static": (16, dict(widths=(8, 16), features=32), 120, False),
    "apex-cnn": (32, TINY_T1, 120, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_temporal_models_use_frame_order(name: str) -> None:
    size, cfg, steps, uses_time = CASES[name]
    (xtr, ytr), (xte, yte) = data(size)
    torch.manual_seed(SEED)
    model = create_model(name, 2, **cfg)
    train(model, xtr, ytr, steps)
    acc = accuracy(model, xte, yte)
    if uses_time:
        assert acc >= 0.9, f"{name} reached only {acc:.3f} on an order-only problem (chance 0.5)"
    else:
        assert acc <= 0.65, f"{name} ({acc:.3f}) cannot see frame order, so it must stay near chance 0.5"


@pytest.mark.slow
def test_mo_cnn_lstm_two_stages_use_frame_order() -> None:
    """The paper's network (frozen CNN in stage 2, no batch norm): stage 1 trains the Table 1 CNN on
    expression-state frames (eq. 1: onset, onset-apex, apex, apex-offset, offset), stage 2 the LSTM on the frozen
    F5 features of all frames.

    Single frames carry no class information here, so the intra-class terms (E2, E4, E5) would shrink F5 toward
    one point; stage 1 uses E1 + E3 (a Table 6 ablation row). The loss-term tests cover E2..E5."""
    (xtr, ytr), (xte, yte) = data(32)
    torch.manual_seed(SEED)
    model = create_model("mo-cnn-lstm", 2, lstm_hidden=32, loss_weights={"E2": 0, "E4": 0, "E5": 0}, **TINY_T1,
                         freeze_cnn=True, batch_norm=False)
    states_at = torch.tensor([0, 2, 4, 5, 7])  # t_on=0, t_apex=4, t_off=7 in eq. 1
    frames = xtr[:, states_at].reshape(-1, 3, 32, 32)
    labels, states = ytr.repeat_interleave(5), torch.arange(5).repeat(xtr.shape[0])
    model.set_stage(1)
    opt = torch.optim.Adam(model.stage_parameters(1), lr=1e-3)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(60):
        idx = torch.randint(0, frames.shape[0], (64,), generator=g)
        loss = model.stage1_loss(frames[idx], labels[idx], states[idx])["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.set_stage(2)
    cnn_before = [p.detach().clone() for p in model.cnn.parameters()]
    train(model, xtr, ytr, 250, params=model.stage_parameters(2))
    assert all(torch.equal(a, b) for a, b in zip(cnn_before, model.cnn.parameters()))
    acc = accuracy(model, xte, yte)
    assert acc >= 0.9, f"mo-cnn-lstm reached only {acc:.3f}"
