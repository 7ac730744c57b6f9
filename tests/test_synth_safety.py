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


def _synth_then_die(out: str) -> None:
    """Child: a synth killed with SIGKILL after its first files are staged (no clean-up runs)."""
    import os
    import signal

    from ferbench.datasets import get_dataset

    adapter = type(get_dataset("order"))
    write = adapter.write_replica

    def write_then_die(self, root, **kw):
        write(self, root, **kw)
        os.kill(os.getpid(), signal.SIGKILL)

    adapter.write_replica = write_then_die  # this forked child only
    synth("order", out, subjects=2)


def test_a_killed_synths_staging_folder_is_removed_by_the_next_synth_and_a_running_ones_kept(tmp_path):
    import multiprocessing as mp
    import signal
    import subprocess
    import sys

    out = tmp_path / "o"
    child = mp.get_context("fork").Process(target=_synth_then_die, args=(str(out),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".o.synth-")]
    assert len(left) == 1 and any(left[0].rglob("*.png")) and not out.exists()  # what SIGKILL leaves behind

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from ferbench.datasets import _staging_prefix

        busy = tmp_path / f"{_staging_prefix(out, running.pid)}abc"
        busy.mkdir()
        synth("order", out, subjects=2)
        assert not left[0].exists()  # the dead process's folder is gone
        assert busy.is_dir()  # a live process's folder is never touched
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".o.synth-")] == [busy]
    finally:
        running.kill()
        running.wait()
    assert scan("order", out).samples
