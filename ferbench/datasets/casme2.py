"""CASME II (spontaneous micro-expressions, 200 fps): where its coding spreadsheet is parsed and its replica written.

Native layout, as distributed::

    CASME2-coding-20140508.xlsx                 # the coding sheet (a .csv export is accepted too)
    CASME2_RAW_selected/sub01/EP02_01f/img46.jpg    # 640x480 frames, file number = sheet frame number
    Cropped/sub01/EP02_01f/reg_img46.jpg            # the same frames, faces already cropped

The sheet's columns are `Subject, Filename, <blank>, OnsetFrame, ApexFrame, OffsetFrame, <blank>,
Action Units, Estimated Emotion`. Subjects are integers (folders `sub%02d`), file names are irregular
(`EP01_2`, `EP09f`, `EP06_02_01`), some apex cells are empty or `/` (the apex is then estimated in
preprocessing), AU cells look like `4+L10`, `R12` or `12+15`, and Windows shortcuts (`*.lnk`) lie around.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import frame_number, list_frames, write_image
from ferbench.datasets.base import DatasetAdapter, Sample, ScanResult, is_junk
from ferbench.errors import DatasetError, FerbenchError

#: The 5-class protocol (LOSO papers); the sheet's `Estimated Emotion` values, lower case.
CLASSES: tuple[str, ...] = ("happiness", "disgust", "repression", "surprise", "others")
#: Emotions the sheet also uses that lie outside the 5 classes (kept, unlabelled).
OUTSIDE_CLASSES: tuple[str, ...] = ("fear", "sadness")

RAW_DIR = "CASME2_RAW_selected"
CROPPED_DIR = "Cropped"
SHEET_NAME = "CASME2-coding-20140508.xlsx"
#: Header row of the real sheet: blank columns at positions 2 and 6 (pandas reads them as "Unnamed: 2/6").
SHEET_HEADER: tuple[str | None, ...] = (
    "Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion",
)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(h for h in SHEET_HEADER if h)
FPS = 200.0
FRAME_SIZE = (640, 480)  # (width, height)

_AU_TOKEN = re.compile(r"^([LRB]?)(\d+)([A-E]?)$", re.IGNORECASE)
_MISSING = {"", "/", "-", "na", "n/a", "none", "nan"}


@dataclass
class CodingRow:
    """One line of the coding sheet, with frame numbers as the sheet gives them (native numbers)."""

    row: int  # 1-based spreadsheet row (what a user sees in Excel)
    subject: int
    filename: str
    onset: int | None
    apex: int | None
    apex_cell: str  # raw apex cell text ("" or "/" when missing)
    offset: int | None
    action_units: str
    emotion: str


def _norm(header: Any) -> str:
    return re.sub(r"[\s_]+", "", str(header or "")).lower()


def _cell_text(value: Any) -> str:
    """Cell as text; Excel numbers that are whole (46.0) print as integers (46)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_xlsx(path: Path) -> list[list[Any]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to open is "unreadable spreadsheet" for the user
        raise DatasetError(path, f"unreadable spreadsheet ({type(e).__name__}); expected the CASME II coding "
                                 f"workbook (.xlsx) with columns {', '.join(REQUIRED_COLUMNS)}") from None
    try:
        for ws in wb.worksheets:  # the coding sits on the first sheet that has the header row
            rows = [list(r) for r in ws.iter_rows(values_only=True)]
            if _find_header(rows) is not None:
                return rows
        return [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)] if wb.worksheets else []
    except Exception as e:  # noqa: BLE001 - a corrupt sheet part surfaces only while reading rows
        raise DatasetError(path, f"unreadable spreadsheet ({type(e).__name__}); expected the CASME II coding "
                                 f"workbook (.xlsx) with columns {', '.join(REQUIRED_COLUMNS)}") from None
    finally:
        wb.close()


def _read_csv(path: Path) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            with path.open(newline="", encoding=encoding) as f:
                return [list(r) for r in csv.reader(f)]
        except UnicodeDecodeError:
            continue
        except csv.Error as e:
            raise DatasetError(path, f"malformed CSV ({e}); expected a CSV export of the CASME II coding sheet") from None
    raise DatasetError(path, "not a text CSV file; expected a CSV export of the CASME II coding sheet")


def _find_header(rows: list[list[Any]]) -> int | None:
    for i, row in enumerate(rows[:20]):
        names = {_norm(c) for c in row}
        if "subject" in names and "filename" in names:
            return i
    return None


def _frame_cell(path: Path, row: int, column: str, value: Any) -> int | None:
    """A frame-number cell: int, or None where the sheet leaves it blank or writes '/'."""
    text = _cell_text(value)
    if text.lower() in _MISSING:
        return None
    try:
        number = float(text)
    except ValueError:
        raise DatasetError(path, f"row {row}: {column} is {text!r}; expected a frame number (or '/' when unknown)") from None
    if not number.is_integer() or number < 0:
        raise DatasetError(path, f"row {row}: {column} is {text!r}; expected a whole frame number")
    return int(number)


def _subject_cell(path: Path, row: int, value: Any) -> int:
    text = _cell_text(value)
    m = re.fullmatch(r"(?:sub)?0*(\d+)(?:\.0+)?", text, re.IGNORECASE)
    if not m:
        raise DatasetError(path, f"row {row}: Subject is {text!r}; expected a subject number such as 1 (folder sub01)")
    return int(m.group(1))


def read_coding(path: Path, bad_rows: list[tuple[str, DatasetError]] | None = None) -> list[CodingRow]:
    """Parse the CASME II coding sheet (.xlsx or .csv export) into rows; malformed input -> DatasetError.

    With `bad_rows`, a malformed row is appended there as (sample id or "row N", error) and the other rows
    are still read (one bad row never stops a scan); without it the first bad row raises.
    """
    rows = _read_csv(path) if path.suffix.lower() == ".csv" else _read_xlsx(path)
    header_at = _find_header(rows)
    if header_at is None:
        raise DatasetError(path, f"no header row found; expected columns {', '.join(REQUIRED_COLUMNS)}")
    header = [_norm(c) for c in rows[header_at]]
    col = {name: header.index(_norm(name)) for name in REQUIRED_COLUMNS if _norm(name) in header}
    missing = [name for name in REQUIRED_COLUMNS if name not in col]
    if missing:
        raise DatasetError(path, f"missing column(s) {', '.join(missing)}; expected a header row with "
                                 f"{', '.join(REQUIRED_COLUMNS)}")
    out: list[CodingRow] = []
    for i, raw in enumerate(rows[header_at + 1 :], start=header_at + 2):
        cells = list(raw) + [None] * (len(header) - len(raw))
        if all(_cell_text(c) == "" for c in cells):
            continue
        get = lambda name: cells[col[name]]  # noqa: E731
        try:
            out.append(_coding_row(path, i, get))
        except DatasetError as e:
            if bad_rows is None:
                raise
            sub = re.fullmatch(r"(?:sub)?0*(\d+)(?:\.0+)?", _cell_text(get("Subject")), re.IGNORECASE)
            name = _cell_text(get("Filename"))
            bad_rows.append((f"sub{int(sub.group(1)):02d}_{name}" if sub and name else f"{path.name} row {i}", e))
    return out


def _coding_row(path: Path, i: int, get: Any) -> CodingRow:
    """One sheet row, every cell checked (frame numbers whole and non-negative, subject a number)."""
    return CodingRow(
        row=i,
        subject=_subject_cell(path, i, get("Subject")),
        filename=_cell_text(get("Filename")),
        onset=_frame_cell(path, i, "OnsetFrame", get("OnsetFrame")),
        apex=_frame_cell(path, i, "ApexFrame", get("ApexFrame")),
        apex_cell=_cell_text(get("ApexFrame")),
        offset=_frame_cell(path, i, "OffsetFrame", get("OffsetFrame")),
        action_units=_cell_text(get("Action Units")),
        emotion=_cell_text(get("Estimated Emotion")).lower(),
    )


def parse_action_units(text: str) -> tuple[dict[int, float], dict[int, str], list[str]]:
    """`4+L10` -> ({4: 1.0, 10: 1.0}, {10: 'L'}, []): occurrence 1.0 per AU, sides, and unparsed tokens."""
    aus: dict[int, float] = {}
    sides: dict[int, str] = {}
    bad: list[str] = []
    for token in re.split(r"[+,;]", text):
        token = token.strip().strip("()").strip()
        if not token:
            continue
        m = _AU_TOKEN.match(token)
        if not m:
            bad.append(token)
            continue
        au = int(m.group(2))
        aus[au] = 1.0
        if m.group(1):
            sides[au] = m.group(1).upper()
    return aus, sides, bad


def find_coding_sheet(root: Path) -> Path:
    """The coding sheet at the root (`CASME2-coding-*.xlsx`, else a `.csv` export); the newest name wins."""
    for pattern in ("CASME2-coding*.xlsx", "CASME2-coding*.csv", "CASME2_coding*.xlsx", "CASME2_coding*.csv"):
        found = sorted(p for p in root.glob(pattern) if not p.name.startswith("~$") and p.is_file())
        if found:
            return found[-1]
    raise DatasetError(root / "CASME2-coding-*.xlsx", "coding spreadsheet not found; expected CASME2-coding-*.xlsx "
                                                      "(or its .csv export) in the dataset root")


def _frames_base(root: Path, name: str) -> Path | None:
    """`root/<name>`, or the doubled `root/<name>/<name>` that unzipping often leaves."""
    base = root / name
    if (base / name).is_dir():
        return base / name
    return base if base.is_dir() else None


@register_dataset
class Casme2Adapter(DatasetAdapter):
    """CASME II: one sample per coding-sheet row; frames are the whole clip folder, onset/offset mark the segment."""

    name = "casme2"
    title = "CASME II (micro-expressions, 200 fps)"
    obtain = "the Institute of Psychology, Chinese Academy of Sciences (the CASME II page of Fu Xiaolan's group, fu.psych.ac.cn; a licence agreement)"
    root_hint = "the CASME II folder"
    classes = CLASSES
    layout = ("CASME2-coding-*.xlsx (or .csv) + CASME2_RAW_selected/subNN/<Filename>/imgN.jpg "
              "or Cropped/subNN/<Filename>/reg_imgN.jpg; N = sheet frame numbers")
    fps = FPS
    clip_length = 22  # no fixed-length recipe in the papers; 22 samples still span onset -> offset
    phases = "onset-apex-offset"
    emotions = CLASSES

    def __init__(self, prefer: str = "raw"):
        if prefer not in ("raw", "cropped"):
            raise FerbenchError(f"CASME II frames: prefer must be 'raw' or 'cropped', not {prefer!r}")
        self.prefer = prefer

    # ------------------------------------------------------------------ scan
    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        bases = {"raw": _frames_base(root, RAW_DIR), "cropped": _frames_base(root, CROPPED_DIR)}
        if bases["raw"] is None and bases["cropped"] is None:
            raise DatasetError(root / RAW_DIR, f"frames folder not found; expected {RAW_DIR}/subNN/<Filename>/imgN.jpg "
                                               f"or {CROPPED_DIR}/subNN/<Filename>/reg_imgN.jpg under the root")
        sheet = find_coding_sheet(root)
        bad_rows: list[tuple[str, DatasetError]] = []
        rows = read_coding(sheet, bad_rows)
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        for sid, error in bad_rows:
            result.excluded.append((sid, str(error)))
            result.errors.append(error)
        result.skipped.extend(p for p in root.iterdir() if is_junk(p))
        order = [self.prefer, "cropped" if self.prefer == "raw" else "raw"]
        on_disk = {kind: self._clip_folders(base, result.skipped) for kind, base in bases.items() if base is not None}

        used: set[tuple[str, str]] = set()
        seen_ids: set[str] = set()
        no_apex: list[str] = []
        outside: list[str] = []
        n_cropped = 0
        for r in rows:
            sub = f"sub{r.subject:02d}"
            sid = f"{sub}_{r.filename}"
            if sid in seen_ids:
                result.problems.append(f"{sheet.name} row {r.row}: {sid} is listed twice; kept the first row")
                continue
            seen_ids.add(sid)
            folder, kind = None, None
            for k in order:
                hit = on_disk.get(k, {}).get((sub, r.filename.lower()))
                if hit is not None:
                    folder, kind = hit, k
                    break
            if folder is None:
                result.problems.append(f"{sheet.name} row {r.row}: no frame folder {sub}/{r.filename} under "
                                       f"{RAW_DIR}/ or {CROPPED_DIR}/; row not scanned")
                continue
            used.add((sub, folder.name.lower()))
            frames = list_frames(folder, result.skipped)
            numbers = [frame_number(p) for p in frames]
            if not frames or any(n is None for n in numbers):
                result.problems.append(f"{folder}: expected frames named imgN.jpg / reg_imgN.jpg; "
                                       f"found {len(frames)} images" + (" with unnumbered names" if frames else ""))
                continue
            position = {n: i for i, n in enumerate(numbers)}

            def pos(value: int | None, what: str) -> int | None:
                if value is None:
                    return None
                if value not in position:
                    result.problems.append(f"{sid}: {what} frame {value} (sheet row {r.row}) is not in {folder}")
                    return None
                return position[value]

            onset, apex, offset = pos(r.onset, "onset"), pos(r.apex, "apex"), pos(r.offset, "offset")
            if r.onset is None:
                result.problems.append(f"{sid}: OnsetFrame is missing (sheet row {r.row})")
            if r.offset is None:
                result.problems.append(f"{sid}: OffsetFrame is missing (sheet row {r.row})")
            if r.apex is None:
                no_apex.append(sid)
            if r.emotion in CLASSES:
                label: int | None = CLASSES.index(r.emotion)
            else:
                label = None
                if r.emotion in OUTSIDE_CLASSES:
                    outside.append(sid)
                else:
                    result.problems.append(f"{sid}: Estimated Emotion {r.emotion!r} (sheet row {r.row}) is not one of "
                                           f"{', '.join(CLASSES + OUTSIDE_CLASSES)}; kept unlabelled")
            aus, sides, bad = parse_action_units(r.action_units)
            if bad:
                result.problems.append(f"{sid}: Action Units {r.action_units!r}: could not read {', '.join(bad)}")
            n_cropped += kind == "cropped"
            result.samples.append(Sample(
                id=sid, dataset=self.name, subject=sub, label=label, frames=frames, fps=self.fps,
                onset=onset, apex=apex, offset=offset, apex_estimated=False, au_intensity=aus,
                meta={
                    "cropped": kind == "cropped", "filename": r.filename, "subject_number": r.subject,
                    "onset_frame": r.onset, "apex_frame": r.apex, "offset_frame": r.offset,
                    "apex_cell": r.apex_cell, "action_units": r.action_units, "au_sides": sides,
                    "emotion": r.emotion, "sheet_row": r.row, "sheet": str(sheet),
                },
            ))

        unlisted = sorted({f"{s}/{c.name}" for d in on_disk.values() for (s, _), c in d.items()
                           if (s, c.name.lower()) not in used})
        if unlisted:
            result.problems.append(f"{len(unlisted)} frame folder(s) are not in {sheet.name} and were not scanned: "
                                   + ", ".join(unlisted[:20]) + (" ..." if len(unlisted) > 20 else ""))
        result.notes.append(f"coding from {sheet.name}; frames from {RAW_DIR}/ for {len(result.samples) - n_cropped} "
                            f"and {CROPPED_DIR}/ for {n_cropped} samples (prefer={self.prefer}; Sample.meta['cropped'])")
        if no_apex:
            result.notes.append(f"{len(no_apex)} sample(s) have no apex in the sheet (ApexFrame empty or '/'); apex=None, "
                                f"to be estimated in preprocessing: {', '.join(no_apex)}")
        if outside:
            result.notes.append(f"{len(outside)} sample(s) labelled fear/sadness are outside the 5 classes and kept "
                                f"with label None: {', '.join(outside)}")
        result.notes.append("onset/apex/offset are 0-based positions in each clip's sorted frames; the sheet's native "
                            "frame numbers are in Sample.meta (onset_frame, apex_frame, offset_frame)")
        return result

    @staticmethod
    def _clip_folders(base: Path, skipped: list[Path]) -> dict[tuple[str, str], Path]:
        """{(subNN, lower-case clip name): folder} for every clip folder under a frames base."""
        found: dict[tuple[str, str], Path] = {}
        for sub in sorted(base.iterdir()):
            if is_junk(sub):
                skipped.append(sub)
                continue
            m = re.fullmatch(r"sub0*(\d+)", sub.name, re.IGNORECASE)
            if not sub.is_dir() or not m:
                continue
            for clip in sorted(sub.iterdir()):
                if is_junk(clip):
                    skipped.append(clip)
                elif clip.is_dir():
                    found[(f"sub{int(m.group(1)):02d}", clip.name.lower())] = clip
        return found

    # ------------------------------------------------------------------ replica
    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Sheet (.xlsx, real header), RAW (and with mode 'cropped', Cropped) frames of rising-falling micro-expressions.

        Modes: `raw` (default) and/or `cropped`. Quirks written on purpose: irregular file names, one empty and
        one '/' apex cell, fear/sadness rows outside the 5 classes, `.lnk` shortcuts at the root and in a clip.
        """
        from ferbench.synth.faces import FaceAnimator, expression_curve

        kinds = [m.lower() for m in (modes or ["raw"])]
        unknown = [m for m in kinds if m not in ("raw", "cropped")]
        if unknown or not kinds:
            raise FerbenchError(f"CASME II replica modes are 'raw' and 'cropped', not {', '.join(unknown) or 'none'}")
        out = Path(out)
        rng = np.random.default_rng([seed, 2])
        anim = FaceAnimator(seed=seed, intensity=intensity)
        plan = _replica_plan(subjects, rng)
        samples: list[Sample] = []
        sheet_rows: list[list[Any]] = []
        scanned_kind = self.prefer if self.prefer in kinds else kinds[0]
        for p in plan:
            ident = anim.identity(p["subject_index"])
            n = p["n"]
            curve = expression_curve(n, p["onset_pos"], p["apex_pos"], p["offset_pos"])
            aus = _render_aus(p["action_units"])
            frames = anim.render_clip(ident, aus, curve, FRAME_SIZE)
            paths: dict[str, list[Path]] = {}
            for kind in kinds:
                folder = out / (RAW_DIR if kind == "raw" else CROPPED_DIR) / p["sub"] / p["filename"]
                folder.mkdir(parents=True, exist_ok=True)
                paths[kind] = []
                box = _face_box(ident, FRAME_SIZE)
                for j, frame in enumerate(frames):
                    number = p["start"] + j
                    if kind == "raw":
                        path = folder / f"img{number}.jpg"
                        image = frame
                    else:
                        path = folder / f"reg_img{number}.jpg"
                        x0, y0, x1, y1 = box
                        image = frame[y0:y1, x0:x1]
                    write_image(path, image)
                    paths[kind].append(path)
            apex_cell: Any = p["start"] + p["apex_pos"]
            if p["apex_quirk"] == "empty":
                apex_cell = None
            elif p["apex_quirk"] == "slash":
                apex_cell = "/"
            au_cell: Any = int(p["action_units"]) if p["action_units"].isdigit() else p["action_units"]
            onset_n, offset_n = p["start"] + p["onset_pos"], p["start"] + p["offset_pos"]
            sheet_rows.append([p["subject"], p["filename"], None, onset_n, apex_cell, offset_n, None, au_cell, p["emotion"]])
            au_int, sides, _ = parse_action_units(p["action_units"])
            samples.append(Sample(
                id=f"{p['sub']}_{p['filename']}", dataset=self.name, subject=p["sub"],
                label=CLASSES.index(p["emotion"]) if p["emotion"] in CLASSES else None,
                frames=paths[scanned_kind], fps=self.fps, onset=p["onset_pos"],
                apex=None if p["apex_quirk"] else p["apex_pos"], offset=p["offset_pos"], apex_estimated=False,
                au_intensity=au_int,
                meta={
                    "cropped": scanned_kind == "cropped", "filename": p["filename"], "subject_number": p["subject"],
                    "onset_frame": onset_n, "apex_frame": None if p["apex_quirk"] else apex_cell,
                    "offset_frame": offset_n, "apex_cell": "" if apex_cell is None else str(apex_cell),
                    "action_units": p["action_units"], "au_sides": sides, "emotion": p["emotion"],
                    "sheet_row": len(sheet_rows) + 1, "sheet": str(out / SHEET_NAME),
                },
            ))
        write_coding_xlsx(out / SHEET_NAME, sheet_rows)
        # Windows shortcuts the distribution carries: one at the root, one among a clip's frames.
        (out / "CASME2_RAW_selected - Shortcut.lnk").write_bytes(b"L\x00\x00\x00\x01\x14\x02\x00" + bytes(68))
        first = samples[0].frames[0].parent
        (first / "img.lnk").write_bytes(b"L\x00\x00\x00\x01\x14\x02\x00" + bytes(68))
        return samples


# ---------------------------------------------------------------------- replica helpers
#: Irregular clip names in the style of the real sheet.
_FILENAMES = ("EP02_01f", "EP01_2", "EP09f", "EP06_02_01", "EP13_04", "EP19_05f", "EP03_02", "EP11_01f", "EP08_03",
              "EP15_01", "EP04_02f", "EP07_01")
#: Action Units cells per emotion (variants rotate over subjects); they drive the rendered face.
_CLASS_AU_CELLS: dict[str, tuple[str, ...]] = {
    "happiness": ("6+12", "R12", "6+12+25"),
    "disgust": ("4+L10", "9+10", "4+9+L10"),
    "repression": ("14+17", "15+17+24", "L14+17"),
    "surprise": ("1+2", "1+2+5", "1+2+26"),
    "others": ("4+7", "20", "4+7+20"),
    "fear": ("1+4+20",),
    "sadness": ("1+4+15",),
}


def _replica_plan(subjects: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Which clips the replica holds: every subject shows each of the 5 classes; two extra fear/sadness rows."""
    plan: list[dict[str, Any]] = []
    for s in range(subjects):
        emotions = list(CLASSES)
        if s == 0:
            emotions.append("fear")
        if s == 1 or (subjects == 1 and s == 0):
            emotions.append("sadness")
        order = rng.permutation(len(emotions))
        for k, e_idx in enumerate(order):
            emotion = emotions[e_idx]
            cells = _CLASS_AU_CELLS[emotion]
            n = int(rng.integers(12, 17))
            onset_pos = int(rng.integers(1, 3))
            offset_pos = n - int(rng.integers(1, 3))
            apex_pos = int((onset_pos + offset_pos) // 2 + rng.integers(-1, 2))
            plan.append({
                "subject_index": s, "subject": s + 1, "sub": f"sub{s + 1:02d}",
                "filename": _FILENAMES[(k + 3 * s) % len(_FILENAMES)], "emotion": emotion,
                "action_units": cells[(s + k) % len(cells)], "n": n, "start": int(rng.integers(20, 400)),
                "onset_pos": onset_pos, "apex_pos": apex_pos, "offset_pos": offset_pos, "apex_quirk": None,
            })
    plan[1]["apex_quirk"] = "empty"
    plan[-1]["apex_quirk"] = "slash"
    return plan


def _render_aus(cell: str) -> dict[int | str, float]:
    """AU cell -> animator intensities; unilateral `L10`/`R12` become the animator's one-sided keys."""
    from ferbench.synth.faces import au_key

    out: dict[int | str, float] = {}
    for token in cell.split("+"):
        m = _AU_TOKEN.match(token.strip())
        if m:
            prefix = m.group(1).upper()  # L / R one side, B both: a coded side renders a little stronger
            out[au_key(prefix if prefix in ("L", "R") else None, int(m.group(2)))] = 1.2 if prefix else 1.0
    return out


def _face_box(ident: Any, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Face bounding box in a rendered frame (mirrors FaceAnimator.render's placement), for the Cropped copy."""
    width, height = size
    x, y, side = ident.face_square(size)
    x0, x1 = max(0, x + int(0.16 * side)), min(width, x + int(0.84 * side))
    y0, y1 = max(0, y + int(0.12 * side)), min(height, y + int(0.92 * side))
    return x0, y0, x1, y1



def write_coding_xlsx(path: Path, rows: list[list[Any]], header: tuple[str | None, ...] = SHEET_HEADER) -> None:
    """Write a coding workbook the way the distribution has it: one sheet, the real header, blank columns."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    buffer = io.BytesIO()
    wb.save(buffer)
    # openpyxl stamps the save time into docProps/core.xml and every zip entry; pin both so that a replica
    # is byte-identical for a given seed.
    stamp = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = stamp.sub(b"2014-05-08T00:00:00Z", data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(2014, 5, 8, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
