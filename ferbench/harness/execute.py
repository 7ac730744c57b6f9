"""Where tasks run: one after another in this process, or on dask.distributed (a local cluster of N single-
threaded worker processes on loopback, or an existing scheduler), one task per worker at a time, one GPU per
worker where there are GPUs (dask resources). Results come back to the client, which writes the records.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable
from typing import Any

from ferbench.cluster import dask_client
from ferbench.errors import FerbenchError
from ferbench.harness.spec import TaskSpec

OnResult = Callable[[TaskSpec, dict[str, Any] | None, str | None], None]
TOPIC = "ferbench-evaluate"


def _message(e: BaseException) -> str:
    if isinstance(e, FerbenchError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def run_in_process(specs: list[TaskSpec], on_result: OnResult, progress: Callable | None = None) -> None:
    from ferbench.harness.task import run_task

    for spec in specs:
        try:
            res = run_task(spec, progress)
        except Exception as e:  # one failed task does not stop the others; it is reported at the end
            on_result(spec, None, _message(e))
            continue
        on_result(spec, res, None)


def run_on_worker(spec: TaskSpec) -> dict[str, Any]:
    """The dask entry point: run the task, streaming progress events to the client as worker log events."""
    from distributed import get_worker

    from ferbench.harness.task import run_task

    worker = get_worker()

    def emit(event: dict[str, Any]) -> None:
        try:
            worker.log_event(TOPIC, event)
        except Exception:  # progress is best effort; the record is what counts
            pass

    return run_task(spec, emit)


def run_on_dask(specs: list[TaskSpec], on_result: OnResult, *, workers: int | None, scheduler: str | None,
                progress: Callable | None = None, gpu: bool = False) -> None:
    from distributed import as_completed

    with dask_client(workers, scheduler, gpu=gpu) as client:
        if progress is not None:
            client.subscribe_topic(TOPIC, lambda ev: progress(ev[1]))
        run = uuid.uuid4().hex[:8]
        futures = {}
        for spec in specs:
            fut = client.submit(run_on_worker, spec, key=f"ferbench-{run}-{spec.task_id}", pure=False,
                                resources={"GPU": 1} if gpu else None)
            futures[fut.key] = (fut, spec)
        for fut in as_completed([f for f, _ in futures.values()]):
            spec = futures[fut.key][1]
            try:
                res = fut.result()
            except Exception as e:
                on_result(spec, None, _message(e))
                continue
            on_result(spec, res, None)


def run_tasks(specs: list[TaskSpec], on_result: OnResult, *, workers: int | None = None, scheduler: str | None = None,
              progress: Callable | None = None, gpu: bool = False) -> None:
    """Run every spec and hand each result (or error message) to `on_result` as soon as it is known."""
    if workers is None and scheduler is None:
        run_in_process(specs, on_result, progress)
    else:
        run_on_dask(specs, on_result, workers=workers, scheduler=scheduler, progress=progress, gpu=gpu)
