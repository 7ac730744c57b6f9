"""What a researcher sees during a run: the plan before the first task (tasks, device, how to shorten a long
CPU run), then progress over the whole run (every dataset together) with an estimate of the time left.

On a terminal: a rich bar that keeps done / total, elapsed and ETA visible at 80 columns (the current model,
fold and epoch fill what is left, the epoch detail dropped first). Not on a terminal (stderr redirected to a
file, CI): one plain line per finished task, so a log shows progress as it happens. Fed by the events
`evaluate` emits (in-process, or from dask workers).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from ferbench.progress_lines import duration
from ferbench.terminal import as_text

#: A run estimated longer than this on a CPU gets the ways to shorten it.
LONG_S = 30 * 60
SHORTEN = ("to shorten it: fewer models (--model NAME,NAME), the quick recipe (--recipe quick), a GPU "
           "(--device cuda), or tasks in parallel (--workers N, or --scheduler ADDRESS of a dask cluster)")
#: A plan of this many tasks on a CPU gets the ways to shorten it before it starts.
MANY = 50
#: Characters the bar's fixed columns take at most (name, bar, done/total, elapsed, ETA, gaps).
BAR_WIDTH = 12


class EtaColumn(ProgressColumn):
    """`ETA 2 h 10 min`: the estimate made when the last task finished, counting down until the next one
    (rich's own column needs several updates within 30 s, which tasks of minutes never give: `-:--:--`)."""

    def render(self, task: Task) -> Text:
        left, at = task.fields.get("eta_s"), task.fields.get("eta_at")
        if left is None or at is None:
            return Text("ETA ?")
        return Text(f"ETA {duration(max(0.0, left - (time.monotonic() - at)))}")


class Estimate:
    """Time left, from the tasks done so far: each model's pending tasks at that model's mean task time (the
    mean of every model done so far for a model not yet seen), divided among the tasks that run at once."""

    def __init__(self, slots: int = 1):
        self.slots = max(1, slots)
        self.pending: dict[str, int] = {}
        self.seconds: dict[str, list[float]] = {}

    def expect(self, by_model: dict[str, int]) -> None:
        for m, n in by_model.items():
            self.pending[m] = self.pending.get(m, 0) + n

    def done(self, model: str, seconds: float | None) -> None:
        self.pending[model] = max(0, self.pending.get(model, 0) - 1)
        if seconds is not None:
            self.seconds.setdefault(model, []).append(float(seconds))

    def left(self) -> float | None:
        """Seconds left, or None before the first task has finished."""
        known = {m: sum(v) / len(v) for m, v in self.seconds.items() if v}
        if not known:
            return None
        fallback = sum(known.values()) / len(known)
        return sum(n * known.get(m, fallback) for m, n in self.pending.items()) / self.slots

    def guessed(self) -> list[str]:
        """Models with tasks left whose time is not measured yet (their share of the estimate is a guess)."""
        return [m for m, n in self.pending.items() if n and m not in self.seconds]


def plan_lines(plans: list[Any], slots: int = 1) -> list[str]:
    """The plan before any work: one line per dataset (models x repeats x folds = tasks) and the total."""
    lines = [f"plan: {line}" for p in plans for line in (p.line(), p.frames) if line]
    pending = sum(p.pending for p in plans)
    devices = ", ".join(sorted({p.device for p in plans})) or "?"
    where = f"{slots} tasks at a time" if slots > 1 else "one task at a time"
    lines.append(f"plan: {pending} task(s) to run on {devices}, {where}; an estimate of the time follows the "
                 "first finished task")
    if pending >= MANY and "cpu" in devices:
        lines.append(f"plan: {pending} tasks on a CPU can take hours; {SHORTEN}")
    return lines


class ProgressView:
    """Use as a context manager; pass the instance as `evaluate(progress=...)`. `expect` (from `plan_run`)
    fixes the whole run's total before the first dataset starts; without it each `plan` event adds its tasks."""

    def __init__(self, console: Console, disable: bool = False, slots: int = 1):
        self.console = console
        self.disable = disable
        self.live = console.is_terminal and not disable
        self.estimate = Estimate(slots)
        self.total = 0
        self.done = 0
        self.preset = False
        self.started_at: float | None = None
        self.device = ""
        self.told_long = False
        self.bar = Progress(
            TextColumn("[bold]evaluate[/]"), BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(),
            TimeElapsedColumn(), EtaColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[status]}", markup=False,  # model names and fusion members: plain text
                       table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console, disable=not self.live, transient=False,
        )
        self.task = None

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.task is not None:
            self.bar.__exit__(*exc)

    def expect(self, plans: list[Any]) -> None:
        """The whole run's plan (`RunPlan`s, one per dataset): print it and count progress over all of it."""
        self.preset = True
        for p in plans:
            self.total += p.pending
            self.estimate.expect(p.pending_by_model)
        self.device = ", ".join(sorted({p.device for p in plans}))
        if not self.disable:
            for line in plan_lines(plans, self.estimate.slots):
                self.console.print(as_text(line), soft_wrap=True)

    def say(self, text: str) -> None:
        """One line above the bar (or in the log); `text` is markup: user text in it goes through `escape`."""
        if not self.disable:
            (self.bar.console if self.task is not None else self.console).print(text, highlight=False, soft_wrap=True)

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "plan":
            self._plan(ev)
        elif self.started_at is None:
            return
        elif kind in ("start", "epoch"):
            self._status(ev)
        elif kind == "task-done":
            self._finished(ev, failed=False)
        elif kind == "task-diverged":
            self.say(f"[yellow]diverged[/] {escape(ev['task_id'])}: {escape(ev['error'])} (recorded; left out of "
                     "the figures)")
        elif kind == "task-failed":
            self._finished(ev, failed=True)
            self.say(f"[red]failed[/] {escape(ev['task_id'])}: {escape(ev['error'])}")

    def _plan(self, ev: dict[str, Any]) -> None:
        """One dataset's plan: every option and file has been checked, so only now draw (errors stay one line)."""
        if not self.preset:
            self.total += ev["pending"]
            self.estimate.expect(ev.get("pending_by_model", {}))
            self.device = self.device or ev.get("device", "")
            self.say(escape(f"plan: {ev['pending']} task(s) to run, {ev.get('skipped', 0)} reused, on "
                            f"{self.device or '?'}"))
        if self.started_at is None:
            self.started_at = time.monotonic()
        if self.live and self.task is None:
            self.bar.__enter__()
            self.task = self.bar.add_task("tasks", total=self.total, eta_s=None, eta_at=None, status="")
        elif self.task is not None:
            self.bar.update(self.task, total=self.total)
        if ev.get("protocol"):
            self.say(f"protocol file: {escape(ev['protocol'])}")
        reasons: dict[str, int] = {}
        for why in ev.get("rerun", {}).values():
            reasons[why] = reasons.get(why, 0) + 1
        for why, n in sorted(reasons.items()):
            self.say(f"[cyan]rerun[/] {n} task(s) with a record: {escape(why)}")
        for w in ev.get("warnings", []):
            self.say(f"[yellow]warning:[/] {escape(w)}")

    def _status(self, ev: dict[str, Any]) -> None:
        """The current task on the bar: model, repeat, fold, then (where the width allows) stage, epoch, loss."""
        if self.task is None:
            return
        where = f"{ev['model']} r{ev['repeat']} f{ev['fold']}"
        if ev.get("event") == "epoch":
            member = f" [{ev['member']}]" if ev.get("member") and ev["member"] != ev.get("model") else ""
            val = f" val {ev['val_metric']:.3f}" if ev.get("val_metric") is not None else ""
            full = f"{where}{member} {ev['stage']} epoch {ev['epoch']}/{ev['epochs']} loss {ev['loss']:.4f}{val}"
            short = f"{where} e{ev['epoch']}/{ev['epochs']}"
            room = self.console.width - self._fixed_width()
            where = full if len(full) <= room else short if len(short) <= room else where
        self.bar.update(self.task, status=where)

    def _fixed_width(self) -> int:
        """What the columns before the status take: name, bar, done/total, elapsed, ETA and the gaps."""
        digits = len(str(self.total))
        return len("evaluate") + BAR_WIDTH + 2 * digits + 1 + len("0:00:00") + len("ETA 99 h 59 min") + 6

    def _finished(self, ev: dict[str, Any], failed: bool) -> None:
        self.done += 1
        model = ev.get("model") or ev["task_id"].split("/", 1)[0]
        self.estimate.done(model, None if failed else ev.get("seconds"))
        left = self.estimate.left()
        eta = duration(left) if left is not None else "?"
        if self.task is not None:
            self.bar.update(self.task, advance=1, eta_s=left, eta_at=time.monotonic())
        elif not failed and not self.disable:
            self.console.print(as_text(self._line(ev, eta)), soft_wrap=True)
        self._maybe_shorten(left)

    def _line(self, ev: dict[str, Any], eta: str) -> str:
        """`done 3/140 ck+ mv-lstm/10fold/r1/f3: accuracy 81.25 in 62 s; elapsed 3 min 10 s, ETA 2 h 10 min`."""
        metric = ev.get("metric")
        score = (ev.get("scores") or {}).get(metric) if metric else None
        what = f"{metric} {100 * score:.2f}" if score is not None else "diverged (no score)"
        elapsed = duration(time.monotonic() - self.started_at) if self.started_at is not None else "?"
        where = f"{ev['dataset']} " if ev.get("dataset") else ""
        return (f"done {self.done}/{self.total} {where}{ev['task_id']}: {what} in {duration(ev.get('seconds'))}; "
                f"elapsed {elapsed}, ETA {eta}")

    def _maybe_shorten(self, left: float | None) -> None:
        """Once, when the first estimate says a CPU run is long: how long, and how to shorten it."""
        if self.told_long or left is None:
            return
        self.told_long = True
        guessed = self.estimate.guessed()
        names = ", ".join(guessed) if len(guessed) <= 3 else f"{len(guessed)} models"
        rough = f" (rough: {names} not timed yet)" if guessed else ""
        text = f"estimate: about {duration(left)} left for {self.total - self.done} task(s){rough}"
        if left > LONG_S and self.device.startswith("cpu"):
            text += f"; {SHORTEN}"
        self.say(escape(text))
