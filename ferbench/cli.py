"""The `ferbench` command line: a thin Typer + rich layer over the Python API.

Every command calls one API function; user mistakes (FerbenchError) become one red line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ferbench.datasets import builtin_names
from ferbench.errors import FerbenchError
from ferbench.terminal import as_markup, as_text, text_cells

if TYPE_CHECKING:
    from ferbench.records import PrunePlan

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Dynamic facial-expression recognition benchmark.")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        import ferbench

        console.print(as_text(f"ferbench {ferbench.__version__}"))
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Dynamic facial-expression recognition benchmark."""


def user_errors(fn: Callable) -> Callable:
    """Turn FerbenchError into a short message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FerbenchError as e:
            err_console.print(as_text(("error:", "bold red"), f" {e}"), soft_wrap=True)
            raise typer.Exit(2)
        except OSError as e:  # unwritable output, full disk, unreachable path: name it, no traceback
            where = f"{e.filename}: " if e.filename else ""
            err_console.print(as_text(("error:", "bold red"), f" {where}{e.strerror or e}"), soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


@app.command()
@user_errors
def datasets(
    layout: bool = typer.Option(False, "--layout", metavar="", help="show the native layout each adapter expects"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the status as JSON"),
) -> None:
    """Where ferbench looks for each dataset, whether it is there, and what is prepared (the data home)."""
    from ferbench.datasets import get_dataset, list_datasets
    from ferbench.home import ENV, home, status

    if layout:
        table = Table(title="ferbench datasets: native layouts", show_lines=True)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("expected layout and where to obtain it", overflow="fold")
        for name in list_datasets():
            ds = get_dataset(name)
            table.add_row(*text_cells(name, f"{ds.title}. Classes: {', '.join(ds.classes) or '-'}. {ds.layout}. "
                                       f"Obtain: {ds.obtain}."))
        console.print(table)
        return
    rows = status()
    if as_json:
        print(json.dumps({"home": str(home()), "datasets": rows}))
        return
    console.print(as_text(f"data home: {home()} (${ENV}); raw data in raw/<name>, prepared files in "
                          "prepared/<name>.h5"))
    table = Table(show_lines=False)
    table.add_column("dataset", style="bold", no_wrap=True)
    table.add_column("raw", overflow="fold")
    table.add_column("prepared", overflow="fold")
    for r in rows:
        raw = ("found: " if r["raw_present"] else "missing: ") + r["raw"]
        if r["problem"]:
            prep = f"unreadable: {r['problem']}"
        elif r["prepared_present"]:
            prep = (f"{r['samples']} samples, {r['subjects']} subjects, {r['bytes'] / 2**20:.1f} MiB, "
                    f"data d{r['fingerprint']}")
        elif r["raw_present"]:
            prep = f"none (`ferbench prepare {r['dataset']}`)"
        else:
            prep = (f"none (first the raw data: `ferbench datasets --layout`; or try the tool on a replica: "
                    f"`ferbench synth {r['dataset']} DIR`)")
        table.add_row(*text_cells(r["dataset"], raw, prep))
    console.print(table)
    console.print("(`ferbench datasets --layout` shows the layout each expects and where to obtain it)",
                  highlight=False)


@app.command()
@user_errors
def scan(
    dataset: str = typer.Argument(..., help=builtin_names()),
    root: Path = typer.Option(..., "--root", help="the dataset folder exactly as distributed"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the summary as one JSON object"),
) -> None:
    """Report what a native dataset folder holds: samples per class, subjects, skipped files, problems."""
    from ferbench.datasets import scan as scan_api

    result = scan_api(dataset, root)
    summary = result.summary()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=as_text(f"{dataset} at {root}"))
    table.add_column("class")
    table.add_column("samples", justify="right")
    for name, n in summary["classes"].items():
        table.add_row(*text_cells(name, n))
    console.print(table)
    console.print(as_text(
        f"samples {summary['samples']} (labelled {summary['labelled']}, unlabelled {summary['unlabelled']}), "
        f"subjects {summary['subjects']}, frames {summary['frames']}, skipped junk files {summary['skipped']}"
    ))
    for note in summary["notes"]:
        console.print(as_text(("note:", "cyan"), f" {note}"))
    for problem in summary["problems"]:
        console.print(as_text(("problem:", "yellow"), f" {problem}"))


@app.command()
@user_errors
def synth(
    dataset: str = typer.Argument(..., help="which dataset layout to replicate"),
    out: Path = typer.Argument(..., help="folder to write the replica into"),
    subjects: int = typer.Option(3, "--subjects", min=1, help="number of subjects"),
    seed: int = typer.Option(0, "--seed"),
    modes: Optional[list[str]] = typer.Option(
        None, "--modes", help="modes of variation to include (dataset-specific), comma-separated or repeated: "
        "--modes VL/Strong,NI/Strong or --modes VL/Strong --modes NI/Strong"),
    intensity: float = typer.Option(
        1.0, "--intensity", help="expression strength, a multiplier on every action unit in (0, 3]; "
        "1.0 separates the classes as clearly as real posed data, lower values make the replica harder"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print what was written as one JSON object"),
) -> None:
    """Write a miniature, format-faithful replica of a dataset's native layout with real, animated faces."""
    from ferbench.datasets import ScanResult, get_dataset
    from ferbench.datasets import synth as synth_api

    if modes:
        modes = [m.strip() for value in modes for m in value.split(",") if m.strip()]
    samples = synth_api(dataset, out, subjects=subjects, seed=seed, modes=modes, intensity=intensity)
    # the same summary `scan --json` prints, computed from what was written (not by scanning it back)
    summary = ScanResult(dataset=dataset, root=out, classes=get_dataset(dataset).classes, samples=samples).summary()
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(as_text(
            f"wrote {summary['samples']} samples of {summary['subjects']} subjects to {out} "
            f"({summary['labelled']} labelled)"
        ))


@app.command()
@user_errors
def models(
    check: Optional[str] = typer.Option(None, "--check", help="a model to check against the contract: a name, "
                                        "path/to/file.py:Name or package.module:factory"),
    example: bool = typer.Option(False, "--example", metavar="", help="print a small model of your own to start "
                                 "from: `ferbench models --example > my_model.py`"),
) -> None:
    """List the models (bundled, and your own from entry points) with their source; --check proves one fits."""
    from ferbench.models import list_models, model_card, model_info
    from ferbench.models.user import check_model, load_plugins, load_selected

    if example:
        from ferbench.example import example_source

        print(example_source(), end="")  # plain stdout, so that a redirect gives the file byte for byte
        return
    if check is not None:
        name = load_selected(check)  # a spec is imported, a plugin loaded (a broken one: one line naming it)
        model_card(name)  # an unknown name: one line with the known ones
        results = check_model(name)
        for what, ok, detail in results:
            mark = ("ok", "green") if ok else ("DOES NOT FIT", "bold red")
            console.print(as_text(mark, f" {what}" + (f": {detail}" if detail else "")))
        failed = [(what, detail) for what, ok, detail in results if not ok]
        if failed:  # the checklist above is the report; the verdict is one line on stderr, as every refusal
            card = model_card(name)
            raise FerbenchError(f"model {name!r} ({card.source}) does not fit the contract: {failed[0][0]}"
                                + (f": {failed[0][1]}" if failed[0][1] else ""))
        console.print(as_text(f"{name} fits the contract; run it with `ferbench evaluate --model {check}`"))
        return
    broken = load_plugins()[1]  # every plugin is imported to be listed; a broken one is named, not fatal
    table = Table(title="ferbench models")
    for col in ("name", "paper", "table", "source"):
        table.add_column(col, no_wrap=col == "name", overflow="fold")
    for name in list_models():
        info, card = model_info(name), model_card(name)
        table.add_row(*text_cells(name, info["paper"], info["table"], card.source))
    console.print(table)
    _warn([f"plugin {plugin.name!r} of {plugin.dist} ({plugin.value}) cannot be used: {why}"  # stderr, as every warning
           for plugin, why in broken])
    console.print("(`ferbench models --check SPEC` checks a model of your own; `ferbench models --example > "
                  "my_model.py` writes one to start from; docs/own-model.md)", highlight=False)


@app.command()
@user_errors
def prepare(
    dataset: str = typer.Argument(..., help=builtin_names()),
    root: Optional[Path] = typer.Option(None, "--root", help="the dataset folder exactly as distributed "
                                        "(default: raw/<dataset> in the data home, or its config.toml entry)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output file (default: prepared/<dataset>.h5 in the "
                                       "data home, $FERBENCH_HOME)"),
    aligner: Optional[str] = typer.Option(None, "--aligner", help="mtcnn, insightface or none (pre-cropped); default "
                                          "mtcnn, or none where the release ships face crops (DFEW, FERV39k)"),
    size: int = typer.Option(64, "--size", min=16, help="aligned face size in pixels"),
    template: str = typer.Option("yu2018", "--template", help="yu2018 (eye-based) or arcface"),
    length: Optional[int] = typer.Option(None, "--length", min=1, help="fixed clip length T (default per dataset)"),
    detect_every: int = typer.Option(5, "--detect-every", min=1, help="run the detector on every k-th frame"),
    min_face: Optional[float] = typer.Option(
        None, "--min-face", help="smallest face searched, fraction of the frame's shorter side (default per dataset)"
    ),
    min_coverage: float = typer.Option(
        0.5, "--min-coverage", help="exclude samples whose face is found on fewer than this fraction of frames"
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="local dask workers (default: cores; 0 = no dask)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of an existing dask scheduler"),
    materialize_augmentation: Optional[str] = typer.Option(
        None, "--materialize-augmentation", help="also write augmented copies (stc-nlstm or kim2017)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="replace an existing output file"),
    restart: bool = typer.Option(False, "--restart", metavar="", help="discard an unfinished run's temp folder and start over"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the summary as one JSON object"),
) -> None:
    """Detect, align and index every sample of a native dataset into one HDF5 file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from ferbench.progress_lines import PlainProgress
    from ferbench.home import missing_raw_message, prepared_path, raw_dir
    from ferbench.preprocess.pipeline import PrepareConfig, check_options
    from ferbench.preprocess.pipeline import prepare as prepare_api

    if root is None:
        from ferbench.datasets import get_dataset

        get_dataset(dataset)  # an unknown name first, with the known ones
        root = raw_dir(dataset)[0]
        if not root.is_dir():
            raise FerbenchError(missing_raw_message(dataset))
    out = out if out is not None else prepared_path(dataset)
    config = PrepareConfig(aligner=aligner, size=size, template=template, length=length, detect_every=detect_every,
                           min_face=min_face, min_coverage=min_coverage)
    check_options(dataset, config, out, workers=workers, scheduler=scheduler, overwrite=overwrite,
                  materialize_augmentation=materialize_augmentation, root=root)  # before the progress bar appears
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    live = err_console.is_terminal and not as_json
    bar = Progress(*columns, console=err_console, transient=as_json, disable=not live)
    task: list = []
    lines = PlainProgress(f"prepare {dataset}", err_console) if not live and not as_json else None

    def on_progress(done: int, total: int) -> None:  # the bar appears with the first sample, after the scan
        if lines is not None:  # redirected (a log file, nohup, CI): plain lines as the run goes, no bar
            lines.update(done, total)
            return
        if not task:
            bar.start()
            task.append(bar.add_task(as_markup(f"prepare {dataset}"), total=None))
        bar.update(task[0], completed=done, total=total)

    try:
        summary = prepare_api(
            dataset, root, out, config, workers=workers, scheduler=scheduler, overwrite=overwrite, restart=restart,
            materialize_augmentation=materialize_augmentation, progress=on_progress,
        )
    finally:
        bar.stop()
    if as_json:
        print(json.dumps(summary.to_dict()))
        return
    console.print(as_text(
        ("wrote", "bold green"), f" {summary.out}: {summary.written} samples written"
        f" ({summary.resumed} resumed from an earlier run, {summary.redone} redone because their input changed),"
        f" {summary.failed} excluded, {summary.frames} frames,"
        f" faces detected on {summary.faces_detected} frames, {summary.frames_interpolated} tracked between detections,"
        f" {summary.frames_filled} filled; {summary.seconds:.1f} s",
    ))
    for failure in summary.failures:
        console.print(as_text(("excluded:", "yellow"), f" {failure}"))
    for warning in summary.warnings:
        console.print(as_text(("warning:", "yellow"), f" {warning}"))
    console.print(as_text(f"QC contact sheet: {summary.contact_sheet}; failures list: {summary.failures_csv}"))


@app.command()
@user_errors
def inspect(
    file: Path = typer.Argument(..., help="a ferbench .h5 file"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print as one JSON object"),
) -> None:
    """Print what a prepared HDF5 file holds."""
    from ferbench.store import inspect as inspect_api

    info = inspect_api(file)
    if as_json:
        print(json.dumps(info, default=str))
        return
    table = Table(title=as_text(str(file)), show_header=False)
    for key in ("dataset", "samples", "labelled", "frames", "subjects", "length", "aligner", "schema_version", "ferbench_version"):
        table.add_row(*text_cells(key, info.get(key)))
    table.add_row(*text_cells("classes", ", ".join(f"{k} {v}" for k, v in info["classes"].items())))
    table.add_row(*text_cells("shapes", ", ".join(f"{k} {tuple(v)}" for k, v in info["shapes"].items())))
    table.add_row(*text_cells("config", json.dumps(info["config"])))
    table.add_row(*text_cells("frame flags", ", ".join(f"{k} {v}" for k, v in info["flags"].items())))
    cov = info["coverage"]
    partial = ", ".join(f"{k} {v:.0%}" for k, v in list(cov["partial"].items())[:10])
    table.add_row(*text_cells("face coverage", f"min {cov['min']:.0%}, mean {cov['mean']:.0%}"
                         + (f"; partly covered: {partial}" if partial else "")))
    table.add_row(*text_cells("failures", len(info["failures"])))
    console.print(table)


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(Path("ferbench-demo"), "--workdir", help="where the replica, the .h5, the runs and the leaderboard go"),
    dataset: str = typer.Option("order", "--dataset", help="replica to run on (default: the temporal-order diagnostic)"),
    subjects: int = typer.Option(9, "--subjects", min=3, help="replica subjects (at least one per fold)"),
    protocol: str = typer.Option("subject-3fold", "--protocol", help="protocol name or YAML path"),
    model: str = typer.Option("models", "--model", help="models (every registered model), all (plus the two fusion entries), or a comma-separated list"),
    recipe: str = typer.Option("quick", "--recipe", help="quick (minutes on a laptop), default or paper"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="local dask workers for prepare (default: cores)"),
    size: int = typer.Option(32, "--size", min=32, help="aligned face size in pixels (the papers use 64)"),
    compact: bool = typer.Option(True, "--compact/--paper-widths", metavar="", help="build the models at the compact widths (minutes on a CPU) or at the papers' widths"),
) -> None:
    """Run the main job on a built-in replica: synth -> prepare -> evaluate (quick recipe) -> leaderboard."""
    from rich.progress import Progress

    from ferbench.demo import STAGES, run_demo
    from ferbench.harness.progress import ProgressView
    from ferbench.leaderboard import write_leaderboard

    step = {"n": 0}

    def on_stage(name: str) -> None:
        step["n"] += 1
        err_console.print(as_text((f"{step['n']}/{len(STAGES)} {name}", "bold cyan")))

    models = None if model == "models" else model if model == "all" else [m.strip() for m in model.split(",") if m.strip()]
    with Progress(console=err_console, transient=True) as bar, ProgressView(err_console) as view:
        task = bar.add_task(as_markup(f"prepare {dataset} replica"), total=None)
        report = run_demo(
            workdir, dataset, subjects, protocol=protocol, models=models, recipe=recipe, device=device,
            workers=workers, size=size, compact=compact, on_stage=on_stage,
            prepare_progress=lambda done, total: bar.update(task, completed=done, total=total),
            evaluate_progress=view,
        )
    prep = report.prepare
    console.print(as_text(
        f"replica {report.replica}: {report.scanned['samples']} samples of {report.scanned['subjects']} subjects; "
        f"prepared {prep['out']} ({prep['written']} samples, {prep['failed']} excluded, {prep['seconds']:.1f} s); "
        f"{len(report.evaluate.ran)} tasks run, {len(report.evaluate.skipped)} reused "
        f"({report.evaluate.seconds:.0f} s)"
    ))
    write_leaderboard(report.board, ["rich"], console=console)
    console.print("[bold]Replica data, not a licensed dataset:[/] these figures check the toolkit, not the papers.")
    for fmt, path in report.written.items():
        console.print(as_text(f"leaderboard ({fmt}): {path}"))


@app.command()
@user_errors
def protocols() -> None:
    """List the bundled protocols: datasets, paper and table, trials (and the splitter on a wide terminal)."""
    from ferbench.protocols import bundled_dir, list_protocols

    wide = console.width >= 120
    table = Table(title=as_text(f"ferbench protocols ({bundled_dir()})"), show_lines=False)
    for col in ("name", "datasets", "source", "trials") + (("splitter",) if wide else ()):
        table.add_column(col, no_wrap=col in ("name", "trials"))  # others wrap at spaces, never mid-word
    for p in list_protocols():
        n = p.params.get("n_splits") or (len(p.params["folds"]) if "folds" in p.params else None)
        trials = f"{n} x {p.repeats}" if n else ("per subject" if p.splitter == "leave-one-subject-out" else "1") + (
            f" x {p.repeats}" if p.repeats > 1 else "")
        datasets = ((f"{p.pretrain} => " if p.pretrain else "") + ", ".join(p.datasets)
                    + (f" -> {p.test_dataset}" if p.test_dataset else ""))
        source = p.paper if p.table in ("-", "") else f"{p.paper} {p.table}"
        table.add_row(*text_cells(p.name, datasets, source, trials, *((p.splitter,) if wide else ())))
    console.print(table)
    if not wide:
        console.print("(the splitter of each: a terminal of 120 columns, or docs/protocols.md)", highlight=False)


@app.command()
@user_errors
def folds(
    data: Path = typer.Option(..., "--data", help="the prepared .h5 file (the training file for cross-dataset)"),
    protocol: str = typer.Option(..., "--protocol", help="a bundled protocol name or the path of a protocol .yaml"),
    data_test: Optional[Path] = typer.Option(None, "--data-test", help="the test .h5 of a cross-dataset protocol"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the fold list here (CSV, fingerprint on line 1)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1, help="override the protocol's repeats"),
    validation: Optional[float] = typer.Option(
        None, "--validation", min=0.0, max=1.0, help="share of training subjects held out for validation"),
    force: bool = typer.Option(False, "--force", metavar="", help="replace an existing --out file that is not a fold list"),
) -> None:
    """Generate a protocol's folds on a file, check them for leakage, print each fold's class counts."""
    from ferbench.protocols import check_folds_target, make_plan, write_folds

    if validation is not None and not 0 < validation < 1:
        raise FerbenchError(f"--validation must be a fraction between 0 and 1 (exclusive), got {validation}")
    if out is not None:
        check_folds_target(out, [data, data_test], force)
    plan = make_plan(protocol, data, data_test, repeats=repeats, validation=validation)
    p = plan.protocol
    console.print(as_text(f"protocol {p.name} ({p.path}); {p.paper} {p.table}"))
    console.print(as_text(f"fingerprint: {plan.fingerprint}"))
    for w in plan.warnings:
        err_console.print(as_text(("warning:", "yellow"), f" {w}"), soft_wrap=True)
    table = Table(title=as_text(f"{len(plan.folds)} folds, subject-disjoint (checked)"))
    for col in ("repeat", "fold", "train", "val", "test", "test subjects", "test class counts"):
        table.add_column(col, justify="right" if col != "test class counts" else "left", overflow="fold")
    for f in plan.folds:
        counts = plan.class_counts(f, "test")
        subjects = len({plan.test_table.subjects[i] for i in f.test.tolist()})
        table.add_row(*text_cells(f.repeat, f.fold, f.train.size, f.val.size, f.test.size, subjects,
                             " ".join(f"{c} {n}" for c, n in counts.items()) or "-"))
    console.print(table)
    if out is not None:
        console.print(as_text(f"fold list: {write_folds(plan, out, force=force)}"))
    else:
        console.print("(add --out FILE.csv to write the fold list)", highlight=False)


@app.command()
@user_errors
def leaderboard(
    runs: Optional[Path] = typer.Option(None, "--runs", help="folder of task records written by ferbench evaluate "
                                        "(default: runs/ in the data home)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="only this dataset (e.g. ck+, casme2-to-mmi)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="only this protocol (e.g. 10fold, loso)"),
    fmt: str = typer.Option("rich,md,html,csv,json", "--format", help="comma-separated: rich,md,html,csv,json"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the md/html/csv/json files (default: "
                                       "leaderboards/ in the data home)"),
    per_fold: bool = typer.Option(False, "--per-fold", metavar="", help="add one row per (model, repeat, fold)"),
    reported: Optional[Path] = typer.Option(None, "--reported", help="reported-numbers YAML (default: bundled)"),
    rope: float = typer.Option(1.0, "--rope", help="region of practical equivalence, in points of the metric: on "
                               "k-fold tables a row is called practically equivalent to the best where the data "
                               "put their difference within +-ROPE (Holm-corrected)"),
) -> None:
    """Tables per dataset x protocol from task records, with the papers' numbers and paired t-tests."""
    from ferbench.leaderboard import build_board, check_out, parse_formats, write_leaderboard
    from ferbench.leaderboard.board import check_rope

    from ferbench.home import leaderboards_dir, runs_dir

    out = out if out is not None else leaderboards_dir()
    formats = parse_formats(fmt)
    check_rope(rope / 100)
    check_out(out, formats, per_fold=per_fold)
    runs = runs if runs is not None else runs_dir()
    board = build_board(runs, dataset=dataset, protocol=protocol, reported=reported, rope=rope / 100)
    _warn(board.refused_lines())  # on stderr in every format; the terminal table leaves them to it
    written = write_leaderboard(board, [f for f in formats if f != "rich"], out, per_fold=per_fold)
    if "rich" in formats:
        write_leaderboard(dataclasses.replace(board, refused=[]), ["rich"], per_fold=per_fold, console=console)
    for kind, path in written.items():
        err_console.print(as_text(f"wrote {kind}: {path.resolve()}"), soft_wrap=True)


def _warn(lines: list[str]) -> None:
    """Warnings and refusals, on stderr whatever the output format."""
    for line in lines:
        err_console.print(as_text((line, "yellow")), soft_wrap=True)


@app.command()
@user_errors
def evaluate(
    protocol: str = typer.Option(..., "--protocol", help="protocol name (10fold, loso, 3fold, val, ...) or YAML path"),
    data: Optional[str] = typer.Option(None, "--data", help="prepared .h5 file, or a dataset name (its file in the "
                                       "data home); default: every dataset of the protocol prepared there"),
    data_test: Optional[str] = typer.Option(None, "--data-test", help="test file or dataset name (cross-dataset)"),
    data_source: Optional[str] = typer.Option(None, "--data-source", help="source file or dataset name of a "
                                              "transfer protocol (kim2017-transfer: casme2)"),
    model: str = typer.Option("all", "--model", help="all, or a comma list of names (`ferbench models` lists them; "
                              "also fusion-svm, fusion-avg) and of your own models: path/to/file.py:Name or "
                              "package.module:factory (`ferbench models --example`)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="repeats of the protocol (default: the protocol's)"),
    recipe: str = typer.Option("default", "--recipe", help="default, paper or quick"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="override every stage's epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="override every stage's batch size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="override the initial learning rate"),
    augment: Optional[str] = typer.Option(None, "--augment", help="augmentation preset (none, stc-nlstm, kim2017, former-dfer)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder of the task records (default: runs/ in the data home)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="run on a local dask cluster of N workers"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of a dask scheduler (tcp://HOST:PORT)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per task (default cores / workers)"),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="training subjects carved out for validation "
                                       "when a recipe selects on validation and the protocol has no validation set"),
    model_options: Optional[str] = typer.Option(None, "--model-options", help='JSON {"model": {option: value}}'),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32"),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="frames each task's process may keep "
                                                "in memory (4GiB, 500MB, bytes); more is streamed from the file "
                                                "(default: half the free memory)"),
    force: bool = typer.Option(False, "--force", metavar="", help="redo every task, even those with a valid record"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the run summary as one JSON object"),
) -> None:
    """Train and score models under a protocol; one JSON record per task, resumable, in-process or on dask."""
    from ferbench.harness import evaluate as evaluate_api
    from ferbench.harness import plan_run
    from ferbench.harness.progress import ProgressView
    from ferbench.harness.summary import format_mean_std, summary_rows

    options = None
    if model_options:
        try:
            options = json.loads(model_options)
        except ValueError as e:
            raise FerbenchError(f"--model-options is not valid JSON ({e})") from None
        if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
            raise FerbenchError('--model-options must be a JSON object {"model": {"option": value}}')
    from ferbench.harness.memory import parse_bytes

    parse_bytes(memory_budget)  # a bad size is refused before the data home is read
    from ferbench.home import no_data_message, prepare_commands, protocol_data, resolve_data, runs_dir, source_data

    out = out if out is not None else runs_dir()
    if data is None:
        if data_test is not None or data_source is not None:
            raise FerbenchError(f"{'--data-test' if data_test is not None else '--data-source'} needs --data "
                                "(the training file); or leave both out to use the files prepared in the data home")
        targets, missing = protocol_data(protocol)
        if not targets:
            raise FerbenchError(no_data_message(protocol, missing))
        err_console.print(as_text(f"prepared in the data home: {', '.join(t[0] for t in targets)}"
                                + (f"; missing: {', '.join(missing)} ({prepare_commands(missing)})"
                                   if missing else "")))
    else:
        source = resolve_data(data_source) if data_source is not None else source_data(protocol)
        targets = [("", resolve_data(data), resolve_data(data_test), source)]
    common = dict(models=model, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr, augment=augment,
                  device=device, workers=workers, scheduler=scheduler, threads=threads, model_options=options,
                  val_fraction=val_fraction, precision=precision, memory_budget=memory_budget)
    # every dataset checked and planned before the first task: the plan, and progress over the whole run
    plans = [plan_run(d, protocol, data_test=t, data_source=s, out=out, force=force, repeats=repeats, **common)
             for _, d, t, s in targets]
    results = []
    with ProgressView(err_console, disable=as_json, slots=workers or 1) as view:
        view.expect(plans)
        for _, data_path, test_path, source_path in targets:
            results.append(evaluate_api(data_path, protocol, data_test=test_path, data_source=source_path, out=out,
                                        force=force, repeats=repeats, progress=view, **common))
    result = _merge_results(results)
    rows = summary_rows(result.records)
    if as_json:
        print(json.dumps({"out": str(result.out), "ran": result.ran, "skipped": result.skipped,
                          "rerun": result.rerun_reasons, "failed": result.failed, "diverged": result.diverged,
                          "warnings": result.warnings,
                          "seconds": result.seconds, "summary": rows}))
    else:
        metrics = ", ".join(sorted({r["metric"] for r in rows}))
        table = Table(title=as_text(f"{protocol} ({metrics}, %): {len(result.ran)} tasks run, "
                                  f"{len(result.skipped)} reused, records in {result.out}"))
        for col in ("model", "dataset", "mean ± std", "n", "pooled", "train s, all folds"):
            table.add_column(col, justify="left" if col in ("model", "dataset") else "right", no_wrap=True)
        for r in rows:
            pooled = "-" if r["pooled"] is None else f"{100 * r['pooled']:.1f}"
            secs = "-" if r["train_s"] is None else f"{r['train_s']:.1f}"
            trials = str(r["trials"]) + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
            table.add_row(*text_cells(r["model"], r["dataset"], format_mean_std(r["mean"], r["std"]), trials, pooled,
                                      secs))
        console.print(table)
        console.print(as_text(f"`ferbench leaderboard{'' if result.out == runs_dir() else f' --runs {result.out}'}` "
                            "shows them beside the papers' numbers"))
    if result.failed:
        for task_id, message in result.failed.items():
            err_console.print(as_text(("failed:", "bold red"), f" {task_id}: {message}"), soft_wrap=True)
        raise typer.Exit(1)


config_app = typer.Typer(no_args_is_help=True, help="Settings of the data home ($FERBENCH_HOME/config.toml).")
app.add_typer(config_app, name="config")


@config_app.command("set")
@user_errors
def config_set(
    key: str = typer.Argument(..., help="raw.<dataset>: where that dataset's raw folder is"),
    value: str = typer.Argument(..., help="the folder"),  # str: an empty argument must not become "."
) -> None:
    """Remember a setting, e.g. `ferbench config set raw.ck+ ~/datasets/CK+`."""
    from ferbench.home import set_raw

    section, _, name = key.partition(".")
    if section != "raw" or not name:
        raise FerbenchError(f"unknown setting {key!r}; settings: raw.<dataset> (e.g. raw.ck+)")
    written = set_raw(name, value)
    console.print(as_text(f"{key} = {Path(value).expanduser().resolve()} ({written})"))


@config_app.command("show")
@user_errors
def config_show() -> None:
    """Print the data home and its settings."""
    from ferbench.home import config_path, home, read_config

    raw = read_config().get("raw", {})  # a malformed file is one line, before anything is printed
    console.print(as_text(f"home: {home()}\nconfig: {config_path()}"))
    for name, path in sorted(raw.items()):
        console.print(as_text(f"raw.{name} = {path}"))


runs_app = typer.Typer(no_args_is_help=True, help="Look after a runs folder (the task records of evaluate).")
app.add_typer(runs_app, name="runs")


@runs_app.command("prune")
@user_errors
def runs_prune(
    runs: Optional[Path] = typer.Option(None, "--runs", help="folder of task records (default: runs/ in the data home)"),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="list what would be removed; remove and create nothing"),
    remove_refused: bool = typer.Option(False, "--remove-refused", metavar="",
                                        help="also remove the record files the reader "
                                        "refuses (each listed first; never a link or a nested runs folder)"),
) -> None:
    """Keep the latest run with finite results of each model (per dataset and protocol) and remove the records
    of older runs; refused files only with --remove-refused. A runs folder inside the folder is left alone."""
    from ferbench.home import runs_dir
    from ferbench.records import prune

    runs = runs if runs is not None else runs_dir()
    verb = "would remove" if dry_run else "removing"
    plan = prune(runs, dry_run=dry_run, remove_refused=remove_refused,
                 show=lambda plan: _show_prune(plan, verb))
    if dry_run:
        _show_prune(plan, verb)
    _warn_prune(plan)
    done = "would remove" if dry_run else "removed"
    refused = len(plan.removable) if remove_refused else 0
    console.print(as_text(f"{done} {len(plan.older)} record(s) of older runs and {refused} refused file(s) under "
                          f"{runs}"), soft_wrap=True)


def _show_prune(plan: PrunePlan, verb: str) -> None:
    """Which run of a model is kept and why, then every file to be removed (before any is)."""
    for run, why in plan.kept:
        console.print(as_text(f"keeping {run}: {why}"), soft_wrap=True)
    for p in plan.older:
        console.print(as_text(f"{verb} (older run): {p}"), soft_wrap=True)
    for p in plan.removable if plan.remove_refused else []:
        console.print(as_text(f"{verb} (refused): {p}"), soft_wrap=True)


def _warn_prune(plan: PrunePlan) -> None:
    """Refused files, which are left in place and why, and nested runs folders: on stderr."""
    lines = [f"refused: {p}: {why}" for p, why in plan.refused]
    left = [p for p, _ in plan.refused if p not in plan.removed]
    if left:
        never = [p for p in left if p not in plan.removable]
        removable = len(left) - len(never)
        lines.append(f"{len(left)} refused file(s) left in place"
                     + (f"; --remove-refused removes {removable} of them (each listed first)" if removable else "")
                     + (f"; prune never removes the {len(never)} link(s) or unreadable folder(s)" if never else ""))
    lines += [f"left alone: {n} is a runs folder of its own; prune it with --runs {n}" for n in plan.nested]
    _warn(lines)


def _merge_results(results: list) -> object:
    """One EvaluateResult for the runs of several datasets (their records, tasks, failures and warnings)."""
    first = results[0]
    for r in results[1:]:
        first.records += r.records
        first.ran += r.ran
        first.skipped += r.skipped
        first.rerun_reasons.update(r.rerun_reasons)
        first.failed.update(r.failed)
        first.diverged.update(r.diverged)
        first.warnings += [w for w in r.warnings if w not in first.warnings]
        first.seconds += r.seconds
    return first


def main() -> None:
    app()


if __name__ == "__main__":
    main()
