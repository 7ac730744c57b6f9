"""The replica face animator: deterministic, class- and subject-specific, and smooth in time."""

import numpy as np
import pytest

from ferbench.synth.faces import CLASS_AUS, RENDERED_AUS, FaceAnimator, expression_curve, warp_patch


def test_expression_curve_rises_to_apex_and_falls_to_offset():
    c = expression_curve(20, onset=3, apex=10, offset=17)
    assert np.all(c[:4] == 0) and c[10] == pytest.approx(1.0) and np.all(c[17:] == 0)
    assert np.all(np.diff(c[3:11]) > 0) and np.all(np.diff(c[10:18]) < 0)


def test_expression_curve_without_offset_holds_the_apex():
    c = expression_curve(12, onset=0, apex=8)
    assert c[0] == 0 and np.all(c[8:] == pytest.approx(1.0)) and np.all(np.diff(c[:9]) > 0)


def test_render_is_deterministic_and_sized():
    a, b = FaceAnimator(seed=3), FaceAnimator(seed=3)
    fa = a.render(a.identity(2), CLASS_AUS["happiness"], size=(320, 240))
    fb = b.render(b.identity(2), CLASS_AUS["happiness"], size=(320, 240))
    assert fa.shape == (240, 320, 3) and fa.dtype == np.uint8
    assert np.array_equal(fa, fb)


def test_classes_differ_at_apex_but_not_at_neutral():
    anim = FaceAnimator(seed=0)
    ident = anim.identity(0)
    neutral = anim.render(ident, {}, size=(320, 240)).astype(int)
    for name, aus in CLASS_AUS.items():
        if name == "neutral":
            continue
        zero = anim.render(ident, {k: 0.0 for k in aus}, size=(320, 240)).astype(int)
        apex = anim.render(ident, aus, size=(320, 240)).astype(int)
        assert np.array_equal(zero, neutral), name
        assert np.abs(apex - neutral).mean() > 0.8, name


def test_each_rendered_au_moves_pixels_on_its_own():
    for au in RENDERED_AUS:
        moved = warp_patch(0, {au: 1.0}).astype(int)
        still = warp_patch(0, {}).astype(int)
        assert np.abs(moved - still).mean() > 0.3, au


def test_subjects_differ_and_modes_change_the_look():
    anim = FaceAnimator(seed=0)
    f0 = anim.render(anim.identity(0), {}, size=(320, 240)).astype(int)
    f1 = anim.render(anim.identity(1), {}, size=(320, 240)).astype(int)
    assert np.abs(f0 - f1).mean() > 10
    ident = anim.identity(0)
    strong = anim.render(ident, {}, size=(320, 240))
    dark = anim.render(ident, {}, size=(320, 240), illumination="dark")
    nir = anim.render(ident, {}, size=(320, 240), nir=True)
    assert dark.mean() < 0.6 * strong.mean()
    assert np.array_equal(nir[..., 0], nir[..., 1]) and np.array_equal(nir[..., 1], nir[..., 2])


def test_unilateral_au_moves_one_side_only():
    still = warp_patch(0, {}).astype(int)
    right = warp_patch(0, {"R12": 1.0}).astype(int)
    diff = np.abs(right - still).mean(axis=(0, 2))
    half = diff.shape[0] // 2
    # The subject's right side is the image's left half.
    assert diff[:half].sum() > 2 * diff[half:].sum()


def test_no_face_frame_is_scenery():
    anim = FaceAnimator(seed=0)
    frame = anim.render_no_face((160, 120), seed=1)
    assert frame.shape == (120, 160, 3) and frame.std() > 5
