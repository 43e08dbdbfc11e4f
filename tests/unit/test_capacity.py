"""What a run needs of the cache, and the settings the launch checks it against: pure rules (the
refusals through LaunchLambda on the local cloud: tests/integration/chain/test_capacity.py)."""

from __future__ import annotations

import numpy as np

from trainer import capacity
from trainer.settings import Settings


def test_run_bytes_counts_data_parameters_with_optimizer_state_and_activations() -> None:
    arrays = {"x_train": np.zeros((3, 10)), "y_train": np.zeros((1, 10))}  # 240 + 80 bytes
    sizes = [3, 4, 1]  # parameters: 3*4+4 + 4*1+1 = 21
    batch = 10
    expected_gd = 320 + 8 * (21 * 2 + (4 + 1) * batch * 3)
    assert capacity.run_bytes(arrays, sizes, batch, 8, "gd") == expected_gd
    assert capacity.run_bytes(arrays, sizes, batch, 8, "adam") == expected_gd + 8 * 21 * 4  # v and s, twice


def test_check_refuses_more_than_the_runs_share_and_names_the_fix() -> None:
    mib = 2**20
    assert capacity.check(90 * mib, 100) == []
    (problem,) = capacity.check(91 * mib, 100)
    assert problem.startswith("dataset: the run needs about 91 MiB in the cache")
    assert "100 MiB it holds" in problem and "redis_node_type" in problem
    assert capacity.check(10**12, None) == []  # capacity unknown (a local Redis): nothing to check


_REQUIRED_ENV = {
    "TABLE_NAME": "t",
    "MODEL_BUCKET": "b",
    "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
    "TRAINER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:1:function:t",
    "REDIS_HOST": "h",
}


def test_capacity_comes_from_the_environment(monkeypatch) -> None:
    for key, value in _REQUIRED_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CACHE_CAPACITY_MIB", "1052")
    assert Settings.from_env().cache_capacity_mib == 1052
    monkeypatch.delenv("CACHE_CAPACITY_MIB")
    assert Settings.from_env().cache_capacity_mib is None


def test_the_trainer_timeout_reaches_the_settings(monkeypatch) -> None:
    for name, value in _REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRAINER_TIMEOUT_S", "120")
    assert Settings.from_env().trainer_timeout_s == 120
