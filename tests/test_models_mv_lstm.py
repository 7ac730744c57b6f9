"""The reconstructed MV-LSTM cell (baddar2019): the mode path learns (receives gradient), and with the mode gates
closed the cell is exactly a standard LSTM."""

from __future__ import annotations

import torch
from torch import nn

from ferbench.models import create_model
from ferbench.models.mv_lstm import MVLSTM


def copy_into_lstm(rnn: MVLSTM) -> nn.LSTM:
    """An nn.LSTM with the expression-path weights of `rnn` (same gate order i, f, g, o)."""
    cell = rnn.cell
    lstm = nn.LSTM(cell.input_size, cell.hidden_size, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(cell.expr.weight[:, : cell.input_size])
        lstm.weight_hh_l0.copy_(cell.expr.weight[:, cell.input_size :])
        lstm.bias_ih_l0.copy_(cell.expr.bias)
        lstm.bias_hh_l0.zero_()
    return lstm


def test_closed_mode_gates_reduce_to_lstm() -> None:
    torch.manual_seed(0)
    rnn = MVLSTM(5, 7)
    with torch.no_grad():
        h = rnn.cell.hidden_size
        rnn.cell.mode.weight[:h].zero_()  # mode input gate i^m ...
        rnn.cell.mode.bias[:h].fill_(-1e4)  # ... closed: sigmoid(-1e4) == 0, so m_t stays 0
    seq = torch.randn(3, 6, 5)
    out, (hT, cT, mT) = rnn(seq)
    ref, (h_ref, c_ref) = copy_into_lstm(rnn)(seq)
    assert torch.equal(mT, torch.zeros_like(mT))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cT, c_ref[0], rtol=1e-5, atol=1e-6)


def test_open_mode_gates_change_the_output() -> None:
    """Control for the test above: with the mode path open the cell is not the plain LSTM."""
    torch.manual_seed(0)
    rnn = MVLSTM(5, 7)
    seq = torch.randn(3, 6, 5)
    assert not torch.allclose(rnn(seq)[0], copy_into_lstm(rnn)(seq)[0], atol=1e-3)


def test_use_mode_false_is_a_plain_lstm() -> None:
    torch.manual_seed(0)
    rnn = MVLSTM(5, 7, use_mode=False)
    seq = torch.randn(2, 4, 5)
    torch.testing.assert_close(rnn(seq)[0], copy_into_lstm(rnn)(seq)[0], rtol=1e-5, atol=1e-6)


def test_mode_path_receives_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("mv-lstm", 3, widths=(8, 16), fc=32, hidden=16)
    loss = model(torch.rand(2, 5, 3, 32, 32)).logsumexp(1).sum()
    loss.backward()
    cell = model.rnn.cell
    for name, p in [("mode", cell.mode.weight), ("mode bias", cell.mode.bias), ("mode->gates", cell.mode_to_gates.weight)]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"
    h = cell.hidden_size
    # the mode forget gate gets gradient too (it acts from the second step on)
    assert cell.mode.weight.grad[h : 2 * h].abs().sum() > 0


def test_mode_state_is_never_emitted() -> None:
    """h_t = o_t * tanh(c_t): the mode cell only regulates gates. Zeroing the mode-to-gate weights makes the
    output independent of everything in the mode path."""
    torch.manual_seed(0)
    rnn = MVLSTM(4, 6)
    with torch.no_grad():
        rnn.cell.mode_to_gates.weight.zero_()
    seq = torch.randn(2, 5, 4)
    before = rnn(seq)[0]
    with torch.no_grad():
        rnn.cell.mode.weight.normal_()
    torch.testing.assert_close(rnn(seq)[0], before)
