"""Comparing two HDF5 files dataset by dataset (the "same input and config give the same arrays" checks)."""

from pathlib import Path

import h5py
import numpy as np


def datasets_of(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of the file, by its path inside the file."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_arrays(a: Path, b: Path) -> None:
    """The two files hold the same datasets with the same dtypes and values."""
    da, db = datasets_of(a), datasets_of(b)
    assert sorted(da) == sorted(db)
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)
