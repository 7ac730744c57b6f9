"""The temporal-order diagnostic replica: same frames and apex in both classes, class only in the order."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

from ferbench.datasets import get_dataset, scan, synth
from ferbench.datasets.order import CLASSES, OrderAdapter, order_curves


def _frames(sample) -> list[bytes]:
    return [cv2.imread(str(p)).tobytes() for p in sample.frames]


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    root = tmp_path_factory.mktemp("order") / "native"
    written = synth("order", root, subjects=2, seed=5)
    return root, written


def test_scan_reads_what_synth_wrote(replica) -> None:
    root, written = replica
    found = scan("order", root)
    assert found.classes == CLASSES == get_dataset("order").classes
    assert sorted((s.id, s.subject, s.label, len(s.frames)) for s in found.samples) == sorted(
        (s.id, s.subject, s.label, len(s.frames)) for s in written
    )
    assert {s.subject for s in found.samples} == {"P01", "P02"}


def test_classes_hold_the_same_frames_in_reverse_order(replica) -> None:
    _, written = replica
    by_id = {s.id: s for s in written}
    pairs = 0
    for s in written:
        if not s.id.startswith("upper-first/"):
            continue
        twin = by_id[s.id.replace("upper-first", "lower-first")]
        a, b = _frames(s), _frames(twin)
        assert a == b[::-1]  # the other class is the same clip played backwards
        assert sorted(a) == sorted(b)  # so the same set of frames, the same apex
        assert a != b  # and yet not the same sequence
        pairs += 1
    per_subject = inspect.signature(OrderAdapter.write_replica).parameters["clips_per_class"].default
    assert pairs == 2 * per_subject  # 2 subjects, one pair per clip


def test_upper_face_leads_in_upper_first() -> None:
    rng = np.random.default_rng(0)
    for n in (16, 20, 24):
        first, second = order_curves(n, rng)
        assert first.max() == pytest.approx(1.0) and second.max() == pytest.approx(1.0)
        assert first[0] == 0 and second[0] == 0 and first[-1] == pytest.approx(0) and second[-1] == pytest.approx(0)
        on1, on2 = np.argmax(first > 0.05), np.argmax(second > 0.05)
        off1, off2 = n - np.argmax(first[::-1] > 0.05), n - np.argmax(second[::-1] > 0.05)
        assert on1 < on2 and off1 < off2  # first on, first off
        assert ((first > 0.99) & (second > 0.99)).any()  # a shared apex where both groups are full


def test_order_replica_refuses_modes(tmp_path) -> None:
    from ferbench.errors import FerbenchError

    with pytest.raises(FerbenchError, match="no modes"):
        synth("order", tmp_path, subjects=1, modes=["x"])


def test_intensity_option_scales_the_expression(tmp_path) -> None:
    """`ferbench synth --intensity` reaches the renderer: a weaker replica's apex is closer to its neutral frame;
    an intensity outside (0, 3] is one line and exit 2, before anything is written."""
    from typer.testing import CliRunner

    from ferbench.cli import app

    runner = CliRunner()
    diffs = {}
    for level in (1.0, 0.3):
        out = tmp_path / f"i{level}"
        result = runner.invoke(app, ["synth", "order", str(out), "--subjects", "1", "--intensity", str(level)])
        assert result.exit_code == 0, result.output
        clip = sorted((out / "upper-first").iterdir())[0]
        frames = [cv2.imread(str(clip / f"frame_{t}.png")).astype(int) for t in range(1, 30) if (clip / f"frame_{t}.png").exists()]
        diffs[level] = max(np.abs(f - frames[0]).mean() for f in frames)
    assert diffs[0.3] < 0.6 * diffs[1.0]
    bad = runner.invoke(app, ["synth", "ck+", str(tmp_path / "bad"), "--intensity", "0"])
    assert bad.exit_code == 2 and "intensity" in bad.output and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
