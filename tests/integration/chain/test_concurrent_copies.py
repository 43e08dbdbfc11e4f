"""Exactly-once effects when copies of an event overlap, stepped through the local cloud: a copy
paused inside its execution environment until another copy has committed, copies stopped by their
deadlines at different steps, and a run resumed from every checkpoint after the cache lost it,
each against the undisturbed run of the same request: the same weights, epoch items and
checkpoints, one SUCCEEDED message, one PROGRESS message per epoch, no FAILED message where none
is due.

(Every event delivered twice at once with kills and Lambda's retries, through the Lambda service's
chaos mode: tests/integration/test_exactly_once_on_lambda.py.)
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from tests.support.chain import Delivery, dead_letters, deliver_all, final_params, read_lines, run_to_end, wait_for
from tests.support.cloud import subscribe_queue
from tests.support.report import REPORT
from tests.support.requests import EVERY_EPOCH as BASE
from trainer import checkpoints, lifecycle
from trainer.aws import client
from trainer.stores.tensor_store import Superseded


# -- what a run leaves behind ------------------------------------------------------------------
@pytest.fixture(scope="module")
def messages_queue(stack) -> str:
    return subscribe_queue(stack.services.notifier.topic_arn, "exactly-once-messages")


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


def _status(stack, run_id: str) -> str:
    return stack.services.run_store.get_run(run_id)["status"]


@contextmanager
def _two_copies_at_once(stack, event: dict, go) -> Iterator[list[Delivery]]:
    """The held event delivered twice at once, each copy in an environment of its own (a thread
    waits for both); on leaving, the `go` file releases a paused copy and the delivery is waited
    for. Yields the list its Delivery lands in."""
    ended: list[Delivery] = []
    both = threading.Thread(target=lambda: ended.append(stack.deliver(event["request_id"], copies=2)))
    try:
        both.start()
        yield ended
    finally:
        go.touch()
        both.join(timeout=120)


def _reference(stack, payload: dict, url: str, mailbox: dict) -> dict[str, Any]:
    run_id, _ = run_to_end(stack, payload)
    return _record(stack, run_id, url, mailbox)


# -- 1. one copy paused at its first later read until the other has committed ---------------------
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
def test_a_copy_held_until_the_other_commits_leaves_nothing(stack, tmp_path, messages_queue, kind: str) -> None:
    overrides, which = HOLD_AT[kind]
    payload = {**BASE, **overrides}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)

    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    while stack.held()[0]["payload"]["seq"] < which:
        assert not stack.deliver().failed
    (event,) = stack.held()
    assert event["payload"]["seq"] == which

    # Two copies at once, each in an execution environment of its own. The first copy to make a
    # later read (one with tensors to read) waits there until the test says go: by then the other
    # copy has committed and its successors have carried the run to its end.
    go = tmp_path / "go"
    pause = {"target": "tensor_store.read_at", "if_arg": 2, "pause_until": str(go)}
    stack.faults(tmp_path, [pause])
    try:
        with _two_copies_at_once(stack, event, go) as ended:
            (paused,) = wait_for(lambda: read_lines(tmp_path / "paused"), what="a copy paused at a later read")
            position = paused["ints"][0]  # read_at(run_id, position, names)
            # The other copy hands on after its commit, or (the finish) ends the run.
            wait_for(lambda: stack.held() or _status(stack, run_id) == "SUCCEEDED", what="the other copy's commit")
            stack.calm()  # the successors run in the stack's own configuration
            assert not dead_letters(deliver_all(stack))
            assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    finally:
        stack.calm()
    (delivery,) = ended
    assert not delivery.failed, delivery.errors
    a_result, b_result = sorted((c["response"] for c in delivery.copies), key=lambda r: r["status"] == "DUPLICATE")
    assert a_result["status"] in ("RUNNING", "SUCCEEDED") and a_result["last_seq"] > position
    assert b_result["status"] == "DUPLICATE"
    assert not stack.held(), "the paused copy handed something on"
    with pytest.raises(Superseded):
        stack.services.tensor_store.read_at(run_id, position, ["W1"])
    _assert_same(_record(stack, run_id, messages_queue, mailbox), expected, payload)


def test_the_copy_that_lost_the_commit_hands_on_when_the_committer_dies_with_every_retry(
    stack, tmp_path, messages_queue
) -> None:
    """Two copies of the first event: one waits at its commit until the other has committed and then
    crashed before its hand-off, on its first attempt and on both of Lambda's retries (its event goes
    to the on-failure destination). The chain must not die with it: the copy that lost the commit
    race is still running, and it completes the committed position and hands the run on. The run
    then ends as the undisturbed one, with the one FAILED message of the step that failed for a while."""
    payload = {**BASE, "chain": "fused", "max_steps_per_invocation": 1000}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)
    attempts = 1 + client("lambda").get_function_event_invoke_config(FunctionName=stack.trainer)["MaximumRetryAttempts"]

    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    (event,) = stack.held()
    go = tmp_path / "go"
    pause = {"target": "tensor_store.commit", "pause_until": str(go)}  # the first copy to commit waits
    crash = {"target": "invoker.invoke_async", "limit": attempts}  # every attempt of the committer
    stack.faults(tmp_path, [pause, crash])
    with _two_copies_at_once(stack, event, go) as ended:
        wait_for(lambda: read_lines(tmp_path / "paused"), what="a copy paused at its commit")
        wait_for(lambda: len(read_lines(tmp_path / "injected")) == attempts, what="the committer's every attempt")
        assert stack.services.tensor_store.cursor(run_id) >= 0  # committed, not handed on
        assert not stack.held()
    stack.calm()
    (delivery,) = ended
    outcomes = sorted((c["outcome"], c["attempts"]) for c in delivery.copies)
    assert outcomes == [("failed", attempts), ("ok", 1)], delivery.copies
    (follower,) = [c["response"] for c in delivery.copies if c["outcome"] == "ok"]
    assert follower["status"] == "DUPLICATE" and follower["completed"] is True
    assert not dead_letters(deliver_all(stack))
    got = _record(stack, run_id, messages_queue, mailbox)
    # The committer's failure was the run's for a while (it held the position): said once.
    assert got["messages"].pop("FAILED") == [None]
    _assert_same(got, expected, payload)


# Two copies of the first event (the whole run). The committer stops just before a step of its
# first publish (epoch 0's PROGRESS) for longer than its claim on that message lasts, as a publish
# slowed by the SDK's retries would; the other copy takes the completion over, then the message once
# its claim has ended, and hands the run on. When the stopped copy goes on, its claim is over.
STOPPED_BEFORE = {
    # Paused before the publish: it must not send the message a second time, nor count as the
    # run's failure (Lambda's retry of it finds the position completed).
    "publish": ("notifier.publish", 60),
    # Issue 21's defect 7: stopped after its SDK attempt's own check of the time (the last thing it
    # decides alone) and before its request goes out. The request must then not go out: the
    # claim's fence in the run store, the last step before it, finds the claim another's. One
    # message, one fenced send on the notice item (which is what a repeat would have to show).
    "fence": ("run_store.fence_notice", 90),
}


@pytest.mark.parametrize("point", sorted(STOPPED_BEFORE))
def test_a_copy_stopped_past_its_claim_on_a_message_leaves_the_message_to_the_copy_that_took_it_over(
    stack, tmp_path, messages_queue, point: str
) -> None:
    target, takeover_s = STOPPED_BEFORE[point]
    payload = {**BASE, "chain": "fused", "max_steps_per_invocation": 1000}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)

    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    (event,) = stack.held()
    go = tmp_path / "go"
    stack.faults(tmp_path, [{"target": target, "pause_until": str(go)}])
    with _two_copies_at_once(stack, event, go) as ended:
        wait_for(lambda: read_lines(tmp_path / "paused"), what=f"a copy stopped before {target}")
        wait_for(stack.held, timeout_s=takeover_s, what="the other copy's takeover and hand-off")
    stack.calm()
    (delivery,) = ended
    assert not delivery.failed, delivery.errors
    assert not dead_letters(deliver_all(stack))
    _assert_same(_record(stack, run_id, messages_queue, mailbox), expected, payload)
    if point == "fence":
        item = client("dynamodb").get_item(
            TableName=stack.env["TABLE_NAME"],
            Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "NOTICE#PROGRESS#epoch-0"}},
            ConsistentRead=True,
        )["Item"]
        assert (item["claims"]["N"], item["sends"]["N"]) == ("2", "1"), item


# -- 2. copies whose deadlines fall a few steps apart -----------------------------------------------
def test_copies_stopped_by_their_deadlines_at_different_steps_leave_the_undisturbed_run(
    stack, tmp_path, messages_queue
) -> None:
    """Every event delivered twice at once; each copy's invocation stops when its deadline comes
    within the time margin: a 3 s timeout against a 2 s margin, and steps slowed by a random 40-80
    ms in each environment, so copies of one event reach different steps by then. The margin is
    wide because it must hold the last step, the commit and the hand-on of a copy racing its twin
    on a loaded machine: with 1 s of a 2 s timeout, copies were timed out now and then."""
    payload = {**BASE, "chain": "fused", "time_margin_ms": 2000, "batch_size": 100}
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)

    lam = client("lambda")
    timeout = lam.get_function_configuration(FunctionName=stack.trainer)["Timeout"]
    slow = {"target": "trainer.engine:run_step", "delay_s": [0.04, 0.08], "seed": 13}
    stack.faults(tmp_path, [slow])
    lam.update_function_configuration(FunctionName=stack.trainer, Timeout=3)
    responses: list[list[dict]] = []
    try:
        stack.drop_all()
        run_id = stack.launch(payload)["run_id"]
        while held := stack.held():
            delivery = stack.deliver(held[0]["request_id"], copies=2)
            assert not delivery.failed, delivery.errors
            responses.append([c["response"] for c in delivery.copies])
            assert len(responses) < 200, "the chain does not end"
    finally:
        lam.update_function_configuration(FunctionName=stack.trainer, Timeout=timeout)
        stack.calm()
    _assert_same(_record(stack, run_id, messages_queue, mailbox), expected, payload)
    # Invocations stop at each epoch's last step (its checkpoint) and, here, at their deadlines.
    total = stack.services.run_store.get_run(run_id)["total_steps"]
    per_epoch = (total - 1) // payload["epochs"]  # the finish is the last step, in no epoch
    checkpointed = {per_epoch * (e + 1) - 1 for e in range(payload["epochs"])}
    winners = [r for pair in responses for r in pair if r["status"] != "DUPLICATE"]
    assert len(winners) == len(responses)  # one copy of each event made its steps count
    stopped = [r["last_seq"] for r in winners if r["status"] == "RUNNING" and r["last_seq"] not in checkpointed]
    assert len(stopped) >= 2, responses  # deadline-bound invocations
    assert any(r["status"] == "DUPLICATE" for pair in responses for r in pair), "no copy ever lost"


# -- 3. resume from every checkpoint after the cache lost the run ---------------------------------
def test_resume_from_every_checkpoint_after_a_cache_loss_ends_bit_identical(stack, messages_queue) -> None:
    # Fused: an invocation stops at an epoch's last step (its checkpoint), so the event after each
    # checkpoint is the next epoch's first, as with per_step, for a fraction of the invocations.
    payload = {**BASE, "chain": "fused", "max_steps_per_invocation": 1000}
    payload.update(optimizer="adam", batch_size=100, notify_every=0)
    mailbox: dict[str, list[dict]] = {}
    expected = _reference(stack, payload, messages_queue, mailbox)
    svc = stack.services
    for epoch in range(payload["epochs"]):
        stack.drop_all()
        run_id = stack.launch(payload)["run_id"]
        while (found := checkpoints.latest(svc.blob_store, run_id)) is None or found[1] < epoch:
            assert not stack.deliver().failed
        assert found[1] == epoch
        svc.tensor_store.delete_run(run_id, keep_cursor=False)  # a replaced cache node: nothing left
        lost = stack.deliver()
        assert lost.failed and all(e.startswith("StepFailed") for e in lost.errors), lost.errors
        assert svc.run_store.get_run(run_id)["status"] == "FAILED"
        resumed = lifecycle.resume(svc, run_id)  # its first event goes to the (held) trainer
        assert resumed["source"] == f"checkpoint (epoch {epoch})"
        stack.cold()  # the resumed chain runs in environments that never saw the run
        try:
            assert not dead_letters(deliver_all(stack))
        finally:
            stack.calm()
        got = _record(stack, run_id, messages_queue, mailbox)
        assert got["status"] == "SUCCEEDED"
        assert all(np.array_equal(got["params"][k], v) for k, v in expected["params"].items())
        assert got["epochs"] == expected["epochs"]
        assert got["messages"].get("SUCCEEDED") == [None] and got["messages"].get("FAILED") == [None]
        REPORT.record(faults=1, identical=True)
