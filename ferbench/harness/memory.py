"""The memory budget of a task: how many bytes of frames its process may keep resident, and the parsing of the
`--memory-budget` option.

A task keeps a data file's frames resident (loaded once, gathered in memory: the fast path) when they fit the
budget; otherwise it streams batches from the file (`ferbench.harness.sources`). The default budget is
`DEFAULT_FRACTION` of the memory this process could use now: the available RAM (capped by a dask worker's
memory limit) plus the frames it already holds, and on a GPU also of the free GPU memory. Every process
decides for itself, so on a cluster each worker fits its own machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ferbench.errors import FerbenchError

#: Share of the usable memory a task's resident frames may take by default (the rest: the model, its
#: activations and optimizer state, the load's temporary block, other processes).
DEFAULT_FRACTION = 0.5
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
#: The largest budget accepted: what a signed 64-bit count of bytes holds (8 EiB), far beyond any machine.
MAX_BUDGET = 2**63 - 1


def parse_bytes(value: Any) -> int | None:
    """`--memory-budget`: None (the default), a whole number of bytes, or text such as `4GiB`, `500MB`, `1.5G`
    (decimal units k/M/G/T, binary KiB/MiB/GiB/TiB); refuses anything else, and zero, in one line."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise FerbenchError(f"--memory-budget must be a size such as 4GiB, 500MB or a number of bytes; got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise FerbenchError(f"--memory-budget must be a size such as 4GiB, 500MB or a number of bytes "
                                f"(units B, kB, MB, GB, TB, KiB, MiB, GiB, TiB); got {value!r}")
        n = int(Decimal(m.group(1)) * _UNITS[unit])  # exact: no float overflow or rounding on long digit strings
    if n < 1:
        raise FerbenchError(f"--memory-budget must be at least 1 byte; got {value!r}")
    if n > MAX_BUDGET:
        raise FerbenchError(f"--memory-budget must be at most 8 EiB ({MAX_BUDGET} bytes); got {value!r}")
    return n


def format_bytes(n: int) -> str:
    """Bytes as short text for people (`1.5 GiB`)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _worker_limit() -> int | None:
    """This dask worker's memory limit (its nanny restarts it above that), or None outside a worker."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    return int(limit) if limit else None


def default_budget(device: Any, held_ram: int, held_gpu: int) -> int:
    """`DEFAULT_FRACTION` of what this process could use: available RAM (capped by a dask worker's limit) plus
    the frames it holds already; on CUDA, no more than that fraction of the free GPU memory plus its held frames."""
    import psutil

    ram = int(psutil.virtual_memory().available) + held_ram
    limit = _worker_limit()
    if limit is not None:
        ram = min(ram, limit)
    budget = int(DEFAULT_FRACTION * ram)
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, int(DEFAULT_FRACTION * (free + held_gpu)))
    return budget


@dataclass
class Budget:
    """One task's budget and what it has granted: `keys` are the (file, index, device) sources it holds
    resident; `modes` what each of its sources ran as (for the record)."""

    total: int
    explicit: bool
    used: int = 0
    keys: set[tuple[str, str, str]] = field(default_factory=set)
    modes: dict[str, str] = field(default_factory=dict)

    def grant(self, key: tuple[str, str, str], nbytes: int) -> bool:
        """Whether `nbytes` of resident frames for `key` fit what is left (a key already granted is free)."""
        if key in self.keys:
            return True
        if self.used + nbytes > self.total:
            return False
        self.used += nbytes
        self.keys.add(key)
        return True

    def mode(self) -> str:
        """`resident` (every source of the task resident), `streamed` (every one streamed) or `mixed`."""
        seen = set(self.modes.values())
        return seen.pop() if len(seen) == 1 else ("mixed" if seen else "resident")


def frames_line(needs: dict[str, int], task_most: int, budget: int | None, device: Any, distributed: bool) -> str:
    """The plan's line on memory: the frames the run's tasks read (`needs`: "file index" -> bytes; `task_most`:
    the most one task reads) against the budget, and what follows, e.g. `frames: ck+.h5 clip 48.0 MiB; budget
    11.8 GiB per task process (default: half the available memory): resident`. On a cluster each worker decides
    with its own memory, so there the default budget is not known in advance."""
    listed = ", ".join(f"{what} {format_bytes(n)}" for what, n in needs.items())
    if budget is None and distributed:
        return f"frames: {listed}; budget: half of each worker's available memory (each worker decides)"
    held = budget if budget is not None else default_budget(device, 0, 0)
    how = "--memory-budget" if budget is not None else "default: half the available memory"
    if sum(needs.values()) <= held:
        verdict = "resident (loaded once per process)"
    elif task_most <= held:
        verdict = "resident (frames a task does not read are released for those it reads)"
    else:
        verdict = "streamed from the file where a task's frames exceed it (same predictions, bounded memory)"
    return f"frames: {listed}; budget {format_bytes(held)} per task process ({how}): {verdict}"
