"""A run too large for the cache is refused at launch (the cache never evicts), and so is a time
margin the trainer's timeout cannot give, with a clear message, before anything is written; what
fits is launched as before."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest

from tests.support.chain import ChainStack, footprint
from tests.support.requests import GOOD
from trainer.aws import client
from trainer.local.cloud_runner import LaunchRefused


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
    before = footprint(tiny_cache)
    with pytest.raises(
        LaunchRefused, match=r"dataset: the run needs about \d+ MiB in the cache, more than 90% of the 1 MiB"
    ):
        tiny_cache.launch({**GOOD, "dataset": dataset})
    assert footprint(tiny_cache) == before


def test_launch_accepts_a_run_that_fits(tiny_cache) -> None:
    result = tiny_cache.launch({**GOOD, "run_id": "fits-the-cache"})
    assert result["run_id"] == "fits-the-cache" and result["status"] == "RUNNING"
    assert [e["payload"]["run_id"] for e in tiny_cache.held()] == ["fits-the-cache"]


@pytest.fixture
def short_trainer(stack) -> Iterator[ChainStack]:
    """The stack, its trainer said to time out after 10 s."""
    yield from _launch_function_told(stack, TRAINER_TIMEOUT_S="10")


def test_a_time_margin_the_trainers_timeout_cannot_give_is_refused_and_writes_nothing(short_trainer) -> None:
    before = footprint(short_trainer)
    with pytest.raises(
        LaunchRefused, match=r"time_margin_ms: 15000 ms is more than half of the trainer's 10 s timeout"
    ):
        short_trainer.launch({**GOOD, "time_margin_ms": 15000})
    assert footprint(short_trainer) == before and not short_trainer.held()
    assert short_trainer.launch({**GOOD, "time_margin_ms": 4000})["status"] == "RUNNING"
    assert len(short_trainer.held()) == 1
