"""Transient errors are retried with bounded backoff inside the step, before anything fails:
a dropped Redis connection, DynamoDB throttling, Lambda 429/5xx on the hand-off."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import botocore.endpoint
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from tests.support.chain import deliver_all, drain_queue, final_params, run_to_end, wait_for
from tests.support.cloud import subscribe_queue
from tests.support.report import REPORT
from tests.support.requests import moons
from trainer.invoker import LambdaInvoker
from trainer.stores.run_store import DynamoRunStore

PAYLOAD = moons((5, 1), ("tanh", "sigmoid"), epochs=6, learning_rate=0.1, chain="per_step")


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_kwargs):
        yield self.body


@contextmanager
def _fail_first(client, operation: str, times: int, status: int, code: str) -> Iterator[list[int]]:
    """Answer the first `times` calls of `operation` with an error, as the service would; the
    SDK's own retry logic sees them. (The clients are shared, so the hook is removed after.)"""
    seen: list[int] = []

    def before_send(request, **_kwargs):
        if len(seen) < times:
            seen.append(status)
            body = json.dumps({"__type": code, "message": "injected"}).encode()
            return AWSResponse(request.url, status, {"x-amzn-ErrorType": code}, _Raw(body))
        return None

    event = f"before-send.{client.meta.service_model.endpoint_prefix}.{operation}"
    client.meta.events.register(event, before_send)
    try:
        yield seen
    finally:
        client.meta.events.unregister(event, before_send)


@pytest.fixture
def backoff(monkeypatch) -> list[float]:
    """The SDK's waits between attempts, in this process, recorded instead of slept: what they are
    is what the tests look at (the retry policy's wait is up to 20 s an attempt)."""
    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=waits.append))
    return waits


def test_dynamodb_throttling_is_retried_by_the_sdk(stack, backoff) -> None:
    store = DynamoRunStore(stack.services.run_store.table)
    store.create_run("throttled-1", {}, "{}", 5)
    with _fail_first(store.db, "UpdateItem", times=2, status=400, code="ThrottlingException") as seen:
        store.record_progress("throttled-1", 3)
    assert seen == [400, 400] and len(backoff) == 2
    assert store.get_run("throttled-1")["last_seq"] == 3


@pytest.mark.parametrize(("status", "code"), [(429, "TooManyRequestsException"), (503, "ServiceException")])
def test_lambda_429_and_5xx_on_the_hand_off_are_retried(stack, backoff, status: int, code: str) -> None:
    stack.drop_all()
    invoker = LambdaInvoker(stack.env["TRAINER_FUNCTION_ARN"])
    event = {"state": "start", "run_id": "r", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
    with _fail_first(invoker.lambda_, "Invoke", times=2, status=status, code=code) as seen:
        invoker.invoke_async(event)
    assert seen == [status, status] and len(backoff) == 2
    # The third attempt reached the Lambda service: the hand-off is there, once.
    assert [e["payload"] for e in stack.held()] == [event]
    stack.drop_all()


def test_retries_are_bounded(stack, backoff) -> None:
    stack.drop_all()
    invoker = LambdaInvoker(stack.env["TRAINER_FUNCTION_ARN"])
    with (
        _fail_first(invoker.lambda_, "Invoke", times=100, status=429, code="TooManyRequestsException") as seen,
        pytest.raises(ClientError, match="TooManyRequests"),
    ):
        invoker.invoke_async({"state": "start"})
    assert len(seen) == 7  # the first attempt and 6 retries (trainer.aws.RETRY), then it gives up
    assert len(backoff) == 6 and all(0 <= wait <= 20 for wait in backoff), backoff
    assert not stack.held()


def test_redis_connections_reset_mid_run_are_survived(stack) -> None:
    reference, _ = run_to_end(stack, PAYLOAD)
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    resets, deliveries = 0, []
    while stack.held():
        deliveries += deliver_all(stack, limit=3)
        # Reset every client connection, the trainer's environments' and ours, at the node's
        # endpoint (the functions' user may not CLIENT KILL): the next command meets a reset
        # socket, and the reconnection signs a new token.
        assert stack.cloud.reset_connections(stack.env["REPLICATION_GROUP_ID"]) > 0
        resets += 1
    run = stack.services.run_store.get_run(run_id)
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    identical = run["status"] == "SUCCEEDED" and all(np.array_equal(expected[k], got[k]) for k in expected)
    REPORT.record(faults=resets, identical=identical)
    assert resets > 5 and identical
    # Survived inside the step: no delivery needed Lambda's retry.
    assert [d.attempts for d in deliveries] == [1] * len(deliveries)


def test_the_failure_message_names_run_and_step(stack) -> None:
    url = subscribe_queue(stack.services.notifier.topic_arn, "failure-messages-q")
    stack.drop_all()
    stack.failure_records()  # what earlier tests left there
    run_id = stack.launch(PAYLOAD)["run_id"]
    stack.services.tensor_store.client.delete(f"lnn:{{{run_id}}}:cursor")  # the cache lost the run
    delivery = stack.deliver()
    assert delivery.failed and delivery.attempts == 3  # the first delivery and Lambda's two retries
    assert all(re.match(rf"StepFailed: run {run_id} step start#0: CacheLost", e) for e in delivery.errors)
    assert not stack.held()
    (record,) = wait_for(stack.failure_records, what="the on-failure record")
    assert record["requestPayload"]["seq"] == 0 and record["requestPayload"]["run_id"] == run_id
    run = stack.services.run_store.get_run(run_id)
    assert run["status"] == "FAILED" and run["failed_step"] == "start#0" and run["error_type"] == "CacheLost"
    published = [m for m in drain_queue(url) if m["run_id"] == run_id]
    assert [(m["kind"], m["step"], m["error_type"]) for m in published] == [("FAILED", "start#0", "CacheLost")]
    assert published[0]["failure_reason"].startswith("cache lost")
    assert "lost its chain position" in run["failure_reason"]
