"""Exactly-once effects when copies of an event run at the same time.

Against an undisturbed run of the same request, a run whose every event is delivered twice at
nearly the same moment to different execution environments (separate processes, adapters of
their own), with SIGKILLs in the middle of invocations, Lambda's retries, late and reordered
copies, must leave the same weights, the same epoch items, the same checkpoints, one SUCCEEDED
message, one PROGRESS message per epoch, and no FAILED message.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from tests.integration.chain.chain_helpers import REPORT, deliver_all, final_params, run_to_end
from tests.integration.chain.copies import Chaos, Dispatcher
from trainer import checkpoints, lifecycle, services
from trainer.aws import client
from trainer.handlers import trainer as trainer_handler
from trainer.invoker import LocalInvoker
from trainer.local import runner
from trainer.stores.tensor_store import Superseded

BASE = {
    "dataset": "moons",
    "neurons": {"layer1": 5, "layer2": 3, "layer3": 1},
    "activations": {"layer1": "relu", "layer2": "tanh", "layer3": "sigmoid"},
    "epochs": 4,
    "learning_rate": 0.05,
    "notify_every": 1,
    "checkpoint_every": 1,
}
SCENARIOS = {
    "per-step": ({"chain": "per_step"}, Chaos(seed=11, kill_probability=0.15)),
    "fused-small-budget": (
        {"chain": "fused", "max_steps_per_invocation": 3, "optimizer": "momentum", "batch_size": 100},
        Chaos(seed=12, kill_probability=0.2),
    ),
    # Every copy's deadline is just past the time margin: copies of one event run different numbers of steps.
    "fused-short-deadlines": (
        {"chain": "fused", "time_margin_ms": 1000, "batch_size": 100},
        Chaos(seed=13, kill_probability=0.2, budget_ms=(1000, 1006)),
    ),
    "minibatch-adam": (
        {"chain": "fused", "max_steps_per_invocation": 5, "optimizer": "adam", "batch_size": 64, "l2": 0.1},
        Chaos(seed=14, kill_probability=0.2),
    ),
}


# -- what a run leaves behind ------------------------------------------------------------------
@pytest.fixture(scope="module")
def messages_queue(stack) -> str:
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="exactly-once-messages")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("sns").subscribe(
        TopicArn=stack.services.notifier.topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return url


def _messages(url: str, run_id: str, mailbox: dict[str, list[dict]]) -> list[dict]:
    """Every message so far, sorted into the mailbox by run; this run's."""
    sqs = client("sqs")
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        for message in got:
            body = json.loads(message["Body"])
            mailbox.setdefault(body["run_id"], []).append(body)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return mailbox.get(run_id, [])


def _checkpoints(stack, run_id: str) -> dict[str, dict[str, np.ndarray]]:
    store, out = stack.services.blob_store, {}
    listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"checkpoints/{run_id}/").get("Contents", [])
    for item in listed:
        with np.load(io.BytesIO(store.get(item["Key"])), allow_pickle=False) as archive:
            out[item["Key"].rsplit("/", 1)[1]] = {name: archive[name] for name in archive.files}
    return out


def _record(stack, run_id: str, url: str, mailbox: dict) -> dict[str, Any]:
    run = stack.services.run_store.get_run(run_id)
    epochs = sorted((e["epoch"], e["cost"]) for e in stack.services.run_store.epochs(run_id))
    kinds: dict[str, list] = {}
    for message in _messages(url, run_id, mailbox):
        kinds.setdefault(message["kind"], []).append(message.get("epoch"))
    return {
        "status": run["status"],
        "metrics": {k: run.get(k) for k in ("final_cost", "train_accuracy", "test_accuracy", "epochs")},
        "params": final_params(stack, run_id),
        "epochs": epochs,
        "checkpoints": _checkpoints(stack, run_id),
        "messages": kinds,
    }


def _assert_same(got: dict[str, Any], expected: dict[str, Any], payload: dict[str, Any]) -> None:
    epochs = payload["epochs"]
    assert got["status"] == "SUCCEEDED"
    assert got["metrics"] == expected["metrics"]
    assert got["params"].keys() == expected["params"].keys()
    for name, value in expected["params"].items():
        assert np.array_equal(got["params"][name], value), f"{name} differs"
    assert got["epochs"] == expected["epochs"] and len(got["epochs"]) == epochs
    saved = epochs // payload["checkpoint_every"] if payload["checkpoint_every"] else 0
    assert got["checkpoints"].keys() == expected["checkpoints"].keys() and len(got["checkpoints"]) == saved
    for key, tensors in expected["checkpoints"].items():
        assert all(np.array_equal(got["checkpoints"][key][n], v) for n, v in tensors.items()), f"checkpoint {key}"
    assert got["messages"].get("SUCCEEDED") == [None], "exactly one SUCCEEDED message"
    assert "FAILED" not in got["messages"] and "CANCELLED" not in got["messages"]
    assert sorted(got["messages"]["PROGRESS"]) == list(range(epochs)), "one PROGRESS message per epoch"


def _reference(stack, payload: dict, url: str, mailbox: dict) -> dict[str, Any]:
    run_id, _ = run_to_end(stack, payload)
    return _record(stack, run_id, url, mailbox)


# -- 1. many processes, every event twice, kills, retries, late copies ---------------------------
@pytest.fixture(scope="module")
def worker_env(stack, redis_server, aws_env) -> dict[str, str]:
    settings = stack.services.settings
    return {
        **aws_env,
        **{k: v for k, v in stack.env.items()},
        "REDIS_HOST": settings.redis_host,
        "REDIS_PORT": str(settings.redis_port),
        "REDIS_TLS": "1",
        "REDIS_CA_FILE": settings.redis_ca_file or "",
        "HANDOFF_CLAIM_TTL_S": "1",
        "LNN_LOG_LEVEL": "ERROR",
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_concurrent_copies_kills_and_retries_leave_exactly_the_undisturbed_run(
    stack, worker_env, messages_queue, scenario: str
) -> None:
    overrides, chaos = SCENARIOS[scenario]
    payload = {**BASE, **overrides}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)

    stack.invoker.queue.clear()
    run_id = runner.launch(stack, payload)["run_id"]
    with Dispatcher(worker_env, chaos) as dispatcher:
        dispatcher.submit(stack.invoker.queue.popleft())
        figures = dispatcher.run()
    got = _record(stack, run_id, messages_queue, mailbox)
    identical = True
    try:
        _assert_same(got, expected, payload)
    except AssertionError:
        identical = False
        raise
    finally:
        REPORT.record_copies(scenario, figures, identical)
    assert figures.overlapping > 0, "no two copies of an event ever ran at the same time"
    assert figures.kills > 0 and figures.retries > 0


# -- 2. one copy held at its first later read until the other has committed -----------------------
HOLD_AT = {
    # The first invocation covers epoch 0: its epoch item, checkpoint and PROGRESS message.
    "history-checkpoint-progress": ({"chain": "fused", "max_steps_per_invocation": 1000}, 0),
    # The last backward step, fused with the finish (whose weights come by a later read): the
    # model, SUCCEEDED and its message. 3 steps an invocation put seq 87 at an invocation's start.
    "model-status-summary": (
        {"chain": "fused", "max_steps_per_invocation": 3, "checkpoint_every": 0, "batch_size": 100},
        87,
    ),
}


@pytest.mark.parametrize("kind", sorted(HOLD_AT))
def test_a_copy_held_until_the_other_commits_leaves_nothing(stack, messages_queue, kind: str) -> None:
    overrides, which = HOLD_AT[kind]
    payload = {**BASE, **overrides}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)

    stack.invoker.queue.clear()
    run_id = runner.launch(stack, payload)["run_id"]
    while stack.invoker.queue[0]["seq"] < which:
        deliver_all(stack, limit=1)
    event = stack.invoker.queue.popleft()
    assert event["seq"] == which

    # Copy B: an execution environment of its own, whose first later read waits for copy A.
    b_invoker = LocalInvoker()
    b = services.build(stack.services.settings, b_invoker)
    original_read_at, held = b.tensor_store.read_at, []

    def read_after_a_committed(run, position, names):
        if names and not held:
            held.append(position)
            a_result = trainer_handler.run(dict(event), runner.LocalContext(), stack.services)
            assert a_result["status"] in ("RUNNING", "SUCCEEDED") and a_result["last_seq"] > position
            deliver_all(stack)  # A's successors carry the run to its end
        return original_read_at(run, position, names)

    b.tensor_store.read_at = read_after_a_committed
    b_result = trainer_handler.run(dict(event), runner.LocalContext(), b)
    assert held, "copy B never reached a later read"
    assert b_result["status"] == "DUPLICATE" and b_invoker.sent == 0
    with pytest.raises(Superseded):
        original_read_at(run_id, held[0], ["W1"])
    _assert_same(_record(stack, run_id, messages_queue, mailbox), expected, payload)


# -- 3. resume from every checkpoint after the cache lost the run ---------------------------------
def test_resume_from_every_checkpoint_after_a_cache_loss_ends_bit_identical(stack, messages_queue) -> None:
    payload = {**BASE, "chain": "per_step", "optimizer": "adam", "batch_size": 100, "notify_every": 0}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)
    for epoch in range(payload["epochs"]):
        stack.invoker.queue.clear()
        run_id = runner.launch(stack, payload)["run_id"]
        svc = stack.services
        while (found := checkpoints.latest(svc.blob_store, run_id)) is None or found[1] < epoch:
            deliver_all(stack, limit=1)
        assert found[1] == epoch
        svc.tensor_store.delete_run(run_id, keep_cursor=False)  # a replaced cache node: nothing left
        with pytest.raises(trainer_handler.StepFailed):
            deliver_all(stack, limit=1)
        assert svc.run_store.get_run(run_id)["status"] == "FAILED"
        resumed = lifecycle.resume(svc, run_id)
        assert resumed["source"] == f"checkpoint (epoch {epoch})"
        deliver_all(stack)
        got = _record(stack, run_id, messages_queue, mailbox)
        assert got["status"] == "SUCCEEDED"
        assert all(np.array_equal(got["params"][k], v) for k, v in expected["params"].items())
        assert got["epochs"] == expected["epochs"]
        assert got["messages"].get("SUCCEEDED") == [None] and got["messages"].get("FAILED") == [None]
        REPORT.record(faults=1, identical=True)
