"""Transfer protocols (a protocol with `pretrain`, e.g. kim2017-transfer, kim2017 section 3.3): train the model
on every labelled sample of the source file, copy its transfer layers (the card's `transfer`, the model's
`transfer_modules()`) into the task's freshly built model, freeze them, and let the task train the rest.

The source training itself is `fit.pretrained_layers`: seeded per repeat, so every fold of a repeat starts
from the same layers (the record carries their sha256 to show it); a process keeps the last source layers it
trained, so a LOSO run trains them once per repeat in each process, not once per fold.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ferbench.errors import FerbenchError
from ferbench.harness.spec import stage_seed

#: A marker on frozen parameters: `train._stage_parameters` leaves them out of every optimizer.
FROZEN = "ferbench_frozen"


@dataclass(frozen=True)
class Pretrain:
    """The source side of a transfer task: which file, which samples and labels, which recipe stages, the seed."""

    dataset: str
    data: str  # path of the source file (every process opens it itself)
    fingerprint: str  # its data fingerprint
    classes: tuple[str, ...]
    ids: tuple[str, ...]  # every labelled sample of the source file
    labels: tuple[int, ...]
    stages: tuple[dict[str, Any], ...]  # the model's recipe for the source dataset
    transfer: str  # the card's description of the transferred layers
    frame_size: int  # the source file's frames (pixels a side): the same as the target's, or refused
    target_frame_size: int
    seed: int = 0  # set per repeat by `seeded`

    def describe(self) -> dict[str, Any]:
        """What changes the transferred layers (goes into the model fingerprint)."""
        return {"dataset": self.dataset, "data": self.fingerprint, "classes": self.classes, "samples": len(self.ids),
                "stages": self.stages, "transfer": self.transfer}

    def seeded(self, protocol_seed: int, repeat: int) -> Pretrain:
        """The source training of one repeat: `stage_seed(protocol seed, repeat, 1 << 20)` (no fold's seed)."""
        return dataclasses.replace(self, seed=stage_seed(protocol_seed, repeat, 1 << 20))


def layer_state(model: nn.Module, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state of `model`'s transfer layers, keyed "<layer>.<tensor>", and its sha256)."""
    state = {f"{i}.{k}": v.detach().clone() for i, m in enumerate(transfer_modules(model, name))
             for k, v in m.state_dict().items()}
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].float().cpu().numpy().tobytes())
    return state, digest.hexdigest()


def transfer_modules(model: nn.Module, name: str) -> list[nn.Module]:
    layers = getattr(model, "transfer_modules", None)
    if not callable(layers):
        raise FerbenchError(f"model {name!r} has no transfer_modules(); a transfer protocol cannot use it")
    return list(layers())


def load_and_freeze(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    """Copy the source layers into `model` and freeze them: no optimizer updates them, and their batch-norm
    statistics stay fixed (the modules stay in eval mode whatever `model.train()` is called with)."""
    for i, m in enumerate(transfer_modules(model, name)):
        own = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)}
        m.load_state_dict(own)
        for p in m.parameters():
            p.requires_grad_(False)
            setattr(p, FROZEN, True)
        m.eval()
        m.train = _stay_in_eval(m)  # type: ignore[method-assign]


def _stay_in_eval(module: nn.Module) -> Any:
    def train(mode: bool = True) -> nn.Module:
        return nn.Module.train(module, False)

    return train


def trainable(params: list[nn.Parameter]) -> list[nn.Parameter]:
    """`params` without the frozen ones (which are set not to need a gradient again: a model's `set_stage`
    may have switched them back on)."""
    keep = []
    for p in params:
        if getattr(p, FROZEN, False):
            p.requires_grad_(False)
        else:
            keep.append(p)
    return keep
