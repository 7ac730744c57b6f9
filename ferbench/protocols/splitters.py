"""Splitters with scikit-learn's interface (`split(X, y, groups)`, `get_n_splits`), subject = group.

scikit-learn's `GroupKFold`, `StratifiedGroupKFold` and `LeaveOneGroupOut` are used as they are; this module
adds only what scikit-learn lacks: round-robin folds by sorted subject id, fixed subject lists (BP4D 3-fold),
odd/even subject numbers (FERA 2015), fixed dataset splits (AFEW Train/Val), folds stored on each sample
(DFEW, MAFW: the owners' fold lists), train-on-modes / test-on-modes with disjoint subjects (unseen-mode), and
train-on-file / test-on-file (cross-dataset).

Splitters that need a per-sample attribute read it from `X` (a 1-D array of strings: the sample's split,
its mode key such as "VL/Strong", or which file it came from); `KEY` names that attribute, and
`ferbench.protocols.plan` fills it in. Every splitter guarantees that no group (subject) is on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, PredefinedSplit, StratifiedGroupKFold
from sklearn.model_selection._split import BaseCrossValidator  # the base class scikit-learn's own splitters share


def _groups(X: Any, groups: Any) -> np.ndarray:
    if groups is None:
        raise ValueError("The 'groups' parameter should not be None (subject ids, one per sample).")
    g = np.asarray(groups).astype(str)
    if X is not None and len(g) != len(X):
        raise ValueError(f"groups has {len(g)} entries but X has {len(X)}")
    return g


def _modes(value: Any, what: str) -> tuple[str, ...]:
    """Modes given as mappings ({system: VL, illumination: Strong}) or canonical strings -> canonical strings."""
    from ferbench.protocols.table import mode_key

    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{what} must be a non-empty list of modes such as {{system: VL, illumination: Strong}}, "
                         f"got {value!r}")
    out = []
    for m in value:
        if isinstance(m, dict) and m and all(isinstance(v, (str, int)) for v in m.values()):
            out.append(mode_key({str(k): str(v) for k, v in m.items()}))
        elif isinstance(m, str) and m:
            out.append(m)
        else:
            raise ValueError(f"{what}: expected a mode mapping such as {{system: VL, illumination: Strong}}, got {m!r}")
    return tuple(out)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise ValueError(f"{what} must be a non-empty list of names, got {value!r}")
    return tuple(str(v) for v in value)


class RoundRobinGroupKFold(BaseCrossValidator):
    """Subjects sorted by id (string order), subject i goes to test fold i % n_splits.

    The public CK+ fold assignment (327 sequences, 118 subjects) used by papers that publish their folds.
    Invariants: each subject is in exactly one test fold; test folds partition the samples; no subject is on
    both sides; the assignment does not depend on a seed.

    >>> import numpy as np
    >>> groups = np.array(["S011", "S005", "S010", "S005", "S026", "S011"])
    >>> cv = RoundRobinGroupKFold(n_splits=2)
    >>> [sorted(set(groups[te].tolist())) for tr, te in cv.split(groups, None, groups)]  # S005 S010 S011 S026 -> 0 1 0 1
    [['S005', 'S011'], ['S010', 'S026']]
    >>> cv.test_folds(groups).tolist()
    [0, 0, 1, 0, 1, 0]
    """

    KEY: str | None = None

    def __init__(self, n_splits: int = 10):
        if not isinstance(n_splits, int) or isinstance(n_splits, bool) or n_splits < 2:
            raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
        self.n_splits = n_splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def test_folds(self, groups: Any) -> np.ndarray:
        """The test fold of every sample (the round-robin rank of its subject)."""
        g = _groups(None, groups)
        rank = {s: i % self.n_splits for i, s in enumerate(sorted(set(g)))}
        return np.array([rank[s] for s in g], dtype=np.int64)

    def _iter_test_masks(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[np.ndarray]:
        folds = self.test_folds(_groups(X, groups))
        for k in range(self.n_splits):
            yield folds == k


class FixedGroupsKFold(BaseCrossValidator):
    """Test fold k = the subjects of list k that are present; train = the present subjects of the other lists.

    Subjects in no list are used in no fold (`unlisted_`); listed subjects absent from the data are recorded in
    `missing_` after `split` (the caller reports them), or raise when `missing="error"`.
    Invariants: test folds are disjoint and follow the lists exactly; no subject is on both sides.

    >>> import numpy as np
    >>> groups = np.array(["F001", "F003", "F004", "F001", "X9"])
    >>> cv = FixedGroupsKFold(folds=[["F001", "F002"], ["F003"], ["F004"]])
    >>> [(tr.tolist(), te.tolist()) for tr, te in cv.split(groups, None, groups)]
    [([1, 2], [0, 3]), ([0, 2, 3], [1]), ([0, 1, 3], [2])]
    >>> cv.missing_, cv.unlisted_
    (['F002'], ['X9'])
    """

    KEY: str | None = None

    def __init__(self, folds: Sequence[Sequence[str]] = (), missing: str = "warn"):
        if not isinstance(folds, (list, tuple)) or len(folds) < 2:
            raise ValueError(f"folds must be a list of at least 2 subject lists, got {folds!r}")
        lists = [_names(f, f"folds[{i}]") for i, f in enumerate(folds)]
        seen: dict[str, int] = {}
        for i, f in enumerate(lists):
            for s in f:
                if s in seen:
                    raise ValueError(f"subject {s} is listed in folds {seen[s]} and {i}")
                seen[s] = i
        if missing not in ("warn", "error"):
            raise ValueError(f"missing must be 'warn' or 'error', got {missing!r}")
        self.folds, self.missing = lists, missing
        self.missing_: list[str] = []
        self.unlisted_: list[str] = []

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.folds)

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        g = _groups(X, groups)
        present = set(g.tolist())
        listed = {s for f in self.folds for s in f}
        self.missing_ = sorted(listed - present)
        self.unlisted_ = sorted(present - listed)
        if self.missing_ and self.missing == "error":
            raise ValueError(f"listed subject(s) not in the data: {', '.join(self.missing_)}")
        used = np.isin(g, sorted(listed))
        for f in self.folds:
            test = np.isin(g, f)
            yield np.flatnonzero(used & ~test), np.flatnonzero(test)


class GroupParitySplit(BaseCrossValidator):
    """One split by the parity of the number in the subject id: FERA 2015 trains on odd, tests on even.

    Invariants: one split; every subject with a number is on exactly one side; ids without digits raise.

    >>> import numpy as np
    >>> groups = np.array(["F001", "F002", "M001", "M004"])
    >>> [(tr.tolist(), te.tolist()) for tr, te in GroupParitySplit(test="even").split(groups, None, groups)]
    [([0, 2], [1, 3])]
    """

    KEY: str | None = None

    def __init__(self, test: str = "even"):
        if test not in ("even", "odd"):
            raise ValueError(f"test must be 'even' or 'odd', got {test!r}")
        self.test = test

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return 1

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        g = _groups(X, groups)
        numbers = []
        for s in g:
            found = re.findall(r"\d+", s)
            if not found:
                raise ValueError(f"subject id '{s}' has no number, so it is neither odd- nor even-numbered")
            numbers.append(int(found[-1]))
        even = np.array(numbers) % 2 == 0
        test = even if self.test == "even" else ~even
        yield np.flatnonzero(~test), np.flatnonzero(test)


class FixedSplit(BaseCrossValidator):
    """One split by the dataset's own split field (X): e.g. AFEW train on `train`, test on `val`.

    Built on scikit-learn's PredefinedSplit; samples of any other split (AFEW `test`, unlabelled) are unused.
    Invariants: one split; train and test are the samples of the named splits.

    >>> import numpy as np
    >>> X = np.array(["train", "val", "train", "test"])
    >>> [(tr.tolist(), te.tolist()) for tr, te in FixedSplit(train=["train"], test=["val"]).split(X, None, list("abcd"))]
    [([0, 2], [1])]
    """

    KEY: str | None = "split"

    def __init__(self, train: Sequence[str] = ("train",), test: Sequence[str] = ("val",)):
        self.train, self.test = _names(train, "train"), _names(test, "test")
        if set(self.train) & set(self.test):
            raise ValueError(f"a split cannot be both train and test: {sorted(set(self.train) & set(self.test))}")

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return 1

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x = np.asarray(X).astype(str)
        fold = np.where(np.isin(x, self.test), 0, -1)
        used = np.isin(x, self.train + self.test)
        self.unused_, self.absent_ = _uncovered(x, self.train + self.test)
        for train, test in PredefinedSplit(fold).split():
            yield train[used[train]], test


def _uncovered(x: np.ndarray, names: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """({split value: samples} of the samples no listed name covers, the listed names no sample holds): what a
    split-reading splitter leaves out, for the plan to report (`unused_`, `absent_` after `split`)."""
    values, counts = np.unique(x, return_counts=True)
    unused = {str(v): int(c) for v, c in zip(values, counts) if v not in names}
    return unused, sorted(set(names) - set(values.tolist()))


class StoredFolds(BaseCrossValidator):
    """The folds a dataset's own files give, read from each sample's split field (X): test fold k = the samples
    whose fold is `folds[k]`, train = the samples of the other listed folds. Nothing is drawn (no seed): DFEW's
    and MAFW's 5 folds are exactly their owners' lists (the adapter stores, per clip, the fold whose test list
    holds it; each release's train list of a fold is the other folds' test lists).

    Samples of a fold not listed are used in no fold (scikit-learn's PredefinedSplit would train on them;
    otherwise this is PredefinedSplit). Invariants: the test folds partition the listed samples; no sample is on both
    sides; a sample trains in every fold but its own.

    >>> import numpy as np
    >>> X = np.array(["set_2", "set_1", "set_2", "other", "set_1"])
    >>> [(tr.tolist(), te.tolist()) for tr, te in StoredFolds(folds=["set_1", "set_2"]).split(X, None, list("abcde"))]
    [([0, 2], [1, 4]), ([1, 4], [0, 2])]
    """

    KEY: str | None = "split"

    def __init__(self, folds: Sequence[str] = ()):
        names = _names(folds, "folds")
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"folds must list at least 2 distinct fold names (the samples' split values), got {folds!r}")
        self.folds = names

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.folds)

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x = np.asarray(X).astype(str)
        index = {name: k for k, name in enumerate(self.folds)}
        test_fold = np.array([index.get(v, -1) for v in x], dtype=np.int64)
        listed = test_fold >= 0
        self.unused_, self.absent_ = _uncovered(x, self.folds)
        for k in range(len(self.folds)):
            yield np.flatnonzero(listed & (test_fold != k)), np.flatnonzero(test_fold == k)


class ModeGroupKFold(BaseCrossValidator):
    """Train on some modes, test on the others, with subjects disjoint: GroupKFold over subjects, then per fold
    train = training subjects' samples in `train` modes, test = test subjects' samples in `test` modes
    (None = every mode not trained on). X holds each sample's canonical mode key (`mode_key`); modes are
    given as mappings such as {"system": "VL", "illumination": "Strong"}.

    Invariants: no subject on both sides; no training sample in a test mode; each subject is a test subject in
    exactly one fold, so the test folds partition the test-mode samples.

    >>> import numpy as np
    >>> X = np.array(["light=Strong", "light=Dark", "light=Strong", "light=Dark"])
    >>> groups = np.array(["P1", "P1", "P2", "P2"])
    >>> cv = ModeGroupKFold(train=[{"light": "Strong"}], n_splits=2)
    >>> sorted((tr.tolist(), te.tolist()) for tr, te in cv.split(X, None, groups))
    [([0], [3]), ([2], [1])]
    """

    KEY: str | None = "mode"

    def __init__(self, train: Sequence[str] = (), test: Sequence[str] | None = None, n_splits: int = 10,
                 shuffle: bool = False, random_state: int | None = None):
        self.train = _modes(train, "train")
        self.test = None if test is None else _modes(test, "test")
        if self.test is not None and set(self.train) & set(self.test):
            raise ValueError(f"a mode cannot be both train and test: {sorted(set(self.train) & set(self.test))}")
        self._kfold = GroupKFold(n_splits=n_splits, shuffle=shuffle, random_state=random_state)  # checks them
        self.n_splits, self.shuffle, self.random_state = n_splits, shuffle, random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, g = np.asarray(X).astype(str), _groups(X, groups)
        in_train = np.isin(x, self.train)
        in_test = ~in_train if self.test is None else np.isin(x, self.test)
        for tr, te in self._kfold.split(x, None, g):
            yield tr[in_train[tr]], te[in_test[te]]


class FileSplit(BaseCrossValidator):
    """Train on every sample of one file, test on every sample of another (X says which: "train"/"test").

    Cross-dataset protocols; subjects of different datasets are different people, so groups are qualified
    by dataset by the caller. Invariants: one split, exactly the two files' samples.

    >>> import numpy as np
    >>> [(tr.tolist(), te.tolist()) for tr, te in FileSplit().split(np.array(["train", "test", "train"]))]
    [([0, 2], [1])]
    """

    KEY: str | None = "file"

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return 1

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x = np.asarray(X).astype(str)
        yield np.flatnonzero(x == "train"), np.flatnonzero(x == "test")


#: Splitter names a protocol file may use -> class. scikit-learn's own where they fit.
SPLITTERS: dict[str, type] = {
    "group-kfold": GroupKFold,
    "stratified-group-kfold": StratifiedGroupKFold,
    "leave-one-subject-out": LeaveOneGroupOut,
    "round-robin": RoundRobinGroupKFold,
    "fixed-subjects": FixedGroupsKFold,
    "subject-parity": GroupParitySplit,
    "fixed-split": FixedSplit,
    "stored-folds": StoredFolds,
    "train-on-modes": ModeGroupKFold,
    "train-on-file": FileSplit,
}


def splitter_key(name: str) -> str | None:
    """Which per-sample attribute the splitter reads from X (None: only y and groups)."""
    return getattr(SPLITTERS[name], "KEY", None)


def build_splitter(name: str, params: dict[str, Any], random_state: int | None) -> Any:
    """An instance for one repeat: `random_state` is passed only where the splitter shuffles."""
    cls = SPLITTERS[name]
    kw = dict(params)
    if "random_state" in kw:
        raise TypeError("random_state is set from the protocol's seed and repeat; remove it from params")
    if kw.get("shuffle"):
        kw["random_state"] = random_state
    try:
        return cls(**kw)
    except TypeError as e:  # unknown parameter name: say which ones exist
        import inspect

        allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "random_state")]
        raise TypeError(f"{e}; '{name}' takes: {', '.join(allowed) or 'no parameters'}") from None
