"""Model cards: the fields the harness reads, recipe lookup, list_models filters, departures written once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from ferbench.errors import FerbenchError
from ferbench.models import Recipe, create_model, list_models, model_card, model_info
from ferbench.preprocess.augment import PRESETS

PAPERS = {"yu2018", "kim2017", "baddar2019", "chao2016", "zhao2021", "ferbench"}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


@pytest.mark.parametrize("name", list_models())
def test_card_fields(name: str) -> None:
    card = model_card(name)
    assert card.name == name and card.paper in PAPERS and card.table
    assert card.index in ("clip", "states", "native")
    assert card.variable_length == (card.index != "clip")
    assert {"default", "paper", "quick"} <= set(card.recipes)
    for kind, stages in card.recipes.items():
        names = [r.stage for r in stages]
        assert names in (["end-to-end"], ["stage1", "stage2"], ["stage1"]), (kind, names)
        for r in stages:
            assert r.lr > 0 and r.selection in ("last-epoch", "validation")
            assert r.augment is None or r.augment in PRESETS
    # a quick recipe is a few dozen steps without augmentation, fewer than the default's; the same stages
    assert [r.stage for r in card.recipes["quick"]] == [r.stage for r in card.recipes["default"]]
    for quick, default in zip(card.recipes["quick"], card.recipes["default"]):
        assert quick.iterations is not None and quick.iterations <= 100 and quick.augment is None
        assert default.iterations is None or quick.iterations < default.iterations
    # the card's min_size is a size the model really runs on (a frame smaller than that is not promised)
    s = card.min_size
    cfg = {"image_size": s} if "image_size" in create_model.__globals__["_FACTORIES"][name].__init__.__code__.co_varnames else {}
    if name == "stc":
        cfg["num_frames"] = 6
    model = create_model(name, 3, **cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 6, 3, s, s))
    assert out.shape == (2, 3)


def test_model_info_is_json_and_keeps_the_old_keys() -> None:
    info = model_info("mo-cnn-lstm")
    assert json.loads(json.dumps(info)) == info
    assert set(info) >= {"name", "paper", "table", "input", "departures", "index", "variable_length", "min_size",
                         "recipes"}
    assert [r["stage"] for r in info["recipes"]["default"]] == ["stage1", "stage2"]


def test_recipe_for_dataset_specific_values() -> None:
    card = model_card("mo-cnn-lstm")
    assert [r.lr for r in card.recipe_for("paper", "mmi")] == [0.08, 0.08]
    assert [r.lr for r in card.recipe_for("paper", "CASME2")] == [0.01, 0.01]
    assert card.recipe_for("paper", "ck+") == card.recipe_for("paper")  # no CK+ value: the paper's general one
    assert card.recipe_for("paper:casme2") == card.recipe_for("paper", "casme2")
    assert card.recipe_for("default", "mmi") == card.recipe_for()
    with pytest.raises(FerbenchError, match="no recipe 'fancy'"):
        card.recipe_for("fancy")


def test_list_models_filters() -> None:
    assert list_models("stc*") == ["stc", "stc-lstm", "stc-nlstm", "stc-slstm"]
    assert list_models(paper="kim2017") == ["apex-cnn", "mo-cnn-lstm"]
    assert list_models(variable_length=False) == list_models(paper="yu2018")
    assert set(list_models(variable_length=True)) == set(list_models()) - set(list_models(paper="yu2018"))
    assert list_models("*lstm*", paper="chao2016") == ["lstm-last", "lstm-mean"]
    assert list_models("nothing*") == []


def test_recipe_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="stage"):
        Recipe(stage="cnn", optimizer="sgd", lr=0.1, epochs=1)
    with pytest.raises(ValueError, match="selection"):
        Recipe(stage="stage1", optimizer="sgd", lr=0.1, epochs=1, selection="best-test")
    with pytest.raises(ValueError, match="exactly one"):
        Recipe(stage="stage1", optimizer="sgd", lr=0.1)


def test_departures_are_written_once() -> None:
    """Departures live on the card only: no class docstring and no paragraph of docs/models.md repeats them."""
    docs = DOCS.read_text()
    assert "Departures from the paper" not in docs
    for name in list_models():
        card = model_card(name)
        assert card.departures and all(isinstance(d, str) and d for d in card.departures)
        cls = create_model.__globals__["_FACTORIES"][name]
        assert "Departures" not in (cls.__doc__ or ""), name
        for d in card.departures:
            assert d[:60] not in docs, f"docs/models.md repeats a departure of {name}: {d[:60]!r}"


def test_no_internal_paper_numbers() -> None:
    root = Path(__file__).resolve().parents[1]
    for path in [DOCS, *sorted((root / "ferbench" / "models").glob("*.py"))]:
        assert not re.search(r"seed[ -]?00\d", path.read_text(), re.I), path
