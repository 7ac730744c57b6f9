"""Former-DFER (zhao2021): the authors' frame sampling, the paper-size shapes, its card, and that it reads the order
of frames (its T-Former's position embedding), while the same network without it cannot."""

from __future__ import annotations

import pytest
import torch

from ferbench.models import create_model, model_card, model_info
from ferbench.models.former_dfer import segment_indices
from ferbench.preprocess.augment import apply_transforms, get_preset

from test_models_temporal import accuracy, train

TINY = dict(widths=(8, 8, 16, 16), s_heads=2, s_dim_head=8, s_mlp=16, t_heads=2, t_dim_head=8, t_mlp=32)


def _authors_test_starts(n: int, segments: int = 8, duration: int = 2) -> list[int]:
    """dataset_DFEW.py's test offsets, in plain Python floats: the centre of each of 8 equal parts."""
    tick = (n - duration + 1) / float(segments)
    return [int(tick / 2.0 + tick * x) for x in range(segments)]


@pytest.mark.parametrize("n", [16, 17, 23, 40, 101])
def test_test_mode_reads_the_centre_of_each_segment_and_the_next_frame(n: int) -> None:
    idx = segment_indices(torch.tensor([n]), 8, 2, training=False)[0].tolist()
    starts = _authors_test_starts(n)
    assert idx == [p + d for p in starts for d in (0, 1)]


def test_training_mode_takes_a_random_start_inside_each_segment() -> None:
    n = torch.tensor([40] * 64)
    gen = torch.Generator().manual_seed(0)
    idx = segment_indices(n, 8, 2, training=True, generator=gen).view(64, 8, 2)
    part = (40 - 2 + 1) // 8  # the authors' average_duration
    starts = idx[:, :, 0]
    k = torch.arange(8)
    assert bool(((starts >= k * part) & (starts < (k + 1) * part)).all())  # one start per segment
    assert torch.equal(idx[:, :, 1], starts + 1)  # then the next frame
    assert len({tuple(s) for s in starts.tolist()}) > 1  # random, not the test's fixed centres


def test_a_short_clip_is_read_at_evenly_spaced_starts_from_first_to_last_frame() -> None:
    """The authors drop clips under 16 frames; ferbench reads them at evenly spaced, non-decreasing starts (each
    followed by the next frame), the same in training and test, covering every frame (frames repeat) and never
    reading past the clip."""
    for n in (1, 3, 8, 15):
        lengths = torch.tensor([n])
        test = segment_indices(lengths, 8, 2, training=False)[0]
        train_ = segment_indices(lengths, 8, 2, training=True, generator=torch.Generator().manual_seed(1))[0]
        assert torch.equal(test, train_)
        starts, nxt = test.view(8, 2).unbind(1)
        assert bool((starts[1:] >= starts[:-1]).all()) and torch.equal(nxt, (starts + 1).clamp_max(n - 1))
        assert int(test.max()) == n - 1 and int(test.min()) == 0
        assert set(test.tolist()) == set(range(n))


def test_paper_size_shapes() -> None:
    """At 112x112 the stage-3 map is 7x7 (49 spatial tokens of 256 channels); 512 values per frame; 16 frames."""
    torch.manual_seed(0)
    model = create_model("former-dfer", 7).eval()
    assert model.s_former.pos.shape == (1, 256, 7, 7) and model.t_former.pos.shape == (1, 17, 512)
    seen: dict[str, tuple] = {}

    def keep(key: str):
        def hook(module, inputs, output) -> None:
            seen[key] = tuple(output.shape)
        return hook

    model.s_former.transformer.register_forward_hook(keep("tokens"))
    model.t_former.transformer.register_forward_hook(keep("frames"))
    with torch.no_grad():
        out = model(torch.rand(1, 30, 3, 112, 112))
    assert out.shape == (1, 7)
    assert seen == {"tokens": (16, 49, 256), "frames": (1, 17, 512)}


def test_reversing_a_clip_changes_the_output() -> None:
    """A 16-frame clip is read whole, so its reversal holds the same frames: only the order differs, and the
    T-Former's position embedding must make the output differ."""
    torch.manual_seed(0)
    model = create_model("former-dfer", 3, image_size=16, **TINY).eval()
    x = torch.rand(2, 16, 3, 16, 16)
    with torch.no_grad():
        a, b = model(x), model(x.flip(1))
        model.t_former.pos.zero_()  # without positions the class token cannot tell the order
        c, d = model(x), model(x.flip(1))
    assert (a - b).abs().max() > 1e-2 * a.abs().max()
    torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-5)


def test_card() -> None:
    card = model_card("former-dfer")
    assert card.paper == "zhao2021" and card.index == "native" and card.variable_length and card.paper_size == 112
    assert card.paper_options == {"standardize": False, "centre": False}
    (paper,) = card.recipe_for("paper")
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
    assert (paper.epochs, paper.batch_size, paper.schedule_unit, paper.selection) == (100, 32, "epoch", "last-epoch")
    assert [paper.lr_at(e) for e in (0, 39, 40, 79, 80, 99)] == [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    assert paper.augment == "former-dfer"
    text = " ".join(model_info("former-dfer")["departures"])
    assert "best epoch" in text and "fewer than 16 frames" in text and "public code" in text


def test_former_dfer_preset_zooms_never_read_outside_the_frame() -> None:
    """The crop approximation: flips x centred zooms >= 1, so a white clip stays white under every transform
    (a crop inside the frame, no black border), and the zoom-2 transform enlarges the centre."""
    preset = get_preset("former-dfer")
    assert len(preset) == 10 and {t.flip for t in preset} == {False, True}
    assert all(t.angle == 0 and t.tx == 0 and t.ty == 0 and t.scale >= 1 for t in preset)
    white = torch.full((len(preset), 2, 3, 16, 16), 255, dtype=torch.uint8)
    assert bool((apply_transforms(white, preset) == 255).all())
    dot = torch.zeros(1, 1, 1, 16, 16)
    dot[..., 7:9, 7:9] = 1.0  # a 2x2 centre dot becomes a 4x4 one at zoom 2
    zoomed = apply_transforms(dot, [next(t for t in preset if t.scale == 2.0 and not t.flip)])
    assert int((zoomed > 0.5).sum()) == 16


def stripe_clips(n: int, size: int, seed: int, t: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """An order-only problem of the order replica's kind: horizontal stripes rise and fall before vertical ones
    (class 0), or after them (class 1: class 0 played backwards). Both classes hold the same kinds of frames, the
    middle frame alike; only the order of the two events tells them apart. Nine frames: the model reads frames
    0, 1, 1, 2, ..., 7, 7, 8 of them, a selection that reversal maps onto itself. Stripes, not a moving blob:
    Former-DFER averages each frame's map over space, so it sees what is in a frame, not where."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 2
    u = torch.arange(size).float()
    phase = torch.rand(n, 2, generator=g) * 2 * torch.pi
    rows = torch.sin(u[None, :, None] * torch.pi / 2 + phase[:, 0, None, None]).expand(n, size, size)
    cols = torch.sin(u[None, None, :] * torch.pi / 2 + phase[:, 1, None, None]).expand(n, size, size)
    k = torch.arange(t).float()
    mid = (t - 1) / 2
    early, late = torch.exp(-(k - mid + 1) ** 2 / 2), torch.exp(-(k - mid - 1) ** 2 / 2)
    a_rows = torch.where(y[:, None] == 0, early, late)
    a_cols = torch.where(y[:, None] == 0, late, early)
    img = 0.5 + 0.2 * (a_rows[:, :, None, None] * rows[:, None] + a_cols[:, :, None, None] * cols[:, None])
    img = img + 0.1 * torch.randn(n, t, size, size, generator=g)
    return img[:, :, None].expand(-1, -1, 3, -1, -1).contiguous(), y


@pytest.fixture
def one_thread():
    """Torch on one thread for a training test: two threads on a busy two-core runner were 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_former_dfer_learns_the_order_of_events_and_not_without_its_time_positions(one_thread) -> None:
    (xtr, ytr), (xte, yte) = stripe_clips(256, 16, 1), stripe_clips(256, 16, 2)
    torch.manual_seed(0)
    model = create_model("former-dfer", 2, image_size=16, **TINY)
    train(model, xtr, ytr, 80)
    acc = accuracy(model, xte, yte)
    assert acc >= 0.9, f"former-dfer reached only {acc:.3f} on an order-only problem (chance 0.5)"
    torch.manual_seed(0)
    blind = create_model("former-dfer", 2, image_size=16, **TINY)
    blind.t_former.pos.data.zero_()  # the same network, its T-Former blind to frame positions
    train(blind, xtr, ytr, 80, params=[p for p in blind.parameters() if p is not blind.t_former.pos])
    assert accuracy(blind, xte, yte) <= 0.65, "without frame positions the order must stay unreadable"


def test_the_t_former_reads_frame_vectors_centred_per_clip_unless_centre_is_off() -> None:
    """By default each clip's mean frame vector is subtracted before the T-Former (as every temporal model here
    centres); centre=False, the authors' network, feeds them as they are."""
    for centre in (True, False):
        torch.manual_seed(0)
        model = create_model("former-dfer", 3, image_size=16, centre=centre, **TINY).eval()
        seen: list[torch.Tensor] = []
        model.t_former.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]) and None)
        with torch.no_grad():
            model(torch.rand(2, 20, 3, 16, 16), torch.tensor([20, 11]))
        clip_means = seen[0].mean(dim=1)
        assert seen[0].shape == (2, 16, 16)
        assert bool((clip_means.abs() < 1e-5).all()) == centre, (centre, clip_means.abs().max())


@pytest.mark.parametrize("train_mode", [True, False])
def test_a_batch_of_one_one_frame_clip_trains_and_predicts(train_mode: bool) -> None:
    """The shortest input a native index can hold (one clip of one frame, padded into a longer batch tensor):
    every one of the 16 reads is that frame, BatchNorm sees 16 frames, the padding is never read. Uncentred, so
    that the gradient reaches the frame (centring turns a still clip's 16 equal vectors into zeros)."""
    torch.manual_seed(0)
    model = create_model("former-dfer", 3, image_size=16, centre=False, **TINY).train(train_mode)
    x = torch.rand(1, 4, 3, 16, 16, requires_grad=True)
    out = model(x, torch.tensor([1]))
    out.sum().backward()
    assert out.shape == (1, 3) and torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert x.grad[:, 0].abs().sum() > 0 and x.grad[:, 1:].abs().sum() == 0
    centred = create_model("former-dfer", 3, image_size=16, **TINY).train(train_mode)
    assert torch.isfinite(centred(x, torch.tensor([1]))).all()
