"""Compute threads per process (`ferbench.threads`): one thread per library in every prepare process, set in
the dask workers by a plugin, checked in a real worker process of a real LocalCluster on loopback."""

from __future__ import annotations

import pytest

import logging

import cv2
from dask.distributed import Client, LocalCluster

from ferbench.preprocess.detect import MTCNNDetector, get_detector
from ferbench.cluster import dask_client
from ferbench.preprocess.pipeline import PrepareConfig, detector_for
from ferbench.threads import ThreadLimits, compute_threads, current_threads, session_options


def _detector_threads() -> list[tuple[int, int, str]]:
    """(intra-op threads, inter-op threads, spinning) of each session of the detector prepare builds here."""
    det = detector_for(PrepareConfig().resolved("ck+"), (490, 640, 3))
    assert isinstance(det, MTCNNDetector)
    out = []
    for s in det.sessions:
        o = s.get_session_options()
        out.append((o.intra_op_num_threads, o.inter_op_num_threads, o.get_session_config_entry("session.intra_op.allow_spinning")))
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_session_options_one_thread_no_spinning() -> None:
    o = session_options()
    assert (o.intra_op_num_threads, o.inter_op_num_threads) == (1, 1)
    assert o.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(3).intra_op_num_threads == 3
    # the default MTCNN builds its sessions with them: one thread each, no spinning
    assert {t for t in _detector_threads()} == {(1, 1, "0")}
    assert all(s.get_session_options().intra_op_num_threads == 1 for s in get_detector("mtcnn").sessions)


def test_compute_threads_sets_then_restores_opencv() -> None:
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        with compute_threads():
            assert cv2.getNumThreads() == 1 and current_threads()["opencv"] == 1
        assert cv2.getNumThreads() == 3  # the caller's setting is back
    finally:
        cv2.setNumThreads(before)


@pytest.mark.slow
def test_each_dask_worker_process_runs_one_thread_per_library() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        # a worker that had more threads before prepare connected: the plugin must be what sets them
        with Client(cluster.scheduler_address) as other:
            other.run(cv2.setNumThreads, 3)
            assert set(other.run(lambda: __import__("cv2").getNumThreads()).values()) == {3}
        with dask_client(None, cluster.scheduler_address, plugin=ThreadLimits()) as client:  # what `prepare --scheduler` does
            (state,) = client.run(current_threads).values()
            assert state["opencv"] == 1 and state["OMP_NUM_THREADS"] == "1"
            assert state["pid"] != current_threads()["pid"]  # measured in the worker process, not here
            assert set(client.submit(_detector_threads, pure=False).result()) == {(1, 1, "0")}
            assert client.submit(_torch_threads, pure=False).result() == 1
