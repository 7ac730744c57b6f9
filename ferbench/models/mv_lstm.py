"""baddar2019: Baddar & Ro, "Mode Variational LSTM Robust to Unseen Modes of Variation: Application to Facial
Expression Recognition", AAAI 2019 (arXiv 1811.06937). Model ``mv-lstm``.

Only the abstract is available. It states: an LSTM with an *additional cell state* that encodes the mode
variation (pose, illumination, ...) of the sequence, and *additional gates* that regulate what is stored in it,
so that the expression encoding is robust to unseen modes. The cell below is a RECONSTRUCTION from that text,
not the paper's equations.

Reconstructed MV-LSTM cell (z_t = [x_t; h_{t-1}], sigma = logistic sigmoid, * = element-wise product)::

    mode path (the added cell state and its gates)
        i^m_t = sigma(W_im z_t + b_im)              mode input gate
        f^m_t = sigma(W_fm z_t + b_fm)              mode forget gate
        g^m_t = tanh(W_gm z_t + b_gm)               mode candidate
        m_t   = f^m_t * m_{t-1} + i^m_t * g^m_t     mode cell state

    expression path (a standard LSTM whose gates also read the mode state)
        i_t = sigma(W_i z_t + U_i m_t + b_i)        input gate
        f_t = sigma(W_f z_t + U_f m_t + b_f)        forget gate
        o_t = sigma(W_o z_t + U_o m_t + b_o)        output gate, shared by both cells
        g_t = tanh(W_g z_t + b_g)                   candidate (no mode term)
        c_t = f_t * c_{t-1} + i_t * g_t             expression cell state
        h_t = o_t * tanh(c_t)                       output

The mode state only *regulates* (through the gates) what enters and leaves the expression cell; it is never
written into c_t nor emitted in h_t, so the expression cell and the output stay free of mode content. With the
mode input gate closed (i^m = 0) and m_0 = 0, m_t = 0 for all t and the cell is exactly an LSTM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ferbench.models._common import CENTRE_DEPARTURE, STANDARDIZE_DEPARTURE, FrameCNN, centre_over_time, check_clips, ferbench_recipe, quick_recipe, full_lengths, lengths_to_mask, per_frame, kaiming_init_, xavier_init_
from ferbench.models._registry import register_model

MV_DEFAULT = ferbench_recipe("end-to-end", 3e-4, 500, augment="stc-nlstm",
                             notes="every value is ours: the paper's training details are unavailable")
MV_QUICK = quick_recipe("end-to-end", 3e-4)


class MVLSTMCell(nn.Module):
    """One step of the reconstructed mode-variational LSTM (equations in this module's docstring).

    Weight layout: ``expr`` maps z_t to the expression pre-activations in nn.LSTM's gate order (i, f, g, o);
    ``mode`` maps z_t to (i^m, f^m, g^m); ``mode_to_gates`` maps m_t to the (i, f, o) pre-activations.
    """

    def __init__(self, input_size: int, hidden_size: int, use_mode: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.use_mode = input_size, hidden_size, use_mode
        self.expr = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        self.mode = nn.Linear(input_size + hidden_size, 3 * hidden_size)
        self.mode_to_gates = nn.Linear(hidden_size, 3 * hidden_size, bias=False)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """x (B, input_size), state (h, c, m) -> (h_t, (h_t, c_t, m_t))."""
        h, c, m = state
        z = torch.cat([x, h], dim=1)
        gi, gf, gg, go = self.expr(z).chunk(4, dim=1)
        if self.use_mode:
            mi, mf, mg = self.mode(z).chunk(3, dim=1)
            m = torch.sigmoid(mf) * m + torch.sigmoid(mi) * torch.tanh(mg)
            ui, uf, uo = self.mode_to_gates(m).chunk(3, dim=1)
            gi, gf, go = gi + ui, gf + uf, go + uo
        c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
        h = torch.sigmoid(go) * torch.tanh(c)
        return h, (h, c, m)


class MVLSTM(nn.Module):
    """A single-layer MV-LSTM over a (B, T, D) sequence with masking: padded steps leave the state unchanged."""

    def __init__(self, input_size: int, hidden_size: int, use_mode: bool = True):
        super().__init__()
        self.cell = MVLSTMCell(input_size, hidden_size, use_mode)

    def forward(self, seq: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Returns outputs (B, T, H) and the final (h, c, m) at each sequence's last real step."""
        b, t, _ = seq.shape
        hdim = self.cell.hidden_size
        zeros = seq.new_zeros(b, hdim)
        state = (zeros, zeros, zeros)
        mask = None if lengths is None else lengths_to_mask(lengths.to(seq.device), t)
        outs = []
        for k in range(t):
            _, new = self.cell(seq[:, k], state)
            if mask is not None:
                keep = mask[:, k : k + 1]
                new = tuple(torch.where(keep, n, o) for n, o in zip(new, state))
            state = new
            outs.append(state[0])
        return torch.stack(outs, dim=1), state


@register_model(
    "mv-lstm", paper="baddar2019", table="abstract only (no tables available): a RECONSTRUCTION",
    input="(B, T, 3, H, W) + lengths (variable length)", index="native", variable_length=True, min_size=16,
    recipes={"default": (MV_DEFAULT,), "paper": (MV_DEFAULT,), "quick": (MV_QUICK,)},
    departures=(
        "The cell equations are a reconstruction from the abstract (see docs/models.md), not the paper's.",
        "The paper's frame CNN is unknown. Ours is the frame CNN that stands in for chao2016's features "
        "(conv-BN-ReLU-maxpool blocks to a 4x4 grid, 512 features). The Table 1 CNN of kim2017 (same lab) was the "
        "first choice: on the 9-subject CK+ replica at 32x32 (3 subject-disjoint folds, compact widths, chance 0.14) "
        "it left mv-lstm at 0.40, under the static baseline (0.41-0.43; replica before its appearance cues). With "
        "this frame CNN, on the current replica: 0.67 (static 0.60).",
        "One MV-LSTM layer of 256 units; classification from the hidden state at the last real frame.",
        "The training recipe is ours (the 'paper' recipe is the default: the paper's is unavailable).",
        "He initialisation of the frame CNN (init not given).",
        STANDARDIZE_DEPARTURE,
        CENTRE_DEPARTURE,
    ),
)
class MVLSTMNet(nn.Module):
    """Frame CNN + mode-variational LSTM (baddar2019, RECONSTRUCTION; equations in ``ferbench.models.mv_lstm``).

    ``use_mode=False`` gives the same network with a plain LSTM cell (the comparison the paper makes);
    ``centre=False`` feeds the frame features uncentred.

    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), fc: int = 512,
                 hidden: int = 256, use_mode: bool = True, centre: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.centre = centre
        self.cnn = FrameCNN(in_channels, widths, fc)
        self.rnn = MVLSTM(fc, hidden, use_mode)
        self.fc = nn.Linear(hidden, num_classes)
        xavier_init_(self)
        kaiming_init_(self.cnn)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_clips(x, lengths)
        lengths = full_lengths(x) if lengths is None else lengths
        feats = per_frame(self.cnn, x, lengths)
        _, (h, _, _) = self.rnn(centre_over_time(feats, lengths) if self.centre else feats, lengths)
        return self.fc(h)
