"""The AWS adapters against moto server, through the real SDK."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support.chain import drain_queue, run_to_end
from tests.support.cloud import subscribe_queue
from tests.support.requests import moons
from trainer.aws import client
from trainer.invoker import LambdaInvoker
from trainer.notifier import ATTEMPT_BOUND_S, PublishTooLate, SnsNotifier


def test_lambda_invoker_sends_an_asynchronous_invoke(stack) -> None:
    invoker = LambdaInvoker(stack.env["TRAINER_FUNCTION_ARN"])
    calls = []
    invoker.lambda_.meta.events.register("before-call.lambda.Invoke", lambda params, **_: calls.append(params))
    event = {"state": "start", "run_id": "r", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
    stack.drop_all()
    # invoke_async raises unless the service answers 202 Accepted, the asynchronous contract.
    invoker.invoke_async(event)
    assert calls[0]["headers"]["X-Amz-Invocation-Type"] == "Event"
    (held,) = stack.held()  # it reached the function, as the event the handler will be given
    assert held["payload"] == event
    stack.drop_all()


def test_notifier_messages_reach_a_subscribed_queue(stack) -> None:
    topic = client("sns").create_topic(Name="notifier-test")["TopicArn"]
    url = subscribe_queue(topic, "notifier-test-q")
    SnsNotifier(topic).publish("FAILED", "run-9", {"step": "forward#3", "reason": "boom"})
    assert drain_queue(url) == [{"kind": "FAILED", "run_id": "run-9", "step": "forward#3", "reason": "boom"}]


def test_the_notifier_makes_no_attempt_that_could_outlive_its_message_claim(stack) -> None:
    topic = client("sns").create_topic(Name="notifier-claim-test")["TopicArn"]
    url = subscribe_queue(topic, "notifier-claim-test-q")
    with pytest.raises(PublishTooLate):
        SnsNotifier(topic).publish("SUCCEEDED", "run-8", {}, until=time.time() + ATTEMPT_BOUND_S - 1)
    SnsNotifier(topic).publish("SUCCEEDED", "run-9", {}, until=time.time() + ATTEMPT_BOUND_S + 5)
    assert drain_queue(url) == [{"kind": "SUCCEEDED", "run_id": "run-9"}]


def test_a_finished_run_publishes_its_summary_and_progress(stack) -> None:
    url = subscribe_queue(stack.services.notifier.topic_arn, "run-summary-q")
    payload = moons((4, 1), ("relu", "sigmoid"), epochs=4, learning_rate=0.1, notify_every=2, chain="per_step")
    run_id, _ = run_to_end(stack, payload)
    messages = [m for m in drain_queue(url) if m["run_id"] == run_id]
    kinds = [m["kind"] for m in messages]
    assert kinds.count("PROGRESS") == 2 and kinds[-1] == "SUCCEEDED"
    summary = messages[-1]
    run = stack.services.run_store.get_run(run_id)
    assert summary["final_cost"] == pytest.approx(run["final_cost"])
    assert summary["test_accuracy"] == pytest.approx(run["test_accuracy"])
    assert summary["model_uri"] == f"s3://{stack.services.blob_store.bucket}/models/{run_id}/model.npz"


def test_run_store_keeps_the_run_and_one_item_per_epoch(stack) -> None:
    payload = {
        "dataset": "circles",
        "neurons": {"layer1": 4, "layer2": 1},
        "activations": {"layer1": "tanh", "layer2": "sigmoid"},
        "epochs": 5,
        "learning_rate": 0.1,
    }
    run_id, _ = run_to_end(stack, payload)
    store = stack.services.run_store
    run = store.get_run(run_id)
    assert run["status"] == "SUCCEEDED"
    assert json.loads(run["request"])["epochs"] == 5
    assert run["finished_at"] >= run["created_at"]
    epochs = sorted(store.epochs(run_id), key=lambda e: e["epoch"])
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    assert all(e["duration_s"] >= 0 and e["cost"] > 0 for e in epochs)
    assert epochs[-1]["cost"] == pytest.approx(run["final_cost"])
    assert store.last_epoch(run_id) == epochs[-1]
    assert store.last_epoch("no-such-run") is None


def test_a_long_history_is_written_whole_in_concurrent_batches_retrying_what_dynamodb_left_unprocessed(
    stack,
) -> None:
    store = stack.services.run_store
    history = [{"epoch": n, "cost": 1.0 / (n + 1), "duration_s": 0.01} for n in range(612)]  # 25 batches
    local, lock = threading.local(), threading.Lock()
    in_flight, most, held_back, left = [0], [0], [0], []

    def hold_back_one(params, **_) -> None:
        # As DynamoDB does under load: part of a batch is not written and comes back as unprocessed.
        requests = params["RequestItems"][store.table]
        with lock:
            hold = len(requests) > 1 and held_back[0] < 10
            held_back[0] += hold
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        local.held = requests.pop() if hold else None

    def report_it(parsed, **_) -> None:
        with lock:
            in_flight[0] -= 1
        if local.held is not None:
            left.append(local.held)
            parsed["UnprocessedItems"] = {store.table: [local.held]}

    events = store.db.meta.events
    events.register("before-parameter-build.dynamodb.BatchWriteItem", hold_back_one)
    events.register("after-call.dynamodb.BatchWriteItem", report_it)
    try:
        store.put_epochs("long-history", history)
    finally:
        events.unregister("before-parameter-build.dynamodb.BatchWriteItem", hold_back_one)
        events.unregister("after-call.dynamodb.BatchWriteItem", report_it)
    assert len(left) == 10 and most[0] > 1
    stored = sorted(store.epochs("long-history"), key=lambda e: e["epoch"])
    assert [(e["epoch"], e["cost"]) for e in stored] == [(e["epoch"], e["cost"]) for e in history]


def test_a_follower_reads_the_epochs_from_where_it_left_off(stack) -> None:
    """What `train`'s progress bar reads at each landing: the epoch items from the first it has not
    seen, in order, and none of the run's other items (its record, its notices)."""
    payload = {
        "dataset": "circles",
        "neurons": {"layer1": 4, "layer2": 1},
        "activations": {"layer1": "tanh", "layer2": "sigmoid"},
        "epochs": 6,
        "learning_rate": 0.1,
        "notify_every": 2,
        "validation_fraction": 0.25,
    }
    run_id, _ = run_to_end(stack, payload)
    store = stack.services.run_store
    every = sorted(store.epochs(run_id), key=lambda e: e["epoch"])
    assert store.epochs_from(run_id, 0) == every and len(every) == 6
    assert store.epochs_from(run_id, 4) == every[4:]
    assert store.epochs_from(run_id, 6) == [] and store.epochs_from("no-such-run", 0) == []
    assert all({"accuracy", "validation_cost", "validation_accuracy"} <= set(e) for e in every)
