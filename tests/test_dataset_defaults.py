"""Dataset defaults travel with the adapter: clip length, target fps, minimum face size, how a sequence runs,
and the canonical emotion name of each class; `PrepareConfig` reads them from there."""

from __future__ import annotations

import pytest

from ferbench.datasets import get_dataset, list_datasets
from ferbench.datasets.base import CANONICAL_EMOTIONS, PHASES_FULL, PHASES_NONE, PHASES_RISING
from ferbench.preprocess.pipeline import PrepareConfig


@pytest.mark.parametrize("name", list_datasets())
def test_every_adapter_states_its_defaults_and_the_config_reads_them(name):
    adapter = get_dataset(name)
    assert isinstance(adapter.clip_length, int) and adapter.clip_length >= 1
    assert adapter.target_fps is None or 0 < adapter.target_fps < adapter.fps
    assert 0 < adapter.min_face <= 0.5
    assert adapter.phases in (PHASES_RISING, PHASES_FULL, PHASES_NONE)
    # one canonical emotion per class, or none where the classes are not emotions (BP4D's AUs)
    assert adapter.emotions == () or (
        len(adapter.emotions) == len(adapter.classes) and set(adapter.emotions) <= CANONICAL_EMOTIONS)
    cfg = PrepareConfig().resolved(name)
    assert (cfg.length, cfg.target_fps, cfg.min_face) == (adapter.clip_length, adapter.target_fps, adapter.min_face)
    mine = PrepareConfig(length=5, target_fps=5.0, min_face=0.2).resolved(name)  # options override the defaults
    assert (mine.length, mine.target_fps, mine.min_face) == (5, 5.0, 0.2)


def test_the_papers_values():
    # yu2018: CK+ 18 frames, Oulu-CASIA and MMI 22, MMI at 10 fps; CK+ and Oulu-CASIA run neutral -> apex
    assert [get_dataset(n).clip_length for n in ("ck+", "oulu-casia", "mmi")] == [18, 22, 22]
    assert get_dataset("mmi").target_fps == 10.0 and get_dataset("ck+").target_fps is None
    assert get_dataset("ck+").phases == get_dataset("oulu-casia").phases == PHASES_RISING
    assert get_dataset("mmi").phases == get_dataset("casme2").phases == PHASES_FULL
    # canonical names let a cross-dataset protocol map AFEW's "Happy" to CK+'s "happiness"
    afew, ck = get_dataset("afew"), get_dataset("ck+")
    assert ck.emotions[ck.classes.index("happiness")] == afew.emotions[afew.classes.index("Happy")] == "happiness"
    assert get_dataset("bp4d").emotions == ()
    assert get_dataset("folder").emotions == ("happiness", "neutral", "sadness", "surprise")  # the replica's folders
