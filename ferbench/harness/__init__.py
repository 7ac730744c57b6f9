"""The evaluation harness (`ferbench evaluate`): tasks, training per recipe stage, prediction, records,
resume and dask execution, one small module each.

- `evaluate.evaluate` plans and runs; `spec.TaskSpec` is one task; `task.run_task` runs it anywhere;
- `train` the loop, `predict` eval-mode scores, `fusion` chao2016's fusion entries;
- `progress` the rich view, `summary` the end table (via ferbench.metrics);
- `records` the JSON records (docs/records.md), `fingerprint` what decides reuse; `execute` in-process or dask.
"""

from ferbench.harness.evaluate import EvaluateResult, evaluate

__all__ = ["EvaluateResult", "evaluate"]
