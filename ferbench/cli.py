"""The `ferbench` command line: a thin Typer + rich layer over the Python API.

Every command calls one API function; user mistakes (FerbenchError) become one red line and exit code 2.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ferbench.errors import FerbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Dynamic facial-expression recognition benchmark.")
console = Console()
err_console = Console(stderr=True)


def user_errors(fn: Callable) -> Callable:
    """Turn FerbenchError into a short message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FerbenchError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)

    return wrapper


@app.command()
@user_errors
def datasets() -> None:
    """List the dataset adapters and the native layout each expects."""
    from ferbench.datasets import get_dataset, list_datasets

    table = Table(title="ferbench datasets")
    table.add_column("name", style="bold")
    table.add_column("dataset")
    table.add_column("classes")
    table.add_column("expected layout")
    for name in list_datasets():
        ds = get_dataset(name)
        table.add_row(name, ds.title, ", ".join(ds.classes) or "-", ds.layout)
    console.print(table)


@app.command()
@user_errors
def scan(
    dataset: str = typer.Argument(..., help="ck+, oulu-casia, mmi, casme2, bp4d, afew or folder"),
    root: Path = typer.Option(..., "--root", help="the dataset folder exactly as distributed"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Report what a native dataset folder holds: samples per class, subjects, skipped files, problems."""
    from ferbench.datasets import scan as scan_api

    result = scan_api(dataset, root)
    summary = result.summary()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"{dataset} at {root}")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for name, n in summary["classes"].items():
        table.add_row(name, str(n))
    console.print(table)
    console.print(
        f"samples {summary['samples']} (labelled {summary['labelled']}, unlabelled {summary['unlabelled']}), "
        f"subjects {summary['subjects']}, frames {summary['frames']}, skipped junk files {summary['skipped']}"
    )
    for note in summary["notes"]:
        console.print(f"[cyan]note:[/] {note}", highlight=False)
    for problem in summary["problems"]:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False)


@app.command()
@user_errors
def synth(
    dataset: str = typer.Argument(..., help="which dataset layout to replicate"),
    out: Path = typer.Argument(..., help="folder to write the replica into"),
    subjects: int = typer.Option(3, "--subjects", min=1, help="number of subjects"),
    seed: int = typer.Option(0, "--seed"),
    modes: Optional[list[str]] = typer.Option(None, "--modes", help="modes of variation to include (dataset-specific)"),
    as_json: bool = typer.Option(False, "--json", help="print what was written as one JSON object"),
) -> None:
    """Write a miniature, format-faithful replica of a dataset's native layout with real, animated faces."""
    from ferbench.datasets import get_dataset
    from ferbench.datasets import synth as synth_api

    samples = synth_api(dataset, out, subjects=subjects, seed=seed, modes=modes)
    classes = get_dataset(dataset).classes
    counts: dict[str, int] = {c: 0 for c in classes}
    for s in samples:
        if s.label is not None:
            counts[classes[s.label]] += 1
    summary = {
        "dataset": dataset,
        "out": str(out),
        "samples": len(samples),
        "labelled": sum(s.label is not None for s in samples),
        "subjects": len({s.subject for s in samples}),
        "classes": counts,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(
            f"wrote {summary['samples']} samples of {summary['subjects']} subjects to {out} "
            f"({summary['labelled']} labelled)"
        )


@app.command()
@user_errors
def models() -> None:
    """List the bundled models: name, paper, table, and the input each expects."""
    from ferbench.models import list_models, model_info

    table = Table(title="ferbench models")
    for col in ("name", "paper", "table", "input"):
        table.add_column(col)
    for name in list_models():
        info = model_info(name)
        table.add_row(name, info["paper"], info["table"], info["input"])
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
