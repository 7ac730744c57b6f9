"""The CLI turns user mistakes into one clear line and a non-zero exit, never a traceback."""

from typer.testing import CliRunner

from ferbench.cli import app

runner = CliRunner()


def test_scan_wrong_root_is_one_clear_line(tmp_path):
    missing = tmp_path / "no-such-dir"
    result = runner.invoke(app, ["scan", "ck+", "--root", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output
    assert "Traceback" not in result.output


def test_unknown_dataset_named_in_error(tmp_path):
    result = runner.invoke(app, ["scan", "nope", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown dataset 'nope'" in result.output
