"""Registry behaviour, output shapes at the papers' input sizes and at small sizes, MSPP-norm size, masking."""

from __future__ import annotations

import pytest
import torch

from ferbench.errors import FerbenchError
from ferbench.models import create_model, list_models, model_card, model_info
from ferbench.models.stc_nlstm import mspp_norm

ALL = ["apex-cnn", "former-dfer", "lstm-last", "lstm-mean", "mo-cnn-lstm", "mv-lstm", "static", "stc", "stc-lstm", "stc-nlstm",
       "stc-slstm", "tpool-max", "tpool-mean"]

# Small configurations (16x16 frames; the Table 1 CNN of kim2017 needs 32x32).
SMALL = {
    "stc": (16, dict(width=8, num_frames=8, image_size=16)),
    "stc-lstm": (16, dict(width=8, hidden=16)),
    "stc-slstm": (16, dict(width=8, hidden=16)),
    "stc-nlstm": (16, dict(width=8, hidden=16)),
    "lstm-mean": (16, dict(feature_dim=32, cnn_widths=(8, 16), hidden=16, lstm_hidden=16)),
    "lstm-last": (16, dict(feature_dim=32, cnn_widths=(8, 16), hidden=16, lstm_hidden=16)),
    "tpool-mean": (16, dict(feature_dim=32, cnn_widths=(8, 16), hidden=16)),
    "tpool-max": (16, dict(feature_dim=32, cnn_widths=(8, 16), hidden=16)),
    "static": (16, dict(widths=(8, 16), features=32)),
    "apex-cnn": (32, dict(image_size=32, widths=(8, 16, 16), fc=32)),
    "mo-cnn-lstm": (32, dict(image_size=32, widths=(8, 16, 16), fc=32, lstm_hidden=32)),
    "mv-lstm": (16, dict(widths=(8, 16), fc=32, hidden=32)),
    "former-dfer": (16, dict(image_size=16, widths=(8, 8, 16, 16), s_heads=2, s_dim_head=8, s_mlp=16, t_heads=2,
                             t_dim_head=8, t_mlp=32)),
}
VARIABLE_LENGTH = ["apex-cnn", "former-dfer", "lstm-last", "lstm-mean", "mo-cnn-lstm", "mv-lstm", "static", "tpool-max", "tpool-mean"]


def test_registry_lists_every_model_with_a_card() -> None:
    assert list_models() == ALL
    for name in ALL:
        info = model_info(name)
        assert set(info) >= {"name", "paper", "table", "input", "departures"}
        assert info["name"] == name and info["paper"] and info["table"] and info["input"]
        assert all(isinstance(d, str) and d for d in info["departures"])


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(FerbenchError, match="stc-nlstm"):
        create_model("nope", 6)
    with pytest.raises(FerbenchError, match="unknown model 'nope'"):
        model_info("nope")


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(FerbenchError, match="no option"):
        create_model("stc-nlstm", 6, hiden=3)


def test_stc_recipe_is_the_papers() -> None:
    (r,) = model_card("stc-nlstm").recipe_for("paper")
    assert (r.lr, r.weight_decay) == (0.0025, 0.0015)
    assert r.lr_at(0) == 0.0025 and r.lr_at(299) == 0.0025 and r.lr_at(300) == 0.000025


def test_mspp_is_5376_per_frame_per_layer_at_64x64() -> None:
    model = create_model("stc-nlstm", 6).eval()
    with torch.no_grad():
        feats = model.mspp_features(torch.rand(1, 18, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 18, 5376)] * 5


def test_mspp_takes_the_max_of_each_cell() -> None:
    fmap = torch.zeros(1, 1, 1, 8, 8)
    fmap[0, 0, 0, 1, 6] = 5.0  # top-right quadrant at 2x2; cell (0, 3) at 4x4; cell (1, 6) at 8x8
    v = mspp_norm(fmap)[0, 0]
    assert v.shape == (84,)
    assert v[:4].tolist() == [0, 5, 0, 0]
    assert v[4:20].view(4, 4)[0, 3] == 5 and v[4:20].sum() == 5
    assert v[20:].view(8, 8)[1, 6] == 5 and v[20:].sum() == 5


@pytest.mark.parametrize("name", ALL)
def test_paper_size_ck_plus_18x64x64x3(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 6).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 18, 3, 64, 64))
    assert out.shape == (2, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_small_size_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    size, cfg = SMALL[name]
    model = create_model(name, 3, **cfg)
    out = model(torch.rand(4, 8, 3, size, size))
    assert out.shape == (4, 3)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", VARIABLE_LENGTH)
def test_padding_is_masked_not_read(name: str) -> None:
    """A padded clip with garbage after its end gives the same logits as the unpadded clip alone."""
    torch.manual_seed(0)
    size, cfg = SMALL[name]
    model = create_model(name, 3, **cfg).eval()
    clips = torch.rand(3, 8, 3, size, size)
    lengths = torch.tensor([8, 5, 3])
    garbage = clips.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage[i, n:] = 100.0 * torch.randn_like(garbage[i, n:])
    with torch.no_grad():
        batched = model(garbage, lengths)
        alone = torch.cat([model(clips[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_batchnorm_statistics_never_see_padding() -> None:
    """In training mode too, padded frames are not passed through the frame CNN (its BN would read them)."""
    size, cfg = SMALL["lstm-mean"]
    torch.manual_seed(0)
    a = create_model("lstm-mean", 2, dropout=0.0, **{k: v for k, v in cfg.items()})
    b = create_model("lstm-mean", 2, dropout=0.0, **{k: v for k, v in cfg.items()})
    b.load_state_dict(a.state_dict())
    clips = torch.rand(2, 8, 3, size, size)
    lengths = torch.tensor([8, 4])
    noisy = clips.clone()
    noisy[1, 4:] = 50.0
    torch.testing.assert_close(a(clips, lengths), b(noisy, lengths))


def test_stc_rejects_ragged_lengths() -> None:
    size, cfg = SMALL["stc-nlstm"]
    model = create_model("stc-nlstm", 2, **cfg)
    with pytest.raises(ValueError, match="fixed-length"):
        model(torch.rand(2, 8, 3, size, size), torch.tensor([8, 5]))


def test_wrong_layout_is_rejected() -> None:
    model = create_model("static", 2, **SMALL["static"][1])
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model(torch.rand(2, 3, 16, 16))


def test_feature_stream_input_for_chao2016() -> None:
    model = create_model("lstm-mean", 7, in_features=2048).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 20, 2048), torch.tensor([20, 11, 2]))
    assert out.shape == (3, 7)
    # Table 1 topology 2048/64/64/7: hidden 2048->64, LSTM 64, softmax 64->7.
    assert model.hidden.in_features == 2048 and model.lstm.hidden_size == 64 and model.out.out_features == 7


@pytest.mark.parametrize("batch_norm", [False, True])
def test_mo_cnn_table1_shapes(batch_norm: bool) -> None:
    model = create_model("mo-cnn-lstm", 6, batch_norm=batch_norm).eval()
    shapes = []
    h = torch.rand(1, 3, 64, 64)
    for layer in model.cnn.conv:
        h = layer(h)
        if not isinstance(layer, (torch.nn.ReLU, torch.nn.BatchNorm2d)):
            shapes.append(tuple(h.shape[1:]))
    # Table 1: C1 62x62x32, S1 31x31x32, C2 29x29x64, S2 14x14x64, C3 12x12x64, S3 6x6x64.
    assert shapes == [(32, 62, 62), (32, 31, 31), (64, 29, 29), (64, 14, 14), (64, 12, 12), (64, 6, 6)]
    assert model.cnn.f4.in_features == 6 * 6 * 64 and model.cnn.f5.out_features == 512
    assert model.lstm.num_layers == 3 and model.lstm.hidden_size == 512  # Table 2 L6-L8


def test_mo_cnn_stage_two_fine_tunes_the_cnn_by_default() -> None:
    size, cfg = SMALL["mo-cnn-lstm"]
    model = create_model("mo-cnn-lstm", 2, **cfg)
    model.set_stage(2)
    assert {id(p) for p in model.cnn.parameters()} <= {id(p) for p in model.stage_parameters(2)}
    before = [p.detach().clone() for p in model.cnn.parameters()]
    opt = torch.optim.SGD(model.stage_parameters(2), lr=0.1)
    model(torch.rand(2, 8, 3, size, size)).sum().backward()
    opt.step()
    assert not all(torch.equal(a, b) for a, b in zip(before, model.cnn.parameters()))


def test_mo_cnn_two_stages_train_different_parameters() -> None:
    """The paper's network (freeze_cnn=True): stage 2 leaves the CNN exactly as stage 1 left it."""
    size, cfg = SMALL["mo-cnn-lstm"]
    model = create_model("mo-cnn-lstm", 2, **cfg, freeze_cnn=True)
    model.set_stage(1)
    assert {id(p) for p in model.stage_parameters(1)} == {id(p) for p in model.cnn.parameters()}
    model.set_stage(2)
    before = [p.detach().clone() for p in model.cnn.parameters()]
    opt = torch.optim.SGD(model.stage_parameters(2), lr=0.1)
    loss = model(torch.rand(2, 8, 3, size, size)).sum()
    loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.cnn.parameters()))
    assert all(p.grad is None for p in model.cnn.parameters())


@pytest.mark.parametrize("freeze", [True, False])
def test_mo_cnn_batch_norm_statistics_stay_fixed_only_while_the_cnn_is_frozen(freeze: bool) -> None:
    size, cfg = SMALL["mo-cnn-lstm"]
    model = create_model("mo-cnn-lstm", 2, **cfg, batch_norm=True, freeze_cnn=freeze)
    bn = [m for m in model.cnn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 3
    model.set_stage(1)
    model.train()
    model.stage1_loss(torch.rand(6, 3, size, size), torch.tensor([0, 1] * 3), torch.arange(6) % 5)
    stage1 = [m.running_mean.clone() for m in bn]
    assert not torch.equal(stage1[0], torch.zeros_like(stage1[0]))  # stage 1 trains the statistics
    model.set_stage(2)
    model.train()
    model(torch.rand(2, 8, 3, size, size))
    moved = [not torch.equal(a, m.running_mean) for a, m in zip(stage1, bn)]
    assert moved == [not freeze] * 3
    assert model.lstm.training and model.cnn.training is not freeze
