"""The terminal view of a run: a rich progress bar over tasks (done / total, ETA) with the current model,
fold, stage, epoch and loss, fed by the events `evaluate` emits (in-process, or from dask workers)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ferbench.terminal import as_text


class ProgressView:
    """Use as a context manager; pass the instance as `evaluate(progress=...)`."""

    def __init__(self, console: Console, disable: bool = False):
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]evaluate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}", markup=False),
            console=console, disable=disable, transient=False,
        )
        self.task = None
        self.started = False

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.bar.__exit__(*exc)

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "plan":  # every option and file has been checked: only now draw (errors stay one line)
            self.bar.__enter__()
            self.started = True
            self.task = self.bar.add_task("tasks", total=ev["pending"], status=f"{ev['skipped']} reused")
            if ev.get("protocol"):
                self.bar.console.print(as_text(f"protocol file: {ev['protocol']}"))
            reasons: dict[str, int] = {}
            for why in ev.get("rerun", {}).values():
                reasons[why] = reasons.get(why, 0) + 1
            for why, n in sorted(reasons.items()):
                self.bar.console.print(as_text(("rerun", "cyan"), f" {n} task(s) with a record: {why}"))
            for w in ev.get("warnings", []):
                self.bar.console.print(as_text(("warning:", "yellow"), f" {w}"))
        elif self.task is None:
            return
        elif kind == "start":
            self.bar.update(self.task, status=f"{ev['model']} r{ev['repeat']} f{ev['fold']}")
        elif kind == "epoch":
            member = f" [{ev['member']}]" if ev.get("member") and ev["member"] != ev.get("model") else ""
            val = f" val {ev['val_metric']:.3f}" if ev.get("val_metric") is not None else ""
            self.bar.update(
                self.task,
                status=f"{ev['model']}{member} r{ev['repeat']} f{ev['fold']} {ev['stage']} "
                f"epoch {ev['epoch']}/{ev['epochs']} loss {ev['loss']:.4f}{val}",
            )
        elif kind == "task-done":
            self.bar.advance(self.task)
        elif kind == "task-diverged":
            self.bar.console.print(as_text(("diverged", "yellow"), f" {ev['task_id']}: {ev['error']} (recorded; left "
                                           "out of the figures)"))
        elif kind == "task-failed":
            self.bar.advance(self.task)
            self.bar.console.print(as_text(("failed", "red"), f" {ev['task_id']}: {ev['error']}"))
