"""Augmentation presets (yu2018: 14x, kim2017: 150x) and the batched tensor ops that apply them."""

from __future__ import annotations

import math

import pytest
import torch

from ferbench.errors import FerbenchError
from ferbench.preprocess.augment import (
    IDENTITY,
    PRESETS,
    Transform,
    apply_transforms,
    augment_batch,
    get_preset,
    materialize,
)


def clips(b=3, t=4, h=20, w=24, dtype=torch.uint8, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, t, 3, h, w), generator=g)
    return x.to(dtype) if dtype == torch.uint8 else (x.to(dtype) / 255)


def test_preset_sizes_and_contents():
    stc, kim = get_preset("stc-nlstm"), get_preset("kim2017")
    assert len(stc) == 14 and len(set(stc)) == 14
    assert {t.angle for t in stc} == {0.0, -7.5, -5.0, -2.5, 2.5, 5.0, 7.5}
    assert {t.flip for t in stc} == {False, True}
    assert all((t.tx, t.ty, t.scale) == (0, 0, 1) for t in stc)
    assert len(kim) == 150 and len(set(kim)) == 150
    assert {t.angle for t in kim} == {-10.0, -5.0, 0.0, 5.0, 10.0}
    assert {(t.tx, t.ty) for t in kim} == {(0, 0), (-2, -2), (-2, 2), (2, -2), (2, 2)}
    assert {t.scale for t in kim} == {0.9, 1.0, 1.1}
    assert IDENTITY in stc and IDENTITY in kim and PRESETS["none"] == (IDENTITY,)
    with pytest.raises(FerbenchError, match="unknown augmentation preset"):
        get_preset("nope")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_flip_is_an_exact_mirror_and_identity_changes_nothing(dtype):
    x = clips(dtype=dtype)
    flipped = apply_transforms(x, [Transform(flip=True)] * 3)
    assert flipped.dtype == dtype and torch.equal(flipped, torch.flip(x, dims=[-1]))
    same = apply_transforms(x, [IDENTITY] * 3)
    assert torch.equal(same, x)
    mixed = apply_transforms(x, [IDENTITY, Transform(angle=5.0), Transform(flip=True)])
    assert torch.equal(mixed[0], x[0]) and torch.equal(mixed[2], torch.flip(x[2], dims=[-1]))
    assert not torch.equal(mixed[1], x[1])


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
    m = img.sum()
    return float((img * xs).sum() / m), float((img * ys).sum() / m)


@pytest.mark.parametrize(
    "tf", [Transform(angle=5.0), Transform(angle=-7.5), Transform(False, 10.0, 2.0, -2.0, 1.1), Transform(True, -5.0, 0, 0, 0.9)]
)
def test_a_bright_point_moves_where_the_matrix_says(tf):
    h, w = 41, 51
    cx, cy = (w - 1) / 2, (h - 1) / 2
    px, py = 37, 12  # off-centre, so rotation and scale both move it
    x = torch.zeros(1, 2, 3, h, w)
    x[0, :, :, py - 1 : py + 2, px - 1 : px + 2] = 1.0  # a 3x3 bright spot, same in every frame
    y = apply_transforms(x, [tf])
    a = math.radians(tf.angle)
    dx, dy = (-(px - cx) if tf.flip else px - cx), py - cy
    # counter-clockwise on screen with y pointing down, then scale, then shift
    qx = cx + tf.scale * (math.cos(a) * dx + math.sin(a) * dy) + tf.tx
    qy = cy + tf.scale * (-math.sin(a) * dx + math.cos(a) * dy) + tf.ty
    for frame in range(2):
        ex, ey = _centroid(y[0, frame, 0])
        assert abs(ex - qx) < 1.0 and abs(ey - qy) < 1.0, (ex, ey, qx, qy)
    assert torch.equal(y[0, 0], y[0, 1])  # the same transform for every frame of the clip


def test_integer_shift_is_exact():
    x = clips(b=1, t=2, h=16, w=16)
    y = apply_transforms(x, [Transform(tx=2.0, ty=-2.0)])
    assert torch.equal(y[..., :-2, 2:], x[..., 2:, :-2])
    assert int(y[..., -2:, :].max()) == 0 and int(y[..., :, :2].max()) == 0  # zeros come in from outside


def test_same_seed_same_output_and_different_seed_differs():
    x = clips(b=8)
    a, ca = augment_batch(x, "kim2017", seed=7, return_choice=True)
    b, cb = augment_batch(x, "kim2017", seed=7, return_choice=True)
    assert torch.equal(a, b) and torch.equal(ca, cb)
    _, cc = augment_batch(x, "kim2017", seed=8, return_choice=True)
    assert not torch.equal(ca, cc)
    assert torch.equal(a, apply_transforms(x, [get_preset("kim2017")[i] for i in ca.tolist()]))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(augment_batch(x, "stc-nlstm", generator=g1), augment_batch(x, "stc-nlstm", generator=g2))


def test_materialize_is_every_transform_of_every_clip():
    x = clips(b=2, t=3, h=12, w=12)
    out = materialize(x, "stc-nlstm")
    assert out.shape == (2 * 14, 3, 3, 12, 12) and out.dtype == torch.uint8
    preset = get_preset("stc-nlstm")
    for b in range(2):
        for k in (0, 7, 13):
            assert torch.equal(out[b * 14 + k], apply_transforms(x[b : b + 1], [preset[k]])[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = clips(b=4)
    cpu = augment_batch(x, "kim2017", seed=1)
    gpu = augment_batch(x.cuda(), "kim2017", seed=1)
    assert gpu.device.type == "cuda"
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1
