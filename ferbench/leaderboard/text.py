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
from ferbench.leaderboard.significance import TESTS, points
from ferbench.metrics import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, CI_LEVEL, CI_TYPE, STD_DDOF
from ferbench.records import finite_or_none

CSV_FIELDS = ("dataset", "dataset_test", "protocol", "model", "run_tag", "label", "metric", "aggregation", "headline",
              "mean", "std", "trials", "planned_trials", "status", "pooled", "ci_low", "ci_high", "ci_level",
              "ci_type", "ci_of", "ci_n_boot", "std_repeats", "reported", "comparable", "reason", "delta", "test",
              "p_value", "p_raw", "test_n", "test_over", "comparisons", "reported_only", "rank", "best",
              "beats_baseline", "paired_trials", "selection", "train_s", "train_s_total", "diverged",
              "reported_metric", "reported_std", "reported_source", "reported_method", "note", "rope",
              "p_rope_below", "p_rope_equivalent", "p_rope_above", "rope_p", "rope_claim")
COLUMNS = ("#", "model", "{headline}", "95% CI", "trials", "{other}", "secondary", "selection",
           "train s/trial", "paper", "Δ vs paper", "p vs best", "verdict", "ROPE vs best")
SHORT = ("#", "model", "{headline}", "95% CI", "n", "{other}", "other", "sel.", "s/trial", "paper", "Δ", "p",
         "verdict", "ROPE")
#: Column heads of the headline and of the other aggregation, per section aggregation (full, short).
AGGREGATION_HEADS = {"mean": (("{metric} mean ± std", "pooled"), ("{metric}", "pooled")),
                     "pooled": (("{metric} pooled", "per-subject mean ± std"), ("{metric} pooled", "subj. mean"))}
LEGEND = ("± is the sample std (ddof=1) over all trials (repeats x folds); where a protocol repeats, 'rep ±' is "
          "the std of the repeat means. The papers do not say what their ± is (yu2018 never defines it). "
          "Headline: the mean over trials, except for leave-one-subject-out tables, which rank by the pooled "
          "figure (all test predictions of a repeat scored at once, averaged over repeats; kim2017 and the MEGC "
          "pool LOSO) with the per-subject mean beside it. 95% CI: expanded percentile interval (Hesterberg "
          "2015: the percentile level widened for the number of subjects S) of the headline by a cluster "
          "bootstrap over test subjects (B=2000 draws of S subjects with replacement, seed 0; a subject drawn "
          "twice counts twice). A paper's number is 'comparable' only when data, protocol structure, recipe and "
          "aggregation match its table; otherwise it is a reference with the reason and no Δ. Rows with a "
          "diverged or missing trial are listed after the ranked ones, unranked.")


def heads(section: Section, short: bool = False) -> list[str]:
    """The table's column heads for this section (the headline column follows its aggregation)."""
    head, other = AGGREGATION_HEADS[section.aggregation][1 if short else 0]
    return [c.format(headline=head, other=other).format(metric=section.metric_label) for c in (SHORT if short else COLUMNS)]


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
    def named(name: str) -> str:
        return section.metric_names.get(name, name.upper())
    parts = [f"{named(name)} {pct(row[name])}" for name in ("accuracy", "uf1", "uar")
             if name in row and name != row["metric"]]
    # pooled UF1 / UAR in every format (the MEGC convention for LOSO) beside the per-trial figures
    parts += [f"pooled {named(name[7:])} {pct(row[name])}" for name in ("pooled_uf1", "pooled_uar")
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
    """Plain words for what a row is: reported only, unranked (diverged, incomplete), best, below the static
    baseline, and the test's finding against the best row (a test that finds no difference does not make two
    rows equivalent: that would need an equivalence test or a ROPE)."""
    if row["reported_only"]:
        return "ref" if short else "REPORTED ONLY"
    words = []
    status = row.get("status")
    if status == "diverged":
        words.append("DIVERGED" if short else "DIVERGED (every trial), unranked")
    elif status == "incomplete":
        k, n = row["trials"], row["planned_trials"]
        words.append(f"INCOMPLETE {k}/{n}" if short else f"INCOMPLETE ({k} of {n} trials"
                     + (f", {row['diverged']} diverged" if row.get("diverged") else "") + "), unranked")
    elif status == "no figure":
        words.append("no figure" if short else f"no figure (every trial's {row['metric']} undefined), unranked")
    if row["best"]:
        words.append("best")
    if row["label"] == section.baseline:
        words.append("baseline")
    if row["beats_baseline"] is False:
        words.append(f"NOT > {section.baseline}" if short else f"NOT ABOVE {section.baseline}")
    p = row.get("p_value")
    if p is not None:
        if short:
            words.append("< best" if p < 0.05 else "ns vs best")
        else:
            words.append("below best (Holm p<0.05)" if p < 0.05
                         else "not distinguishable from best (Holm p≥0.05)")
    elif row.get("test"):
        words.append("untested" if short else f"not tested: {row.get('test_note') or 'no p'}")
    if row.get("rope_claim") == "equivalent":
        words.append("≈ best (ROPE)" if short else f"practically equivalent to best (within ±{points(row['rope'])}, "
                     f"Holm p {p_text(row['rope_p'])})")
    return ", ".join(words) or "–"


def rope_cell(row: dict, short: bool = False) -> str:
    """The posterior probabilities that the row is below the best one by more than the ROPE, within it, or above
    it by more (k-fold tables; '–' elsewhere)."""
    if row.get("p_rope_equivalent") is None:
        return "–"
    below, within, above = row["p_rope_below"], row["p_rope_equivalent"], row["p_rope_above"]
    if short:
        return f"<{below:.2f} ≈{within:.2f} >{above:.2f}"
    return f"P(below) {below:.2f}, P(within ±{points(row['rope'])}) {within:.2f}, P(above) {above:.2f}"


def cells(row: dict, section: Section, short: bool = False) -> list[str]:
    """The table's cells of one row; `short` (terminal): one decimal, terse verdicts (the files keep every
    figure at two decimals). The headline column follows the section's aggregation."""
    rank = "ref" if row["reported_only"] else ("–" if row["rank"] is None else str(row["rank"]))
    name = f"{row['label']} [reported only]" if row["reported_only"] and not short else row["label"]
    digits = 1 if short else 2
    mean = _short_mean(row) if short else mean_std(row)
    pooled = pct(row["pooled"], digits)
    first, other = (pooled, mean) if section.aggregation == "pooled" else (mean, pooled)
    return [rank, name, first, ci_cell(row, digits), trials_cell(row), other,
            secondary(row, section, short), row["selection"] or "–",
            "–" if row["train_s"] is None else f"{row['train_s']:.1f}", paper_cell(row, short),
            signed_pct(row["delta"]), p_cell(row, short), verdict(row, section, short), rope_cell(row, short)]


def trials_cell(row: dict) -> str:
    """Trials scored; 'k of n' where the protocol planned more (a diverged or missing trial)."""
    if row["reported_only"]:
        return "–"
    if row.get("planned_trials") and row["trials"] != row["planned_trials"]:
        return f"{row['trials']} of {row['planned_trials']}"
    return str(row["trials"])


def _short_mean(row: dict) -> str:
    if row["mean"] is None:
        return "–"
    return pct(row["mean"], 1) + (f"±{pct(row['std'], 1)}" if row["std"] is not None else "")


TEST_SHORT = {"corrected resampled t-test": "corr. t", "Wilcoxon signed-rank test over subjects": "Wilcoxon",
              "exact McNemar test": "McNemar"}


def p_cell(row: dict, short: bool = False) -> str:
    """The Holm-corrected p of the table's test, the test's name and how many paired trials, subjects or units
    it used; '–' for the best row and the rows that are not compared."""
    if not row.get("test"):
        return "–"
    name = TEST_SHORT.get(row["test"], row["test"])
    if short:
        return f"{p_text(row.get('p_value'), 3)} n={row.get('test_n') or 0}"
    return f"{p_text(row.get('p_value'))} ({name}, n={row.get('test_n') or 0} {row.get('test_over')})"


def title(section: Section) -> str:
    what = ("pooled over the folds of a repeat; per-subject mean ± sample std beside it"
            if section.aggregation == "pooled" else "mean ± sample std over trials; pooled = all folds of a repeat "
            "scored together")
    return f"{section.label} · {section.protocol} · {section.metric_label} (%, {what})"


P_LEGEND = ("p vs best: one test per protocol shape, between the best row and every other ranked row, pairing only "
            "identical trials (same data file, protocol file and split, repeat, fold, seed and test units): the "
            "corrected resampled t-test (Nadeau & Bengio 2003) over trials for k-fold protocols, the Wilcoxon "
            "signed-rank test over subjects for leave-one-subject-out, the exact McNemar test over test units for "
            "a fixed split; Holm-corrected over every comparison the table makes (untestable ones included). The "
            "best row is chosen on the data it is tested on. 'not distinguishable' is no claim of equivalence. "
            "ROPE vs best (k-fold tables): the Bayesian correlated t-test (Benavoli et al. 2017) over the same "
            "paired trials gives the posterior probability that a row is below the best by more than the region of "
            "practical equivalence (its half width in each table's first note), within it, or above it. 'practically "
            "equivalent' is claimed only where 1 - P(within) (a conservative two-one-sided-tests p) is below 0.05 "
            "after Holm over the same comparisons.")


def fold_cells(section: Section) -> tuple[list[str], list[list[str]]]:
    rows = section.per_fold()
    skip = ("dataset", "protocol", "model", "label", "repeat", "fold", "seed", "units", "train_s", "selected_epoch",
            "test_units")
    metrics = [k for k in rows[0] if k not in skip] if rows else []
    head = ["model", "repeat", "fold", "units"] + metrics + ["train s", "epoch"]
    body = [[r["label"], str(r["repeat"]), str(r["fold"]), str(r["units"])] + [pct(r.get(m)) for m in metrics]
            + ["–" if r["train_s"] is None else f"{r['train_s']:.1f}", str(r["selected_epoch"])] for r in rows]
    return head, body


#: Terminal columns by priority: the first ones always, the rest while the terminal is wide enough.
RICH_PRIORITY = (0, 1, 2, 4, 9, 12, 11, 3, 5, 10, 8, 7, 6, 13)
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
        short_heads = heads(section, short=True)
        body = [[plain(c) for c in cells(row, section, short=True)] for row in section.rows]
        keep = _fit_columns(body, short_heads, console.width)
        narrow = any(i not in keep and any(line[i] != "–" for line in body) for i in range(len(short_heads)))
        if narrow:  # the paper's number alone in its column, its sources under the table
            for row, line in zip(section.rows, body):
                line[9] = _paper_terse(row)
            keep = _fit_columns(body, short_heads, console.width)
        table = Table(title=Text(plain(title(section))), show_lines=False, expand=False)
        for i in keep:
            table.add_column(short_heads[i], overflow="fold", no_wrap=i in RICH_NO_WRAP or (narrow and i == 9))
        for row, line in zip(section.rows, body):
            style = "dim italic" if row["reported_only"] else ("bold green" if row["best"] else
                                                              ("red" if row["beats_baseline"] is False else None))
            table.add_row(*(Text(line[i]) for i in keep), style=style)
        console.print(table)
        dropped = [short_heads[i] for i in range(len(short_heads))
                   if i not in keep and any(line[i] != "–" for line in body)]
        for text_line in _below(section, short_heads, body, keep):
            console.print(Text(text_line))
        sources = sorted({row["reported_source"] for row in section.rows if row["reported"] is not None})
        if narrow and sources:
            console.print(Text(plain(f"  paper: from {', '.join(sources)}; = comparable with ours, ref = a "
                                     "reference only (leaderboard.md says why)")))
        test = TEST_SHORT.get(TESTS[section.shape][0], "")
        console.print(Text(f"  ± sample std over trials; n: trials (k of n: incomplete); CI: 95% expanded "
                           f"percentile subject bootstrap (B=2000); p: {test}, Holm-corrected, n paired; < best / "
                           "ns vs best (not distinguishable): Holm p < / ≥ 0.05"
                           + (f"; ROPE: Bayesian P(below / within / above ±{points(section.rope)} of best), "
                              "≈ best: 1 - P(within) < 0.05 after Holm" if section.shape == "k-fold" else "")
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
        for row in section.rows:  # beside our rows: why a paper's number is a reference, and what to know about it
            if not row["reported_only"] and row["reported"] is not None:
                said = [f"not comparable: {row['reason']}" if row.get("reason") else "comparable"]
                console.print(Text(plain(f"{row['model']} vs {row['reported_source']}: "
                                         + "; ".join(said + ([row["note"]] if row.get("note") else [])))))
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
        lines += _md_table(heads(section), [cells(r, section) for r in section.rows]) + [""]
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
    extra = sorted({k for r in rows for k in r} - set(CSV_FIELDS) - {"test_note", "reported_text", "std_ddof",
                                                                     "repeats", "reported_p_value"})
    fields = list(CSV_FIELDS) + extra + ["reported_p_value", "test_note"]
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
                      "metric": s.metric, "metric_label": s.metric_label, "task": s.task, "shape": s.shape, "aggregation": s.aggregation,
                      "test": TESTS[s.shape][0], "interval": {"type": CI_TYPE, "level": CI_LEVEL,
                                                              "n_boot": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED,
                                                              "clusters": "test subjects"},
                      "best": s.best, "baseline": s.baseline, "notes": s.notes,
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
