"""MMI: replica -> scan round trip, literal session/metatag/AU-marker XML, subject-id sources, and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth
from ferbench.datasets._media import write_avi
from ferbench.datasets.mmi import CLASSES
from ferbench.errors import DatasetError

runner = CliRunner()
HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("mmi")
    return out, synth("mmi", out)


def _session(root: Path, number: int, sid: str, session_xml: str | None, metatags: str, n_frames: int = 12,
             aucs: str | None = None, video: bool = True) -> Path:
    folder = root / "Sessions" / str(number)
    folder.mkdir(parents=True)
    if video:
        write_avi(folder / f"{sid}.avi", [np.full((16, 16, 3), t * 10, np.uint8) for t in range(n_frames)], fps=25.0)
    if session_xml is not None:
        (folder / "session.xml").write_text(HEAD + session_xml)
    (folder / f"{sid}.xml").write_text(HEAD + metatags)
    if aucs is not None:
        (folder / f"{sid}-oao_aucs.xml").write_text(HEAD + aucs)
    return folder


def _emotion(value: str) -> str:
    return f'<Metatags>\n  <Metatag Name="Pose" Value="frontal" />\n  <Metatag Name="Emotion" Value="{value}" />\n</Metatags>\n'


def test_replica_scans_back_exactly_as_written(replica):
    out, written = replica
    result = scan("mmi", out)
    assert [s.id for s in result.samples] == [s.id for s in written]
    for w, s in zip(written, result.samples):
        assert s.summary() == w.summary(), s.id  # label, subject, video, fps, onset/apex/offset, AU matrix, meta
    summary = result.summary()
    assert (summary["samples"], summary["subjects"], summary["skipped"]) == (18, 3, 0)
    assert summary["classes"] == {c: 3 for c in CLASSES}
    assert result.problems == []
    notes = " | ".join(result.notes)
    assert "subject ids: 12 from session.xml, 6 from file name" in notes
    assert "1 labelled but a still image" in notes and "1 labelled but profile view" in notes
    assert "1 not an emotion session" in notes and "apex from AU markers for 9 sessions" in notes
    marked = [s for s in written if s.apex is not None]
    assert len(marked) == 9 and all(0 < s.onset < s.apex < s.offset < s.meta["n_frames"] - 1 for s in marked)
    assert all(s.aus[s.onset : s.offset].all() and not s.aus[: s.onset].any() and not s.aus[s.offset :].any() for s in marked)
    unmarked = [s for s in written if s.apex is None]
    assert all(s.aus is None and s.onset == 0 and s.offset == s.meta["n_frames"] - 1 for s in unmarked)


def test_replica_video_goes_neutral_apex_neutral(replica):
    _, written = replica
    s = next(x for x in written if x.apex is not None and x.label == CLASSES.index("surprise"))
    cap = cv2.VideoCapture(str(s.video))
    assert cap.get(cv2.CAP_PROP_FPS) == s.fps == 24.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame.astype(float))
    assert len(frames) == s.meta["n_frames"] and frames[0].shape == (576, 720, 3)
    to_apex = np.abs(frames[s.apex] - frames[0]).mean()
    assert to_apex > 1.0 and np.abs(frames[-1] - frames[0]).mean() < 0.3 * to_apex


def test_literal_sessions(tmp_path):
    aucs = (
        '<ActionUnits>\n'
        '  <ActionUnit Number="12">\n    <Marker Frame="1" Type="0"/>\n    <Marker Frame="3" Type="1"/>\n'
        '    <Marker Frame="6" Type="2"/>\n    <Marker Frame="8" Type="3"/>\n    <Marker Frame="11" Type="0"/>\n  </ActionUnit>\n'
        '  <ActionUnit Number="6">\n    <Marker Frame="4" Type="1"/>\n    <Marker Frame="7" Type="2"/>\n'
        '    <Marker Frame="9" Type="3"/>\n    <Marker Frame="10" Type="0"/>\n  </ActionUnit>\n'
        '  <ActionUnit Number="L14">\n    <Marker Frame="2" Type="1"/>\n    <Marker Frame="5" Type="2"/>\n'
        '    <Marker Frame="6" Type="3"/>\n    <Marker Frame="9" Type="0"/>\n  </ActionUnit>\n'
        '</ActionUnits>\n'
    )
    _session(tmp_path, 1, "S007-001", '<session sessionId="1">\n  <subject id="7" />\n  <track id="0" view="0" />\n</session>\n',
             _emotion("4"), aucs=aucs)
    _session(tmp_path, 2, "S012-003", '<session sessionId="2" Subject="S12">\n  <track view="0" />\n</session>\n', _emotion("1"))
    _session(tmp_path, 3, "S003-002", '<session sessionId="3">\n  <track view="0" />\n</session>\n', _emotion("6"))
    _session(tmp_path, 4, "S003-010", '<session sessionId="4">\n  <track view="0" />\n</session>\n', _emotion("7"))
    _session(tmp_path, 5, "S003-011", '<session sessionId="5">\n  <track view="1" />\n</session>\n', _emotion("2"))
    _session(tmp_path, 6, "S003-012", '<session sessionId="6">\n  <track view="0" />\n</session>\n', "<Metatags />\n")
    frames = _session(tmp_path, 7, "S004-005", '<session sessionId="7">\n  <track view="0" />\n</session>\n', _emotion("5"),
                      video=False)
    for t in (1, 2, 10):
        cv2.imwrite(str(frames / f"S004-005-{t}.jpg"), np.zeros((8, 8, 3), np.uint8))

    result = scan("mmi", tmp_path)
    s = {x.id: x for x in result.samples}
    assert list(s) == ["S007-001", "S012-003", "S003-002", "S004-005"]
    a = s["S007-001"]
    assert a.label == CLASSES.index("happiness") and a.subject == "S007" and a.meta["subject_source"] == "session.xml"
    assert (a.onset, a.apex, a.offset) == (1, 5, 10)  # earliest onset, median apex, latest return to neutral (0-based)
    assert a.fps == 25.0 and a.meta["n_frames"] == 12 and a.video.name == "S007-001.avi" and a.mode == {"view": "frontal"}
    assert a.au_names == (6, 12, 14)
    assert a.aus[:, 1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]  # AU 12: frames 3..10 (1-based)
    assert a.aus[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    b = s["S012-003"]
    assert b.label == CLASSES.index("anger") and b.subject == "S012" and b.meta["subject_source"] == "session.xml"
    assert (b.onset, b.apex, b.offset, b.aus) == (0, None, 11, None)
    c = s["S003-002"]
    assert c.label == CLASSES.index("surprise") and c.subject == "S003" and c.meta["subject_source"] == "file name"
    d = s["S004-005"]
    assert d.label == CLASSES.index("sadness") and d.video is None and d.fps == 24.0
    assert [p.name for p in d.frames] == ["S004-005-1.jpg", "S004-005-2.jpg", "S004-005-10.jpg"]
    notes = " | ".join(result.notes)
    assert "subject ids: 2 from session.xml, 2 from file name" in notes
    assert "1 labelled but profile view" in notes and "2 not an emotion session" in notes


def test_disagreements_are_reported(tmp_path):
    aucs = '<ActionUnits><ActionUnit Number="4"><Marker Frame="3" Type="1"/><Marker Frame="30" Type="2"/></ActionUnit></ActionUnits>'
    _session(tmp_path, 1, "S002-001", '<session><subject id="5"/><track view="0"/></session>', _emotion("1"), aucs=aucs)
    # a marker past the media's 12 frames is a coding error: never clipped silently, the file and AU are named
    with pytest.raises(DatasetError, match=r"S002-001-oao_aucs.xml: AU 4 apex marker at frame 30 lies outside the 12 frames"):
        scan("mmi", tmp_path)
    ok = '<ActionUnits><ActionUnit Number="4"><Marker Frame="3" Type="1"/><Marker Frame="9" Type="2"/></ActionUnit></ActionUnits>'
    _session(tmp_path, 2, "S002-002", '<session><subject id="5"/><track view="0"/></session>', _emotion("1"), aucs=ok)
    result = scan("mmi", tmp_path)  # the bad session is excluded by name; the good one is kept
    (s,) = result.samples
    assert s.subject == "S005" and (s.onset, s.apex, s.offset) == (2, 8, 11)  # no return to neutral
    assert s.aus[:, 0].tolist() == [0, 0] + [1] * 10
    assert [i for i, _ in result.excluded] == ["session 1"] and "frame 30" in result.excluded[0][1]
    assert any("names subject S005" in p for p in result.problems)


def test_unreadable_video_is_reported_not_silently_dropped(tmp_path):
    folder = _session(tmp_path, 1, "S001-001", '<session><track view="0"/></session>', _emotion("3"), video=False)
    (folder / "S001-001.avi").write_bytes(b"")
    result = scan("mmi", tmp_path)
    assert result.samples == [] and any("S001-001.avi" in p and "unreadable" in p for p in result.problems)


@pytest.mark.parametrize(
    "metatags, aucs, expected",
    [
        (_emotion("4") + "<oops", None, "well-formed XML"),
        (_emotion("happy"), None, "integer Emotion value"),
        (_emotion("4"), '<ActionUnits><ActionUnit Number="12"><Marker Frame="x" Type="1"/></ActionUnit></ActionUnits>', "integer Frame"),
    ],
)
def test_malformed_xml_names_the_file(tmp_path, metatags, aucs, expected):
    folder = _session(tmp_path, 1, "S001-001", '<session><track view="0"/></session>', metatags, aucs=aucs)
    bad = folder / ("S001-001-oao_aucs.xml" if aucs else "S001-001.xml")
    with pytest.raises(DatasetError, match=expected) as e:
        scan("mmi", tmp_path)
    assert str(bad) in str(e.value)
    result = runner.invoke(app, ["scan", "mmi", "--root", str(tmp_path)])
    assert result.exit_code == 2 and str(bad) in result.output and "Traceback" not in result.output


def test_wrong_root_names_the_sessions_folder(tmp_path):
    with pytest.raises(DatasetError, match="Sessions"):
        scan("mmi", tmp_path)
