"""A run too large for the cache is refused at launch (the cache never evicts), and so is a time
margin the trainer's timeout cannot give, with a clear message, before anything is written; what
fits is launched as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.integration.chain.handlers.test_launch import GOOD, _footprint
from trainer import capacity
from trainer.errors import RequestError
from trainer.local import runner
from trainer.settings import Settings


def test_run_bytes_counts_data_parameters_with_optimizer_state_and_activations() -> None:
    arrays = {"x_train": np.zeros((3, 10)), "y_train": np.zeros((1, 10))}  # 240 + 80 bytes
    sizes = [3, 4, 1]  # parameters: 3*4+4 + 4*1+1 = 21
    batch = 10
    expected_gd = 320 + 8 * (21 * 2 + (4 + 1) * batch * 3)
    assert capacity.run_bytes(arrays, sizes, batch, 8, "gd") == expected_gd
    assert capacity.run_bytes(arrays, sizes, batch, 8, "adam") == expected_gd + 8 * 21 * 2


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


@pytest.fixture
def tiny_cache(stack, monkeypatch):
    """The local stack, told its cache holds 1 MiB."""
    settings = dataclasses.replace(stack.services.settings, cache_capacity_mib=1)
    monkeypatch.setattr(stack.services, "settings", settings)
    stack.invoker.queue.clear()
    return stack


def test_launch_refuses_a_dataset_too_large_for_the_cache_and_writes_nothing(tiny_cache, tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.npz"  # 4000 x 40 float64 training examples: 1.2 MiB of data alone
    np.savez(
        path,
        train_set_x=rng.normal(size=(4000, 40)),
        train_set_y=rng.integers(0, 2, 4000),
        test_set_x=rng.normal(size=(10, 40)),
        test_set_y=rng.integers(0, 2, 10),
    )
    before = _footprint(tiny_cache)
    with pytest.raises(
        RequestError, match=r"dataset: the run needs about \d+ MiB in the cache, more than 90% of the 1 MiB"
    ):
        runner.launch(tiny_cache, {**GOOD, "dataset": str(path)})
    assert _footprint(tiny_cache) == before


def test_launch_accepts_a_run_that_fits(tiny_cache) -> None:
    result = runner.launch(tiny_cache, {**GOOD, "run_id": "fits-the-cache"})
    assert result["run_id"] == "fits-the-cache" and result["status"] == "RUNNING"
    tiny_cache.invoker.queue.clear()


@pytest.fixture
def short_trainer(stack, monkeypatch):
    """The local stack, told its trainer times out after 10 s."""
    settings = dataclasses.replace(stack.services.settings, trainer_timeout_s=10)
    monkeypatch.setattr(stack.services, "settings", settings)
    stack.invoker.queue.clear()
    return stack


def test_a_time_margin_the_trainers_timeout_cannot_give_is_refused_and_writes_nothing(short_trainer) -> None:
    before = _footprint(short_trainer)
    with pytest.raises(RequestError, match=r"time_margin_ms: 15000 ms is more than half of the trainer's 10 s timeout"):
        runner.launch(short_trainer, {**GOOD, "time_margin_ms": 15000})
    assert _footprint(short_trainer) == before and not short_trainer.invoker.queue
    assert runner.launch(short_trainer, {**GOOD, "time_margin_ms": 4000})["status"] == "RUNNING"
    short_trainer.invoker.queue.clear()


def test_the_trainer_timeout_reaches_the_settings(monkeypatch) -> None:
    for name, value in _REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRAINER_TIMEOUT_S", "120")
    assert Settings.from_env().trainer_timeout_s == 120
