"""Each port's subjects: its in-memory fake (tests/fakes) and its real component (a TLS
redis-server, moto server), one parameter each, so every contract case runs against both. A
subject also says how time passes for it: a test ends a lease by `advance`, not by a sleep.

The fake's cases are unit tier, the real ones cloud tier (tests/conftest.py: tier_of)."""

from __future__ import annotations

import json
import secrets
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.fakes import FakeBlobStore, FakeClock, FakeNotifier, FakeRunStore, FakeTensorStore

PREFIX = "ct-"  # every run, sweep and key of these tests: what `advance` may expire on the real cache


@dataclass
class Subject:
    """A port's implementation under contract, and how time passes for it."""

    store: Any
    advance: Callable[[float], None]
    received: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])  # a notifier's deliveries


def new_id() -> str:
    return PREFIX + secrets.token_hex(5)


@pytest.fixture
def ids() -> Callable[[], str]:
    return new_id


# -- the real components, once per session ------------------------------------------------------
@pytest.fixture(scope="session")
def redis_store(redis_server) -> Any:
    from trainer.stores.tensor_store import RedisTensorStore, connect

    client = connect(redis_server.host, redis_server.port, redis_server.password, True, redis_server.ca_file)
    return RedisTensorStore(client)


@pytest.fixture(scope="session")
def moto_stack(aws_env: dict[str, str], redis_server) -> dict[str, str]:
    """A table, a bucket and a topic in moto, as the local cloud provisions them."""
    from trainer.local.provision import provision

    return provision("ct" + secrets.token_hex(3))


def _advance_redis(store: Any) -> Callable[[float], None]:
    def advance(seconds: float) -> None:
        # Time passing, for the server: every key of these tests has that much less to live.
        for key in store.client.scan_iter(match="lnn:{" + PREFIX + "*", count=500):
            ttl = store.client.pttl(key)
            if ttl < 0:
                continue  # no expiry, or gone meanwhile
            left = ttl - int(seconds * 1000)
            if left > 0:
                store.client.pexpire(key, left)
            else:
                store.client.delete(key)

    return advance


def _shifted_clock(monkeypatch: pytest.MonkeyPatch, *modules: types.ModuleType) -> Callable[[float], None]:
    """The DynamoDB adapter's leases are times it computes from its own clock: move that clock."""
    offset = [0.0]
    real = time.time
    shifted = types.SimpleNamespace(time=lambda: real() + offset[0], sleep=time.sleep, monotonic=time.monotonic)
    for module in modules:
        monkeypatch.setattr(module, "time", shifted)

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


# -- the subjects -------------------------------------------------------------------------------
@pytest.fixture(params=["fake", "redis"])
def tensors(request: pytest.FixtureRequest) -> Subject:
    if request.param == "fake":
        clock = FakeClock()
        return Subject(FakeTensorStore(clock), clock.advance)
    store = request.getfixturevalue("redis_store")
    return Subject(store, _advance_redis(store))


@pytest.fixture(params=["fake", "dynamodb"])
def runs(request: pytest.FixtureRequest) -> Subject:
    if request.param == "fake":
        clock = FakeClock()
        return Subject(FakeRunStore(clock), clock.advance)
    from trainer.stores import run_store, sweep_store
    from trainer.stores.run_store import DynamoRunStore

    stack = request.getfixturevalue("moto_stack")
    advance = _shifted_clock(request.getfixturevalue("monkeypatch"), run_store, sweep_store)
    return Subject(DynamoRunStore(stack["TABLE_NAME"]), advance)


@pytest.fixture(params=["fake", "s3"])
def blobs(request: pytest.FixtureRequest) -> Subject:
    if request.param == "fake":
        return Subject(FakeBlobStore("ct-bucket"), lambda s: None)
    from trainer.stores.blob_store import S3BlobStore

    stack = request.getfixturevalue("moto_stack")
    return Subject(S3BlobStore(stack["MODEL_BUCKET"]), lambda s: None)


@pytest.fixture(params=["fake", "sns"])
def notifier(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "fake":
        fake = FakeNotifier()
        yield Subject(fake, lambda s: None, lambda: _drain_fake(fake))
        return
    from trainer.notifier import SnsNotifier

    stack, env = request.getfixturevalue("moto_stack"), request.getfixturevalue("aws_env")
    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    sns = boto3.client("sns", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    url = sqs.create_queue(QueueName="ct-" + secrets.token_hex(4))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(
        TopicArn=stack["SNS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )["SubscriptionArn"]

    def received() -> list[dict[str, Any]]:
        out = []
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return out

    yield Subject(SnsNotifier(stack["SNS_TOPIC_ARN"]), lambda s: None, received)
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=url)


def _drain_fake(fake: FakeNotifier) -> list[dict[str, Any]]:
    taken, fake.sent = fake.sent, []
    return taken
