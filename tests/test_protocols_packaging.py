"""The bundled protocol files (and the own-model example) ship inside the wheel and are found by an installed
(non-editable) ferbench."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import ferbench

ROOT = Path(ferbench.__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_the_protocol_files_and_an_install_outside_the_checkout_loads_them(tmp_path, installed_wheel):
    wheel, site = installed_wheel
    shipped = sorted(ROOT.joinpath("protocols").glob("*.yaml"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for p in shipped:
            assert f"ferbench/_protocols/{p.name}" in names
            assert z.read(f"ferbench/_protocols/{p.name}") == p.read_bytes()
        assert z.read("ferbench/_examples/my_model.py") == (ROOT / "examples" / "my_model.py").read_bytes()
    probe = (
        "import json, ferbench\n"
        "from ferbench.protocols import bundled_dir, list_protocols, load_protocol\n"
        "print(json.dumps({'pkg': ferbench.__file__, 'dir': str(bundled_dir()),\n"
        "  'names': sorted(p.name for p in list_protocols()), 'fp': load_protocol('10fold').fingerprint}))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, check=True, capture_output=True,
                         text=True)
    got = json.loads(out.stdout)
    assert got["pkg"].startswith(str(site)) and got["dir"].startswith(str(site / "ferbench" / "_protocols"))
    assert got["names"] == sorted(p.stem for p in shipped)
    from ferbench.protocols import load_protocol

    assert got["fp"] == load_protocol("10fold").fingerprint  # the same bytes as the checkout's file

    # the README's own-model lines, as typed after a plain install: the example comes out of the package
    cli = [sys.executable, "-m", "ferbench.cli", "models"]
    example = subprocess.run([*cli, "--example"], cwd=elsewhere, env=env, check=True, capture_output=True).stdout
    assert example == (ROOT / "examples" / "my_model.py").read_bytes()
    (elsewhere / "my_model.py").write_bytes(example)
    check = subprocess.run([*cli, "--check", "my_model.py:TinyTemporalNet"], cwd=elsewhere, capture_output=True,
                           env={**env, "COLUMNS": "200"}, text=True)
    assert check.returncode == 0 and "TinyTemporalNet fits the contract" in check.stdout, check.stdout + check.stderr
