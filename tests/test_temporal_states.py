"""Temporal normalisation (yu2018) and expression-state frames (kim2017 eq. 1), with exact values."""

from __future__ import annotations

import numpy as np
import pytest

from ferbench.errors import FerbenchError
from ferbench.preprocess.states import estimate_apex, expression_states, ncc, state_indices
from ferbench.preprocess.temporal import normalise_length


@pytest.fixture(scope="module")
def ck_store(prepared_replica):
    """A one-subject CK+ replica prepared at 32x32 (real synth, real prepare)."""
    return prepared_replica("ck+", subjects=1, seed=3, size=32)


def test_longer_sequences_are_sampled_uniformly_keeping_first_and_last():
    idx = normalise_length(30, 18)
    # i * 29 / 17 rounded half up, i = 0..17
    assert idx.tolist() == [0, 2, 3, 5, 7, 9, 10, 12, 14, 15, 17, 19, 20, 22, 24, 26, 27, 29]
    assert idx[0] == 0 and idx[-1] == 29 and np.all(np.diff(idx) > 0)
    assert normalise_length(23, 22).tolist() == list(range(11)) + list(range(12, 23))
    assert normalise_length(5, 1).tolist() == [0]


def test_shorter_sequences_repeat_the_last_frame():
    assert normalise_length(10, 18).tolist() == list(range(10)) + [9] * 8
    assert normalise_length(1, 4).tolist() == [0, 0, 0, 0]
    assert normalise_length(18, 18).tolist() == list(range(18))


def test_bad_lengths_are_refused():
    with pytest.raises(FerbenchError, match="0 frames"):
        normalise_length(0, 18)
    with pytest.raises(FerbenchError, match="at least 1"):
        normalise_length(5, 0)


def test_annotated_states_are_eq1_exactly():
    # CASME II style: onset 10, apex 25, offset 40 -> midpoints floored
    assert state_indices(10, 25, 40).tolist() == [10, 17, 25, 32, 40]
    states, estimated = expression_states(50, onset=10, apex=25, offset=40)
    assert states.tolist() == [10, 17, 25, 32, 40] and not estimated
    with pytest.raises(FerbenchError, match="onset <= apex <= offset"):
        state_indices(10, 5, 40)
    with pytest.raises(FerbenchError, match="outside the sequence"):
        expression_states(30, onset=10, apex=25, offset=40)


def test_neutral_to_apex_states_are_distinct_frames_of_the_rise():
    # CK+ / Oulu: onset = first, apex = last; the post-apex states come from the rise at 3/4 and 1/4
    states, estimated = expression_states(12, rising=True)
    assert states.tolist() == [0, 5, 11, 8, 2] and not estimated
    for n in range(5, 40):  # every sequence of five frames or more: five distinct frames, state 2 the apex
        s, _ = expression_states(n, rising=True)
        assert len(set(s.tolist())) == 5 and s[2] == n - 1 and s[0] == 0, (n, s)
        # ordered along the rise by expected intensity: offset < onset->apex < apex->offset < apex
        assert s[0] < s[4] < s[1] < s[3] < s[2]
    # an explicit offset is honoured as annotated
    assert expression_states(12, apex=6, offset=11, rising=True)[0].tolist() == [0, 3, 6, 8, 11]


def test_prepared_neutral_to_apex_replica_stores_distinct_state_frames(ck_store):
    """On a prepared CK+ replica the five state frames of every sequence are five different images."""
    from ferbench.store import Store

    with Store(ck_store) as store:
        for i in range(len(store)):
            s = store.sample(i)
            frames = store.frames(i, "states")
            assert len(set(np.asarray(s.states).tolist())) == 5, s.id
            flat = frames.reshape(5, -1).astype(np.int16)
            for a in range(5):
                for b in range(a + 1, 5):
                    assert np.abs(flat[a] - flat[b]).max() > 0, (s.id, a, b)


def _drift_and_return(n: int, peak: int, seed: int = 0) -> np.ndarray:
    """Frames that move away from the onset frame up to `peak`, then back; brightness/contrast vary per
    frame (which NCC must ignore)."""
    rng = np.random.default_rng(seed)
    neutral = rng.uniform(0, 1, (24, 24, 3))
    expressive = rng.uniform(0, 1, (24, 24, 3))
    t = np.arange(n)
    weight = np.where(t <= peak, t / peak, (n - 1 - t) / (n - 1 - peak)) * 0.8
    gain = 0.6 + 0.8 * rng.uniform(size=n)
    bias = rng.uniform(-0.2, 0.2, size=n)
    mixed = (1 - weight)[:, None, None, None] * neutral + weight[:, None, None, None] * expressive
    return np.clip((gain[:, None, None, None] * mixed + bias[:, None, None, None]) * 200 + 20, 0, 255).astype(np.uint8)


def test_ncc_ignores_brightness_and_contrast():
    x = np.random.default_rng(1).uniform(0, 100, (8, 8))
    assert ncc(x, 2.5 * x + 30) == pytest.approx(1.0)
    assert ncc(x, -x) == pytest.approx(-1.0)


def test_apex_estimate_finds_the_frame_furthest_from_the_onset():
    frames = _drift_and_return(20, peak=13)
    assert estimate_apex(frames) == 13
    assert estimate_apex(list(frames), onset=2, offset=10) == 10  # still rising inside that window
    states, estimated = expression_states(20, frames=frames)  # MMI: onset first, offset last, apex unknown
    assert states.tolist() == [0, 6, 13, 16, 19] and estimated
    with pytest.raises(FerbenchError, match="pass the frames"):
        expression_states(20)
