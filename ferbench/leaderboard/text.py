"""Text renderings of a Board: rich (terminal), Markdown, CSV and JSON. Human formats print percent with two
decimals; CSV and JSON keep the fractions, so a reader can recompute and compare without rounding."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ferbench.leaderboard.board import SCHEMA, Board, Section
from ferbench.leaderboard.safe import csv_cell, json_value, md_text, plain
from ferbench.metrics import STD_DDOF
from ferbench.records import finite_or_none

CSV_FIELDS = ("dataset", "dataset_test", "protocol", "model", "metric", "mean", "std", "trials", "pooled",
              "ci_low", "ci_high", "std_repeats", "reported", "comparable", "reason", "delta", "p_value", "reported_only", "rank", "best", "beats_baseline", "paired_trials",
              "selection", "train_s", "train_s_total", "diverged", "reported_metric", "reported_std", "reported_source",
              "reported_method", "note")
COLUMNS = ("#", "model", "{metric} mean ± std", "95% CI", "trials", "pooled", "secondary", "selection",
           "train s/trial", "paper", "Δ vs paper", "p vs best", "verdict")
SHORT = ("#", "model", "{metric}", "95% CI", "n", "pooled", "other", "sel.", "s/trial", "paper", "Δ", "p", "verdict")
LEGEND = ("± is the sample std (ddof=1) over all trials (repeats x folds); where a protocol repeats, 'rep ±' is "
          "the std of the repeat means. The papers do not say what their ± is (yu2018 never defines it). 95% CI: "
          "percentile interval of the trial mean by a cluster bootstrap over test subjects (2000 draws, seed 0). "
          "Pooled: all test predictions of a repeat scored at once, averaged over repeats (kim2017 and the MEGC "
          "pool LOSO). A paper's number is 'comparable' only when data, protocol structure, recipe and aggregation "
          "match its table; otherwise it is a reference with the reason and no Δ.")


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def signed_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def p_text(p: float | None, digits: int = 4) -> str:
    if p is None:
        return "–"
    return f"< {10 ** -digits:.{digits}f}" if p < 10 ** -digits else f"{p:.{digits}f}"


def mean_std(row: dict) -> str:
    if row["mean"] is None:
        return "–"
    text = pct(row["mean"]) + (f" ± {pct(row['std'])}" if row["std"] is not None else " (1 trial)")
    if row.get("std_repeats") is not None:
        text += f" (rep ± {pct(row['std_repeats'])})"
    return text


def ci_cell(row: dict, digits: int = 2) -> str:
    if row.get("ci_low") is None:
        return "–"
    return f"{pct(row['ci_low'], digits)}–{pct(row['ci_high'], digits)}"


def secondary(row: dict, section: Section, short: bool = False) -> str:
    """The protocol's other metrics (UF1 / UAR / accuracy, pooled, per-AU F1, per-mode accuracy) in one cell;
    `short` (terminal) keeps the per-trial means only and leaves per-AU F1 to its own table."""
    if row["reported_only"]:
        return "–"
    parts = [f"{name.upper()} {pct(row[name])}" for name in ("accuracy", "uf1", "uar")
             if name in row and name != row["metric"]]
    # pooled UF1 / UAR in every format (the MEGC convention for LOSO) beside the per-trial figures
    parts += [f"pooled {name[7:].upper()} {pct(row[name])}" for name in ("pooled_uf1", "pooled_uar")
              if name in row and name[7:] != row["metric"]]
    if not short:
        parts += [f"{k[3:]} {pct(v)}" for k, v in row.items() if k.startswith("f1_")]
    parts += [f"{k[9:-1]} {pct(v)}" for k, v in row.items() if k.startswith("accuracy[")]
    return ", ".join(parts) or ("per-AU below" if short and section.task == "au-detection" else "–")


def paper_cell(row: dict, short: bool = False) -> str:
    """The paper's number, its source, and whether it is comparable with ours (with the reason when not)."""
    if row["reported"] is None:
        return "–"
    metric = "" if row["reported_metric"] == row["metric"] else f" {row['reported_metric']}"
    std = f" ± {pct(row['reported_std'])}" if row["reported_std"] is not None else ""
    where = row["reported_source"] if short else f"{row['reported_source']}, {row['reported_method']}"
    pooled = " pooled" if row.get("reported_aggregation") == "pooled" and not row["reported_only"] else ""
    if row.get("comparable"):
        status = f"; comparable{pooled}"
    elif short:
        status = "; reference"
    else:
        status = f"; reference, not comparable: {row.get('reason') or 'unknown'}"
    return f"{pct(row['reported'])}{std}{metric} ({where}{status})"


def verdict(row: dict, section: Section, short: bool = False) -> str:
    """Plain words for what a row is: reported only, best, below the static baseline, vs best (Holm p)."""
    if row["reported_only"]:
        return "ref" if short else "REPORTED ONLY"
    words = []
    if row.get("diverged"):
        if short:
            words.append("DIVERGED")
        else:
            words.append("DIVERGED" + (" (every trial)" if not row["trials"]
                                       else f" ({row['diverged']} trial(s) left out)"))
    if row["best"]:
        words.append("best")
    if row["model"] == section.baseline:
        words.append("baseline")
    if row["beats_baseline"] is False:
        words.append(f"NOT > {section.baseline}" if short else f"NOT ABOVE {section.baseline}")
    p = row["p_value"] if row["p_value"] is not None else row.get("mcnemar_p")
    if p is not None:
        if short:
            words.append("< best" if p < 0.05 else "≈ best")
        else:
            words.append("below best (Holm p<0.05)" if p < 0.05 else "≈ best (Holm p≥0.05)")
    elif row["paired_note"] and not short:
        words.append("no paired test")
    return ", ".join(words) or "–"


def cells(row: dict, section: Section, short: bool = False) -> list[str]:
    """The table's cells of one row; `short` (terminal): one decimal, the p that decides the verdict, terse
    verdicts (the files keep every figure at two decimals)."""
    rank = "ref" if row["reported_only"] else str(row["rank"])
    name = f"{row['model']} [reported only]" if row["reported_only"] and not short else row["model"]
    digits = 1 if short else 2
    return [rank, name, _short_mean(row) if short else mean_std(row), ci_cell(row, digits),
            str(row["trials"]) if not row["reported_only"] else "–", pct(row["pooled"], digits),
            secondary(row, section, short), row["selection"] or "–",
            "–" if row["train_s"] is None else f"{row['train_s']:.1f}", paper_cell(row, short),
            signed_pct(row["delta"]), p_cell(row, short), verdict(row, section, short)]


def _short_mean(row: dict) -> str:
    if row["mean"] is None:
        return "–"
    return pct(row["mean"], 1) + (f"±{pct(row['std'], 1)}" if row["std"] is not None else "")


def p_cell(row: dict, short: bool = False) -> str:
    """Holm-corrected paired t-test p with its number of identical-trial pairs; McNemar's exact p (and the
    paired units) where the protocol ran once. `short`: only the p the verdict uses, with its n."""
    if short:
        if row.get("p_value") is not None or (row.get("paired_trials") and row.get("mcnemar_p") is None):
            return f"{p_text(row.get('p_value'), 3)} n={row.get('paired_trials') or 0}"
        if row.get("mcnemar_p") is not None:
            return f"McN {p_text(row['mcnemar_p'], 3)} n={row.get('mcnemar_units')}"
        return "–"
    parts = []
    if row.get("p_value") is not None or row.get("paired_trials"):
        parts.append(f"{p_text(row.get('p_value'))} (n={row.get('paired_trials') or 0})")
    if row.get("mcnemar_p") is not None:
        parts.append(f"{'McN' if short else 'McNemar'} {p_text(row['mcnemar_p'])} (n={row.get('mcnemar_units')})")
    return "; ".join(parts) or "–"


def title(section: Section) -> str:
    return (f"{section.label} · {section.protocol} · {section.metric} (%, mean ± sample std over trials; "
            f"pooled = all folds of a repeat scored together)")


P_LEGEND = ("p vs best: a paired t-test (scipy ttest_rel) over identical trials (same data, protocol, repeat, fold, "
            "seed and test units; n pairs shown), Holm-corrected over the comparisons of a table; for single-run "
            "protocols also an exact McNemar test on the paired pooled predictions.")


def fold_cells(section: Section) -> tuple[list[str], list[list[str]]]:
    rows = section.per_fold()
    skip = ("dataset", "protocol", "model", "repeat", "fold", "seed", "units", "train_s", "selected_epoch",
            "test_units")
    metrics = [k for k in rows[0] if k not in skip] if rows else []
    head = ["model", "repeat", "fold", "units"] + metrics + ["train s", "epoch"]
    body = [[r["model"], str(r["repeat"]), str(r["fold"]), str(r["units"])] + [pct(r.get(m)) for m in metrics]
            + ["–" if r["train_s"] is None else f"{r['train_s']:.1f}", str(r["selected_epoch"])] for r in rows]
    return head, body


#: Terminal columns by priority: the first ones always, the rest while the terminal is wide enough.
RICH_PRIORITY = (0, 1, 2, 4, 9, 12, 11, 3, 5, 10, 8, 7, 6)
#: Columns a terminal table never drops, however narrow: rank, model, headline ± std, trials (n), the paper's
#: number (an incomplete row must not look complete, and a reference row must show its number).
RICH_ESSENTIAL = (0, 1, 2, 4, 9)


#: Terminal columns that never wrap (numbers); the others wrap at spaces.
RICH_NO_WRAP = (0, 2, 3, 4, 5, 8, 10)  # the model column wraps at spaces (a paper's long method names)


def _fit_columns(rows: list[list[str]], heads: list[str], width: int) -> list[int]:
    """Which columns (indices, in table order) fit in `width` characters, by RICH_PRIORITY: a number column
    needs its widest cell, a text column its longest word (at least 10 characters). RICH_ESSENTIAL always."""
    def need(i: int) -> int:
        cells_i = [r[i] for r in rows] + [heads[i]]
        if i in RICH_NO_WRAP:
            return max(len(c) for c in cells_i) + 3  # padding and a border
        return max([10] + [len(w) for c in cells_i for w in c.split()]) + 3
    chosen, used = [], 1
    for i in RICH_PRIORITY:
        if i not in RICH_ESSENTIAL and all(r[i] == "–" for r in rows):  # a column with nothing in it
            continue
        if i in RICH_ESSENTIAL or used + need(i) <= width:
            chosen.append(i)
            used += need(i)
    return sorted(chosen)


def _paper_terse(row: dict) -> str:
    """The paper's number for a narrow terminal: `99.8±0.2 ref` or `87.5 =` (comparable); source below."""
    if row["reported"] is None:
        return "–"
    std = f"±{pct(row['reported_std'], 1)}" if row["reported_std"] is not None else ""
    return f"{pct(row['reported'], 1)}{std} {'=' if row.get('comparable') else 'ref'}"


def _below(section: Section, heads: list[str], body: list[list[str]], keep: list[int]) -> list[str]:
    """What did not fit, one line per run row under the table (`model: pooled 73.2, s/trial 4.5, UF1 ...`)."""
    lines = []
    for row, line in zip(section.rows, body):
        if row["reported_only"]:
            continue
        parts = [line[i] if i == 6 else f"{heads[i]} {line[i]}" for i in range(len(heads))
                 if i not in keep and line[i] != "–"]
        if parts:
            lines.append(f"  {line[1]}: {', '.join(parts)}")
    return lines


def render_rich(board: Board, console: Console, per_fold: bool = False) -> None:
    """Print one rich table per section with the columns that fit the terminal: rank, model, headline, trials
    and the paper's number always, the others while they fit; what does not fit goes on lines under the table
    (`leaderboard.md` and the other files hold every column). Text is passed as Text: markup stays text."""
    for section in board.sections:
        heads = [c.format(metric=section.metric) for c in SHORT]
        body = [[plain(c) for c in cells(row, section, short=True)] for row in section.rows]
        keep = _fit_columns(body, heads, console.width)
        narrow = any(i not in keep and any(line[i] != "–" for line in body) for i in range(len(heads)))
        if narrow:  # the paper's number alone in its column, its sources under the table
            for row, line in zip(section.rows, body):
                line[9] = _paper_terse(row)
            keep = _fit_columns(body, heads, console.width)
        table = Table(title=Text(plain(title(section))), show_lines=False, expand=False)
        for i in keep:
            table.add_column(heads[i], overflow="fold", no_wrap=i in RICH_NO_WRAP or (narrow and i == 9))
        for row, line in zip(section.rows, body):
            style = "dim italic" if row["reported_only"] else ("bold green" if row["best"] else
                                                              ("red" if row["beats_baseline"] is False else None))
            table.add_row(*(Text(line[i]) for i in keep), style=style)
        console.print(table)
        dropped = [heads[i] for i in range(len(heads)) if i not in keep and any(line[i] != "–" for line in body)]
        for text_line in _below(section, heads, body, keep):
            console.print(Text(text_line))
        sources = sorted({row["reported_source"] for row in section.rows if row["reported"] is not None})
        if narrow and sources:
            console.print(Text(plain(f"  paper: from {', '.join(sources)}; = comparable with ours, ref = a "
                                     "reference only (leaderboard.md says why)")))
        console.print(Text("  ± sample std over trials; n: trials; CI: 95% subject bootstrap; p: Holm-corrected, "
                           "n pairs; ≈ / < best: Holm p ≥ / < 0.05"
                           + (f"; under the table at {console.width} columns: {', '.join(dropped)} "
                              "(leaderboard.md has all)" if dropped else "")), style="dim")
        what, names, prow = section.per_class()
        pc = Table(title=Text(plain(f"{section.label} · {section.protocol} · {what} (%)")))
        for col in ["model", *names]:
            pc.add_column(Text(plain(col)))
        for name, vals in prow:
            pc.add_row(*(Text(plain(c)) for c in [name, *(pct(v) for v in vals)]))
        console.print(pc)
        for note in section.notes:
            console.print(Text(plain(f"note: {note}")))
        if per_fold:
            head, body = fold_cells(section)
            ft = Table(title=Text(plain(f"{section.label} · {section.protocol} · per fold (%)")))
            for h in head:
                ft.add_column(Text(plain(h)))
            for r in body:
                ft.add_row(*(Text(plain(c)) for c in r))
            console.print(ft)
    for line in board.refused_lines():
        console.print(Text(plain(line), style="yellow"))




def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(md_text(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in body]
    return lines


def render_markdown(board: Board, per_fold: bool = False) -> str:
    lines = ["# ferbench leaderboard", "",
             f"Records: `{md_text(board.runs)}`. Reported numbers: `{md_text(board.reported_path.name)}` (paper key "
             "and table per row).", md_text(f"Percent. {LEGEND} {P_LEGEND} Rows marked 'reported only' are the "
                                            "papers' numbers, not run here."), ""]
    for section in board.sections:
        lines += [f"## {md_text(title(section))}", ""]
        head = [c.format(metric=section.metric) for c in COLUMNS]
        lines += _md_table(head, [cells(r, section) for r in section.rows]) + [""]
        lines += [f"- note: {md_text(n)}" for n in section.notes]
        lines += [f"- {md_text(r['reported_method'])}: {md_text(r['note'])}" for r in section.rows
                  if r.get("note")]
        lines.append("")
        what, names, prow = section.per_class()
        lines += [f"### {what} (%)", ""]
        lines += _md_table(["model", *names], [[n, *(pct(v) for v in vals)] for n, vals in prow]) + [""]
        if per_fold:
            head, body = fold_cells(section)
            lines += ["### per fold (%)", ""] + _md_table(head, body) + [""]
    refused = board.refused_lines()
    if refused:
        lines += ["## Refused records", "", md_text(refused[0]), ""] + [f"- {md_text(x)}" for x in refused[1:]] + [""]
    return "\n".join(lines)


def _flat(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value


def render_csv(board: Board) -> str:
    rows = board.rows()
    extra = sorted({k for r in rows for k in r} - set(CSV_FIELDS) - {"paired_note", "reported_text", "std_ddof",
                                                                     "repeats", "reported_p_value"})
    fields = list(CSV_FIELDS) + extra + ["reported_p_value", "paired_note"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: csv_cell(_flat(r.get(k))) for k in fields})
    return buf.getvalue()


def render_fold_csv(board: Board) -> str:
    rows = [r for s in board.sections for r in s.per_fold()]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: csv_cell(_flat(r.get(k))) for k in fields})
    return buf.getvalue()


def board_dict(board: Board, per_fold: bool = False) -> dict[str, Any]:
    """The JSON document: rows (one per dataset x protocol x model), sections, optional per-fold rows."""
    doc: dict[str, Any] = {
        "schema": SCHEMA, "runs": str(board.runs), "reported_file": str(board.reported_path),
        "unit": "fraction", "std_ddof": STD_DDOF,
        "rows": board.rows(),
        "sections": [{"dataset": s.label, "dataset_test": s.dataset_test, "protocol": s.protocol,
                      "metric": s.metric, "task": s.task, "best": s.best, "baseline": s.baseline, "notes": s.notes,
                      "classes": {m: sm["classes"] for m, sm in s.summaries.items()},
                      "per_class": _per_class_dict(s),
                      "confusion": {m: sm.get("confusion") for m, sm in s.summaries.items() if sm.get("confusion")}}
                     for s in board.sections],
        "refused": [{"path": str(p), "reason": why} for p, why in board.refused],
    }
    if per_fold:
        doc["per_fold"] = [r for s in board.sections for r in s.per_fold()]
    return doc


def _per_class_dict(section: Section) -> dict[str, Any]:
    what, names, rows = section.per_class()
    return {"what": what, "classes": names, "rows": {n: vals for n, vals in rows}}


def render_json(board: Board, per_fold: bool = False) -> str:
    return json.dumps(json_value(finite_or_none(board_dict(board, per_fold))), indent=1, allow_nan=False, default=_nan_safe)


def _nan_safe(value: Any) -> Any:  # numpy scalars, if any slip through
    return value.item() if hasattr(value, "item") else str(value)
