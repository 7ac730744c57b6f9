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
        except OSError as e:  # unwritable output, full disk, unreachable path: name it, no traceback
            where = f"{e.filename}: " if e.filename else ""
            err_console.print(f"[bold red]error:[/] {where}{e.strerror or e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


@app.command()
@user_errors
def datasets() -> None:
    """List the dataset adapters and the native layout each expects."""
    from ferbench.datasets import get_dataset, list_datasets

    table = Table(title="ferbench datasets", show_lines=True, expand=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("dataset", ratio=1)
    table.add_column("classes", ratio=1)
    table.add_column("expected layout", ratio=3, overflow="fold")
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
    intensity: float = typer.Option(
        1.0, "--intensity", help="expression strength, a multiplier on every action unit in (0, 3]; "
        "1.0 separates the classes as clearly as real posed data, lower values make the replica harder"),
    as_json: bool = typer.Option(False, "--json", help="print what was written as one JSON object"),
) -> None:
    """Write a miniature, format-faithful replica of a dataset's native layout with real, animated faces."""
    from ferbench.datasets import ScanResult, get_dataset
    from ferbench.datasets import synth as synth_api

    samples = synth_api(dataset, out, subjects=subjects, seed=seed, modes=modes, intensity=intensity)
    # the same summary `scan --json` prints, computed from what was written (not by scanning it back)
    summary = ScanResult(dataset=dataset, root=out, classes=get_dataset(dataset).classes, samples=samples).summary()
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


@app.command()
@user_errors
def prepare(
    dataset: str = typer.Argument(..., help="ck+, oulu-casia, mmi, casme2, bp4d, afew or folder"),
    root: Path = typer.Option(..., "--root", help="the dataset folder exactly as distributed"),
    out: Optional[Path] = typer.Option(None, "--out", help="output file (default data/<dataset>.h5)"),
    aligner: str = typer.Option("mtcnn", "--aligner", help="mtcnn (default), insightface or none (pre-cropped)"),
    size: int = typer.Option(64, "--size", min=16, help="aligned face size in pixels"),
    template: str = typer.Option("seed002", "--template", help="seed002 (eye-based) or arcface"),
    length: Optional[int] = typer.Option(None, "--length", min=1, help="fixed clip length T (default per dataset)"),
    detect_every: int = typer.Option(5, "--detect-every", min=1, help="run the detector on every k-th frame"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="local dask workers (default: cores; 0 = no dask)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of an existing dask scheduler"),
    materialize_augmentation: Optional[str] = typer.Option(
        None, "--materialize-augmentation", help="also write augmented copies (stc-nlstm or kim2017)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output file"),
    restart: bool = typer.Option(False, "--restart", help="discard an unfinished run's temp folder and start over"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Detect, align and index every sample of a native dataset into one HDF5 file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from ferbench.preprocess.pipeline import PrepareConfig
    from ferbench.preprocess.pipeline import prepare as prepare_api

    config = PrepareConfig(aligner=aligner, size=size, template=template, length=length, detect_every=detect_every)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=as_json, disable=as_json) as bar:
        task = bar.add_task(f"prepare {dataset}", total=None)
        summary = prepare_api(
            dataset, root, out, config, workers=workers, scheduler=scheduler, overwrite=overwrite, restart=restart,
            materialize_augmentation=materialize_augmentation,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        print(json.dumps(summary.to_dict()))
        return
    console.print(
        f"[bold green]wrote[/] {summary.out}: {summary.written} samples written"
        f" ({summary.resumed} resumed from an earlier run), {summary.failed} excluded, {summary.frames} frames,"
        f" faces detected on {summary.faces_detected} frames, {summary.frames_interpolated} tracked between detections,"
        f" {summary.frames_filled} filled; {summary.seconds:.1f} s",
        highlight=False,
    )
    for failure in summary.failures:
        console.print(f"[yellow]excluded:[/] {failure['id']}: {failure['reason']}", highlight=False)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"QC contact sheet: {summary.contact_sheet}; failures list: {summary.failures_csv}", highlight=False)


@app.command()
@user_errors
def inspect(
    file: Path = typer.Argument(..., help="a ferbench .h5 file"),
    as_json: bool = typer.Option(False, "--json", help="print as one JSON object"),
) -> None:
    """Print what a prepared HDF5 file holds."""
    from ferbench.store import inspect as inspect_api

    info = inspect_api(file)
    if as_json:
        print(json.dumps(info, default=str))
        return
    table = Table(title=str(file), show_header=False)
    for key in ("dataset", "samples", "labelled", "frames", "subjects", "length", "aligner", "schema_version", "ferbench_version"):
        table.add_row(key, str(info.get(key)))
    table.add_row("classes", ", ".join(f"{k} {v}" for k, v in info["classes"].items()))
    table.add_row("shapes", ", ".join(f"{k} {tuple(v)}" for k, v in info["shapes"].items()))
    table.add_row("config", json.dumps(info["config"]))
    table.add_row("frame flags", ", ".join(f"{k} {v}" for k, v in info["flags"].items()))
    table.add_row("failures", str(len(info["failures"])))
    console.print(table)


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(Path("ferbench-demo"), "--workdir", help="where the replica and the .h5 go"),
    dataset: str = typer.Option("ck+", "--dataset"),
    subjects: int = typer.Option(4, "--subjects", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="local dask workers (default: cores)"),
) -> None:
    """Run the main job on a built-in replica: synth -> scan -> prepare -> inspect."""
    from rich.progress import Progress

    from ferbench.demo import run_demo

    with Progress(console=err_console) as bar:
        task = bar.add_task(f"demo: prepare {dataset} replica", total=None)
        report = run_demo(workdir, dataset, subjects, workers=workers,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    scanned, prep, info = report["scanned"], report["prepare"], report["inspect"]
    console.print(f"replica: {report['replica']} ({scanned['samples']} samples, {scanned['subjects']} subjects)", highlight=False)
    console.print(
        f"prepared: {prep['out']} ({info['samples']} samples, {info['frames']} aligned frames, "
        f"{prep['failed']} excluded, {prep['seconds']:.1f} s); QC sheet {prep['contact_sheet']}",
        highlight=False,
    )
    table = Table(title="samples per class")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for name, n in info["classes"].items():
        table.add_row(name, str(n))
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
