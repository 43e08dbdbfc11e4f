"""The chained run, through Redis and the handlers, against plain numpy; and its at-least-once
guarantees: duplicates, crashes at random points, out-of-order delivery."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.integration.chain.chain_helpers import (
    REPORT,
    Faults,
    InjectedFault,
    final_params,
    monolithic_reference,
    run_to_end,
)
from trainer.runconfig import RunConfig

SMALL = {
    "dataset": "moons",
    "neurons": {"layer1": 6, "layer2": 4, "layer3": 1},
    "activations": {"layer1": "relu", "layer2": "tanh", "layer3": "sigmoid"},
    "epochs": 6,
    "learning_rate": 0.05,
}
VARIANTS = {
    "full-batch-gd": {},
    "minibatch-adam-l2": {"optimizer": "adam", "batch_size": 64, "l2": 0.3, "init": "he"},
    "momentum-leaky": {
        "optimizer": "momentum",
        "activations": {"layer1": "leaky_relu", "layer2": "sigmoid", "layer3": "sigmoid"},
    },
    "softmax-spirals": {
        "dataset": "spirals",
        "neurons": {"layer1": 8, "layer2": 5, "layer3": 3},
        "activations": {"layer1": "relu", "layer2": "relu", "layer3": "softmax"},
        "batch_size": 100,
        "optimizer": "adam",
        "normalize": "standardize",
    },
    "float32": {"dtype": "float32", "optimizer": "adam", "batch_size": 50},
}


def _payload(variant: str, chain: str, **extra) -> dict:
    return {**SMALL, **VARIANTS[variant], "chain": chain, **extra}


@pytest.mark.parametrize("chain", ["per_step", "fused"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chain_agrees_with_monolithic_numpy(stack, variant: str, chain: str) -> None:
    payload = _payload(variant, chain, max_steps_per_invocation=7)
    run_id, _ = run_to_end(stack, payload)
    run = stack.services.run_store.get_run(run_id)
    assert run["status"] == "SUCCEEDED"
    expected_params, expected_costs = monolithic_reference(payload)
    tolerance = 1e-9 if payload.get("dtype", "float64") == "float64" else 1e-5
    assert run["final_cost"] == pytest.approx(expected_costs[-1], abs=tolerance)
    epochs = sorted(stack.services.run_store.epochs(run_id), key=lambda e: e["epoch"])
    assert [e["epoch"] for e in epochs] == list(range(payload["epochs"]))
    np.testing.assert_allclose([e["cost"] for e in epochs], expected_costs, atol=tolerance)
    got = final_params(stack, run_id)
    for name, value in expected_params.items():
        np.testing.assert_allclose(got[name], value, atol=tolerance, rtol=0, err_msg=name)


def test_per_step_and_fused_chains_are_bit_identical(stack) -> None:
    a, _ = run_to_end(stack, _payload("minibatch-adam-l2", "per_step"))
    b, _ = run_to_end(stack, _payload("minibatch-adam-l2", "fused", max_steps_per_invocation=11))
    pa, pb = final_params(stack, a), final_params(stack, b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_a_run_executes_exactly_its_plan(stack) -> None:
    payload = _payload("full-batch-gd", "per_step")
    run_id, deliveries = run_to_end(stack, payload)
    run = stack.services.run_store.get_run(run_id)
    assert deliveries == run["total_steps"] == 6 * (1 + 7) + 1
    assert stack.services.tensor_store.cursor(run_id) == run["total_steps"] - 1


@pytest.mark.parametrize("chain", ["per_step", "fused"])
def test_every_event_delivered_twice_changes_nothing(stack, chain: str) -> None:
    payload = _payload("minibatch-adam-l2", chain, max_steps_per_invocation=5)
    reference, clean_deliveries = run_to_end(stack, payload)
    original = stack.invoker.invoke_async

    def twice(event):
        original(event)
        original(event)

    stack.invoker.invoke_async = twice
    try:
        run_id, deliveries = run_to_end(stack, payload)
    finally:
        del stack.invoker.invoke_async
    assert deliveries >= 2 * clean_deliveries - 1
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("chain", ["per_step", "fused"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crashes_at_random_points_then_redelivery_end_bit_identical(stack, chain: str, seed: int) -> None:
    payload = _payload("minibatch-adam-l2", chain, max_steps_per_invocation=6)
    reference, _ = run_to_end(stack, payload)
    with Faults(stack, probability=0.08, seed=seed) as faults:
        run_id, _ = run_to_end(stack, payload)
    run = stack.services.run_store.get_run(run_id)
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    identical = run["status"] == "SUCCEEDED" and all(np.array_equal(expected[k], got[k]) for k in expected)
    REPORT.record(faults=faults.injected, identical=identical)
    assert faults.injected > 5
    assert identical


def test_duplicates_delivered_out_of_order_end_bit_identical(stack) -> None:
    payload = _payload("full-batch-gd", "per_step")
    reference, _ = run_to_end(stack, payload)
    original = stack.invoker.invoke_async
    rng = random.Random(7)

    def three_times(event):
        for _ in range(3):
            original(event)

    stack.invoker.invoke_async = three_times
    try:
        run_id, _ = run_to_end(stack, payload, pick=lambda queue: rng.randrange(len(queue)))
    finally:
        del stack.invoker.invoke_async
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_the_training_set_is_loaded_once_per_warm_environment(stack) -> None:
    from trainer import warm

    store = stack.services.tensor_store
    loads = []
    original = store.get_data

    def counting(run_id, names):
        loads.append(run_id)
        return original(run_id, names)

    store.get_data = counting
    try:
        run_id, deliveries = run_to_end(stack, _payload("minibatch-adam-l2", "fused", max_steps_per_invocation=8))
    finally:
        del store.get_data
    assert deliveries > 5 and loads == [run_id]
    key = next(k for k in warm.cached_data_keys() if k[0] == run_id)
    assert key[1] == RunConfig.from_json(stack.services.run_store.get_run(run_id)["config"]).data_digest


def test_a_crash_redoes_at_most_the_steps_since_the_last_hand_off(stack) -> None:
    from trainer import engine

    budget = 9
    payload = _payload("full-batch-gd", "fused", max_steps_per_invocation=budget)
    executed = []
    original_step = engine.run_step
    store = stack.services.tensor_store
    original_commit = store.commit
    crashed = []

    def counting_step(*args, **kwargs):
        executed.append(1)
        return original_step(*args, **kwargs)

    def crash_once(run_id, expected, new, tensors, outbox):
        if not crashed and expected > 2 * budget:
            crashed.append(new - expected)  # the steps this invocation computed
            raise InjectedFault("crash before the commit")
        return original_commit(run_id, expected, new, tensors, outbox)

    engine.run_step, store.commit = counting_step, crash_once
    try:
        run_id, _ = run_to_end(stack, payload)
    finally:
        engine.run_step = original_step
        del store.commit
    total = stack.services.run_store.get_run(run_id)["total_steps"]
    redone = len(executed) - (total - 1)  # finish is not an engine step
    assert crashed and 0 < redone == crashed[0] <= budget
