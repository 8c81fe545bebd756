"""A sweep from Python, as in a notebook: run it, look at its trials and the chosen point, write the report.

    .venv/bin/python examples/notebook.py [TRACKING_URI]

Runs the quickstart with one epoch (a minute on two cores) into ./mlflow.db, or the store given;
the report goes to ./reports/notebook/.
"""
import sys
from pathlib import Path

import sweeper

uri = sys.argv[1] if len(sys.argv) > 1 else None
quickstart = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
config = sweeper.load_config(quickstart, ["train.epochs=1", "name=notebook"])
result = sweeper.run(config, tracking_uri=uri)
print(result.message, result.counts)

trials = result.trials  # one row per trial: knobs, metrics, status, run id
print(trials[["point_name", "kernel_size", "pooling", "val_accuracy", "test_accuracy", "status", "run_id"]]
      .sort_values("val_accuracy", ascending=False).to_string(index=False))

chosen = result.chosen  # chosen on validation, never on test
print(f"chosen: {chosen['point']} ({chosen['metric']} {chosen['score']:.4f}, "
      f"test accuracy {chosen['test_accuracy']:.4f})")

print("report:", result.report(attach=False))
print(sweeper.status("notebook", tracking_uri=uri).states)
