"""`ferbench leaderboard`: task records + the papers' reported numbers -> tables in five formats.

Reads JSON records (docs/records.md) and leaderboards/reported.yaml only; never imports torch, the harness or
the models. `build_board` assembles the numbers, `write_leaderboard` renders the chosen formats.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ferbench.atomic import atomic_write
from ferbench.errors import FerbenchError
from ferbench.leaderboard.board import BASELINES, Board, Section, build_board
from ferbench.leaderboard.reported import load_reported
from ferbench.paths import require_folder

FORMATS = ("rich", "md", "html", "csv", "json")
FILES = {"md": "leaderboard.md", "html": "leaderboard.html", "csv": "leaderboard.csv", "json": "leaderboard.json"}


def parse_formats(text: str) -> list[str]:
    """'rich,md' -> ['rich', 'md']; an unknown name is a one-line error listing the valid ones."""
    if not isinstance(text, str):
        raise FerbenchError(f"formats must be given as a comma-separated string such as 'md,html'; got {text!r}")
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise FerbenchError(f"--format: unknown format {', '.join(bad) or repr(text)}; expected a comma-separated "
                            f"subset of {','.join(FORMATS)}")
    return list(dict.fromkeys(names))


FOLDS_FILE = "leaderboard-folds.csv"


def _ours(path: Path) -> bool:
    """Whether an existing leaderboard file was written by ferbench (its own opening), so it may be replaced."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    if path.suffix == ".json":
        return '"schema": "ferbench.leaderboard/' in head
    if path.suffix == ".md":
        return head.startswith("# ferbench leaderboard")
    if path.suffix == ".html":
        return head.startswith("<!DOCTYPE html>") and "<title>ferbench leaderboard</title>" in head
    return head.startswith("dataset,")  # the two CSV files: ferbench's header


def check_out(out: str | Path, formats: list[str], per_fold: bool = False) -> None:
    """Refuse an --out that cannot hold the files (a file, a path under one, a folder that cannot be written), or
    that holds a file of the same name ferbench did not write (never replaced), before any record is read or any
    table printed."""
    if any(f != "rich" for f in formats):
        require_folder(out, "--out (the folder of the leaderboard files)")
    names = [FILES[f] for f in formats if f in FILES] + ([FOLDS_FILE] if per_fold and "csv" in formats else [])
    for name in names:
        path = Path(out) / name
        if path.is_symlink() or (path.exists() and not (path.is_file() and _ours(path))):
            raise FerbenchError(f"--out {path}: exists and is not a leaderboard ferbench wrote; ferbench replaces "
                                "only its own files: choose another --out, or move that file")


def write_leaderboard(board: Board, formats: list[str], out: str | Path = "leaderboards", per_fold: bool = False,
                      console: Console | None = None) -> dict[str, Path]:
    """Render `formats`; file formats go under `out` (atomic writes), `rich` prints to `console`."""
    from ferbench.leaderboard import text

    if isinstance(formats, str) or not all(isinstance(f, str) and f in FORMATS for f in formats):
        raise FerbenchError(f"formats must be a list of names from {', '.join(FORMATS)} (parse_formats('md,html') "
                            f"makes one from text); got {formats!r}")
    out = Path(out)
    check_out(out, formats, per_fold=per_fold)  # a file of that name ferbench did not write is never replaced
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "rich":
            text.render_rich(board, console or Console(), per_fold=per_fold)
            continue
        if fmt == "md":
            content = text.render_markdown(board, per_fold=per_fold)
        elif fmt == "csv":
            content = text.render_csv(board)
        elif fmt == "json":
            content = text.render_json(board, per_fold=per_fold)
        else:
            from ferbench.leaderboard.html import render_html

            content = render_html(board, per_fold=per_fold)
        written[fmt] = out / FILES[fmt]
        atomic_write(written[fmt], content)
    if per_fold and ("csv" in formats):
        written["folds-csv"] = out / FOLDS_FILE
        atomic_write(written["folds-csv"], text.render_fold_csv(board))
    return written


__all__ = ["BASELINES", "Board", "FILES", "FORMATS", "Section", "build_board", "check_out", "load_reported",
           "parse_formats", "write_leaderboard"]
