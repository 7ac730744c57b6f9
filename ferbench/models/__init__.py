"""The bundled models: one file per paper, one registry, one input layout.

Input layout (every registered model)
-------------------------------------
``model(x, lengths=None) -> logits``

* ``x``: float tensor ``(B, T, C, H, W)`` -- batch, frames, channels (RGB, C=3), height, width -- with values
  in [0, 1] or normalised; clips shorter than T are right-padded (any values: padding is masked, never read).
* ``lengths``: optional ``LongTensor (B,)``, the number of real frames of each clip (default: all T).
  Models whose paper handles variable length (mo-cnn-lstm, mv-lstm, the chao2016 encoders, the static and
  apex baselines) mask the padding; former-dfer samples its 16 frames from the real ones; the STC family
  follows its paper's fixed-length video normalisation and rejects ragged ``lengths`` with a ValueError
  (normalise the clip length first).
* returns ``logits (B, num_classes)`` (softmax is left to the loss / the caller).

Frame size: the paper sizes are 64x64 (CK+ is 18x64x64x3); every model also runs on small frames (16x16 or
32x32 -- the Table 1 CNN of kim2017 needs at least 32x32) with width/hidden-size overrides in ``cfg``.
The chao2016 encoders additionally accept pre-extracted feature streams ``(B, T, D)`` when built with
``in_features=D`` (the paper encodes landmark and CNN-feature sequences, not pixels).

All models run on CPU and CUDA, and under ``torch.autocast("cuda", dtype=torch.bfloat16)``.

Each registered model has a :class:`ModelCard` (``model_card(name)``): paper key, table, the frame index it
consumes, variable-length support, minimum size, departures, and training recipes ("default", "paper",
"quick", optionally "paper:<dataset>"; ``card.recipe_for(kind, dataset)``). Registry: ``register_model``,
``create_model(name, num_classes, **cfg)``, ``list_models(filter, paper, variable_length)``,
``model_info(name)``, ``model_options(name)``. Unknown names raise ``FerbenchError``.
"""

from __future__ import annotations

from ferbench.models._common import OPTIMIZERS, RECIPE_KINDS, SELECTIONS, STAGES, ModelCard, Recipe
from ferbench.models._registry import (create_model, list_models, model_card, model_defaults, model_info,
                                       model_options, register_model)
from ferbench.models.sizes import COMPACT, compact_options

# Importing the model files registers them.
from ferbench.models import stc_nlstm as _stc_nlstm  # noqa: E402,F401
from ferbench.models import mv_lstm as _mv_lstm  # noqa: E402,F401
from ferbench.models import mo_cnn_lstm as _mo_cnn_lstm  # noqa: E402,F401
from ferbench.models import lstm_encoding as _lstm_encoding  # noqa: E402,F401
from ferbench.models import static as _static  # noqa: E402,F401
from ferbench.models import former_dfer as _former_dfer  # noqa: E402,F401

__all__ = ["COMPACT", "OPTIMIZERS", "RECIPE_KINDS", "SELECTIONS", "STAGES", "ModelCard", "Recipe", "compact_options",
           "create_model", "list_models", "model_card", "model_defaults", "model_info", "model_options",
           "register_model"]
