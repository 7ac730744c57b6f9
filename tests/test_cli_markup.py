"""Text from the user or a file (paths, class names, config keys, messages) is printed as typed, never read as
rich markup: `[red]x[/red]` in a path stays in the path, `[link=...]` makes no link, `[raw]` in a config error
stays, a class named `[click](javascript:alert(1))` shows whole. The four cases through the real CLI, and a check
of the source that no rich-printing module hands interpolated text to rich as markup."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import h5py
from typer.testing import CliRunner

from _harness_data import make_store
from ferbench.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one line stays one line
ROOT = Path(__file__).resolve().parents[1]


def _one_line(res) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_a_path_with_markup_is_printed_as_typed(tmp_path):
    path = tmp_path / "[red]x[/red].h5"
    line = _one_line(runner.invoke(app, ["inspect", str(path)], env=WIDE))
    assert f"{path}: file not found" in line, line


def test_a_link_tag_in_a_root_is_text_not_a_link(tmp_path):
    root = "[link=http://evil.example]click[/link]"
    line = _one_line(runner.invoke(app, ["scan", "ck+", "--root", root], env=WIDE))
    assert str(Path(root)) in line and "\x1b]8;" not in line, line  # the words as typed, no OSC 8 hyperlink


def test_a_config_error_keeps_its_section_name(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[raw]\n"ck+" = 3\n')
    monkeypatch.setenv("FERBENCH_HOME", str(home))
    line = _one_line(runner.invoke(app, ["config", "show"], env=WIDE))
    assert "[raw] must map dataset names to folder paths" in line, line


def test_a_class_name_with_markup_is_shown_whole(tmp_path):
    hostile = "[click](javascript:alert(1))"
    path = make_store(tmp_path / "d.h5")
    with h5py.File(path, "r+") as f:
        classes = json.loads(f.attrs["classes"])
        f.attrs["classes"] = json.dumps([hostile, *classes[1:]])
    res = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert res.exit_code == 0, res.output
    assert f"{hostile} 8" in res.output, res.output  # the class, whole, with its 8 samples


#: The rich calls that read a str as markup; each must be given text (`as_text(...)`, `text_cells(...)`,
#: `Text(...)`), escaped markup (`as_markup(...)`), a constant written here, or a renderable held in a variable;
#: never text built from values.
RICH_MODULES = ("ferbench/cli.py", "ferbench/harness/progress.py", "ferbench/progress_lines.py", "ferbench/leaderboard/text.py")
SAFE_CALLS = {"as_text", "text_cells", "as_markup", "Text", "Table"}


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _safe(arg: ast.AST, variables: bool) -> bool:
    """Text, a constant, or (where `variables`: console.print's renderables) a variable."""
    if isinstance(arg, ast.Starred):
        arg = arg.value
    if isinstance(arg, ast.GeneratorExp):
        arg = arg.elt
    if isinstance(arg, ast.Constant) or variables and isinstance(arg, ast.Name):
        return True
    return isinstance(arg, ast.Call) and _name(arg.func) in SAFE_CALLS


def _unsafe_markup(source: str) -> list[str]:
    """Calls where interpolated text would reach rich as markup: console.print, Table.add_row, Table(title=),
    Progress.add_task."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = _name(node.func)
        receiver = _name(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        if func == "print" and "console" in receiver or func == "add_row":
            args = node.args
        elif func == "add_task":  # a progress task's description is markup
            args = node.args[:1]
        elif func == "Table":
            args = [k.value for k in node.keywords if k.arg in ("title", "caption")]
        else:
            continue
        found += [f"line {node.lineno}: {ast.unparse(node)[:100]}" for a in args if not _safe(a, func == "print")]
    return found


def test_no_module_hands_interpolated_text_to_rich_as_markup():
    for module in RICH_MODULES:
        assert _unsafe_markup((ROOT / module).read_text()) == [], module
    # the check itself finds what it is for
    bad = ('console.print(f"x {p}")\ntable.add_row(name, str(n))\nTable(title=f"{a}")\nerr_console.print("x" + y)\n'
           'bar.add_task(f"prepare {d}")\n')
    assert len(_unsafe_markup(bad)) == 6
    assert _unsafe_markup('console.print(as_text(f"x {p}"))\ntable.add_row(*text_cells(a, b))\n'
                          'console.print(table)\n') == []


def test_the_progress_view_prints_paths_reasons_and_names_as_typed():
    import io

    from rich.console import Console

    from ferbench.harness.progress import ProgressView

    con = Console(file=io.StringIO(), record=True, width=300, force_terminal=True)  # the live bar shows the status
    with ProgressView(con) as view:
        view({"event": "plan", "total": 2, "skipped": 0, "pending": 2, "rerun": {"t": "record refused ([bad] key)"},
              "warnings": ["[raw] in /runs/[red]x[/red]"], "protocol": "/tmp/[red]p[/red].yaml"})
        view({"event": "epoch", "model": "fusion-svm", "member": "static", "repeat": 0, "fold": 1, "stage": "s",
              "epoch": 1, "epochs": 2, "loss": 0.5})
        view({"event": "task-failed", "task_id": "[bold]t[/bold]", "error": "boom"})
    shown = con.export_text()
    for typed in ("protocol file: /tmp/[red]p[/red].yaml", "record refused ([bad] key)",
                  "warning: [raw] in /runs/[red]x[/red]", "fusion-svm r0 f1 [static]", "failed [bold]t[/bold]: boom"):
        assert typed in shown, (typed, shown)
