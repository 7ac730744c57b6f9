"""The data home: one place where ferbench finds raw datasets and keeps what it prepares and runs, so the three
commands run as typed (`ferbench prepare ck+`, `ferbench evaluate --protocol loso`, `ferbench leaderboard`).

    $FERBENCH_HOME (default ~/ferbench_data)
    ├── raw/<dataset>/          the dataset as its owners distribute it (a folder or a symlink)
    ├── prepared/<dataset>.h5   what `ferbench prepare <dataset>` writes
    ├── runs/                   what `ferbench evaluate` writes and `ferbench leaderboard` reads
    ├── leaderboards/           what `ferbench leaderboard` writes (leaderboard.md, .html, .csv, .json)
    └── config.toml             optional: [raw] <dataset> = "/where/it/is" (`ferbench config set raw.ck+ PATH`)

Like TFDS's `data_dir`, MNE's `MNE_DATA` or torchvision's `root`: explicit options (`--root`, `--out`,
`--data`, `--runs`) still override everything here.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ferbench.atomic import atomic_write
from ferbench.errors import FerbenchError
from ferbench.paths import require_folder

ENV = "FERBENCH_HOME"
DEFAULT = "~/ferbench_data"


def home() -> Path:
    """The data home: $FERBENCH_HOME, else ~/ferbench_data; one line when it is a file or lies under one (every
    command would otherwise find nothing in it, or fail on an OS error after its work)."""
    return require_folder(Path(os.environ.get(ENV) or DEFAULT).expanduser(), f"the data home (${ENV})", write=False)


def writable_home() -> Path:
    """The data home, for a command that writes in it: also refused when it cannot be written."""
    return require_folder(home(), f"the data home (${ENV})")


def config_path() -> Path:
    return home() / "config.toml"


def read_config() -> dict[str, dict[str, str]]:
    """The config file's tables ({} when there is none); a malformed file is one line naming it."""
    path = config_path()
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a folder (or a dangling link) where the file belongs
            raise FerbenchError(f"{path}: is not a file (expected the settings file config.toml); move it away")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FerbenchError(f"{path}: not a valid TOML file ({e}); fix it or delete it") from None
    raw = data.get("raw", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise FerbenchError(f"{path}: [raw] must map dataset names to folder paths (strings)")
    return {"raw": dict(raw)}


def set_raw(dataset: str, folder: str | Path) -> Path:
    """Remember where a dataset's raw folder is (`ferbench config set raw.<dataset> PATH`): an existing folder
    (an empty path would be the current folder, resolved to wherever the command happened to run)."""
    from ferbench.datasets import get_dataset

    get_dataset(dataset)  # an unknown name is refused with the known ones
    if not str(folder).strip():
        raise FerbenchError(f"raw.{dataset}: empty path; expected the folder of the {dataset} dataset as its owners "
                            "distribute it")
    if not Path(folder).expanduser().is_dir():
        raise FerbenchError(f"{folder}: no such folder (expected the {dataset} dataset as its owners distribute it)")
    writable_home()
    raw = read_config().get("raw", {})
    _refuse_foreign_config(dataset)
    raw[dataset] = str(Path(folder).expanduser().resolve())
    lines = [CONFIG_HEADER, "[raw]"]
    lines += [f'"{name}" = "{_escape(path)}"' for name, path in sorted(raw.items())]
    return atomic_write(config_path(), "\n".join(lines) + "\n")


CONFIG_HEADER = "# ferbench data home settings (`ferbench config set raw.<dataset> PATH`)"


def _refuse_foreign_config(dataset: str) -> None:
    """config set rewrites the file whole: refuse when it holds what ferbench would not write back (a comment
    of the user's, a table other than [raw]), which would be lost."""
    path = config_path()
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    other = [k for k in tomllib.loads(text) if k != "raw"]
    comments = [ln for ln in text.splitlines() if ln.strip().startswith("#") and ln.strip() != CONFIG_HEADER]
    if other or comments:
        what = f"the table(s) {', '.join(other)}" if other else "comments"
        raise FerbenchError(f"{path}: holds {what} that `config set` would not keep; edit the file by hand "
                            f"(under [raw]: \"{dataset}\" = \"PATH\")")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def raw_dir(dataset: str) -> tuple[Path, str]:
    """Where ferbench looks for a dataset's raw folder, and why there ("config.toml" or "data home")."""
    configured = read_config().get("raw", {}).get(dataset)
    if configured:
        return Path(configured).expanduser(), f"{config_path()}"
    return home() / "raw" / dataset, "the data home"


def prepared_path(dataset: str) -> Path:
    return home() / "prepared" / f"{dataset}.h5"


def leaderboards_dir() -> Path:
    """Where `ferbench leaderboard` writes its files unless told (beside runs/, not the current folder)."""
    return home() / "leaderboards"


def runs_dir() -> Path:
    return home() / "runs"


def missing_raw_message(dataset: str) -> str:
    """The one line `ferbench prepare <dataset>` prints when it finds no raw folder."""
    from ferbench.datasets import get_dataset

    adapter = get_dataset(dataset)
    where, why = raw_dir(dataset)
    return (f"no raw {dataset} data at {where} (looked there because of {why}; {ENV}={home()}). Expected layout: "
            f"{adapter.layout}. Obtain it from {adapter.obtain}. Then put it (or a symlink to it) at {where}, run "
            f"`ferbench config set raw.{dataset} /path/to/it`, or pass --root /path/to/it. To try the tool first on "
            f"a replica: `ferbench synth {dataset} {dataset}-replica`, then `ferbench prepare {dataset} --root "
            f"{dataset}-replica --out {dataset}-replica.h5`.")


def status() -> list[dict]:
    """Per dataset adapter: where ferbench looks for the raw folder and whether it is there, and the prepared
    file in the data home (samples, subjects, size, short data fingerprint: the `d` part of a record key)."""
    from ferbench.datasets import get_dataset, list_datasets

    rows = []
    for name in list_datasets():
        raw, why = raw_dir(name)
        prepared = prepared_path(name)
        row = {"dataset": name, "title": get_dataset(name).title, "raw": str(raw), "raw_from": why,
               "raw_present": raw.is_dir(), "prepared": str(prepared), "prepared_present": prepared.is_file(),
               "samples": None, "subjects": None, "bytes": None, "fingerprint": None, "problem": None}
        if prepared.is_file():
            try:
                from ferbench.store import open_store

                with open_store(prepared) as st:
                    row["samples"] = len(st.samples)
                    row["subjects"] = len({s.subject for s in st.samples})
                row["bytes"] = prepared.stat().st_size
                from ferbench.harness.fingerprint import data_fingerprint

                row["fingerprint"] = data_fingerprint(prepared)[:10]
            except FerbenchError as e:
                row["problem"] = str(e)
        rows.append(row)
    return rows


def resolve_data(value: str | Path | None) -> Path | None:
    """`--data`: a path, or a dataset name meaning its prepared file in the data home."""
    if value is None:
        return None
    text = str(value)
    from ferbench.datasets import list_datasets

    if text in list_datasets() and not Path(text).exists():
        path = prepared_path(text)
        if not path.is_file():
            raise FerbenchError(f"no prepared {text} file at {path}; run `ferbench prepare {text}` first "
                                f"(or pass the path of a .h5 file)")
        return path
    return Path(text)


def protocol_data(protocol: str | Path) -> tuple[list[tuple[str, Path, Path | None, Path | None]], list[str]]:
    """For `ferbench evaluate --protocol P` without --data: (found, missing). found: (dataset, data file, test
    file or None, source file or None) for each dataset the protocol lists whose prepared file is in the data
    home (a cross-dataset protocol needs its test dataset's file too, a transfer protocol its source's);
    missing: the datasets without one."""
    from ferbench.protocols import load_protocol

    proto = load_protocol(protocol)
    found, missing = [], []
    test = prepared_path(proto.test_dataset) if proto.test_dataset else None
    source = prepared_path(proto.pretrain) if proto.pretrain else None
    for name in proto.datasets:
        data = prepared_path(name)
        needed = ((name, data), (proto.test_dataset, test), (proto.pretrain, source))
        lacking = [d for d, p in needed if p is not None and not p.is_file()]
        if lacking:
            missing.extend(d for d in lacking if d not in missing)
        else:
            found.append((name, data, test, source))
    return found, missing


def source_data(protocol: str | Path) -> Path | None:
    """A transfer protocol's source file in the data home, for `ferbench evaluate --data X` without
    --data-source: its prepared file where it exists, else None (evaluate then says what to pass)."""
    from ferbench.protocols import load_protocol

    proto = load_protocol(protocol)
    path = prepared_path(proto.pretrain) if proto.pretrain else None
    return path if path is not None and path.is_file() else None


def no_data_message(protocol: str, missing: list[str]) -> str:
    """The one line `ferbench evaluate --protocol P` prints when no dataset of P is prepared."""
    return (f"protocol {protocol} found no prepared file in the data home ({home() / 'prepared'}) for "
            f"{', '.join(missing)}; prepare them first: {prepare_commands(missing)} (or pass --data FILE.h5)")


def prepare_commands(datasets: list[str]) -> str:
    """"`ferbench prepare a`; `ferbench prepare b`": what makes the missing prepared files."""
    return "; ".join(f"`ferbench prepare {d}`" for d in datasets)
