"""The evaluation harness (`ferbench evaluate`), one step a module, in the order a run takes them:

- `evaluate.evaluate`: check the options, resolve data + protocol + models, take the runs-folder lock, plan,
  run, write records (the four calls, each a function of that module);
- plan: `plan.make_specs` turns a protocol's folds x a model into `spec.TaskSpec`s (with their fingerprints,
  `fingerprint`), and `recipes` resolves each model's training stages;
- run: `execute` runs the specs in this process or on dask; `task.run_task` is one task anywhere: it loads the
  data files (`data`), fits (`fit`: build, `train` each stage, select, `predict`; `inputs` gathers batches on
  the device) or fuses (`fusion`), and returns the predictions;
- record: `record.build_record` adds the test labels the client alone holds, and `ferbench.records` (the one
  record module) writes it; `summary` and `progress` are the end table and the live view.
"""

from ferbench.harness.evaluate import EvaluateResult, RunPlan, evaluate, plan_run

__all__ = ["EvaluateResult", "RunPlan", "evaluate", "plan_run"]
