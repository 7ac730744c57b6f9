"""MMI Facial Expression Database: where MMI session XML, emotion metatags and AU markers are parsed, and its replica.

Native layout (the web download), one folder per session::

    Sessions/<n>/<sid>.avi              720x576 video (24 fps per the database's fact sheet); a few sessions hold
                                        image files instead (mostly one still image: not a sequence)
    Sessions/<n>/session.xml            session record: the view, and in many downloads the subject
    Sessions/<n>/<sid>.xml              metatags, e.g. <Metatag Name="Emotion" Value="4"/>
    Sessions/<n>/<sid>-oao_aucs.xml     optional AU coding: <ActionUnit Number="12"> with <Marker Frame=".." Type=".."/>

`<n>` is the session number and `<sid>` the media name, e.g. `S001-001` (subject 1, take 1). The sample id is
`<sid>`.

What the parser accepts (the MMI XML is not documented publicly, so it is tolerant; tag and attribute names
are compared without case):
- emotion: any `Metatag` element whose `Name` is "Emotion"; `Value` 1=anger 2=disgust 3=fear 4=happiness
  5=sadness 6=surprise. A missing tag or another value means the session is not an emotion session (most MMI
  sessions show single AUs): it is left out and counted. A non-integer value is an error.
- subject: a `<subject id="..."/>` element (MAHNOB-style session.xml), else a `subject`/`subjectId` attribute on
  any element of session.xml; else the media file-name prefix (`S001-...`). Ids are normalised to `S001`, so both
  sources agree; `Sample.meta["subject_source"]` says which one was used and the scan notes count them.
- view: the `view` attribute of the first `<track>` (or of `<session>`): 0 frontal, 1 profile, 2 dual view (also
  the words). Papers use a subset of 205 labelled frontal sequences / 30 subjects that is not published, so the
  scan selects labelled sessions whose view is frontal or not stated, and reports the count.
- AU markers: frames are 1-based; marker Type 0 = neutral, 1 = onset, 2 = apex, 3 = offset (each marks where that
  phase begins; a Type 0 after an offset marks the return to neutral). Sequence onset = earliest onset, apex =
  median apex marker, offset = latest return to neutral (else the last frame), all 0-based. Each AU is marked
  present from its onset up to (not including) its return to neutral, giving `Sample.aus`.

Without an AU file the sequence is onset = 0 -> apex (in the middle, not given: `apex=None`, estimated by the
pipeline) -> offset = last frame. `Sample.fps` is the video's own frame rate; papers resample MMI to 10 fps in
`prepare`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_entries, probe_video, write_avi
from ferbench.datasets.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DatasetAdapter, Sample, ScanResult
from ferbench.errors import DatasetError, FerbenchError

#: Class i is MMI emotion code i + 1.
CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
FPS = 24.0  # the database's fact sheet (and Kim et al. 2017): 24 fps; used for image-frame sessions
SIZE = (720, 576)
VIEWS = {"0": "frontal", "1": "profile", "2": "dual"}
SELECTED_VIEWS = ("frontal", "unknown")
_SUBJECT_PREFIX = re.compile(r"^[Ss](\d+)(?=[-_])")


def _lower(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()  # drop any XML namespace


def _attr(el: ET.Element, *names: str) -> str | None:
    """An attribute of `el` by any of `names`, compared without case."""
    wanted = {n.lower() for n in names}
    return next((v for k, v in el.attrib.items() if _lower(k) in wanted), None)


def _elements(root: ET.Element, tag: str) -> list[ET.Element]:
    return [el for el in root.iter() if _lower(el.tag) == tag.lower()]


def read_xml(path: Path, what: str) -> ET.Element:
    """Parse an MMI XML file; a malformed one is a DatasetError that names it."""
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"expected well-formed XML ({what}); parser says: {e}") from None


def read_emotion(path: Path) -> int | None:
    """Class index from `<Metatag Name="Emotion" Value="1..6"/>` in `<sid>.xml`; None when it is not an emotion session."""
    for tag in _elements(read_xml(path, 'MMI metatags such as <Metatag Name="Emotion" Value="4"/>'), "metatag"):
        if (_attr(tag, "name") or "").strip().lower() != "emotion":
            continue
        value = (_attr(tag, "value") or "").strip()
        try:
            code = int(float(value))
        except ValueError:
            raise DatasetError(path, f'expected an integer Emotion value (1=anger ... 6=surprise), got "{value}"') from None
        return code - 1 if 1 <= code <= len(CLASSES) else None
    return None


@dataclass
class SessionInfo:
    """What session.xml says about a session (None where it does not say)."""

    subject: str | None = None
    view: str | None = None


def normalise_subject(raw: str) -> str:
    """`1`, `S1`, `s001` -> `S001`: one spelling whether the id came from session.xml or from a file name."""
    raw = raw.strip()
    m = re.fullmatch(r"[Ss]?(\d+)", raw)
    return f"S{int(m.group(1)):03d}" if m else raw


def read_session(path: Path) -> SessionInfo:
    """Subject and view from a session.xml (see the module docstring for the accepted forms)."""
    root = read_xml(path, "an MMI session record such as <session><track view=\"0\"/></session>")
    info = SessionInfo()
    for el in _elements(root, "subject"):
        raw = _attr(el, "id", "name") or (el.text or "").strip()
        if raw:
            info.subject = normalise_subject(raw)
            break
    if info.subject is None:
        raw = next((v for el in root.iter() if (v := _attr(el, "subject", "subjectid", "subject_id"))), None)
        if raw:
            info.subject = normalise_subject(raw)
    tracks = _elements(root, "track")
    raw_view = next((v for el in tracks if (v := _attr(el, "view")) is not None), None) or _attr(root, "view")
    if raw_view is not None:
        raw_view = raw_view.strip().lower()
        info.view = VIEWS.get(raw_view, raw_view)
    return info


@dataclass
class AUEvent:
    """One coded AU event, 0-based frames; None where its marker is missing."""

    au: int
    onset: int
    apex: int | None
    offset: int | None  # start of the offset phase
    end: int | None  # return to neutral


def read_aucs(path: Path) -> list[AUEvent]:
    """The AU events of a `<sid>-oao_aucs.xml` (markers with 1-based frames, Type 0/1/2/3)."""
    expected = 'MMI AU coding such as <ActionUnit Number="12"><Marker Frame="5" Type="1"/></ActionUnit>'
    events: list[AUEvent] = []
    for unit in _elements(read_xml(path, expected), "actionunit"):
        digits = re.search(r"\d+", _attr(unit, "number") or "")
        if digits is None:  # e.g. head or speech codes without an AU number
            continue
        markers = []
        for m in _elements(unit, "marker"):
            try:
                markers.append((int(_attr(m, "frame") or ""), int(_attr(m, "type") or "")))
            except ValueError:
                raise DatasetError(path, f"AU {digits.group()}: Marker Frame={_attr(m, 'frame')!r} Type={_attr(m, 'type')!r}; "
                                         f"expected integer Frame and Type in every Marker ({expected})") from None
        current: AUEvent | None = None
        for frame, kind in sorted(markers):
            if kind == 1:
                current = AUEvent(int(digits.group()), frame - 1, None, None, None)
                events.append(current)
            elif current is not None and kind == 2:
                current.apex = frame - 1
            elif current is not None and kind == 3:
                current.offset = frame - 1
            elif current is not None and kind == 0:
                current.end = frame - 1
                current = None
    return events


def _phases(events: list[AUEvent], n_frames: int) -> tuple[int, int | None, int, tuple[int, ...], np.ndarray]:
    """Sequence onset/apex/offset and the per-frame AU occurrence matrix from AU events (clipped to the media)."""
    last = n_frames - 1
    onset = min(min(e.onset for e in events), last)
    apexes = sorted(e.apex for e in events if e.apex is not None)
    apex = min(apexes[(len(apexes) - 1) // 2], last) if apexes else None
    ends = [e.end for e in events if e.end is not None]
    offset = min(max(ends), last) if len(ends) == len(events) else last
    names = tuple(sorted({e.au for e in events}))
    aus = np.zeros((n_frames, len(names)), dtype=np.int8)
    for e in events:
        aus[e.onset : n_frames if e.end is None else e.end, names.index(e.au)] = 1
    return onset, apex, offset, names, aus


def _subject(info: SessionInfo, media: Path, folder: Path, result: ScanResult) -> tuple[str, str]:
    """(subject id, where it came from): session.xml first, else the media name's `S001-` prefix."""
    prefix = _SUBJECT_PREFIX.match(media.name)
    from_name = normalise_subject(prefix.group(1)) if prefix else None
    if info.subject is not None:
        if from_name and from_name != info.subject:
            result.problems.append(f"{folder / 'session.xml'}: names subject {info.subject} but {media.name} says {from_name}; session.xml used")
        return info.subject, "session.xml"
    if from_name:
        return from_name, "file name"
    subject = f"session-{folder.name}"
    result.problems.append(f"{folder}: no subject in session.xml nor an S<number>- file-name prefix; subject {subject} assumed (breaks subject independence)")
    return subject, "session folder"


@register_dataset
class MMI(DatasetAdapter):
    name = "mmi"
    title = "MMI Facial Expression Database"
    obtain = "the MMI Facial Expression Database site (mmifacedb.eu; registration and an end-user licence agreement)"
    classes = CLASSES
    layout = (
        'Sessions/<n>/<sid>.avi + session.xml + <sid>.xml (<Metatag Name="Emotion" Value="1-6"/>) '
        "+ optional <sid>-oao_aucs.xml; labelled frontal sessions are selected"
    )
    fps = FPS
    clip_length = 22  # yu2018, at 10 fps
    target_fps = 10.0  # yu2018: MMI videos converted "by uniformly selecting 10 frames per second"
    phases = "onset-apex-offset"
    emotions = CLASSES

    def scan(self, root: Path) -> ScanResult:
        """Select the labelled frontal sessions under `Sessions/` and read their media, subject and AU markers."""
        root = Path(root)
        sessions = root if root.name.lower() == "sessions" else root / "Sessions"
        if not sessions.is_dir():
            raise DatasetError(sessions, "expected the MMI 'Sessions' folder with one sub-folder per session (Sessions/1/S001-001.avi ...)")
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        left_out: Counter[str] = Counter()
        seen: set[str] = set()
        for folder in list_entries(sessions, result.skipped):
            sample = result.read_each(f"session {folder.name}", lambda: self._read_session(folder, result, left_out))
            if sample is None:
                continue
            if sample.id in seen:
                result.problems.append(f"{folder}: media name {sample.id} is used by another session too; id {sample.id}@{folder.name} used")
                sample.id = f"{sample.id}@{folder.name}"
            seen.add(sample.id)
            result.samples.append(sample)
        self._notes(result, left_out)
        return result

    def _read_session(self, folder: Path, result: ScanResult, left_out: Counter) -> Sample | None:
        files = list_entries(folder, result.skipped, kind="file")
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        xmls = [p for p in files if p.suffix.lower() == ".xml" and p.name.lower() != "session.xml"]
        aucs = [p for p in xmls if p.name.lower().endswith("-oao_aucs.xml")]
        tags = [p for p in xmls if p not in aucs]
        sid = videos[0].stem if videos else tags[0].stem if tags else folder.name
        tag_file = folder / f"{sid}.xml" if (folder / f"{sid}.xml").is_file() else (tags[0] if len(tags) == 1 else None)
        if tag_file is None:
            result.problems.append(f"{folder}: no {sid}.xml with the emotion metatag; session left out")
            return None
        label = read_emotion(tag_file)
        if label is None:
            left_out["not an emotion session"] += 1
            return None
        session_xml = folder / "session.xml"
        if session_xml.is_file():
            info = read_session(session_xml)
        else:
            result.problems.append(f"{session_xml}: missing; view unknown, subject taken from the file name")
            info = SessionInfo()
        view = info.view or "unknown"
        if view not in SELECTED_VIEWS:
            left_out[f"labelled but {view} view"] += 1
            return None
        if len(videos) > 1:
            result.problems.append(f"{folder}: {len(videos)} videos; only {videos[0].name} used")
        frames: list[Path] = []
        if videos:
            probed = probe_video(videos[0])
            if probed is None:
                result.problems.append(f"{videos[0]}: unreadable or empty video (expected an .avi OpenCV can open); session left out")
                return None
            n_frames, fps = probed[0], round(probed[1], 3) or FPS
        elif len(images) > 1:
            frames, n_frames, fps = images, len(images), FPS
        else:
            left_out["labelled but a still image" if images else "labelled but without media"] += 1
            return None
        subject, source = _subject(info, videos[0] if videos else images[0], folder, result)
        onset, apex, offset, au_names, aus = 0, None, n_frames - 1, (), None
        aucs_file = folder / f"{sid}-oao_aucs.xml"
        if not aucs_file.is_file() and len(aucs) == 1:
            aucs_file = aucs[0]
        events = read_aucs(aucs_file) if aucs_file.is_file() else []
        if events:
            for e in events:  # a marker outside the media is a coding error, never clipped silently
                for what, f in (("onset", e.onset), ("apex", e.apex), ("offset", e.offset), ("end", e.end)):
                    if f is not None and not 0 <= f < n_frames:
                        raise DatasetError(aucs_file, f"AU {e.au} {what} marker at frame {f + 1} lies outside the "
                                                      f"{n_frames} frames of {(videos or images)[0].name}; expected "
                                                      f"frames 1..{n_frames}")
            onset, apex, offset, au_names, aus = _phases(events, n_frames)
        return Sample(
            id=sid,
            dataset=self.name,
            subject=subject,
            label=label,
            frames=frames,
            video=videos[0] if videos else None,
            fps=fps,
            onset=onset,
            apex=apex,
            offset=offset,
            aus=aus,
            au_names=au_names,
            mode={"view": view},
            meta={"session": folder.name, "subject_source": source, "n_frames": n_frames},
        )

    @staticmethod
    def _notes(result: ScanResult, left_out: Counter) -> None:
        samples = result.samples
        result.notes.append(
            f"{len(samples)} labelled frontal sessions of {len({s.subject for s in samples})} subjects selected "
            "(papers use 205 sequences / 30 subjects, a subset that is not published)"
        )
        sources = Counter(s.meta["subject_source"] for s in samples)
        result.notes.append("subject ids: " + ", ".join(f"{n} from {src}" for src, n in sources.items()))
        if left_out:
            result.notes.append("left out: " + ", ".join(f"{n} {why}" for why, n in sorted(left_out.items())))
        unknown = sum(s.mode["view"] == "unknown" for s in samples)
        if unknown:
            result.notes.append(f"{unknown} selected sessions do not state their view (kept as frontal)")
        marked = sum(s.apex is not None for s in samples)
        result.notes.append(
            f"apex from AU markers for {marked} sessions; for {len(samples) - marked} it is estimated in prepare; "
            "native fps kept here, resampled to 10 fps in prepare"
        )

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """MMI layout with animated faces: per subject six emotion videos (neutral -> apex -> neutral).

        Quirks written on purpose: odd takes carry an AU marker file (apex known), even takes do not (apex left to
        the pipeline); every third subject from the second has a session.xml without a subject (file-name
        fallback); subject 1 also has an AU-only session without an Emotion tag, a labelled profile-view session
        and a labelled single still image, which the scan must leave out.
        """
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator, au_numbers, expression_curve

        if modes:
            raise FerbenchError("the MMI replica has no modes; leave out --modes")
        out = Path(out)
        anim = FaceAnimator(seed=seed, intensity=intensity)
        rng = np.random.default_rng([seed, 0x33])
        samples: list[Sample] = []
        number = 0
        for i in range(subjects):
            subject = f"S{i + 1:03d}"
            ident = anim.identity(i)
            named = i % 3 != 1
            plan: list[tuple[int | None, dict, str]] = [(int(c), CLASS_AUS[CLASSES[c]], "0") for c in rng.permutation(len(CLASSES))]
            if i == 0:
                plan += [(None, {1: 1.0, 2: 1.0}, "0"), (CLASSES.index("surprise"), CLASS_AUS["surprise"], "1")]
            for take, (label, aus, view) in enumerate(plan, start=1):
                number += 1
                sid = f"{subject}-{take:03d}"
                folder = out / "Sessions" / str(number)
                n = int(rng.integers(40, 67))  # 1.6 to 2.6 s at 25 fps (real MMI clips last seconds)
                onset, offset = int(rng.integers(4, 12)), n - 1 - int(rng.integers(4, 12))
                apex = (onset + offset) // 2 + int(rng.integers(-1, 2))
                clip = anim.render_clip(ident, aus, expression_curve(n, onset, apex, offset), SIZE, yaw=60.0 if view == "1" else 0.0)
                write_avi(folder / f"{sid}.avi", clip, fps=FPS)
                marked = take % 2 == 1 or label is None
                _write_session_files(folder, number, sid, f"{sid}.avi", i + 1 if named else None, view, label, aus if marked else None,
                                     (onset, apex, offset))
                if label is None or view != "0":
                    continue
                names = au_numbers(aus)
                sample = Sample(
                    id=sid, dataset=self.name, subject=subject, label=label, video=folder / f"{sid}.avi", fps=FPS,
                    onset=0, apex=None, offset=n - 1, mode={"view": "frontal"},
                    meta={"session": str(number), "subject_source": "session.xml" if named else "file name", "n_frames": n},
                )
                if marked:
                    sample.onset, sample.apex, sample.offset, sample.au_names = onset, apex, offset, names
                    sample.aus = np.zeros((n, len(names)), dtype=np.int8)
                    sample.aus[onset:offset] = 1
                samples.append(sample)
            if i == 0:  # a labelled still image (MMI's image sessions): not a sequence, left out by the scan
                number += 1
                sid = f"{subject}-{len(plan) + 1:03d}"
                folder = out / "Sessions" / str(number)
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{sid}.jpg"), anim.render(ident, CLASS_AUS["happiness"], SIZE))
                _write_session_files(folder, number, sid, f"{sid}.jpg", i + 1, "0", CLASSES.index("happiness"), None, None)
        return samples


def _write_session_files(
    folder: Path, number: int, sid: str, media: str, subject: int | None, view: str, label: int | None,
    aus: dict | None, phases: tuple[int, int, int] | None,
) -> None:
    """session.xml, <sid>.xml and (with `aus`) <sid>-oao_aucs.xml of one replica session."""
    from ferbench.synth.faces import au_numbers

    folder.mkdir(parents=True, exist_ok=True)
    head = '<?xml version="1.0" encoding="utf-8"?>\n'
    subject_line = f'  <subject id="{subject}" />\n' if subject is not None else ""
    annotations = f'  <annotation id="1" filename="{sid}.xml" />\n'
    if aus is not None:
        annotations += f'  <annotation id="2" filename="{sid}-oao_aucs.xml" />\n'
    (folder / "session.xml").write_text(
        f'{head}<session sessionId="{number}">\n{subject_line}'
        f'  <track id="0" type="Video" view="{view}" filename="{media}" />\n{annotations}</session>\n'
    )
    emotion = f'  <Metatag Name="Emotion" Value="{label + 1}" />\n' if label is not None else ""
    (folder / f"{sid}.xml").write_text(f"{head}<Metatags>\n{emotion}</Metatags>\n")
    if aus is None or phases is None:
        return
    onset, apex, offset = phases
    marks = ((1, 0), (onset + 1, 1), (apex + 1, 2), (apex + 2, 3), (offset + 1, 0))
    units = "".join(
        f'  <ActionUnit Number="{au}">\n' + "".join(f'    <Marker Frame="{f}" Type="{t}" />\n' for f, t in marks) + "  </ActionUnit>\n"
        for au in au_numbers(aus)
    )
    (folder / f"{sid}-oao_aucs.xml").write_text(f"{head}<ActionUnits>\n{units}</ActionUnits>\n")
