"""`synth` never replaces a file it did not write (#27, second hostile pass: `synth ck+ o` overwrote a user file)."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from ferbench.cli import app
from ferbench.datasets import scan, synth

runner = CliRunner()


def _digest(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_synth_refuses_to_replace_a_users_file_and_writes_nothing(tmp_path):
    out = tmp_path / "o"
    synth("order", out, subjects=2)
    victim = next(p for p in sorted(out.rglob("*")) if p.is_file())
    victim.write_bytes(b"the user's own bytes")
    before = _digest(out)
    res = runner.invoke(app, ["synth", "order", str(out), "--subjects", "2"])
    assert res.exit_code == 2 and str(victim) in res.output and "never replaces" in res.output, res.output
    assert _digest(out) == before  # nothing replaced, nothing added
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.synth-")]  # no staging folder left


def test_synth_again_with_the_same_arguments_goes_through_and_paths_point_into_the_folder(tmp_path):
    out = tmp_path / "o"
    first = synth("order", out, subjects=2)
    again = synth("order", out, subjects=2)
    assert [s.frames for s in again] == [s.frames for s in first]
    assert all(p.is_file() and p.is_relative_to(out) for s in again for p in s.frames)
    assert {s.id for s in scan("order", out).samples} == {s.id for s in first}


def test_synth_into_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["synth", "order", str(tmp_path / "f")])
    assert res.exit_code == 2 and "is a file" in res.output and (tmp_path / "f").read_text() == "x"
