"""FERV39k: the All_scenes train/test lists as the owners write them (space, no header, word labels), scene
folders as mode, every list fault named, face crops read with no detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferbench.datasets import get_dataset, scan, synth
from ferbench.datasets.ferv39k import CLASSES, SCENES
from ferbench.errors import DatasetError

LISTS = "4_setups/All_scenes"


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    out = tmp_path_factory.mktemp("ferv39k")
    written = synth("ferv39k", out, subjects=1, seed=4)
    return out, written, scan("ferv39k", out)


def build(root, train, test, clips=None):
    """A tiny FERV39k root by hand: `train`/`test` are the list files' text; `clips` the frame folders to make."""
    tiny = np.full((8, 8, 3), 90, np.uint8)
    rows = [line.split()[0] for line in (train + test).splitlines() if line.strip() and "/" in line.split()[0]]
    for clip in clips if clips is not None else rows:
        folder = root / "2_ClipsforFaceCrop" / clip
        folder.mkdir(parents=True, exist_ok=True)
        for t in (1, 2):
            cv2.imwrite(str(folder / f"{t:02d}.jpg"), tiny)
    (root / LISTS).mkdir(parents=True, exist_ok=True)
    (root / LISTS / "train_All.csv").write_text(train)
    (root / LISTS / "test_All.csv").write_text(test)
    return root


def test_replica_scan_equals_what_was_written(replica):
    _, written, result = replica
    assert [s.summary() for s in result.samples] == [s.summary() for s in written]
    summary = result.summary()
    assert summary["samples"] == 28 and summary["classes"] == {c: 4 for c in CLASSES}  # 3 train + 1 test per class
    assert sum(s.split == "test" for s in written) == 7 and {s.split for s in written} == {"train", "test"}
    assert all(s.mode["scene"] == s.id.split("/")[0] and s.mode["scene"] in SCENES for s in written)
    assert all(s.subject == s.id for s in written) and not result.excluded and not result.problems


def test_replica_lists_are_the_release_format(replica):
    out, written, _ = replica
    by_id = {s.id: s for s in written}
    for split in ("train", "test"):
        lines = (out / LISTS / f"{split}_All.csv").read_text().splitlines()
        assert len(lines) == sum(s.split == split for s in written)  # no header
        for line in lines:
            clip, word = line.split(" ")
            scene, emotion, number = clip.split("/")
            assert len(number) == 4 and number.isdigit() and emotion == word == CLASSES[by_id[clip].label]
            assert by_id[clip].split == split
    assert written[0].frames[0].parent == out / "2_ClipsforFaceCrop" / written[0].id


def test_rows_as_the_owners_write_them(tmp_path):
    root = build(tmp_path, "Crime/Angry/0063 Angry\nDailyLife/Angry/0619 Angry\nArgue/Surprise/0196 Surprise\n",
                 "Interview/Happy/0118 Happy\n")
    result = scan("ferv39k", root)
    got = {s.id: (CLASSES[s.label], s.split, s.mode["scene"]) for s in result.samples}
    assert got == {"Crime/Angry/0063": ("Angry", "train", "Crime"), "DailyLife/Angry/0619": ("Angry", "train", "DailyLife"),
                   "Argue/Surprise/0196": ("Surprise", "train", "Argue"), "Interview/Happy/0118": ("Happy", "test", "Interview")}
    assert get_dataset("ferv39k").default_aligner(root) == "none"


def test_list_faults_are_named(tmp_path):
    root = build(tmp_path,
                 "path label\nAction/Happy/0001 Happy\nAction/Sad/0002 Happy\nAction/Fear/0003 Scared\nbroken-row\n"
                 "Action/Angry/0004 Angry extra\n",
                 "Action/Happy/0001 Happy\nWar/Neutral/0005 Neutral\n")
    result = scan("ferv39k", root)
    reasons = dict(result.excluded)
    assert "in 2 split lists" in reasons["Action/Happy/0001"] and "train_All.csv line 2" in reasons["Action/Happy/0001"]
    assert "lies in the Sad folder but is labelled Happy" in reasons["Action/Sad/0002"]
    assert "label 'Scared' of clip Action/Fear/0003 is not one of the 7 classes" in reasons["Action/Fear/0003"]
    assert "has 3 fields" in reasons["Action/Angry/0004"]
    assert any("train_All.csv: line 5: 'broken-row' names no clip" in p for p in result.problems)
    assert any("line 1 'path label' is not a clip row; read as a header" in n for n in result.notes)
    assert [s.id for s in result.samples] == ["War/Neutral/0005"]


def test_a_missing_list_or_clip_is_named(tmp_path):
    root = build(tmp_path, "Action/Happy/0001 Happy\nAction/Happy/0002 Happy\n", "War/Sad/0003 Sad\n",
                 clips=["Action/Happy/0001", "War/Sad/0003"])
    result = scan("ferv39k", root)
    assert any("1 listed clip(s) have no readable frame folder" in p and "Action/Happy/0002" in p for p in result.problems)
    (root / LISTS / "test_All.csv").unlink()
    with pytest.raises(DatasetError, match=r"test_All\.csv: split list not found"):
        scan("ferv39k", root)


def test_original_clips_only_go_through_the_detector(tmp_path):
    written = synth("ferv39k", tmp_path, subjects=1, seed=1, modes=["original"])
    result = scan("ferv39k", tmp_path)
    assert [s.video for s in result.samples] == [s.video for s in written]
    assert written[0].video == tmp_path / "0_7_LabelClips" / f"{written[0].id}.mp4"
    assert get_dataset("ferv39k").default_aligner(tmp_path) == "mtcnn"
