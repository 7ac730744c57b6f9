"""`evaluate`: plan every (model, protocol, repeat, fold) task, skip those whose record is still valid, run
the rest (in-process or on dask), write one record per task as it ends. Everything the user can get wrong is
checked before the first task starts.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferbench import records as RC
from ferbench.errors import DatasetError, FerbenchError
from ferbench.harness import recipes as R
from ferbench.harness.data import au_name
from ferbench.harness.fingerprint import code_fingerprint, data_fingerprint
from ferbench.harness.memory import frames_line, parse_bytes
from ferbench.store.chunks import read_threads
from ferbench.harness.record import build_record, test_labels_of
from ferbench.harness.spec import FUSION_ENTRIES, TaskSpec
from ferbench.harness.plan import RunContext, make_specs
from ferbench.harness.train import PRECISIONS
from ferbench.paths import require_folder

Progress = Callable[[dict[str, Any]], None]
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_VAL_FRACTION = 0.2
MAX_VAL_FRACTION = 0.5  # more than half the training subjects held out leaves too little to train on


@dataclass
class EvaluateResult:
    """What a run did: records written or reused (paths), tasks that failed (task id -> message)."""

    out: Path
    records: list[Path] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rerun_reasons: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    diverged: dict[str, str] = field(default_factory=dict)  # task id -> where it went non-finite (recorded)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- checks before any work ---------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    import torch

    d = (device or "auto").strip().lower()
    if d not in DEVICES and not d.startswith("cuda:"):
        raise FerbenchError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise FerbenchError("--device cuda, but torch sees no CUDA device here (use --device cpu or auto)")
    return d


def resolve_models(models: str | list[str] | tuple[str, ...], task: str,
                   transfer_from: str | None = None, warnings: list[str] | None = None) -> list[str]:
    """`all`, a comma list or a list of names -> checked registry names (+ harness fusion entries). On a transfer
    protocol (`transfer_from`: its source dataset) only models whose card names transfer layers take part:
    `all` means those, and another model named outright is refused. `all` loads every plugin that can be
    loaded; a broken or clashing one is left out with a line in `warnings`."""
    from ferbench.models import list_models, model_card
    from ferbench.models.user import load_plugins, load_selected

    if not isinstance(models, (str, list, tuple)) or not all(isinstance(m, str) for m in models):
        raise FerbenchError(f"models must be 'all', a comma-separated string or a list of names; got {models!r}")
    items = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m and m.strip()]
    if not items:
        raise FerbenchError("no model given; pass --model all or a comma-separated list of names")
    if items == ["all"]:
        left_out = [f"{p.source} is left out of --model all: {why}" for p, why in load_plugins()[1]]
        if warnings is not None:
            warnings.extend(left_out)
    else:
        items = [load_selected(m) for m in items]
    known = list(list_models())
    able = [m for m in known if model_card(m).transfer]
    if items == ["all"]:
        if transfer_from:
            return able
        return known + ([] if task == "au-detection" else list(FUSION_ENTRIES))
    unknown = [m for m in items if m not in known and m not in FUSION_ENTRIES]
    if unknown:
        raise FerbenchError(f"unknown model {unknown[0]!r}; known: {', '.join(known + list(FUSION_ENTRIES))}")
    other = [m for m in items if m not in able]
    if transfer_from and other:
        raise FerbenchError(f"this protocol transfers layers trained on {transfer_from}, and model {other[0]!r} "
                            f"names no transfer layers; models that do: {', '.join(able)}")
    if task == "au-detection" and any(m in FUSION_ENTRIES for m in items):
        raise FerbenchError("the fusion entries classify expressions; they do not apply to au-detection protocols")
    return list(dict.fromkeys(items))


def _open_checked(path: str | Path, what: str) -> Any:
    from ferbench.harness.data import close_changed
    from ferbench.store import open_store

    p = Path(path)
    if not p.exists():
        raise DatasetError(p, f"{what} not found (expected a ferbench store written by `ferbench prepare`)")
    close_changed(p)  # a handle kept open since the file was copied over would serve its stale structure
    return open_store(p)


def _card_index(model: str) -> tuple[str, int]:
    """Which frames the model reads at prediction time, and the smallest frame size it runs on."""
    from ferbench.models import model_card

    if model in FUSION_ENTRIES:
        from ferbench.harness.spec import FUSION_MEMBERS

        cards = [model_card(m) for m in FUSION_MEMBERS]
        return cards[0].index, max(int(c.min_size) for c in cards)
    card = model_card(model)
    return card.index, int(card.min_size)


def _au_stages(stages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """AU detection trains every model end to end on the final stage's values (kim2017's stage 1 objective
    needs expression classes and states, which AU data does not have)."""
    last = dict(stages[-1])
    last["stage"] = "end-to-end"
    return (last,)


def _check_arguments(*, recipe: Any, workers: Any, scheduler: Any, repeats: Any, threads: Any, val_fraction: Any,
                     out: Any, force: Any, precision: Any, memory_budget: Any = None) -> None:
    """Every option's type and range, before any file is read (the Python API gets the CLI's checks)."""
    from ferbench.protocols.schema import MAX_REPEATS

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(recipe, str) or recipe not in R.RECIPE_KINDS:
        raise FerbenchError(f"unknown recipe {recipe!r}; choose one of {', '.join(R.RECIPE_KINDS)}")
    if workers is not None and scheduler is not None:
        raise FerbenchError("pass either --workers or --scheduler, not both")
    cores = os.cpu_count() or 1
    if workers is not None and (not whole(workers) or not 1 <= workers <= cores):
        raise FerbenchError(f"--workers must be a whole number from 1 to {cores} (the CPU cores here); got {workers!r}"
                            " (for more workers, start a dask cluster and pass --scheduler)")
    if repeats is not None and (not whole(repeats) or not 1 <= repeats <= MAX_REPEATS):
        raise FerbenchError(f"--repeats must be a whole number from 1 to {MAX_REPEATS}; got {repeats!r}")
    if threads is not None and (not whole(threads) or threads < 1):
        raise FerbenchError(f"--threads must be a whole number >= 1; got {threads!r}")
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
            or not 0 < val_fraction <= MAX_VAL_FRACTION):
        raise FerbenchError(f"--val-fraction must be a fraction in (0, {MAX_VAL_FRACTION}] of the training subjects; "
                            f"got {val_fraction!r}")
    if not isinstance(force, bool):
        raise FerbenchError(f"force must be True or False; got {force!r}")
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise FerbenchError(f"--out must be the path of a folder for the task records; got {out!r}")
    require_folder(out, "--out (the folder of the task records)")
    if precision not in PRECISIONS:
        raise FerbenchError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    parse_bytes(memory_budget)
    read_threads()  # $FERBENCH_READ_THREADS, refused here rather than in the first streamed task
    if scheduler is not None:
        from ferbench.cluster import check_scheduler

        check_scheduler(scheduler)  # the form, and a tcp scheduler answering


def _check_model_options(options: dict[str, Any], names: list[str]) -> None:
    """Options for unknown models, unknown option names, or values a model refuses: found by building each
    selected model that has options once, before any training."""
    from ferbench.models import create_model, list_models, model_options

    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise FerbenchError('model options must map a model name to its options: {"model": {"option": value}}')
    for m, opts in options.items():
        if m not in list_models():
            raise FerbenchError(f"model options given for {m!r}, which is not a registered model")
        allowed = model_options(m)
        bad = sorted(set(opts) - set(allowed)) if allowed is not None else []
        if bad:
            raise FerbenchError(f"--model-options: model {m!r} has no option(s) {', '.join(bad)}; "
                                f"options: {', '.join(allowed or ())}")
        if m in names:
            try:
                create_model(m, 2, **opts)
            except (TypeError, ValueError) as e:
                raise FerbenchError(f"--model-options for {m!r}: {e}") from None


@contextlib.contextmanager
def _runs_lock(out: Path) -> Iterator[None]:
    """Hold the runs folder's lock; an unwritable --out is one line, found before any training."""
    lock = RC.RunsLock(out)
    try:
        lock.acquire()
    except OSError as e:
        raise FerbenchError(f"{e.filename or out}: cannot write the runs folder ({e.strerror or e})") from None
    try:
        yield
    finally:
        lock.release()


@dataclass
class _Setup:
    """A run, resolved before the runs folder is touched: protocol, data, models and their stages."""

    proto: Any
    data: Path
    data_test: Path
    dataset: str
    dataset_test: str
    tables: tuple[Any, Any]  # the sample tables of the train and test file (the test one None on one file)
    stages_of: dict[str, tuple[dict[str, Any], ...]]
    plans_needed: dict[float | None, list[str]]
    au_names: list[Any]
    ctx: RunContext
    model_options: dict[str, dict[str, Any]]  # the user's, over the paper network's under --recipe paper
    departures: dict[str, list[str]]  # per model, how the run departs from the paper's network and training
    warnings: list[str] = field(default_factory=list)  # plugins left out of --model all


def _resolve(data: str | Path, protocol: str | Path, data_test: str | Path | None, models: Any, recipe: str,
             ov: R.Overrides, dev: str, threads: int, model_options: dict[str, Any], val_fraction: float,
             precision: str = "auto", data_source: str | Path | None = None,
             memory_budget: int | None = None) -> _Setup:
    """Open the data, load the protocol, resolve models and recipes; refuse mismatches in one line."""
    from ferbench.protocols import load_protocol

    if not isinstance(data, (str, Path)) or not str(data).strip():
        raise FerbenchError(f"--data must be the path of a prepared .h5 file; got {data!r}")
    proto = load_protocol(protocol)
    RC.check_slug(proto.name, "protocol")
    from ferbench.protocols import SampleTable

    with _open_checked(data, "data file") as st:
        dataset, size, au_names, length = st.dataset, int(st.frame_shape[0]), list(st.au_names), int(st.length)
        table = SampleTable.from_store(st)  # duplicate sample ids are named now, before the runs folder
    table_test = None
    RC.check_slug(dataset, "dataset")
    if dataset not in proto.datasets:
        raise FerbenchError(
            f"protocol {proto.name!r} is for {', '.join(proto.datasets)}, but {data} holds {dataset} "
            f"(see `ferbench protocols` for the protocols of {dataset})"
        )
    test_path = Path(data_test) if data_test is not None else Path(data)
    if data_test is not None:
        with _open_checked(data_test, "test data file") as st2:
            dataset_test = st2.dataset
            table_test = SampleTable.from_store(st2)
    else:
        dataset_test = proto.test_dataset or dataset
        if proto.test_dataset and proto.test_dataset != dataset:
            raise FerbenchError(f"protocol {proto.name!r} tests on {proto.test_dataset}; pass its file with --data-test")
    warnings: list[str] = []
    names = resolve_models(models, proto.task, proto.pretrain, warnings)
    if data_source is not None and not proto.pretrain:
        raise FerbenchError(f"--data-source is for transfer protocols (a protocol with `pretrain`); "
                            f"{proto.name!r} has none")
    model_options = R.with_paper_options(names, recipe, model_options)
    _check_model_options(model_options, names)
    plans_needed: dict[float | None, list[str]] = {}
    stages_of: dict[str, tuple[dict[str, Any], ...]] = {}
    _check_frame_size(names, size, data)
    _check_user_models(names, _num_outputs(proto, table, au_names, Path(data)), size, length, model_options)
    for m in names:
        stages = R.resolve(m, recipe, dataset, ov, "cuda" if dev.startswith("cuda") else "cpu")
        if proto.task == "au-detection":
            stages = _au_stages(stages)
        stages_of[m] = stages
        plans_needed.setdefault(_validation_share(R.selection_of(stages), proto, val_fraction), []).append(m)
    pretrain = _pretrain(proto, data_source, names, recipe, ov, dev, (data, size)) if proto.pretrain else {}
    ctx = RunContext(
        recipe=recipe, dataset=dataset, dataset_test=dataset_test, data=Path(data).resolve(),
        data_test=test_path.resolve(), device=dev, threads=threads, precision=precision, pretrain=pretrain,
        memory_budget=memory_budget,
        fingerprints={"data": data_fingerprint(data), "data_test": data_fingerprint(test_path),
                      "protocol": proto.fingerprint, "code": code_fingerprint(),
                      **({"data_source": next(iter(pretrain.values())).fingerprint} if pretrain else {})},
    )
    departures = {m: R.paper_departures(m, recipe, dataset, ov, model_options, size) for m in names}
    return _Setup(proto, Path(data), test_path, dataset, dataset_test, (table, table_test), stages_of, plans_needed,
                  au_names, ctx, model_options, departures, warnings)


def _num_outputs(proto: Any, table: Any, au_names: list[Any], data: Path) -> int:
    """How many logits a model of this run returns: one per class of the protocol, or per scored AU."""
    if proto.task == "au-detection":
        return len(_scored_aus(proto, au_names, data))
    return len(proto.class_map or proto.classes or table.classes)


def _check_user_models(names: list[str], num_classes: int, size: int, length: int,
                       options: dict[str, Any]) -> None:
    """Run the `ferbench models --check` contract on every user model before the first task: a model whose
    output does not fit (shape, device, NaN in train or eval mode) is refused in one line, not found out after
    some tasks have trained."""
    from ferbench.models import model_card
    from ferbench.models.user import check_model

    for m in names:
        card = None if m in FUSION_ENTRIES else model_card(m)
        if card is None or card.source == "ferbench":
            continue
        failed = [(what, detail) for what, ok, detail in
                  check_model(m, num_classes, frames=length, size=size, options=options.get(m)) if not ok]
        if failed:
            what, detail = failed[0]
            spec = m if card.source.startswith("entry point") else card.source
            raise FerbenchError(f"model {m!r} ({card.source}) does not fit the contract: {what}: {detail} "
                                f"(`ferbench models --check {spec}` runs every check)")


def _check_frame_size(names: list[str], size: int, where: Any) -> None:
    """Refuse, before any work, a file whose frames are smaller than a selected model needs."""
    for m in names:
        min_size = _card_index(m)[1]
        if size < min_size:
            raise FerbenchError(f"model {m!r} needs frames of at least {min_size}x{min_size}; {where} has {size}x{size}")


def _pretrain(proto: Any, data_source: str | Path | None, names: list[str], recipe: str, ov: R.Overrides,
              dev: str, target: tuple[str | Path, int]) -> dict[str, Any]:
    """Each model's source side of a transfer protocol: the source file, its labelled samples, the model's
    recipe for the source dataset. `target`: the target file and its frame size, which the source's must equal
    (layers trained on faces of one size are copied into a network that sees another size: not kim2017's
    transfer, and no error shows it)."""
    from ferbench.harness.transfer import Pretrain
    from ferbench.models import model_card
    from ferbench.protocols import SampleTable

    if data_source is None:
        raise FerbenchError(f"protocol {proto.name!r} first trains on {proto.pretrain}; pass its prepared file with "
                            f"--data-source (the command line also finds it in the data home once "
                            f"`ferbench prepare {proto.pretrain}` has made it)")
    with _open_checked(data_source, "source data file") as st:
        table, size = SampleTable.from_store(st), int(st.frame_shape[0])
    _check_frame_size(names, size, f"the source file {data_source}")
    if table.dataset != proto.pretrain:
        raise FerbenchError(f"protocol {proto.name!r} first trains on {proto.pretrain}, but {data_source} holds "
                            f"{table.dataset}")
    if size != target[1]:
        raise FerbenchError(f"protocol {proto.name!r} copies layers trained on {data_source} ({size}x{size} frames) "
                            f"into a network trained on {target[0]} ({target[1]}x{target[1]} frames); prepare both "
                            f"at one size (`ferbench prepare ... --size N`)")
    labelled = [i for i, y in enumerate(table.labels) if y >= 0]
    if len({int(table.labels[i]) for i in labelled}) < 2:
        raise DatasetError(Path(data_source), "the source file of a transfer protocol needs labelled samples of at "
                                              "least two classes")
    fingerprint = data_fingerprint(data_source)
    return {m: Pretrain(dataset=table.dataset, data=str(Path(data_source).resolve()), fingerprint=fingerprint,
                        classes=table.classes, ids=tuple(table.ids[i] for i in labelled),
                        labels=tuple(int(table.labels[i]) for i in labelled),
                        stages=R.resolve(m, recipe, table.dataset, ov, "cuda" if dev.startswith("cuda") else "cpu"),
                        transfer=str(model_card(m).transfer), frame_size=size, target_frame_size=target[1])
            for m in names}


def _validation_share(selection: str, proto: Any, val_fraction: float) -> float | None:
    """Training subjects held out for a model: none (0.0) unless its recipe selects on validation; then the
    protocol's own share (None) where it defines one, else `val_fraction`."""
    if selection != "validation":
        return 0.0
    return None if proto.validation else float(val_fraction)


def _plan(setup: _Setup, repeats: int | None, model_options: dict[str, Any], outdir: Path, force: bool,
          result: EvaluateResult) -> tuple[list[tuple[TaskSpec, Path]], dict[float | None, Any]]:
    """Every task, split into reusable records (added to `result`) and pending tasks (spec, record path)."""
    specs, plans = _tasks(setup, repeats, model_options, result)
    return _sort_tasks(specs, setup, outdir, force, result), plans


def _tasks(setup: _Setup, repeats: int | None, model_options: dict[str, Any],
           result: EvaluateResult) -> tuple[list[tuple[TaskSpec, Any]], dict[float | None, Any]]:
    """Every task of the run, from the folds of the protocol: where a protocol cannot be met on the data (more
    folds than subjects, a class the file lacks) it is refused here, before the runs folder is touched."""
    from ferbench.protocols import make_plan

    specs: list[tuple[TaskSpec, Any]] = []  # each with the data file's truth its record is held to
    plans = {}
    for frac, members in setup.plans_needed.items():
        plan = make_plan(setup.proto, *setup.tables, repeats=repeats, validation=frac)  # tables read once
        plans[frac] = plan
        result.warnings.extend(w for w in plan.warnings if w not in result.warnings)
        classes = tuple(plan.classes) if plan.classes else _scored_aus(setup.proto, setup.au_names, setup.data)
        truth = _Truth(plan, setup.data_test, classes)
        for m in members:
            specs += [(spec, truth) for spec in make_specs(plan, m, setup.stages_of[m], model_options,
                                                            _card_index(m)[0], classes, setup.ctx, frac or None)]
    return specs, plans


def _sort_tasks(specs: list[tuple[TaskSpec, Any]], setup: _Setup, outdir: Path, force: bool,
                result: EvaluateResult) -> list[tuple[TaskSpec, Path]]:
    """The tasks whose record under `outdir` is missing, refused, stale or disagrees with the data file (spec,
    record path); the others' records go to `result` as reused."""
    pending: list[tuple[TaskSpec, Path]] = []
    keys: dict[str, str] = {}
    for spec, truth in specs:
        path = RC.record_path(outdir, dataset=spec.dataset, dataset_test=spec.dataset_test, protocol=spec.protocol,
                              model=spec.model, repeat=spec.repeat, fold=spec.fold, fingerprints=spec.fingerprints)
        keys[spec.model] = path.parent.name
        reason = _rerun_reason(path, outdir, spec, force, truth)
        if reason is None:
            result.skipped.append(spec.task_id)
            result.records.append(path)
        else:
            if reason != "no record":
                result.rerun_reasons[spec.task_id] = reason
            pending.append((spec, path))
    older = sum(1 for m, key in keys.items()
                for p in (outdir / RC.run_label(setup.dataset, setup.dataset_test) / setup.proto.name / m).glob("*/r*-f*.json")
                if p.parent.name != key)
    if older:
        result.warnings.append(
            f"{outdir} also holds {older} record(s) of other runs of these models (another data file, protocol "
            f"version or recipe); they are kept and shown as rows of their own by `ferbench leaderboard`; "
            f"`ferbench runs prune --runs {outdir}` keeps only the latest run of each model")
    return pending


def _scored_aus(proto: Any, au_names: list[Any], data: Path) -> tuple[str, ...]:
    """The AU columns an au-detection protocol scores: its `aus` (refused when the file lacks one), else all."""
    have = [au_name(a) for a in au_names]
    if proto.aus is None:
        return tuple(have)
    wanted = [au_name(a) for a in proto.aus]
    missing = [a for a in wanted if a not in have]
    if missing:
        raise FerbenchError(f"protocol {proto.name!r} scores {', '.join(wanted)}, but {data} has no column for "
                            f"{', '.join(missing)} (it has {', '.join(have)})")
    return tuple(wanted)


def _rerun_reason(path: Path, outdir: Path, spec: TaskSpec, force: bool, truth: _Truth) -> str | None:
    """None when the record at `path` is valid, matches every fingerprint of `spec` and holds the split and test
    labels of the data file; else why to run."""
    if not path.exists():
        return "no record"
    try:
        existing = RC.read_record(path, outdir)
    except RC.RecordError as e:
        return f"record refused ({e.reason})"
    if force:
        return "--force"
    stale = RC.stale_reason(existing, spec.fingerprints)
    if stale is not None:
        return stale
    wrong = truth.disagreement(existing, spec)
    return None if wrong is None else f"record refused ({wrong})"


class _Truth:
    """The test labels of the data file, to hold a record to on resume: its scores agree with its own labels
    (the reader checks that), and its labels must be the data's (an edited record is not reused)."""

    def __init__(self, plan: Any, data_test: Path, classes: tuple[str, ...]):
        self.by_id = {sid: int(y) for sid, y in zip(plan.test_table.ids, plan.y_test)}
        self.data_test, self.classes = data_test, classes
        self._aus: dict[str, dict[int, list[int]]] = {}

    def _au_rows(self, sid: str) -> dict[int, list[int]]:
        """Source frame -> the AU labels of the scored columns, of one test sample (read once)."""
        if sid not in self._aus:
            from ferbench.harness.data import open_data

            d = open_data(self.data_test)
            cols = d.au_columns(self.classes)
            rows = np.asarray(d.store.aus(sid))[:, cols].astype(int).tolist()
            self._aus[sid] = dict(zip(np.asarray(d.store.source_frame(sid)).astype(int).tolist(), rows))
        return self._aus[sid]

    def label(self, unit: str, task: str) -> Any:
        if task != "au-detection":
            return self.by_id.get(unit)
        sid, _, frame = unit.rpartition("@")
        if sid not in self.by_id or not frame.lstrip("-").isdigit():
            return None
        return self._au_rows(sid).get(int(frame))

    def disagreement(self, record: dict[str, Any], spec: TaskSpec) -> str | None:
        """Why the record's split, test units or labels are not those of this task and data file; None if they are."""
        if record["train_ids"] != list(spec.train_ids) or record["val_ids"] != list(spec.val_ids):
            return "its training or validation ids are not this task's"
        if record.get("status") == "diverged":
            return None
        if spec.task != "au-detection" and record["sample_ids"] != list(spec.test_ids):
            return "its test units are not this task's test samples"
        tested = set(spec.test_ids)
        for unit, y in zip(record["sample_ids"], record["labels"]):
            if spec.task == "au-detection" and unit.rpartition("@")[0] not in tested:
                return f"test unit {unit!r} is not a test sample of this task"
            want = self.label(unit, spec.task)
            if y != want:
                return f"the label of test unit {unit!r} is {y}, the data file's is {want}: an edited record"
        return None


# -- the run -------------------------------------------------------------------------------------------------
def evaluate(
    data: str | Path,
    protocol: str | Path,
    *,
    data_test: str | Path | None = None,
    data_source: str | Path | None = None,
    models: str | list[str] = "all",
    repeats: int | None = None,
    recipe: str = "default",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    augment: str | None = None,
    device: str = "auto",
    out: str | Path = "runs",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    threads: int | None = None,
    model_options: dict[str, dict[str, Any]] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    precision: str = "auto",
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
) -> EvaluateResult:
    """Train and score `models` under `protocol` on a prepared store; one JSON record per task under `out`.

    `workers` N runs a local dask cluster (N processes, 1 thread each); `scheduler` uses an existing one.
    `threads` (torch threads per task) defaults to cores / workers; predictions are reproducible for the same
    seed, device and thread count. `data_source`: the source file of a transfer protocol (one with `pretrain`).
    `model_options` maps a model name to create_model overrides. `precision`:
    `auto` (bf16 autocast on CUDA, float32 on CPU), `bf16` (autocast on any device; on a CPU it runs the code
    paths a CUDA run takes) or `fp32`. `memory_budget` (bytes, or text such as "4GiB"): the frames each
    task's process may keep resident; frames that do not fit are streamed from the file (same predictions).
    Default: half of the memory the process could use (`ferbench.harness.memory`). One run writes a runs
    folder at a time (`ferbench.records.RunsLock`).
    """
    started = time.perf_counter()
    setup, ov, dev, threads, model_options = _checked_setup(
        data, protocol, data_test=data_test, data_source=data_source, models=models, repeats=repeats, recipe=recipe,
        epochs=epochs, batch_size=batch_size, lr=lr, augment=augment, device=device, out=out, workers=workers,
        scheduler=scheduler, force=force, threads=threads, model_options=model_options, val_fraction=val_fraction,
        precision=precision, memory_budget=memory_budget)
    outdir = Path(out)
    result = EvaluateResult(out=outdir, warnings=list(setup.warnings))
    specs, plans = _tasks(setup, repeats, setup.model_options, result)  # the last refusal: nothing made before it
    with _runs_lock(outdir):
        pending = _sort_tasks(specs, setup, outdir, force, result)
        if progress:
            progress(_plan_event(pending, result, setup))
        if pending:
            config_common = {"overrides": ov.as_dict(), "device": dev, "threads": threads, "precision": precision,
                             "val_fraction": float(val_fraction), "data": str(setup.ctx.data),
                             "data_test": str(setup.ctx.data_test), "workers": workers, "scheduler": scheduler,
                             **({"data_source": str(Path(data_source).resolve())} if setup.ctx.pretrain else {})}
            _run(pending, plans, setup, config_common, result, workers, scheduler, dev, progress)
    result.seconds = time.perf_counter() - started
    return result


def _checked_setup(data: str | Path, protocol: str | Path, *, data_test: Any, data_source: Any, models: Any,
                   repeats: Any, recipe: Any, epochs: Any, batch_size: Any, lr: Any, augment: Any, device: Any,
                   out: Any, workers: Any, scheduler: Any, force: Any, threads: Any, model_options: Any,
                   val_fraction: Any, precision: Any,
                   memory_budget: Any = None) -> tuple[_Setup, R.Overrides, str, int, dict[str, Any]]:
    """Every check `evaluate` makes before the runs folder is touched, and the resolved run."""
    ov = R.Overrides(epochs=epochs, batch_size=batch_size, lr=lr, augment=augment)
    ov.check()
    _check_arguments(recipe=recipe, workers=workers, scheduler=scheduler, repeats=repeats, threads=threads,
                     val_fraction=val_fraction, out=out, force=force, precision=precision,
                     memory_budget=memory_budget)
    dev = resolve_device(device)
    threads = threads or max(1, (os.cpu_count() or 1) // (workers or 1))
    model_options = {} if model_options is None else model_options
    _check_model_options(model_options, [])  # the shape, before any file is read; values once models are known
    model_options = dict(model_options)
    setup = _resolve(data, protocol, data_test, models, recipe, ov, dev, threads, model_options, val_fraction,
                     precision, data_source, parse_bytes(memory_budget))
    return setup, ov, dev, threads, model_options


@dataclass
class RunPlan:
    """What an `evaluate` call with the same arguments would do, known before it starts (`plan_run`)."""

    dataset: str
    protocol: str
    device: str
    models: list[str]
    repeats: int
    folds: int  # folds per repeat
    total: int  # models x repeats x folds
    pending: int  # tasks to run (the others have a valid record)
    pending_by_model: dict[str, int] = field(default_factory=dict)
    frames: str = ""  # the frames the pending tasks read against the memory budget (`memory.frames_line`)

    def line(self) -> str:
        """`ck+ 10fold: 14 models x 1 repeat x 10 folds = 140 tasks (140 to run, 0 reused)`."""
        def n(k: int, word: str) -> str:
            return f"{k} {word}{'' if k == 1 else 's'}"
        return (f"{self.dataset} {self.protocol}: {n(len(self.models), 'model')} x {n(self.repeats, 'repeat')} x "
                f"{n(self.folds, 'fold')} = {n(self.total, 'task')} ({self.pending} to run, "
                f"{self.total - self.pending} reused)")


def plan_run(data: str | Path, protocol: str | Path, *, out: str | Path = "runs", force: bool = False,
             repeats: int | None = None, **options: Any) -> RunPlan:
    """The tasks `evaluate(data, protocol, out=out, force=force, repeats=repeats, **options)` would plan, with
    every check it makes, without running any or taking the runs folder's lock: the plan a command line prints
    before a long run (and the total its progress counts when several datasets run one after another)."""
    import inspect

    params = inspect.signature(evaluate).parameters
    unknown = [k for k in options if k not in params or k in ("data", "protocol", "progress")]
    if unknown:
        raise FerbenchError(f"plan_run: unknown option {unknown[0]!r}")
    given = {k: v.default for k, v in params.items() if k not in ("data", "protocol", "progress")}
    given.update(options, out=out, force=force, repeats=repeats)
    setup, _, dev, _, model_options = _checked_setup(data, protocol, **given)
    RC.RunsLock(out).check_free()  # a run already writing there is named before any plan is shown
    result = EvaluateResult(out=Path(out))
    pending, plans = _plan(setup, repeats, model_options, Path(out), force, result)
    folds = next(iter(plans.values())).folds
    n_repeats = len({f.repeat for f in folds}) or 1
    distributed = given.get("workers") is not None or given.get("scheduler") is not None
    return RunPlan(dataset=RC.run_label(setup.dataset, setup.dataset_test), protocol=setup.proto.name, device=dev,
                   models=list(setup.stages_of), repeats=n_repeats, folds=len(folds) // n_repeats,
                   total=len(pending) + len(result.skipped), pending=len(pending), pending_by_model=_by_model(pending),
                   frames=_frames_line(pending, setup.ctx.memory_budget, dev, distributed) if pending else "")


def _frames_line(pending: list[tuple[TaskSpec, Path]], budget: int | None, dev: str, distributed: bool) -> str:
    """The plan's memory line: the bytes of every (file, frame index) the pending tasks read."""
    from ferbench.harness.data import open_data

    needs: dict[tuple[str, str], int] = {}  # (file path, index): two files of one name in two folders stay two
    task_most = 0
    for spec, _ in pending:
        mine = [(str(path), index) for path, index in spec.frame_reads]
        for key in mine:
            if key not in needs:
                needs[key] = open_data(key[0]).resident_bytes(key[1])
        task_most = max(task_most, sum(needs[k] for k in mine))
    named = {f"{Path(path).name} {index}": n for (path, index), n in needs.items()}
    if len(named) < len(needs):  # the same file name in two folders: the paths tell them apart
        named = {f"{path} {index}": n for (path, index), n in needs.items()}
    return frames_line(named, task_most, budget, dev, distributed)


def _changed_since_planned(spec: TaskSpec) -> str | None:
    """Why a finished task's record must not be written: a data file it read changed on disk during the run (the
    task may have read the new content, which the record's data fingerprint does not stand for; a record of it
    would be reused against the old file); None when both are unchanged. Checked where the run was planned: the
    fingerprint is cached per file version, so an unchanged file costs a stat."""
    for path, key in ((spec.data, "data"), (spec.data_test, "data_test")):
        try:
            same = data_fingerprint(path) == spec.fingerprints[key]
        except (OSError, FerbenchError):  # deleted, truncated, or no longer a store
            same = False
        if not same:
            return (f"{path}: the file changed on disk during the run (it is not the file this run planned on); "
                    "this task's record is not written: rerun evaluate on the file you mean")
    return None


def _by_model(pending: list[tuple[TaskSpec, Path]]) -> dict[str, int]:
    """How many pending tasks each model has (the progress view's estimate weighs each model's own time)."""
    return dict(Counter(spec.model for spec, _ in pending))


def _task_seconds(rec: dict[str, Any]) -> float:
    """A task's time from its record: loading, source training, training and prediction."""
    t = rec.get("timings") or {}
    pretrain = ((rec.get("config") or {}).get("pretrain") or {}).get("train_s") or 0.0
    return float(sum(t.get(k) or 0.0 for k in ("load_s", "train_s", "predict_s")) + pretrain)


def _plan_event(pending: list[tuple[TaskSpec, Path]], result: EvaluateResult, setup: _Setup) -> dict[str, Any]:
    """What the progress view shows before the first task: how many tasks, reused, rerun (and why), warnings."""
    return {"event": "plan", "total": len(pending) + len(result.skipped), "skipped": len(result.skipped),
            "pending": len(pending), "pending_by_model": _by_model(pending), "rerun": dict(result.rerun_reasons),
            "warnings": list(result.warnings), "protocol": str(setup.proto.path), "device": setup.ctx.device}


def _run(pending: list[tuple[TaskSpec, Path]], plans: dict[float | None, Any], setup: _Setup,
         config_common: dict[str, Any], result: EvaluateResult, workers: int | None, scheduler: str | None,
         dev: str, progress: Progress | None) -> None:
    """Run the pending tasks; write each record (through `ferbench.records`) as its task ends."""
    from ferbench.harness.execute import run_tasks

    test_labels = test_labels_of(plans.values(), setup.data_test)
    protocol_meta = {"metric": setup.proto.metric, "metrics": list(setup.proto.metrics)}
    folds = next(iter(plans.values())).folds  # every plan of a run has the same folds (validation aside)
    per_repeat = Counter(int(f.repeat) for f in folds)
    planned = {"repeats": len(per_repeat), "folds": max(per_repeat.values(), default=0), "trials": len(folds)}

    def on_result(spec: TaskSpec, res: dict[str, Any] | None, error: str | None) -> None:
        if error is None:
            error = _changed_since_planned(spec)
        if error is not None:
            result.failed[spec.task_id] = error
            if progress:
                progress({"event": "task-failed", "task_id": spec.task_id, "error": error})
            return
        rec = build_record(spec, res, test_labels, protocol_meta,
                           {**config_common, "plan": planned, "paper_departures": setup.departures[spec.model]})
        path = RC.write_record(result.out, rec)
        result.ran.append(spec.task_id)
        result.records.append(path)
        if rec["status"] == "diverged":
            result.diverged[spec.task_id] = rec["divergence"]["message"]
            if progress:
                progress({"event": "task-diverged", "task_id": spec.task_id, "error": rec["divergence"]["message"]})
        if progress:
            progress({"event": "task-done", "task_id": spec.task_id, "model": spec.model, "path": str(path),
                      "scores": rec.get("scores"), "metric": setup.proto.metric,
                      "dataset": RC.run_label(spec.dataset, spec.dataset_test),
                      "train_s": rec["timings"]["train_s"], "seconds": _task_seconds(rec)})

    run_tasks([s for s, _ in pending], on_result, workers=workers, scheduler=scheduler, progress=progress,
              gpu=dev.startswith("cuda"))
