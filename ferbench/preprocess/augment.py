"""Data augmentation presets from the papers, applied as batched tensor ops on the training device.

- `stc-nlstm` (yu2018, section 4.1 "Data augmentation"): "we first flip each image sequence horizontally so
  as to double the number of sequences. Then we rotate each image by an angle in {-7.5, -5, -2.5, 2.5, 5,
  7.5} deg, resulting in a new dataset which is 14 times as big as the original one": 2 flips x 7 angles
  (0 included) = 14 transforms.
- `kim2017` (kim2017, section 3.1): "150 augmented sequences were obtained by: 1) horizontal flipping of the
  sequence frames, 2) rotating the frames between the angles [-10, 10] with an increment of 5, 3)
  translating the frames along [(0, 0), (-2, -2), (-2, +2), (+2, -2), (+2, +2)] pixels in x and y axis, and
  4) scaling the frames with scaling factors of 0.9, 1.0 and 1.1": 2 x 5 x 5 x 3 = 150 transforms.
- `former-dfer` (zhao2021, the authors' code: the same random-sized crop of 8-100% of the area for every frame,
  resized back, and a horizontal flip), approximated as a fixed list: flip x centred zooms 1, 1.25, 1.5, 1.75, 2
  (square centre crops of 100% to 25% of the area) = 10 transforms. Zooms about the centre need no shift in
  pixels, so the preset means the same at every frame size.

A transform is (flip, angle, tx, ty, scale). Conventions: the horizontal flip is applied first; then a
rotation by `angle` degrees counter-clockwise as the image is displayed (y axis pointing down, the same
sense as OpenCV's getRotationMatrix2D) and a zoom by `scale` (> 1 enlarges the face), both about the
image centre; then a shift by (tx, ty) pixels (+x right, +y down). Pixels that come from outside the
frame are black (zero), like yu2018's zero padding. One transform is applied to every frame of a clip,
so motion between frames is untouched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ferbench.errors import FerbenchError


class Transform(NamedTuple):
    """One augmentation: mirror first, then rotate (deg, counter-clockwise) and scale about the centre, then shift (px)."""

    flip: bool = False
    angle: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0


IDENTITY = Transform()

PRESETS: dict[str, tuple[Transform, ...]] = {
    "none": (IDENTITY,),
    "stc-nlstm": tuple(
        Transform(flip, angle)
        for flip, angle in itertools.product((False, True), (0.0, -7.5, -5.0, -2.5, 2.5, 5.0, 7.5))
    ),
    "kim2017": tuple(
        Transform(flip, angle, tx, ty, scale)
        for flip, angle, (tx, ty), scale in itertools.product(
            (False, True),
            (-10.0, -5.0, 0.0, 5.0, 10.0),
            ((0.0, 0.0), (-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0)),
            (0.9, 1.0, 1.1),
        )
    ),
    "former-dfer": tuple(
        Transform(flip, scale=scale) for flip, scale in itertools.product((False, True), (1.0, 1.25, 1.5, 1.75, 2.0))
    ),
}


def get_preset(name: str) -> tuple[Transform, ...]:
    """The transforms of a named preset (`none`, `stc-nlstm`, `kim2017`, `former-dfer`)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise FerbenchError(f"unknown augmentation preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[key]


def params_tensor(params: str | Sequence[Transform | Sequence[float]] | torch.Tensor) -> torch.Tensor:
    """Transforms as a (K, 5) float64 CPU tensor [flip, angle, tx, ty, scale] (a preset name is accepted)."""
    if isinstance(params, str):
        params = get_preset(params)
    if isinstance(params, torch.Tensor):
        p = params.detach().to("cpu", torch.float64)
    else:
        p = torch.tensor([[float(v) for v in t] for t in params], dtype=torch.float64)
    if p.ndim != 2 or p.shape[1] != 5 or p.shape[0] == 0:
        raise FerbenchError(f"augmentation parameters must be K x 5 (flip, angle, tx, ty, scale); got {tuple(p.shape)}")
    if bool((p[:, 4] <= 0).any()):
        raise FerbenchError("augmentation scale factors must be positive")
    return p


def _thetas(p: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse affine maps (B, 2, 3) in grid_sample's normalised coordinates (align_corners=False) for rotate/scale/shift.

    Forward in pixels about the centre c: q - c = s R (p - c) + t, R = [[cos, sin], [-sin, cos]] (counter-
    clockwise on screen with y down). grid_sample needs, per output pixel, where to read from:
    p - c = R^T (q - c - t) / s. With u = D (x - c), D = diag(2/W, 2/H): u_in = D R^T D^-1 u_out / s - D R^T t / s.
    """
    a = p[:, 1] * (math.pi / 180.0)
    s = p[:, 4]
    cos, sin = torch.cos(a), torch.sin(a)
    inv = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / s[:, None, None]  # R^T / s
    d = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64)
    lin = d[None, :, None] * inv / d[None, None, :]
    t = p[:, 2:4]
    shift = -(d[None, :] * (inv @ t[:, :, None])[:, :, 0])
    return torch.cat([lin, shift[:, :, None]], dim=2).to(torch.float32)


def apply_transforms(
    clips: torch.Tensor,
    params: Sequence[Transform | Sequence[float]] | torch.Tensor,
    *,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Apply transform i to every frame of clip i. `clips`: (B, T, C, H, W) uint8 or float, any device.

    The flip is an exact `torch.flip`; rotation/scale/shift use `affine_grid` + bilinear `grid_sample`
    and only run for clips that need them, so identity transforms return the input bit for bit. uint8 in,
    uint8 out (rounded and clamped); float in, same float dtype out.
    """
    if clips.ndim != 5:
        raise FerbenchError(f"expected clips shaped (B, T, C, H, W); got {tuple(clips.shape)}")
    b, t, c, h, w = clips.shape
    p = params_tensor(params)
    if p.shape[0] != b:
        raise FerbenchError(f"{p.shape[0]} transforms for {b} clips")
    flip = (p[:, 0] > 0.5).to(clips.device)
    out = torch.where(flip.view(b, 1, 1, 1, 1), clips.flip(-1), clips) if bool(flip.any()) else clips
    moving = (p[:, 1] != 0) | (p[:, 2] != 0) | (p[:, 3] != 0) | (p[:, 4] != 1)
    if not bool(moving.any()):
        return out
    idx = torch.nonzero(moving).flatten()
    sel = out[idx.to(clips.device)]
    x = sel.reshape(len(idx) * t, c, h, w).to(torch.float32)
    theta = _thetas(p[idx], h, w).repeat_interleave(t, dim=0).to(clips.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    if clips.dtype == torch.uint8:
        y = y.round_().clamp_(0, 255)
    y = y.to(clips.dtype).reshape(len(idx), t, c, h, w)
    out = out.clone() if out is clips else out
    out[idx.to(clips.device)] = y
    return out


def augment_batch(
    clips: torch.Tensor,
    params: str | Sequence[Transform | Sequence[float]] | torch.Tensor = "stc-nlstm",
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    return_choice: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """On-the-fly augmentation: each clip gets one transform drawn uniformly from `params` (a preset name
    or a list), the same for all its frames.

    The draw uses a CPU `torch.Generator` (`generator`, or a fresh one seeded with `seed`), so the same
    seed gives the same choice and the same pixels on CPU and CUDA. With `return_choice`, also returns
    the (B,) indices into the transform list.
    """
    p = params_tensor(params)
    if generator is None:
        generator = torch.Generator(device="cpu")
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
    choice = torch.randint(p.shape[0], (clips.shape[0],), generator=generator)
    out = apply_transforms(clips, p[choice])
    return (out, choice) if return_choice else out


def materialize(
    clips: torch.Tensor, preset: str | Sequence[Transform | Sequence[float]] | torch.Tensor
) -> torch.Tensor:
    """Every transform of `preset` applied to every clip: (B * K, T, C, H, W), clip-major (row b*K + k is
    clip b under transform k), for writing augmented copies for tools outside ferbench.

    The result is K times the input (150x for kim2017): call it per sample or per small batch.
    """
    p = params_tensor(preset)
    b, k = clips.shape[0], p.shape[0]
    rep = clips.repeat_interleave(k, dim=0)
    return apply_transforms(rep, p.repeat(b, 1))
