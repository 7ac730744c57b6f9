"""Why does kim2017's stage 1 trail the static baseline? Trains the Table 1 CNN alone on a prepared file under
subject-disjoint folds and prints the held-out apex accuracy (through Fc) per objective / network variant.

    PYTHONPATH=. python benchmarks/learnability.py --datasets ck+ --models static --out /tmp/learn   # the data
    PYTHONPATH=. python benchmarks/kim2017_stage1.py /tmp/learn/ckp-9s-32px.h5                 # E1..E5, five states
    PYTHONPATH=. python benchmarks/kim2017_stage1.py /tmp/learn/ckp-9s-32px.h5 --terms E1 --states 2 --bn --pad --pool 4
    PYTHONPATH=. python benchmarks/kim2017_stage1.py /tmp/learn/ckp-9s-32px.h5 --model static --states 2
    PYTHONPATH=. python benchmarks/kim2017_stage1.py /tmp/learn/ckp-9s-32px.h5 --model mo-cnn-lstm --stage2 400

The objective is the model's own (`MultiObjectiveLoss`): `--terms` keeps some of E1..E5 (the others weigh 0, as
the model's `loss_weights` option does), `--states` the state frames stage 1 trains on (0-4, eq. 1 order; 2 is
the apex), `--order` adds the terms in the paper's order (section 3.4: E1+E2, then E3+E4, then E5, a third of the
steps each). `static` trains on the same frames with cross entropy. Network knobs: `--bn` (batch norm after each
conv: the model's `batch_norm` option; without it the Table 1 CNN is built as written), and two ablations that are
not options of the model, `--pad` ('same' padding) and `--pool N` (average pooling to an N x N grid before F4).
`--stage2 N` then trains mo-cnn-lstm's LSTM for N steps on the frozen (`freeze_cnn=True`, the paper's stage
2), centred F5 features of every frame and scores the clips. The training loop is the harness's in miniature
(Adam, batch 16 clips, horizontal flips), kept here so that each variant is a flag; the figures are in
docs/models.md ("Why the kim2017 pair trails").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TERMS = ("E1", "E2", "E3", "E4", "E5")


def load(path: str) -> dict:
    """Per labelled sample: its five state frames, every native frame (C, H, W in [0, 1]), label and subject."""
    from ferbench.store import Store

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).movedim(-1, -3).float() / 255

    with Store(path) as st:
        keys = [i for i in range(len(st)) if st.sample(i).label is not None and st.sample(i).states is not None]
        labels = [st.sample(i).label for i in keys]
        classes = sorted(set(labels))
        return {
            "states": torch.stack([tensor(st.frames(i, "states")) for i in keys]),  # (N, 5, C, H, W)
            "native": [tensor(st.frames(i, "native")) for i in keys],
            "y": torch.tensor([classes.index(v) for v in labels]),
            "subjects": np.array([st.sample(i).subject for i in keys]),
            "classes": len(classes),
        }


def ablate(cnn: nn.Module, size: int, pad: bool, pool: int) -> None:
    """Rebuild the Table 1 CNN's conv stack with the requested changes; F4 is resized to the new flat width and
    initialised as the model initialises it (He)."""
    from ferbench.models._common import kaiming_init_

    layers: list[nn.Module] = []
    for layer in cnn.conv:
        if isinstance(layer, nn.Conv2d) and pad:
            layer.padding = (1, 1)
        layers.append(layer)
    if pool:
        layers.append(nn.AdaptiveAvgPool2d(pool))
    cnn.conv = nn.Sequential(*layers)
    with torch.no_grad():
        flat = cnn.conv(torch.zeros(1, 3, size, size)).numel()
    cnn.f4 = nn.Linear(flat, cnn.f4.out_features)
    kaiming_init_(cnn.f4)


def term_weights(terms: tuple[str, ...], order: bool, step: int, steps: int) -> dict[str, float]:
    """The E1..E5 weights at `step`: 1 for the kept terms, 0 for the others and, with `order`, for the terms
    the paper's order has not reached yet."""
    phase = 3 * step // steps if order else 2
    reached = {"E1": 0, "E2": 0, "E3": 1, "E4": 1, "E5": 2}
    return {t: float(t in terms and reached[t] <= phase) for t in TERMS}


def run_fold(d: dict, train: np.ndarray, test: np.ndarray, seed: int, a: argparse.Namespace) -> tuple[float, float]:
    from ferbench.models import compact_options, create_model

    states, y = d["states"], d["y"]
    size = states.shape[-1]
    torch.manual_seed(seed)
    opts = compact_options(a.model)
    if a.model != "static":
        opts |= {"image_size": size, "batch_norm": a.bn} | ({"freeze_cnn": True} if a.model == "mo-cnn-lstm" else {})
    model = create_model(a.model, d["classes"], **opts)
    if a.model == "static":
        logits = lambda z: model(z[:, None])  # noqa: E731
        params = list(model.parameters())
    else:
        if a.pad or a.pool:
            ablate(model.cnn, size, a.pad, a.pool)
        logits = lambda z: model.cnn(z)[1]  # noqa: E731
        params = list(model.cnn.parameters())
    opt = torch.optim.Adam(params, lr=a.lr)
    g = torch.Generator().manual_seed(seed)
    for step in range(a.steps):
        model.train()
        b = torch.from_numpy(train)[torch.randint(len(train), (a.batch,), generator=g)]
        x = states[b].flatten(0, 1)
        if torch.rand(1, generator=g) < 0.5:
            x = x.flip(-1)
        yy, ss = y[b].repeat_interleave(5), torch.arange(5).repeat(len(b))
        keep = torch.isin(ss, torch.tensor(a.states))
        x, yy, ss = x[keep], yy[keep], ss[keep]
        if a.model == "static":
            loss = F.cross_entropy(logits(x), yy)
        else:
            model.objective.weights.update(term_weights(a.terms, a.order, step, a.steps))
            loss = model.stage1_loss(x, yy, ss)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        apex = (logits(states[test, 2]).argmax(1) == y[test]).float().mean().item()
    if not a.stage2:
        return apex, float("nan")
    lengths = torch.tensor([len(v) for v in d["native"]])
    clips = torch.zeros(len(lengths), int(lengths.max()), *states.shape[2:])
    for i, v in enumerate(d["native"]):
        clips[i, :len(v)] = v
    model.set_stage(2)
    opt = torch.optim.Adam(model.stage_parameters(2), lr=a.lr2)
    for _ in range(a.stage2):
        model.train()
        b = torch.from_numpy(train)[torch.randint(len(train), (a.batch,), generator=g)]
        x = clips[b].flip(-1) if torch.rand(1, generator=g) < 0.5 else clips[b]
        loss = F.cross_entropy(model(x, lengths[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        clip_acc = (model(clips[test], lengths[test]).argmax(1) == y[test]).float().mean().item()
    return apex, clip_acc


def main(argv: list[str] | None = None) -> int:
    from sklearn.model_selection import GroupKFold

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a prepared file with expression-state indices (e.g. the learnability CK+ replica)")
    ap.add_argument("--model", default="apex-cnn", choices=["apex-cnn", "mo-cnn-lstm", "static"])
    ap.add_argument("--terms", type=lambda v: tuple(v.split(",")), default=TERMS, help="e.g. E1 or E1,E2")
    ap.add_argument("--states", type=lambda v: tuple(int(i) for i in v.split(",")), default=(0, 1, 2, 3, 4))
    ap.add_argument("--order", action="store_true", help="add the terms in the paper's order (section 3.4)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=16, help="clips per step (x 5 state frames)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--bn", action="store_true")
    ap.add_argument("--pad", action="store_true")
    ap.add_argument("--pool", type=int, default=0)
    ap.add_argument("--stage2", type=int, default=0, help="mo-cnn-lstm: LSTM steps on the frozen F5 features")
    ap.add_argument("--lr2", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.stage2 and a.model != "mo-cnn-lstm":
        ap.error("--stage2 needs --model mo-cnn-lstm")
    if set(a.terms) - set(TERMS) or set(a.states) - set(range(5)):
        ap.error("--terms takes names from E1..E5 (e.g. E1,E2); --states numbers from 0..4 (2 is the apex)")
    torch.set_num_threads(a.threads)
    d = load(a.data)
    folds = list(GroupKFold(n_splits=a.folds).split(d["y"], d["y"], d["subjects"]))
    for train, test in folds:
        assert not set(d["subjects"][train]) & set(d["subjects"][test])  # subject-disjoint
    t0 = time.perf_counter()
    apex, clip = [], []
    for seed in range(a.seeds):
        for fold, (train, test) in enumerate(folds):
            acc, acc2 = run_fold(d, train, test, seed, a)
            apex.append(acc)
            clip.append(acc2)
            print(f"seed {seed} fold {fold}: apex {acc:.2f}" + (f", clips {acc2:.2f}" if a.stage2 else ""), flush=True)
    knobs = " ".join(k for k, on in (("bn", a.bn), ("pad", a.pad), (f"pool{a.pool}", a.pool), ("order", a.order)) if on)
    objective = "cross entropy" if a.model == "static" else f"terms {'+'.join(a.terms)}"
    line = (f"{a.model} {objective} states {a.states} {knobs} {a.steps} steps lr {a.lr}: apex {np.mean(apex):.3f} +- {np.std(apex):.3f}"
            f" over {len(apex)} (seed, fold); chance {1 / d['classes']:.3f}")
    if a.stage2:
        line += f"; clips after {a.stage2} stage-2 steps {np.mean(clip):.3f} +- {np.std(clip):.3f}"
    print(line + f"; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
