"""Sweeps through the real handlers in the local cloud: LaunchLambda starts them, the trials'
hand-offs are held by the Lambda service and delivered in any order and any number of times: the
scheduler starts every trial once, stops and frees slots once, ends once."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from tests.support.chain import ChainStack, drain_queue
from tests.support.cloud import subscribe_queue
from tests.support.sweeps import BASE, deliver, launch, sweep_request
from trainer.aws import client
from trainer.local.cloud_runner import LaunchRefused
from trainer.sweep import scheduler
from trainer.vocabulary import RunStatus, SweepStatus


def upload(stack: ChainStack, key: str, arrays: dict[str, np.ndarray]) -> str:
    """A dataset in the stack's bucket, as a user passes one to the functions."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    bucket = stack.env["MODEL_BUCKET"]
    client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


@pytest.mark.parametrize("chain", ["fused", "per_step"])
def test_sweep_runs_every_trial_once_and_ends_once(stack, chain: str) -> None:
    topic_queue = subscribe_queue(stack.env["SNS_TOPIC_ARN"], f"sweep-ends-{chain}")
    # A hop costs a Lambda invocation: per_step trials train 4 epochs (ASHA still judges them at 2).
    base = {**BASE, "chain": chain, **({"epochs": 4} if chain == "per_step" else {})}
    launched = launch(stack, sweep_request(base=base))
    assert launched["trials"] == 6 and len(launched["started"]) == 2
    counts = deliver(stack)
    status = scheduler.status(stack.services, launched["sweep_id"])
    assert status["status"] == SweepStatus.ENDED
    rows = status["leaderboard"]
    assert sorted(r["trial"] for r in rows) == list(range(6))
    assert all(r["state"] in (RunStatus.SUCCEEDED, RunStatus.STOPPED) for r in rows)
    assert counts["max_running"] <= 2
    # the best is a finished trial, ranked by validation accuracy, and its model is the sweep's best
    best = (
        rows[0]
        if rows[0]["state"] == RunStatus.SUCCEEDED
        else next(r for r in rows if r["state"] == RunStatus.SUCCEEDED)
    )
    summary = status["summary"]
    assert summary["best_run_id"] == best["run_id"]
    assert stack.services.blob_store.get(f"models/{launched['sweep_id']}/best.npz") == stack.services.blob_store.get(
        f"models/{best['run_id']}/model.npz"
    )
    messages = drain_queue(topic_queue)
    assert [m["kind"] for m in messages] == ["SWEEP_ENDED"]  # one summary, no message per trial
    assert messages[0]["by_state"] == summary["by_state"]


@pytest.mark.parametrize("seed", [1, 2])
def test_duplicated_and_reordered_deliveries_change_nothing(stack, seed: int) -> None:
    """The same sweep delivered once in order, and three times per event in random order: the
    same trials started, the same rung decisions, the same leaderboard."""
    calm = launch(stack, sweep_request(sweep_id=f"calm-{seed}"))
    deliver(stack)
    rough = launch(stack, sweep_request(sweep_id=f"rough-{seed}"))
    counts = deliver(stack, random.Random(seed), copies=3)
    assert counts["deliveries"] > 0
    expected = scheduler.status(stack.services, calm["sweep_id"])
    got = scheduler.status(stack.services, rough["sweep_id"])
    assert got["status"] == SweepStatus.ENDED
    assert got["by_state"] == expected["by_state"] or _order_dependent(expected, got)
    for row in got["leaderboard"]:
        assert row["epochs_run"] in ((2, 4, 8) if row["state"] == RunStatus.STOPPED else (12,))
    # every slot handed on once: trials 2..5 each started by exactly one ended trial
    items = stack.services.run_store.sweep_trials(rough["sweep_id"])
    successors = sorted(int(t["successor"]) for t in items)
    assert successors == [-1, -1, 2, 3, 4, 5]
    sweep = stack.services.run_store.get_sweep(rough["sweep_id"])
    assert int(sweep["ended"]) == 6
    assert sum(int(sweep.get(f"ended_{s}", 0)) for s in ("SUCCEEDED", "STOPPED", "FAILED")) == 6


def _order_dependent(expected: dict, got: dict) -> bool:
    """ASHA is asynchronous: which trials stop depends on the order they reach a rung. Each trial
    still ended exactly once, in a state it can end in."""
    return sum(got["by_state"].values()) == sum(expected["by_state"].values())


def test_launch_sent_twice_starts_nothing_twice(stack) -> None:
    payload = sweep_request(sweep_id="twice")
    first = launch(stack, payload)
    queued = len(stack.held())
    second = stack.launch(payload)  # LaunchLambda again (a client's retry), the first events still held
    assert second["started"] == first["started"]
    assert {e["payload"]["run_id"] for e in stack.held()} == set(first["started"])
    assert len(stack.held()) <= 2 * queued  # at most a duplicate first event per trial
    deliver(stack)
    rows = scheduler.leaderboard(stack.services, "twice")
    assert len({r["run_id"] for r in rows}) == 6
    with pytest.raises(LaunchRefused, match="a different sweep"):
        launch(stack, sweep_request(sweep_id="twice", seed=4))


def test_cancel_stops_the_sweep_and_its_trials(stack) -> None:
    topic_queue = subscribe_queue(stack.env["SNS_TOPIC_ARN"], "sweep-cancels")
    launched = launch(stack, sweep_request(sweep_id="to-cancel"))
    for _ in range(3):
        assert not stack.deliver().failed
    cancelled = stack.launch({"action": "cancel", "sweep_id": "to-cancel"})
    assert sorted(cancelled["trials_cancelled"]) == sorted(launched["started"])
    deliver(stack)
    status = scheduler.status(stack.services, "to-cancel")
    assert status["status"] == SweepStatus.CANCELLED
    assert status["by_state"] == {"CANCELLED": 2, "NOT_STARTED": 4}
    # Trials that never started are listed last and not ranked.
    assert [r["rank"] for r in status["leaderboard"]] == [1, 2, None, None, None, None]
    again = stack.launch({"action": "cancel", "sweep_id": "to-cancel"})
    assert again["status"] == SweepStatus.CANCELLED and again["trials_cancelled"] == []
    kinds = [m["kind"] for m in drain_queue(topic_queue)]
    assert kinds == ["SWEEP_CANCELLED"]  # once, though the cancel came twice


def test_an_ended_sweep_cannot_be_cancelled(stack) -> None:
    launch(stack, sweep_request(sweep_id="over", trials=2))
    deliver(stack)
    with pytest.raises(LaunchRefused, match="has ended already"):
        stack.launch({"action": "cancel", "sweep_id": "over"})


def test_an_invalid_sweep_writes_nothing(stack) -> None:
    space = {"learning_rate": [0.1, -1.0], "neurons.layer2": [1, 3]}
    payload = sweep_request(sweep_id="bad", space=space, strategy="grid", trials=None)
    with pytest.raises(LaunchRefused) as caught:
        launch(stack, payload)
    text = str(caught.value)
    assert "learning_rate: Expected `float` > 0.0, got -1.0" in text
    assert "trials 2, 3: learning_rate" in text
    assert "trial 1: neurons.layer2: a sigmoid output layer needs 1 neuron" in text
    assert not stack.services.run_store.sweep_exists("bad")
    assert not stack.services.blob_store.keys("sweeps/bad/")
    assert not stack.held()


def test_validation_never_touches_the_test_set(stack) -> None:
    """Two datasets with the same training set and different test sets: the same validation
    figures, the same ranking; only the test accuracy differs."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    test_x = rng.normal(size=(80, 2))
    sources = []
    for flip in (False, True):
        test_y = (test_x[:, 0] > 0).astype(int)
        arrays = {
            "train_set_x": x,
            "train_set_y": y,
            "test_set_x": test_x,
            "test_set_y": 1 - test_y if flip else test_y,
        }
        sources.append(upload(stack, f"datasets/split-{flip}.npz", arrays))
    boards = []
    for number, source in enumerate(sources):
        request = sweep_request(sweep_id=f"split-{number}", base={**BASE, "dataset": source}, early_stopping=None)
        launch(stack, request)
        deliver(stack)
        boards.append(scheduler.status(stack.services, f"split-{number}"))
    strip = lambda rows: [(r["trial"], r["validation_accuracy"], r["curve"]) for r in rows]  # noqa: E731
    assert strip(boards[0]["leaderboard"]) == strip(boards[1]["leaderboard"])
    assert boards[0]["summary"]["best_trial"] == boards[1]["summary"]["best_trial"]
    tests = [b["summary"]["best_test_accuracy"] for b in boards]
    assert tests[0] == pytest.approx(1 - tests[1])


def test_a_failed_trial_keeps_its_slot_until_cancelled_then_the_sweep_ends(stack, tmp_path) -> None:
    """Lambda retries a failed step, and a retry may succeed: a FAILED trial keeps its slot (a
    FAILED message asks for a resume or a cancel); cancelled, it hands the slot on."""
    topic_queue = subscribe_queue(stack.env["SNS_TOPIC_ARN"], "sweep-failures")
    launched = launch(stack, sweep_request(sweep_id="one-fails", early_stopping=None))
    doomed = launched["started"][0]
    # The doomed trial's first event runs where the cache refuses every write, each of Lambda's
    # attempts; the other trials' events run in the stack's own configuration.
    (event,) = [e for e in stack.held() if e["payload"]["run_id"] == doomed]
    stack.faults(tmp_path, [{"target": "tensor_store.commit"}])
    try:
        delivery = stack.deliver(event["request_id"])
    finally:
        stack.calm()
    assert delivery.failed and all("InjectedFault" in e for e in delivery.errors), delivery.errors
    assert [r["requestPayload"]["run_id"] for r in stack.failure_records()] == [doomed]  # Lambda gave up on it
    deliver(stack)
    status = scheduler.status(stack.services, "one-fails")
    assert status["status"] == SweepStatus.RUNNING
    assert status["by_state"] == {"FAILED": 1, "SUCCEEDED": 5}  # the other slot went through every other trial
    kinds = [m["kind"] for m in drain_queue(topic_queue)]
    assert kinds == ["FAILED"]
    stack.launch({"action": "cancel", "run_id": doomed})
    deliver(stack)
    status = scheduler.status(stack.services, "one-fails")
    assert status["status"] == SweepStatus.ENDED
    assert status["summary"]["by_state"] == {"CANCELLED": 1, "SUCCEEDED": 5}
    assert [m["kind"] for m in drain_queue(topic_queue)] == ["SWEEP_ENDED"]


def test_a_trial_that_cannot_start_is_failed_and_its_slot_goes_on(stack) -> None:
    source = upload(stack, "datasets/changing.npz", moons_arrays(0))
    launched = launch(stack, sweep_request(sweep_id="data-changed", base={**BASE, "dataset": source}))
    upload(stack, "datasets/changing.npz", moons_arrays(1))  # the dataset changes under the sweep
    deliver(stack)
    status = scheduler.status(stack.services, "data-changed")
    assert status["status"] == SweepStatus.ENDED
    started = {r["run_id"] for r in status["leaderboard"] if r["state"] != RunStatus.FAILED}
    assert started == set(launched["started"])
    failed = [r for r in status["leaderboard"] if r["state"] == RunStatus.FAILED]
    assert len(failed) == 4 and all("changed since the sweep was launched" in r["failure_reason"] for r in failed)


def moons_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(int)
    return {"train_set_x": x[:150], "train_set_y": y[:150], "test_set_x": x[150:], "test_set_y": y[150:]}


def test_sweeps_that_would_misbehave_are_refused(stack) -> None:
    never_judged = sweep_request(sweep_id="late", early_stopping={"asha": {"min_epochs": 12, "reduction_factor": 2}})
    with pytest.raises(LaunchRefused, match="min_epochs: 12 is not below the trial's 12 epochs"):
        launch(stack, never_judged)
    launch(stack, {**BASE, "run_id": "taken-t001", "epochs": 1})
    with pytest.raises(LaunchRefused, match="runs taken-t001 exist"):
        launch(stack, sweep_request(sweep_id="taken"))
    huge = sweep_request(sweep_id="huge", space={"seed": list(range(60_000))})
    with pytest.raises(LaunchRefused, match="more than 300000"):
        launch(stack, huge)
