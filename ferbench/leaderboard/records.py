"""The records a leaderboard shows: every usable record under a runs folder, filtered by dataset and protocol,
and the files it refused with their reasons (read through `ferbench.records`, the one validating reader)."""

from __future__ import annotations

from pathlib import Path

from ferbench.errors import FerbenchError
from ferbench.records import RecordScan, run_label, scan_records


def load_records(runs: str | Path, dataset: str | None = None, protocol: str | None = None) -> RecordScan:
    """The usable records matching the filters, plus every refused file; refuses a folder with nothing to show."""
    for value, option in ((dataset, "--dataset"), (protocol, "--protocol")):
        if value is not None and not value.strip():
            raise FerbenchError(f"{option} is empty; give a name (e.g. ck+, 10fold) or leave the option out")
    scan = scan_records(runs)
    if not scan.records and not scan.refused:
        raise FerbenchError(f"{runs}: no task records (r<repeat>-f<fold>.json) found; run ferbench evaluate first")
    kept = [(p, r) for p, r in scan.records
            if (dataset is None or dataset in (r["dataset"], run_label(r["dataset"], r["dataset_test"])))
            and (protocol is None or r["protocol"] == protocol)]
    if not kept:
        found = sorted({f"{run_label(r['dataset'], r['dataset_test'])}/{r['protocol']}" for _, r in scan.records})
        why = "" if not scan.refused else (f"; {len(scan.refused)} record file(s) refused, the first "
                                           f"{scan.refused[0][0]}: {scan.refused[0][1]}")
        raise FerbenchError(f"{runs}: no usable task records for dataset {dataset or 'any'} / protocol "
                            f"{protocol or 'any'} (found: {', '.join(found) or 'none'}){why}")
    return RecordScan(scan.runs, kept, scan.refused)
