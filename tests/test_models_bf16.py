"""Every model trains under bf16 autocast (the harness's CUDA mode), checked with CPU autocast.

No GPU reaches CI, so the CUDA bf16 path is exercised here through `torch.autocast("cpu", torch.bfloat16)`: the
same mixed-dtype traps (bf16 activations written into float32 buffers, index_add / cdist / LSTM on bf16
inputs, masks and padding) fail on CPU as they would on CUDA. The logits must also stay close to float32's.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ferbench.models import create_model

from test_models_shapes import ALL, SMALL


def _clips(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    size, _ = SMALL[name]
    t = 8
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, t, 3, size, size, generator=g)
    lengths = torch.tensor([t, t, t]) if name.startswith("stc") else torch.tensor([t, 6, 5])
    return x, lengths


@pytest.mark.parametrize("name", ALL)
def test_forward_and_backward_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 4, **SMALL[name][1]).train()
    if hasattr(model, "set_stage") and name != "apex-cnn":
        model.set_stage(2)
    x, lengths = _clips(name)
    y = torch.tensor([0, 1, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, lengths)
    assert logits.shape == (3, 4)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]  # (apex-cnn's Fp head is stage 1's)
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)  # the bf16 graph reaches the parameters

    model.eval()  # same weights: bf16 logits within bf16's precision of float32's
    with torch.no_grad():
        ref = model(x, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, lengths).float()
    assert torch.allclose(low, ref, atol=0.1 * float(ref.abs().max()) + 0.05), (low, ref)


@pytest.mark.parametrize("name", ["mo-cnn-lstm", "apex-cnn"])
def test_kim2017_stage1_objective_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 3, **SMALL[name][1]).train()
    model.set_stage(1)
    frames = torch.rand(15, 3, 32, 32)
    labels = torch.tensor([0, 1, 2]).repeat_interleave(5)
    states = torch.arange(5).repeat(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.stage1_loss(frames, labels, states)
    assert all(terms[t].dtype == torch.float32 for t in ("E1", "E2", "E3", "E4", "E5", "total"))
    terms["total"].backward()
    grads = [p.grad for p in model.stage_parameters(1)]
    assert torch.isfinite(terms["total"]) and all(g is not None and torch.isfinite(g).all() for g in grads)
