"""Protocols as data: protocol files, the sample table, splitters, fold plans and the leakage check.

    load_protocol(name_or_path) -> Protocol ; list_protocols() -> list[Protocol]
    make_plan(protocol, data, data_test=None, *, repeats=None, validation=None) -> Plan
    check_leakage(plan) ; check_folds_target(path, inputs, force) ; write_folds(plan, path, force=False)
"""

from __future__ import annotations

from ferbench.protocols.plan import (Fold, Plan, check_folds_target, check_leakage, make_plan, read_folds_fingerprint,
                                     write_folds)
from ferbench.protocols.schema import Protocol, bundled_dir, list_protocols, load_protocol
from ferbench.protocols.splitters import SPLITTERS
from ferbench.protocols.table import SampleTable

__all__ = [
    "SPLITTERS", "Fold", "Plan", "Protocol", "SampleTable", "bundled_dir", "check_folds_target", "check_leakage", "list_protocols",
    "load_protocol", "make_plan", "read_folds_fingerprint", "write_folds",
]
