"""Dataset adapters and their registry: `get_dataset("ck+")`, `list_datasets()`, `scan(name, root)`."""

from __future__ import annotations

import dataclasses
import filecmp
import glob
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TypeVar

from ferbench.datasets.base import DatasetAdapter, Sample, ScanResult, is_junk
from ferbench.errors import FerbenchError
from ferbench.lock import pid_alive

_REGISTRY: dict[str, type[DatasetAdapter]] = {}
A = TypeVar("A", bound=type[DatasetAdapter])


def register_dataset(cls: A) -> A:
    """Class decorator: make an adapter reachable by its command-line name (e.g. `ck+`)."""
    _REGISTRY[cls.name] = cls
    return cls


#: The built-in adapters: command-line name -> module, so that names are known (CLI help) without importing
#: the modules, which pull in OpenCV; each module registers the name it is listed under.
BUILTIN = {
    "ck+": "ckplus", "oulu-casia": "oulu", "mmi": "mmi", "casme2": "casme2", "bp4d": "bp4d", "afew": "afew",
    "dfew": "dfew", "ferv39k": "ferv39k", "mafw": "mafw", "folder": "folder", "order": "order",
}


def _load_builtin() -> None:
    """Import the dataset modules for their @register_dataset side effect (lazily: they pull in OpenCV)."""
    import importlib

    for name, mod in BUILTIN.items():
        if name not in _REGISTRY:
            importlib.import_module(f"ferbench.datasets.{mod}")
        if name not in _REGISTRY:
            raise RuntimeError(f"ferbench.datasets.{mod} did not register the dataset '{name}'")


def builtin_names() -> str:
    """The built-in dataset names as prose ("ck+, ..., folder or order"), for help texts."""
    names = list(BUILTIN)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def list_datasets() -> list[str]:
    """Registered dataset names: the built-in ones in `BUILTIN` order (whatever was imported first), then others."""
    _load_builtin()
    return [*BUILTIN, *(name for name in _REGISTRY if name not in BUILTIN)]


def get_dataset(name: str) -> DatasetAdapter:
    _load_builtin()
    key = name.lower()
    if key not in _REGISTRY:
        raise FerbenchError(f"unknown dataset '{name}'; choose one of: {', '.join(list_datasets())}")
    return _REGISTRY[key]()


def scan(name: str, root: str | Path) -> ScanResult:
    """Read a native dataset folder into samples (the Python form of `ferbench scan`)."""
    adapter = get_dataset(name)
    result = adapter.scan(adapter.check_root(root))
    if not result.samples and result.errors:  # nothing readable at all: say why (one bad sample alone is excluded)
        raise result.errors[0]
    return result


def synth(name: str, out: str | Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
          intensity: float = 1.0) -> list[Sample]:
    """Write a miniature replica of a dataset's native layout (the Python form of `ferbench synth`).

    `intensity` multiplies every expression's action units (1.0: classes as separable as real posed data;
    lower values make the replica harder)."""
    if not 0 < intensity <= 3:
        raise FerbenchError(f"intensity must lie in (0, 3], got {intensity}")
    adapter = get_dataset(name)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise FerbenchError(f"{out}: is a file; synth writes a replica into a folder (a new or empty one)")
    blocking = _file_in_the_way(out.parent, Path(out.anchor))
    if blocking is not None:
        raise FerbenchError(f"{blocking}: is a file where the folder of {out} would be; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(out)
    with tempfile.TemporaryDirectory(prefix=_staging_prefix(out, os.getpid()), dir=out.parent) as tmp:
        samples = adapter.write_replica(Path(tmp), subjects=subjects, seed=seed, modes=modes, intensity=intensity)
        _move_in(Path(tmp), out)
    return [_rebased(s, Path(tmp), out) for s in samples]


def _staging_prefix(out: Path, pid: int) -> str:
    """The staging folder's name before its random part: it names the writing process and host, so a later
    synth can tell a folder left by a killed one (SIGKILL skips the clean-up) from one still being written."""
    return f".{out.name}.synth-{pid}@{socket.gethostname()}-"


def _remove_dead_staging(out: Path) -> None:
    """Remove staging folders of `out` left by synth processes of this host that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.synth-(\d+)@{re.escape(socket.gethostname())}-[^/]+$")
    for folder in out.parent.glob(f".{glob.escape(out.name)}.synth-*"):
        found = pattern.match(folder.name)
        if found and folder.is_dir() and not folder.is_symlink() and not pid_alive(int(found.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def _move_in(staged: Path, out: Path) -> None:
    """Move a staged replica into `out`, refusing (before anything moves) where a file of the same name exists
    with other bytes, or a file stands where the replica has a folder: synth never replaces a file it did not write (a rerun with the same arguments writes the
    same bytes, so it goes through)."""
    files = sorted(p for p in staged.rglob("*") if p.is_file() or p.is_symlink())
    for p in files:
        target = out / p.relative_to(staged)
        if target.is_symlink() or target.is_dir() or (target.exists() and not filecmp.cmp(p, target, shallow=False)):
            raise FerbenchError(f"{target}: already exists and is not what this replica writes there; synth never "
                                "replaces a file it did not write: choose a new or empty folder")
    folders = {(out / p.relative_to(staged)).parent for p in files}
    folders |= {out / d.relative_to(staged) for d in staged.rglob("*") if d.is_dir()}
    for folder in sorted(folders):
        blocking = _file_in_the_way(folder, out)
        if blocking is not None:
            raise FerbenchError(f"{blocking}: is a file where this replica writes a folder; synth never replaces a "
                                "file it did not write: choose a new or empty folder")
    for p in files:
        target = out / p.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    for d in sorted((p for p in staged.rglob("*") if p.is_dir()), key=lambda p: len(p.parts)):
        (out / d.relative_to(staged)).mkdir(parents=True, exist_ok=True)  # empty folders are part of a layout
    out.mkdir(parents=True, exist_ok=True)


def _file_in_the_way(folder: Path, top: Path) -> Path | None:
    """The first existing non-folder among `folder` and its parents up to `top` (None: each is a folder or absent),
    found before anything is written, so a refusal leaves nothing half-moved."""
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            return p
        if p == top:
            break
    return None


def _rebased(sample: Sample, staged: Path, out: Path) -> Sample:
    """The sample with its paths moved from the staging folder into `out`."""
    def move(p: Path) -> Path:
        return out / Path(p).relative_to(staged) if Path(p).is_relative_to(staged) else p
    meta = {k: str(move(Path(v))) if isinstance(v, str) and v.startswith(str(staged)) else v
            for k, v in sample.meta.items()}
    return dataclasses.replace(sample, frames=[move(p) for p in sample.frames],
                               landmarks=[move(p) for p in sample.landmarks],
                               video=None if sample.video is None else move(sample.video), meta=meta)


__all__ = [
    "DatasetAdapter",
    "Sample",
    "ScanResult",
    "builtin_names",
    "get_dataset",
    "is_junk",
    "list_datasets",
    "register_dataset",
    "scan",
    "synth",
]
