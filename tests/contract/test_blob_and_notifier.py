"""The blob store's contract against the fake and S3 (moto), and the notifier's against the fake
and SNS (moto, delivering to a subscribed SQS queue): what goes in comes out, and a publish that
its claim no longer covers is not made."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from trainer.errors import TooLarge
from trainer.notifier import ATTEMPT_BOUND_S, PublishTooLate


def test_an_object_comes_back_as_it_was_put(blobs, ids) -> None:
    store, prefix = blobs.store, f"models/{ids()}/"
    uri = store.put(prefix + "model.npz", b"\x00weights\xff")
    assert uri == f"s3://{store.bucket}/{prefix}model.npz"
    assert store.get(prefix + "model.npz") == b"\x00weights\xff"
    assert store.read(store.bucket, prefix + "model.npz", limit=10) == b"\x00weights\xff"
    store.put(prefix + "model.npz", b"again")
    assert store.get(prefix + "model.npz") == b"again", "a put replaces"


def test_a_deleted_object_is_gone_and_deleting_a_missing_one_is_no_error(blobs, ids) -> None:
    store, key = blobs.store, f"models/{ids()}/model.npz"
    store.put(key, b"weights")
    store.delete(key)
    with pytest.raises(ClientError) as missing:
        store.get(key)
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    store.delete(key)
    assert store.keys(key) == []


def test_a_read_past_its_limit_or_of_a_missing_key_is_refused(blobs, ids) -> None:
    store, key = blobs.store, f"datasets/{ids()}.npz"
    store.put(key, b"x" * 100)
    with pytest.raises(TooLarge) as raised:
        store.read(store.bucket, key, limit=99)
    assert (raised.value.size, raised.value.limit) == (100, 99)
    with pytest.raises(ClientError) as missing:
        store.get(key + ".absent")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_keys_are_listed_by_prefix_in_order(blobs, ids) -> None:
    store, run = blobs.store, ids()
    for epoch in (10, 2, 7):
        store.put(f"checkpoints/{run}/epoch-{epoch:06d}.npz", b"c")
    store.put(f"checkpoints/{run}x/epoch-000001.npz", b"other run")
    found = store.keys(f"checkpoints/{run}/")
    assert found == [f"checkpoints/{run}/epoch-{e:06d}.npz" for e in (2, 7, 10)]
    assert store.keys(f"checkpoints/{ids()}/") == []


def test_a_message_arrives_with_its_kind_run_and_body(notifier, ids) -> None:
    run_id = ids()
    notifier.store.publish("SUCCEEDED", run_id, {"final_cost": 0.5, "epochs": 3}, until=time.time() + 60)
    assert notifier.received() == [{"kind": "SUCCEEDED", "run_id": run_id, "final_cost": 0.5, "epochs": 3}]


def test_a_publish_its_claim_no_longer_covers_is_not_made(notifier, ids) -> None:
    run_id, fenced = ids(), []

    def fence() -> bool:
        fenced.append(True)
        return False

    with pytest.raises(PublishTooLate):
        notifier.store.publish("PROGRESS", run_id, {"epoch": 1}, until=time.time() + 60, fence=fence)
    assert fenced == [True], "the fence is asked just before the attempt"
    with pytest.raises(PublishTooLate):
        notifier.store.publish("PROGRESS", run_id, {"epoch": 2}, until=time.time() + ATTEMPT_BOUND_S - 1)
    assert notifier.received() == []
