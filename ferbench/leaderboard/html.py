"""One self-contained static HTML page: inline CSS, confusion-matrix heatmaps embedded as PNG data URIs
(matplotlib's Agg canvas, no pyplot state), every piece of text made plain and escaped (`safe.html_text`), and a
Content-Security-Policy that forbids scripts and any request off the page."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from ferbench.leaderboard.safe import html_text as escape
from ferbench.leaderboard.board import Board, Section
from ferbench.leaderboard.reported import ReportedConfusion
from ferbench.leaderboard.text import LEGEND, P_LEGEND, cells, fold_cells, heads, pct, title

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1400px;
 padding:0 1em;color:#1b1f24;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2.2em;border-bottom:2px solid #d0d7de}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}
tr.best td{background:#e6f4ea;font-weight:600}
tr.below-baseline td{background:#fdecea}
tr.reported-only td{color:#57606a;font-style:italic;background:#fafbfc}
.tag{display:inline-block;font-size:.75em;padding:0 .4em;border-radius:.6em;margin-left:.3em;font-style:normal}
.tag.ref{background:#ddf4ff;color:#0550ae}.tag.low{background:#ffebe9;color:#a40e26}
.tag.best{background:#dafbe1;color:#116329}
.heatmaps{display:flex;flex-wrap:wrap;gap:1.2em}figure{margin:0}figure img{max-width:340px;height:auto}
figcaption{font-size:.85em;color:#57606a;max-width:340px}.notes{color:#57606a}
p.legend{max-width:70em;color:#424a53}
"""


def _png(matrix: np.ndarray, classes: Sequence[str], caption: str) -> str:
    """Row-normalised confusion matrix (fractions) -> base64 PNG of a percent heatmap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(classes)
    labels = [str(c).replace("$", r"\$") for c in classes]  # no mathtext from data
    fig = Figure(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(100 * matrix, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(caption.replace("$", r"\$"), fontsize=9)
    for i in range(k):
        for j in range(k):
            v = 100 * matrix[i, j]
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v > 55 else "black")
    buf = io.BytesIO()
    # the saved box grows to hold every label, however long (tight_layout warns and gives up on long names)
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.05)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(matrix: np.ndarray, classes: Sequence[str], caption: str, alt: str, heading: str) -> str:
    data = _png(matrix, classes, heading)
    return (f'<figure><img class="heatmap" src="data:image/png;base64,{data}" alt="{escape(alt)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _row_html(row: dict, section: Section) -> str:
    cls = "reported-only" if row["reported_only"] else ("best" if row["best"] else
                                                        ("below-baseline" if row["beats_baseline"] is False else ""))
    values = cells(row, section)
    tds = []
    for i, v in enumerate(values):
        inner = escape(v)
        if i == 1:
            name = escape(row["label"])
            tag = ""
            if row["reported_only"]:
                tag = '<span class="tag ref">reported only</span>'
            elif row["best"]:
                tag = '<span class="tag best">best</span>'
            elif row["beats_baseline"] is False:
                tag = f'<span class="tag low">below {escape(section.baseline or "")}</span>'
            inner = f'<span class="model">{name}</span>{tag}'
        num = i in (0, 2, 3, 4, 5, 8, 10, 11)  # rank, mean, CI, trials, pooled, s/trial, Δ, p (text.COLUMNS)
        tds.append(f'<td class="num">{inner}</td>' if num else f"<td>{inner}</td>")
    return f'<tr class="{cls}">' + "".join(tds) + "</tr>"


def _section_html(section: Section, per_fold: bool) -> str:
    anchor = escape(f"{section.label}-{section.protocol}")
    parts = [f'<section id="{anchor}"><h2>{escape(title(section))}</h2>',
             '<table class="board"><thead><tr>'
             + "".join(f"<th>{escape(c)}</th>" for c in heads(section))
             + "</tr></thead><tbody>"]
    parts += [_row_html(r, section) for r in section.rows]
    parts.append("</tbody></table>")
    notes = [f"note: {n}" for n in section.notes]
    notes += [f"{r['reported_method']} ({r['reported_source']}): {r['note']}" for r in section.rows if r.get("note")]
    notes += [f"p of {r['label']} vs {section.best}: {r['test_note']}" for r in section.rows if r.get("test_note")]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    figs = []
    for model in section.ranked():
        s = section.summaries[model]
        if s.get("confusion") is None:
            continue
        acc = s["scores"]["accuracy"]["mean"]
        figs.append(_figure(np.asarray(s["confusion"]), s["classes"],
                            f"{model}: row-normalised confusion matrix over all {s['trials']} trials "
                            f"(accuracy {pct(acc)}%)", f"confusion matrix of {model}", "ferbench"))
        ref = section.reported_confusions.get(model)
        if ref is not None:
            figs.append(_reported_figure(ref, s["classes"], model))
    parts.append(_per_class_table(section))
    if figs:
        parts.append('<div class="heatmaps">' + "".join(figs) + "</div>")
    if per_fold:
        head, body = fold_cells(section)
        parts.append(f"<h3>{escape(section.label)} · {escape(section.protocol)} · per fold (%)</h3>"
                     '<table class="folds"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
                     + "</tr></thead><tbody>"
                     + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body)
                     + "</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def _reported_figure(ref: ReportedConfusion, classes: Sequence[str], model: str) -> str:
    """The paper's matrix, reordered into the model's class order where the names match."""
    order = [ref.classes.index(c) for c in classes if c in ref.classes]
    names = [ref.classes[i] for i in order] if len(order) == len(ref.classes) else list(ref.classes)
    idx = order if len(order) == len(ref.classes) else list(range(len(ref.classes)))
    m = np.asarray(ref.rows)[np.ix_(idx, idx)]
    return _figure(m, names, f"{model}: {ref.source} ({ref.method}), as reported",
                   f"reported confusion matrix of {model} ({ref.source})", ref.source)


def _per_class_table(section: Section) -> str:
    what, names, rows = section.per_class()
    head = "<tr><th>model</th>" + "".join(f"<th>{escape(c)}</th>" for c in names) + "</tr>"
    body = "".join(f"<tr><td>{escape(n)}</td>" + "".join(f'<td class="num">{escape(pct(v))}</td>' for v in vals)
                   + "</tr>" for n, vals in rows)
    return (f"<h3>{escape(what)} (%)</h3><table class=\"per-class\"><thead>{head}</thead><tbody>{body}"
            "</tbody></table>")


def render_html(board: Board, per_fold: bool = False) -> str:
    """The whole page as one string."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    legend = (f"Percent. {LEGEND} {P_LEGEND} Rows tagged 'reported only' are the papers' numbers, transcribed "
              "from their tables, not run here. A red row does not beat the static single-frame baseline. "
              "Heatmaps: row-normalised confusion matrices over all trials (rows = true class).")
    toc = "".join(f'<li><a href="#{escape(f"{s.label}-{s.protocol}")}">{escape(s.label)} · '
                  f"{escape(s.protocol)}</a></li>" for s in board.sections)
    body = "\n".join(_section_html(s, per_fold) for s in board.sections)
    refused = board.refused_lines()
    if refused:
        body += (f'\n<section id="refused"><h2>Refused records</h2><p>{escape(refused[0])}</p><ul class="notes">'
                 + "".join(f"<li>{escape(x)}</li>" for x in refused[1:]) + "</ul></section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ferbench leaderboard</title><style>{CSS}</style></head><body>\n"
        f"<header><h1>ferbench leaderboard</h1><p>records: <code>{escape(str(board.runs))}</code> · reported "
        f"numbers: <code>{escape(board.reported_path.name)}</code> · rendered {escape(when)}</p>"
        f'<p class="legend">{escape(legend)}</p><ul class="toc">{toc}</ul></header>\n'
        f"<main>{body}</main></body></html>\n"
    )


__all__ = ["render_html"]
