"""The chained run, stepped through the local cloud (LaunchLambda, the TrainerLambda in its own
execution environments, hand-offs through the production invoker), against plain numpy; and its
at-least-once guarantees: copies at once, crashes at random points, out-of-order delivery."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.support.chain import final_params, monolithic_reference, read_lines, reference_params, run_to_end
from tests.support.report import REPORT
from tests.support.requests import CHAIN_VARIANTS as VARIANTS
from tests.support.requests import chain_variant as _payload


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
def test_every_event_delivered_twice_at_once_changes_nothing(stack, chain: str) -> None:
    payload = _payload("minibatch-adam-l2", chain, max_steps_per_invocation=5)
    reference, clean_attempts = run_to_end(stack, payload)
    run_id, attempts = run_to_end(stack, payload, copies=2)
    assert attempts == 2 * clean_attempts
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


# Where a step's I/O can fail: before a call, or after it took effect (a crash once applied).
FAULT_POINTS = [
    {"target": "tensor_store.snapshot"},
    {"target": "tensor_store.commit", "after": True},
    {"target": "tensor_store.claim", "before": False, "after": True},
    {"target": "tensor_store.mark_done", "after": True},
    {"target": "invoker.invoke_async", "after": True},
    {"target": "run_store.put_epochs"},
    {"target": "run_store.record_progress"},
]


@pytest.mark.parametrize("chain", ["per_step", "fused"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crashes_at_random_points_then_lambdas_retries_end_bit_identical(
    stack, tmp_path, chain: str, seed: int
) -> None:
    payload = _payload("minibatch-adam-l2", chain, max_steps_per_invocation=6)
    expected = reference_params(stack, payload)
    # At most two faults per event: Lambda retries an event twice, so no event runs out of attempts.
    # About the same number of faults either way: a fused invocation passes the points far less often.
    probability = 0.02 if chain == "per_step" else 0.15
    stack.faults(tmp_path, [{**p, "probability": probability, "seed": seed} for p in FAULT_POINTS], per_event=2)
    try:
        run_id, _ = run_to_end(stack, payload)
    finally:
        stack.calm()
    injected = read_lines(tmp_path / "injected")
    run = stack.services.run_store.get_run(run_id)
    got = final_params(stack, run_id)
    identical = run["status"] == "SUCCEEDED" and all(np.array_equal(expected[k], got[k]) for k in expected)
    REPORT.record(faults=len(injected), identical=identical)
    assert len(injected) > 5 and len({(f["target"], f["stage"]) for f in injected}) >= 3, injected
    assert identical


def test_duplicates_delivered_out_of_order_end_bit_identical(stack) -> None:
    payload = _payload("full-batch-gd", "per_step")
    expected = reference_params(stack, payload)
    rng = random.Random(7)
    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    # Each hand-off arrives three times; the copies are delivered one by one in a random order.
    pending: dict[str, int] = {}  # held event -> copies still to deliver
    while held := stack.held():
        for event in held:
            pending.setdefault(event["request_id"], 3)
        request_id = rng.choice(list(pending))
        pending[request_id] -= 1
        assert not stack.deliver(request_id, keep=pending[request_id] > 0).failed
        if not pending[request_id]:
            del pending[request_id]
    got = final_params(stack, run_id)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_the_training_set_is_loaded_once_per_warm_environment(stack, tmp_path) -> None:
    stack.faults(tmp_path, record=["tensor_store.get_data"])
    try:
        _, attempts = run_to_end(stack, _payload("minibatch-adam-l2", "fused", max_steps_per_invocation=8))
    finally:
        stack.calm()
    loads = read_lines(tmp_path / "calls")
    assert attempts > 5 and len(loads) == 1, loads


def test_a_fault_plan_the_cloud_keeps_arms_and_disarms_the_warm_trainer(stack, tmp_path) -> None:
    """The trainer's fault points read the plan the cloud keeps for it (/_lnn/handler-faults) at each
    invocation: armed, then cleared, without a configuration change, in the same warm environment."""
    payload = _payload("full-batch-gd", "fused", max_steps_per_invocation=8)
    stack.configure(handler="lnn_test_functions.trainer_with_faults")  # no plan yet: the trainer as it is
    try:
        run_to_end(stack, payload)
        started = stack.cloud.stats()["environments_started"]
        stack.cloud.set_handler_faults(stack.trainer, {"dir": str(tmp_path), "record": ["tensor_store.commit"]})
        run_to_end(stack, payload)
        armed = len(read_lines(tmp_path / "calls"))
        stack.cloud.set_handler_faults(stack.trainer, None)
        run_to_end(stack, payload)
        assert armed > 0 and len(read_lines(tmp_path / "calls")) == armed  # recorded while armed only
        assert stack.cloud.stats()["environments_started"] == started  # no environment retired
    finally:
        stack.cloud.set_handler_faults(stack.trainer, None)
        stack.calm()


def test_a_crash_redoes_at_most_the_steps_since_the_last_hand_off(stack, tmp_path) -> None:
    budget = 9
    payload = _payload("full-batch-gd", "fused", max_steps_per_invocation=budget)
    # One crash, just before the third invocation's commit.
    crash = {"target": "tensor_store.commit", "skip": 2, "limit": 1}
    stack.faults(tmp_path, [crash], record=["trainer.engine:run_step"])
    try:
        run_id, _ = run_to_end(stack, payload)
    finally:
        stack.calm()
    (fault,) = read_lines(tmp_path / "injected")
    expected, new = fault["ints"][:2]  # commit(run_id, expected, new, ...): the steps it computed
    executed = len(read_lines(tmp_path / "calls"))
    total = stack.services.run_store.get_run(run_id)["total_steps"]
    redone = executed - (total - 1)  # finish is not an engine step
    assert 0 < redone == new - expected <= budget
