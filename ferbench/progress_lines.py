"""Progress as plain lines, for long work whose stderr is not a terminal (a log file, `nohup`, CI), where a live
rich bar shows nothing until the end; and `duration`, the way every progress line writes a time."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from ferbench.terminal import as_text


def duration(seconds: float | None) -> str:
    """`45 s`, `6 min 02 s`, `3 h 20 min`: a time a reader takes in at a glance (`?` when unknown)."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class PlainProgress:
    """Progress as plain lines, for a long job whose stderr is not a terminal (a log file, `nohup`, CI), where a
    live bar shows nothing until the end: a line at each further tenth of the work (but not within `gap`
    seconds of the last: a short run prints only its last line), at least every `every` seconds while it moves,
    and at the end, e.g. `prepare ck+: 120/593 (20%), 3 min 02 s elapsed, about 12 min left`."""

    def __init__(self, what: str, console: Console, every: float = 60.0, gap: float = 10.0,
                 clock: Any = time.monotonic):
        self.what, self.console, self.every, self.gap, self.clock = what, console, every, gap, clock
        self.start = clock()
        self.last_at = self.start
        self.last_tenth = 0
        self.last_done: int | None = None
        self.broken = False  # stderr could not be written: no more lines

    def update(self, done: int, total: int) -> None:
        if self.broken:
            return
        now = self.clock()
        tenth = 10 * done // total if total else 0
        since = now - self.last_at
        due = done == total or since >= self.every or (tenth > self.last_tenth and since >= self.gap)
        if done == self.last_done or not due:
            return
        self.last_at, self.last_tenth, self.last_done = now, tenth, done
        elapsed = now - self.start
        left = elapsed * (total - done) / done if done and total else None
        line = f"{self.what}: {done}/{total}" + (f" ({100 * done // total}%)" if total else "")
        line += f", {duration(elapsed)} elapsed" + (f", about {duration(left)} left" if done < total and left is not None else "")
        try:
            self.console.print(as_text(line), soft_wrap=True)
        except OSError:  # stderr closed or broken (a log pipe gone, a full disk): the lines stop, never the work
            self.broken = True
