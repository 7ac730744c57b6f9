"""Compute threads per process: the one place that sets onnxruntime, OpenCV and torch thread counts.

`prepare` gets its parallelism from processes (dask workers, one task at a time each), so every library
inside a process should use one thread. Left at their defaults, onnxruntime, OpenCV and torch each start a
pool of `cores` threads in every worker: on a 2-core machine shared with other work, an onnxruntime session
with 2 intra-op threads ran MTCNN 3-4x slower (wall) than with 1, because its threads spin while waiting.

- `session_options(threads)`: onnxruntime options (intra-op `threads`, inter-op 1, spinning off), used by
  every ONNX detector ferbench builds.
- `set_process_threads(n)`: OpenCV (and torch when loaded) in this process; returns the previous values.
- `compute_threads(n)`: the same as a context manager that restores them (in-process `prepare`, so a
  caller's notebook keeps its settings).
- `ThreadLimits`: a dask worker plugin applying `set_process_threads` in every worker process of a cluster.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: Threads each compute library uses per task; parallelism comes from processes.
COMPUTE_THREADS = 1

__all__ = ["COMPUTE_THREADS", "session_options", "set_process_threads", "compute_threads", "current_threads",
           "ThreadLimits"]


def session_options(threads: int | None = COMPUTE_THREADS) -> Any:
    """onnxruntime session options: `threads` intra-op threads (None = onnxruntime's default, all cores),
    one inter-op thread, sequential execution, and no spin-waiting (spinning threads steal the core that
    another worker process needs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def set_process_threads(n: int = COMPUTE_THREADS) -> dict[str, int]:
    """Set OpenCV's thread count (and torch's, when torch is already imported) in this process to `n`;
    returns the previous values, for `compute_threads` to restore. torch is not imported here: a prepare
    worker that never needs it should not pay its memory; OMP_NUM_THREADS=1 (dask's worker default) makes
    a later import start with one thread."""
    import cv2

    before = {"opencv": int(cv2.getNumThreads())}
    cv2.setNumThreads(int(n))
    torch = sys.modules.get("torch")
    if torch is not None:
        before["torch"] = int(torch.get_num_threads())
        torch.set_num_threads(int(n))
    return before


@contextlib.contextmanager
def compute_threads(n: int = COMPUTE_THREADS) -> Iterator[None]:
    """`set_process_threads(n)` for the duration of a block, then the previous values again."""
    before = set_process_threads(n)
    try:
        yield
    finally:
        import cv2

        cv2.setNumThreads(before["opencv"])
        torch = sys.modules.get("torch")
        if torch is not None and "torch" in before:
            torch.set_num_threads(before["torch"])


def current_threads() -> dict[str, Any]:
    """What this process uses now (for tests and benchmark reports): OpenCV and torch threads (torch only
    when imported), the OpenMP environment variable, and the process id."""
    import cv2

    out: dict[str, Any] = {"pid": os.getpid(), "opencv": int(cv2.getNumThreads()),
                           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.get_num_threads())
    return out


class ThreadLimits(WorkerPlugin):
    """dask worker plugin: `set_process_threads(n)` in each worker process when it joins the cluster
    (register with `client.register_plugin(ThreadLimits())`; workers that join later get it too)."""

    name = "ferbench-thread-limits"

    def __init__(self, n: int = COMPUTE_THREADS):
        self.n = int(n)

    def setup(self, worker: Any) -> None:
        set_process_threads(self.n)

