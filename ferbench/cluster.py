"""The one dask launcher `prepare` and `evaluate` share: the scheduler address checked the same way before any
work, and a client on an existing scheduler or on a local cluster of single-threaded worker processes."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ferbench.errors import FerbenchError

SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def check_scheduler(address: Any) -> None:
    """Refuse a malformed scheduler address, or an unreachable tcp one (probed), before any work."""
    text = str(address).strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.scheme not in SCHEMES or re.search(r"\s", text):
        raise FerbenchError(f"--scheduler {address!r}: expected a dask scheduler address such as tcp://HOST:8786")
    if parts.scheme != "tcp":
        return
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as e:
        raise FerbenchError(f"cannot reach the dask scheduler at {address} ({e.strerror or e}); start one with "
                            "`dask scheduler`, or leave --scheduler out for a local cluster") from None


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None, *, gpu: bool = False,
                plugin: Any = None) -> Iterator[Any]:
    """A dask client: on `scheduler`, else on a local cluster of `workers` single-threaded processes on loopback
    (one GPU each, as a dask resource, with `gpu`); `plugin` is registered on every worker."""
    import os

    from distributed import Client, LocalCluster

    cluster = None
    try:
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as e:
                raise FerbenchError(f"cannot reach the dask scheduler at {scheduler} ({e})") from None
        else:
            cluster = LocalCluster(
                n_workers=int(workers or os.cpu_count() or 1), threads_per_worker=1, processes=True,
                host="127.0.0.1", silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None,
                # no dashboard, and the scheduler's small HTTP server on a free port: with dashboard_address=None
                # it still binds 8787 and warns "Port 8787 is already in use" when another cluster holds it
                dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
            )
            client = Client(cluster)
        with client:
            if plugin is not None:
                client.register_plugin(plugin)
            yield client
    finally:
        if cluster is not None:
            cluster.close()
