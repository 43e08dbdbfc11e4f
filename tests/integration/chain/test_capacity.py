"""A run too large for the cache is refused at launch (the cache never evicts), and so is a time
margin the trainer's timeout cannot give, with a clear message, before anything is written; what
fits is launched as before."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest

from tests.integration.chain.chain_helpers import ChainStack
from tests.integration.chain.handlers.test_launch import GOOD, _footprint
from trainer import capacity
from trainer.aws import client
from trainer.local.cloud_runner import LaunchRefused
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


def _launch_function_told(stack: ChainStack, **variables: str) -> Iterator[ChainStack]:
    """The stack's LaunchLambda with these variables on top of its own (it is the one that checks a
    request); its own afterwards. The service starts new environments for a changed configuration."""
    lam, name = client("lambda"), stack.env["LAUNCH_FUNCTION_NAME"]
    own = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {**own, **variables}})
    stack.drop_all()
    try:
        yield stack
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": own})
        stack.drop_all()


@pytest.fixture
def tiny_cache(stack) -> Iterator[ChainStack]:
    """The stack, its cache said to hold 1 MiB."""
    yield from _launch_function_told(stack, CACHE_CAPACITY_MIB="1")


def test_launch_refuses_a_dataset_too_large_for_the_cache_and_writes_nothing(tiny_cache) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()  # 4000 x 40 float64 training examples: 1.2 MiB of data alone
    np.savez(
        buffer,
        train_set_x=rng.normal(size=(4000, 40)),
        train_set_y=rng.integers(0, 2, 4000),
        test_set_x=rng.normal(size=(10, 40)),
        test_set_y=rng.integers(0, 2, 10),
    )
    dataset = tiny_cache.services.blob_store.put("datasets/wide.npz", buffer.getvalue())
    before = _footprint(tiny_cache)
    with pytest.raises(
        LaunchRefused, match=r"dataset: the run needs about \d+ MiB in the cache, more than 90% of the 1 MiB"
    ):
        tiny_cache.launch({**GOOD, "dataset": dataset})
    assert _footprint(tiny_cache) == before


def test_launch_accepts_a_run_that_fits(tiny_cache) -> None:
    result = tiny_cache.launch({**GOOD, "run_id": "fits-the-cache"})
    assert result["run_id"] == "fits-the-cache" and result["status"] == "RUNNING"
    assert [e["payload"]["run_id"] for e in tiny_cache.held()] == ["fits-the-cache"]


@pytest.fixture
def short_trainer(stack) -> Iterator[ChainStack]:
    """The stack, its trainer said to time out after 10 s."""
    yield from _launch_function_told(stack, TRAINER_TIMEOUT_S="10")


def test_a_time_margin_the_trainers_timeout_cannot_give_is_refused_and_writes_nothing(short_trainer) -> None:
    before = _footprint(short_trainer)
    with pytest.raises(
        LaunchRefused, match=r"time_margin_ms: 15000 ms is more than half of the trainer's 10 s timeout"
    ):
        short_trainer.launch({**GOOD, "time_margin_ms": 15000})
    assert _footprint(short_trainer) == before and not short_trainer.held()
    assert short_trainer.launch({**GOOD, "time_margin_ms": 4000})["status"] == "RUNNING"
    assert len(short_trainer.held()) == 1


def test_the_trainer_timeout_reaches_the_settings(monkeypatch) -> None:
    for name, value in _REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRAINER_TIMEOUT_S", "120")
    assert Settings.from_env().trainer_timeout_s == 120
