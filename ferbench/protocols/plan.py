"""From a protocol and a prepared file to a fold plan: which rows train, validate and test in every trial.

`make_plan` selects the protocol's samples (dataset check, class subset, filter), runs the splitter once per
repeat with its own seed, carves validation out of the training subjects only, and runs `check_leakage`
before returning, so nothing downstream can train on a plan that mixes subjects.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

from ferbench.atomic import atomic_open
from ferbench.errors import FerbenchError
from ferbench.paths import require_folder
from ferbench.protocols.schema import MAX_REPEATS, Protocol, load_protocol
from ferbench.protocols.splitters import build_splitter, splitter_key
from ferbench.protocols.table import SampleTable

ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Fold:
    """One trial: row indices into plan.train_table (train, val) and plan.test_table (test)."""

    repeat: int
    fold: int
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class Plan:
    """Every fold of a protocol on one file (or a train file and a test file), leakage-checked."""

    protocol: Protocol
    train_table: SampleTable
    test_table: SampleTable
    classes: tuple[str, ...]
    y_train: np.ndarray
    y_test: np.ndarray
    folds: list[Fold]
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def _tables(self) -> dict[str, SampleTable]:
        return {"train": self.train_table, "val": self.train_table, "test": self.test_table}

    def fold_rows(self) -> list[dict[str, Any]]:
        """One dict per (repeat, fold, role, sample): the rows `write_folds` writes."""
        out = []
        for f in self.folds:
            for role, idx in (("train", f.train), ("val", f.val), ("test", f.test)):
                t = self._tables()[role]
                for i in idx.tolist():
                    lab = int(t.labels[i])
                    out.append({
                        "repeat": f.repeat, "fold": f.fold, "role": role, "dataset": t.dataset,
                        "sample_id": t.ids[i], "subject": t.subjects[i],
                        "label": t.classes[lab] if lab >= 0 and self.protocol.task == "classification" else "",
                    })
        return out

    def class_counts(self, fold: Fold, role: str) -> dict[str, int]:
        """How many samples of each plan class a fold's role holds (label order; empty for au-detection)."""
        y = self.y_test if role == "test" else self.y_train
        got = Counter(y[getattr(fold, role)].tolist())
        return {c: got.get(k, 0) for k, c in enumerate(self.classes)}


# ------------------------------------------------------------------------------------------- selection
def _as_table(data: Any) -> SampleTable:
    if isinstance(data, SampleTable):
        return data
    if hasattr(data, "samples") and hasattr(data, "attrs"):
        return SampleTable.from_store(data)
    return SampleTable.open(data)


def _where(table: SampleTable) -> str:
    return str(table.path) if table.path else f"the {table.dataset} sample table"


def _filter_mask(protocol: Protocol, table: SampleTable) -> np.ndarray:
    mask = np.ones(len(table), dtype=bool)
    for key, allowed in protocol.filter.get(table.dataset, {}).items():
        if key == "split":
            values = [str(s) if s is not None else "" for s in table.splits]
        else:
            values = [str(m.get(key[5:], "")) for m in table.modes]
        hit = np.isin(np.array(values, dtype=str), list(allowed))
        if not hit.any():
            have = sorted(set(values))
            raise FerbenchError(
                f"{protocol.path}: filter {key} in {list(allowed)} matches no sample of {_where(table)} "
                f"(it holds {key} = {', '.join(v or '(none)' for v in have)})")
        mask &= hit
    return mask


def _labels(protocol: Protocol, table: SampleTable, classes: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """Labels re-indexed to `classes` order; `names[k]` is class k's name in this table. -1 = not used."""
    for n in names:
        if n not in table.classes:
            raise FerbenchError(f"{protocol.path}: class '{n}' is not in {_where(table)} "
                                f"(its classes: {', '.join(table.classes) or 'none'})")
    lut = np.full(len(table.classes) + 1, -1, dtype=np.int64)  # last slot: unlabelled (-1)
    for k, n in enumerate(names):
        lut[table.classes.index(n)] = k
    return lut[table.labels]


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _guessed_subjects(table: SampleTable) -> tuple[int, bool]:
    """(folder-adapter samples whose subject id may be a guess, whether the file says so).

    The folder adapter takes the clip name's prefix before the first '_' when subjects.csv does not list a
    clip, and the store records which rule gave each subject (`subject_source` "name"). A file written before
    the store kept it (schema 1-2) only allows a weaker check: subjects equal to that prefix.
    """
    if table.dataset != "folder":
        return 0, False
    if table.subject_sources is not None:
        return sum(src == "name" for src in table.subject_sources), True
    n = 0
    for sid, subject in zip(table.ids, table.subjects):
        stem = sid.split("/", 1)[-1].rsplit(".", 1)[0]
        n += (stem.split("_", 1)[0] or stem) == subject
    return n, False


# ------------------------------------------------------------------------------------------------- plan
def make_plan(protocol: Protocol | str | Path, data: Any, data_test: Any = None, *, repeats: int | None = None,
              validation: float | None = None) -> Plan:
    """Every (repeat, fold) of `protocol` on `data` (path, Store or SampleTable), leakage-checked.

    `data_test`: the test file of a cross-dataset protocol (only those take one).
    `repeats`: override the protocol's repeats (e.g. 1 for a quick run).
    `validation`: share of the training SUBJECTS held out (grouped, seeded) as validation, when the caller's
    recipe selects on validation and the protocol defines none (it overrides the protocol's own share);
    0 holds out nothing, for a recipe that does not select (its tasks then train on every training subject);
    None takes the protocol's own share. The test fold is never used for it.
    Seeds: repeat r splits with SeedSequence([seed, r]); fold k of repeat r gets Fold.seed =
    SeedSequence([seed, r, k]), which also draws its validation subjects.
    """
    p = load_protocol(protocol)
    if repeats is not None and (not isinstance(repeats, int) or isinstance(repeats, bool)
                                or not 1 <= repeats <= MAX_REPEATS):
        raise FerbenchError(f"repeats must be a whole number from 1 to {MAX_REPEATS}, got {repeats!r}")
    if validation is not None and (isinstance(validation, bool) or not isinstance(validation, (int, float))
                                   or not 0 <= validation < 1):
        raise FerbenchError(f"validation must be a fraction of the training subjects in [0, 1), got {validation!r}")
    train_table, test_table = _tables(p, data, data_test)
    notes: list[str] = []
    classes, y_train, y_test, keep_train, keep_test = _select(p, train_table, test_table, notes)
    n_repeats = repeats or p.repeats
    frac = (validation if validation is not None else p.validation_fraction) or None
    folds = _split(p, train_table, test_table, (y_train, y_test), (keep_train, keep_test), n_repeats, frac, notes)
    for table in (train_table,) if test_table is train_table else (train_table, test_table):
        guessed, known = _guessed_subjects(table)
        if guessed and known:
            notes.append(f"{_where(table)}: subject ids of {guessed} sample(s) were taken from their clip names "
                         f"(subjects.csv does not list them): the folder adapter's guess, so subject independence "
                         f"cannot be guaranteed for them; list them in subjects.csv and prepare again")
        elif guessed:
            notes.append(f"{_where(table)}: subject ids of {guessed} sample(s) equal their clip-name prefix: they may "
                         f"be guesses by the folder adapter (this file, prepared before ferbench recorded subject "
                         f"sources, does not say), so subject independence cannot be guaranteed for them")
    digest = hashlib.sha256(json.dumps(
        [p.fingerprint, train_table.fingerprint, None if test_table is train_table else test_table.fingerprint,
         p.seed, n_repeats, frac], separators=(",", ":")).encode()).hexdigest()
    plan = Plan(protocol=p, train_table=train_table, test_table=test_table, classes=classes, y_train=y_train,
                y_test=y_test, folds=folds, warnings=notes, fingerprint=digest)
    check_leakage(plan)
    return plan


def _tables(p: Protocol, data: Any, data_test: Any) -> tuple[SampleTable, SampleTable]:
    """The train and test tables (the same object unless cross-dataset), checked against the protocol."""
    if p.test_dataset is not None and data_test is None:
        raise FerbenchError(f"{p.path}: protocol '{p.name}' trains on {'/'.join(p.datasets)} and tests on "
                            f"{p.test_dataset}: give the test file too (--data-test)")
    if p.test_dataset is None and data_test is not None:
        raise FerbenchError(f"{p.path}: protocol '{p.name}' splits one file; --data-test is only for "
                            f"cross-dataset protocols (splitter train-on-file)")
    train_table = _as_table(data)
    test_table = _as_table(data_test) if data_test is not None else train_table
    if train_table.dataset not in p.datasets:
        raise FerbenchError(f"{p.path}: protocol '{p.name}' applies to {', '.join(p.datasets)}, but "
                            f"{_where(train_table)} holds {train_table.dataset}")
    if p.test_dataset is not None and test_table.dataset != p.test_dataset:
        raise FerbenchError(f"{p.path}: protocol '{p.name}' tests on {p.test_dataset}, but "
                            f"{_where(test_table)} holds {test_table.dataset}")
    return train_table, test_table


def _select(p: Protocol, train_table: SampleTable, test_table: SampleTable, notes: list[str]) -> tuple[Any, ...]:
    """Plan classes, per-row labels in their order (-1 = not used) and the used-row masks of both tables."""
    au = p.task == "au-detection"
    classes: tuple[str, ...] = () if au else (tuple(p.class_map) if p.class_map else (p.classes or train_table.classes))
    out = []
    tables = [train_table] if test_table is train_table else [train_table, test_table]
    for t, is_test in zip(tables, (False, True)):
        if au:
            y = np.full(len(t), -1, dtype=np.int64)
        else:
            names = tuple(p.class_map[c] for c in classes) if (p.class_map and is_test) else classes
            y = _labels(p, t, classes, names)
        keep = _filter_mask(p, t) & ((y >= 0) | au)
        if not keep.any():
            raise FerbenchError(f"{p.path}: no sample of {_where(t)} is in the protocol's classes "
                                f"({', '.join(classes) or 'any'}) and filter; expected labelled samples")
        if keep.sum() < len(t):
            notes.append(f"{_where(t)}: {int(keep.sum())} of {len(t)} samples used (the rest are unlabelled, "
                         f"outside the class subset or the filter)")
        out.append((np.where(keep, y, -1), keep))  # au-detection: labels stay -1; `keep` says which rows
    (y_train, keep_train), (y_test, keep_test) = out[0], out[-1]
    return classes, y_train, y_test, keep_train, keep_test


def _split(p: Protocol, train_table: SampleTable, test_table: SampleTable, ys: tuple[np.ndarray, np.ndarray],
           keeps: tuple[np.ndarray, np.ndarray], n_repeats: int, frac: float | None, notes: list[str]) -> list[Fold]:
    """Run the splitter once per repeat on the used rows, then carve validation out of each training side."""
    rows_tr, rows_te = np.flatnonzero(keeps[0]), np.flatnonzero(keeps[1])
    key = splitter_key(p.splitter)
    if key == "file":  # one concatenated index space: the train file's used rows, then the test file's
        rows = np.concatenate([rows_tr, rows_te])
        X = np.array(["train"] * len(rows_tr) + ["test"] * len(rows_te))
        groups = np.array([f"{train_table.dataset}:{train_table.subjects[i]}" for i in rows_tr]
                          + [f"{test_table.dataset}:{test_table.subjects[i]}" for i in rows_te])
        y = np.concatenate([ys[0][rows_tr], ys[1][rows_te]])
    else:
        rows = rows_tr
        groups = np.array([train_table.subjects[i] for i in rows], dtype=str)
        y = ys[0][rows]
        if key == "split":
            X = np.array([s or "" for s in train_table.splits], dtype=str)[rows]
        elif key == "mode":
            X = train_table.mode_keys()[rows]
            _check_modes(p, build_splitter(p.splitter, p.params, random_state=0), X)
        else:
            X = rows
    n_subjects = len(set(groups.tolist()))
    n_splits = p.params.get("n_splits")
    if isinstance(n_splits, int) and n_subjects < n_splits:
        raise FerbenchError(
            f"{p.path}: {n_splits} subject-disjoint folds need at least {n_splits} subjects, but "
            f"{_where(train_table)} has {n_subjects} in the protocol's classes and filter (a fold would be empty); "
            f"copy the protocol and lower params.n_splits, or use more subjects")
    folds: list[Fold] = []
    for r in range(n_repeats):
        cv = build_splitter(p.splitter, p.params, random_state=_derive_seed(p.seed, r) % (2**32 - 1))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                splits = list(cv.split(X, y if p.task == "classification" else None, groups))
        except ValueError as e:
            raise FerbenchError(f"{p.path}: splitter {p.splitter} {p.params or ''} cannot split the {len(rows)} "
                                f"samples of {n_subjects} subjects selected from {_where(train_table)}: {e}") from None
        for w in caught:  # e.g. scikit-learn: a class with fewer members than folds (stratification is loose)
            msg = f"splitter {p.splitter}: {w.message}"
            if msg not in notes:
                notes.append(msg)
        if r == 0 and getattr(cv, "missing_", None):
            notes.append(f"listed subject(s) not in {_where(train_table)}, left out: {', '.join(cv.missing_)}")
        if r == 0 and getattr(cv, "unused_", None):
            values = ", ".join(f"{v or '(none)'}: {n}" for v, n in cv.unused_.items())
            notes.append(f"{sum(cv.unused_.values())} sample(s) of {_where(train_table)} have a split that no fold "
                         f"of the protocol names, unused ({values})")
        if r == 0 and getattr(cv, "absent_", None):
            notes.append(f"split(s) named by the protocol that no sample of {_where(train_table)} holds: "
                         f"{', '.join(cv.absent_)}")
        if r == 0 and getattr(cv, "unlisted_", None):
            notes.append(f"subject(s) of {_where(train_table)} in no list of the protocol, unused: "
                         f"{', '.join(cv.unlisted_)}")
        for k, (tr, te) in enumerate(splits):
            train, test = rows[tr], rows[te]  # file split: tr / te index the train / test file's rows
            if train.size == 0 or test.size == 0:
                raise FerbenchError(
                    f"{p.path}: repeat {r} fold {k} has no {'test' if test.size == 0 else 'training'} samples on "
                    f"{_where(train_table)} ({n_subjects} subjects for splitter {p.splitter} {p.params or ''}); "
                    f"expected enough subjects that every fold has training and test samples")
            fold_seed = _derive_seed(p.seed, r, k)
            train, val = _carve_validation(p, train_table, train, frac, fold_seed, r, k)
            folds.append(Fold(repeat=r, fold=k, seed=fold_seed, train=np.sort(train).astype(np.int64),
                              val=np.sort(val).astype(np.int64), test=np.sort(test).astype(np.int64)))
    return folds


def _check_modes(p: Protocol, cv: Any, X: np.ndarray) -> None:
    have = set(X.tolist())
    for role in ("train", "test"):
        for m in getattr(cv, role) or ():
            if m not in have:
                raise FerbenchError(f"{p.path}: {role} mode '{m}' is in no sample of the file "
                                    f"(its modes: {'; '.join(sorted(have))})")


def _carve_validation(p: Protocol, table: SampleTable, train: np.ndarray, frac: float | None, seed: int,
                      r: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a seeded share of the training SUBJECTS (GroupShuffleSplit); the test fold is untouched."""
    if frac is None:
        return train, np.empty(0, dtype=np.int64)
    groups = np.array([table.subjects[i] for i in train], dtype=str)
    if len(set(groups.tolist())) < 2:
        raise FerbenchError(f"{p.path}: repeat {r} fold {k}: cannot carve a validation set out of "
                            f"{len(set(groups.tolist()))} training subject(s); expected at least 2")
    gss = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed % (2**32 - 1))
    tr, va = next(gss.split(train, None, groups))
    return train[tr], train[va]


# ---------------------------------------------------------------------------------------------- leakage
def check_leakage(plan: Plan) -> None:
    """Every fold's train / val / test share no subject and no sample id; else FerbenchError naming it.

    Subjects and ids are qualified by dataset, so two different datasets' "S001" are different people,
    while the same dataset's subject in two files is caught.
    """
    tables = plan._tables()
    for f in plan.folds:
        subj: dict[str, set[tuple[str, str]]] = {}
        ids: dict[str, set[tuple[str, str]]] = {}
        for role in ROLES:
            t, idx = tables[role], getattr(f, role)
            if idx.size and (idx.min() < 0 or idx.max() >= len(t) or len(np.unique(idx)) != idx.size):
                raise FerbenchError(f"plan of '{plan.protocol.name}' repeat {f.repeat} fold {f.fold}: {role} "
                                    f"indices out of range or repeated")
            subj[role] = {(t.dataset, t.subjects[i]) for i in idx.tolist()}
            ids[role] = {(t.dataset, t.ids[i]) for i in idx.tolist()}
        for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
            shared_ids = ids[a] & ids[b]
            if shared_ids:  # the more specific finding first: the very same sample on two sides
                ds, s = sorted(shared_ids)[0]
                raise FerbenchError(
                    f"sample leakage in protocol '{plan.protocol.name}' ({plan.protocol.path}) repeat {f.repeat} "
                    f"fold {f.fold}: {ds} sample '{s}' is in both {a} and {b}")
            shared = subj[a] & subj[b]
            if shared:
                ds, s = sorted(shared)[0]
                raise FerbenchError(
                    f"subject leakage in protocol '{plan.protocol.name}' ({plan.protocol.path}) repeat {f.repeat} "
                    f"fold {f.fold}: {ds} subject '{s}' is in both {a} and {b}"
                    + (f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""))


# ---------------------------------------------------------------------------------------------- export
FOLD_LIST_HEAD = "# fingerprint: "


def check_folds_target(path: str | Path, inputs: Sequence[str | Path | None] = (), force: bool = False) -> Path:
    """Refuse a fold-list path that is one of the `inputs` (the prepared data files: never, even with `force`)
    or an existing file that is not a fold list ferbench wrote (unless `force`)."""
    path = Path(path)
    if path.is_dir():
        raise FerbenchError(f"{path}: is a folder (expected the path of a .csv file to write)")
    require_folder(path.parent, "the folder of --out")  # before the folds are made and printed
    for given in inputs:
        if given is not None and Path(given).exists() and path.exists() and path.samefile(given):
            raise FerbenchError(f"{path}: is the data file this command reads; write the fold list elsewhere")
    if path.exists() and not force:
        try:
            with path.open(encoding="utf-8") as fh:
                first = fh.readline()
        except (OSError, UnicodeDecodeError):
            first = ""
        if not first.startswith(FOLD_LIST_HEAD):
            raise FerbenchError(f"{path}: exists and is not a fold list ferbench wrote; choose another path "
                                "(or pass --force to replace it)")
    return path


def write_folds(plan: Plan, path: str | Path, force: bool = False) -> Path:
    """The fold list as CSV: comment lines (fingerprint first) then one row per (repeat, fold, role, sample),
    written atomically; never over the plan's data files, nor over another file unless `force`."""
    path = check_folds_target(path, [plan.train_table.path, plan.test_table.path], force)
    with atomic_open(path, newline="") as fh:
        fh.write(f"{FOLD_LIST_HEAD}{plan.fingerprint}\n")
        fh.write(f"# protocol: {plan.protocol.name} ({plan.protocol.path.name}, sha256 {plan.protocol.fingerprint}), "
                 f"seed {plan.protocol.seed}, {len({f.repeat for f in plan.folds})} repeat(s), {len(plan.folds)} fold(s)\n")
        fh.write(f"# train data: {plan.train_table.dataset} {_where(plan.train_table)} (table {plan.train_table.fingerprint})\n")
        if plan.test_table is not plan.train_table:
            fh.write(f"# test data: {plan.test_table.dataset} {_where(plan.test_table)} (table {plan.test_table.fingerprint})\n")
        w = csv.DictWriter(fh, fieldnames=["repeat", "fold", "role", "dataset", "sample_id", "subject", "label"])
        w.writeheader()
        w.writerows(plan.fold_rows())
    return path


def read_folds_fingerprint(path: str | Path) -> str:
    """The fingerprint written on the first line of a fold list."""
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    if not first.startswith(FOLD_LIST_HEAD):
        raise FerbenchError(f"{path}: not a ferbench fold list (expected '# fingerprint: ...' on the first line)")
    return first.split(": ", 1)[1].strip()
