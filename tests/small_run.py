"""The small training run the deploy rehearsals launch through the AWS CLI (tests/integration/
test_up_down.py, tests/infra/terraform/test_apply_cycle.py): defined once, so both rehearse the
same run."""

from __future__ import annotations

# The built-in dataset, a few epochs (a few seconds of training).
REQUEST = {
    "dataset": "moons",
    "neurons": {"layer1": 8, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 30,
    "learning_rate": 0.5,
    "seed": 7,
}
