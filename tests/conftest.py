"""Shared fixtures: prepared replicas made once per test session by the real `synth` + `prepare`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _data_home(tmp_path_factory):
    """Every test (and every process it starts) uses a temporary data home, never the user's ~/ferbench_data."""
    import os

    old = os.environ.get("FERBENCH_HOME")
    os.environ["FERBENCH_HOME"] = str(tmp_path_factory.mktemp("ferbench-home"))
    yield
    if old is None:
        os.environ.pop("FERBENCH_HOME", None)
    else:
        os.environ["FERBENCH_HOME"] = old


@pytest.fixture(scope="session")
def prepared_replica(tmp_path_factory) -> Callable[..., Path]:
    """Factory: `prepared_replica(dataset, subjects=2, seed=0, modes=None) -> Path` of a prepared .h5.

    Runs the real `ferbench.datasets.synth` and `prepare(..., workers=0)` once per distinct argument set
    per session (the same arguments return the same file), so tests of several modules share the cost.
    `aligner="none"` (keyword) skips face detection and only resizes whole frames: for tests that need the
    sample table, not aligned faces (several times faster); `size` is the aligned face size. The replica is
    synthesised once per (dataset, subjects, seed, modes) and each (aligner, size) is prepared from it (synth is
    deterministic per seed, so this is the replica a fresh synth would write); its folder is `<file>.parent /
    "native"`. Treat the returned file and that folder as read-only.
    """
    from ferbench.datasets import synth
    from ferbench.preprocess.pipeline import PrepareConfig, prepare

    natives: dict[tuple, Path] = {}
    cache: dict[tuple, Path] = {}

    def make(dataset: str, subjects: int = 2, seed: int = 0, modes: list[str] | None = None, *,
             aligner: str = "mtcnn", size: int = 64) -> Path:
        replica = (dataset, int(subjects), int(seed), tuple(modes) if modes else None)
        key = (*replica, aligner, int(size))
        if key not in cache:
            tag = f"{dataset}-{subjects}-{seed}" + (f"-{len(modes)}m" if modes else "")
            if replica not in natives:
                root = tmp_path_factory.mktemp("native-" + _safe(tag)) / "native"
                synth(dataset, root, subjects=subjects, seed=seed, modes=list(modes) if modes else None)
                natives[replica] = root
            base = tmp_path_factory.mktemp("replica-" + _safe(f"{tag}-{aligner}-{size}px"))
            (base / "native").symlink_to(natives[replica], target_is_directory=True)
            out = base / f"{dataset.replace('+', 'p')}.h5"
            prepare(dataset, natives[replica], out, PrepareConfig(aligner=aligner, size=size), workers=0)
            cache[key] = out
        return cache[key]

    return make


def _safe(tag: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "p" for c in tag)


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """The address of one real two-worker LocalCluster on loopback (single-threaded worker processes), started
    when a test first asks for it and shared by the tests that pass `scheduler=` (as `--scheduler` does):
    starting a cluster and importing torch in its workers costs 15-20 s of one core each time. Tests of
    `workers=N` (the cluster evaluate starts itself) start their own."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> tuple[Path, Path]:
    """`(wheel, site)`: a wheel built by pip from a copy of the checkout (so the checkout gets no build/ or
    egg-info) and that wheel installed, non-editable, into the folder `site`; built once for the packaging
    tests, which each probe it from a folder of their own. Treat both as read-only."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(root / "ferbench", src / "ferbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "protocols", src / "protocols")
    shutil.copytree(root / "examples", src / "examples")
    shutil.copytree(root / "leaderboards", src / "leaderboards", ignore=shutil.ignore_patterns("leaderboard*"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(root / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), str(src)],
                   check=True, cwd=base, capture_output=True)
    (wheel,) = (base / "dist").glob("ferbench-*.whl")
    site = base / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    return wheel, site


@pytest.fixture(autouse=True)
def _model_registry():
    """A user model a test registers (a spec checked or evaluated in-process) is gone after that test, so the
    registry tests see the bundled models only, whatever order the tests run in."""
    from ferbench.models import _registry

    factories, cards = dict(_registry._FACTORIES), dict(_registry._CARDS)
    yield
    for table, saved in ((_registry._FACTORIES, factories), (_registry._CARDS, cards)):
        table.clear()
        table.update(saved)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data home for one test (FERBENCH_HOME), with a wide terminal: one line stays one line."""
    monkeypatch.setenv("FERBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "400")
    return tmp_path / "home"
