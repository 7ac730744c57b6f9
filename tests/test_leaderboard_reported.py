"""leaderboards/reported.yaml says what the papers print: every number is found, as printed, on its method's line
inside its own table of the paper's text, and every confusion-matrix row appears in order in its table.

The paper texts are located through the README of the papers folder (FERBENCH_PAPERS, default the project's
shared papers folder), which maps each paper key to its text file."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ferbench.errors import FerbenchError
from ferbench.leaderboard.reported import default_path, load_reported

# the papers folder sits beside the checkout (../shared/papers), on developer machines and in CI alike
PAPERS = Path(os.environ.get("FERBENCH_PAPERS", Path(__file__).resolve().parents[2] / "shared" / "papers"))
ROOT = Path(__file__).resolve().parents[1]


def _paper_texts() -> dict[str, str]:
    readme = PAPERS / "README.md"
    if not readme.is_file():
        pytest.skip(f"paper texts not found ({readme} missing); set FERBENCH_PAPERS to the papers folder")
    texts = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and (key := re.fullmatch(r"`([a-z]+\d{4})`", cells[1])):
            files = [f.strip() for f in cells[0].split(",")]
            texts[key.group(1)] = "\n".join((PAPERS / f).read_text(encoding="utf-8") for f in files)
    return texts


def _norm(line: str) -> str:
    """Drop markdown emphasis, escapes, LaTeX subscripts and citation brackets: `$E_1$ + $E_2$ [3]` -> `E1 + E2`."""
    line = re.sub(r"\s*\[\d+\](,\s*\[\d+\])*", "", line)
    line = re.sub(r"\$|\\|\*|_|\{|\}", "", line)
    return re.sub(r"[ \t]+", " ", line)


def _table_block(text: str, table: str) -> list[str]:
    """Lines from the first line opening with 'Table N' to the next other table or section heading."""
    n = re.match(r"Table (\d+)", table).group(1)
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"table\s+{n}\b", ln.strip(), re.I))
    end = len(lines)
    for i in range(start + 1, len(lines)):
        s = lines[i].strip()
        other = re.match(r"table\s+(\d+)\b", s, re.I)
        if (other and other.group(1) != n) or s.startswith("#"):
            end = i
            break
    return [_norm(ln) for ln in lines[start:end]]


def _token(value: str) -> str:
    return rf"(?<![\d.]){re.escape(value)}(?![\d])"


def test_every_reported_number_is_in_its_table():
    texts = _paper_texts()
    raw = yaml.safe_load(default_path().read_text())
    assert len(raw["entries"]) > 80
    for e in raw["entries"]:
        block = _table_block(texts[e["paper"]], e["table"])
        parts = [p.strip() for p in re.split(r"[()]", _norm(e["method"])) if p.strip()]
        lines = [ln for ln in block if all(p in ln for p in parts) and re.search(_token(e["value"]), ln)]
        assert lines, f"{e['paper']} {e['table']}: no line with {e['method']!r} and {e['value']}"
        for extra in ("std", "p_value"):
            if e.get(extra) not in (None, "-"):
                assert any(e[extra] in ln for ln in lines), f"{e['method']}: {extra} {e[extra]} not on its line"


def test_every_confusion_row_is_in_its_table():
    texts = _paper_texts()
    raw = yaml.safe_load(default_path().read_text())
    assert {(c["paper"], c["table"]) for c in raw["confusions"]} == {
        ("yu2018", "Table 4"), ("yu2018", "Table 6"), ("yu2018", "Table 8"),
        ("kim2017", "Table 3(b)"), ("kim2017", "Table 4(b)")}
    for c in raw["confusions"]:
        block = "\n".join(_table_block(texts[c["paper"]], c["table"]))
        for row in c["rows"]:
            pattern = r"(?<![\d.])" + r"[^\d\n]+".join(re.escape(v) for v in row) + r"(?![\d.])"
            assert re.search(pattern, block), f"{c['paper']} {c['table']}: row {row} not found"
            assert abs(sum(float(v) for v in row) - 100) < 0.05


def test_spot_values_and_scales():
    ref = load_reported()
    by = {(e.paper, e.table, e.method, e.dataset_test, e.protocol): e for e in ref.entries}
    nlstm = by[("yu2018", "Table 5", "STC-NLSTM", "oulu-casia", "10fold")]
    assert nlstm.value == pytest.approx(0.9345) and nlstm.std == pytest.approx(0.0043) and nlstm.text == "93.45"
    assert by[("yu2018", "Table 5", "ARDfee", "oulu-casia", "10fold")].text == "89.60"  # precision kept
    assert by[("yu2018", "Table 9", "STC-NLSTM", "bp4d", "fera2015")].value == pytest.approx(0.58)
    assert by[("kim2017", "Table 5", "Inter-dataset (CASME II / MMI)", "mmi", "kim2017-transfer")].model == "mo-cnn-lstm"
    assert not any(e.protocol == "cross-dataset" for e in ref.entries)  # zero-shot is ferbench's: no paper number
    assert by[("kim2017", "Table 6", "E1 + E2 + E3 + E4", "casme2", "loso")].p_value == "0.4909"
    assert by[("chao2016", "Table 2", "Feature level fusion (LSTM-mean)", "afew", None)].value == pytest.approx(0.4638)
    assert by[("chao2016", "Table 1", "LSTM-mean (2048/64/64/7)", "afew", "val")].model == "lstm-mean"


def test_source_checkout_fallback():
    assert default_path().resolve() == (ROOT / "leaderboards" / "reported.yaml").resolve()


@pytest.mark.slow
def test_wheel_ships_reported_numbers_to_an_install_outside_the_checkout(tmp_path, installed_wheel):
    _, site = installed_wheel
    probe = ("from ferbench.leaderboard.reported import default_path, load_reported\n"
             "print(default_path()); print(len(load_reported().entries))\n")
    (tmp_path / "elsewhere").mkdir()
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "elsewhere", check=True, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(site)}).stdout.split()
    assert out[0] == str(site / "ferbench" / "_leaderboards" / "reported.yaml")
    assert int(out[1]) == len(load_reported().entries)


def test_bad_reported_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("schema: ferbench.reported/1\nentries:\n  - {paper: x, table: T1, dataset: ck+, protocol: 10fold,"
                   " method: M, model: stc, metric: accuracy, value: 'ninety', scale: percent}\n")
    with pytest.raises(FerbenchError, match=r"r\.yaml: entries\[0\]: expected a number"):
        load_reported(bad)
    bad.write_text("schema: ferbench.reported/1\nentries:\n" + "".join(
        "  - {paper: x, table: T1, dataset: ck+, protocol: 10fold, method: M, model: stc, metric: accuracy,"
        f" value: '{v}', scale: percent}}\n" for v in ("90.1", "91.2")))
    with pytest.raises(FerbenchError, match="again"):
        load_reported(bad)
    bad.write_text("entries: [")
    with pytest.raises(FerbenchError, match="not valid YAML"):
        load_reported(bad)


def test_reported_protocols_are_bundled_protocols_for_their_datasets():
    from ferbench.protocols import list_protocols

    protocols = {p.name: p for p in list_protocols()}
    for e in load_reported().entries:
        if e.protocol is None:  # AFEW test partition: no ferbench protocol scores it
            continue
        p = protocols[e.protocol]
        assert e.dataset in p.datasets, (e.method, e.protocol)
        assert (p.test_dataset or e.dataset) == e.dataset_test, (e.method, e.protocol)
