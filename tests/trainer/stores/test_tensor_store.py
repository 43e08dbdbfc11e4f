from __future__ import annotations

import numpy as np
import pytest

from trainer.stores import codec
from trainer.stores.tensor_store import NO_CURSOR


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "uint8"])
def test_tensors_round_trip_bit_exact(dtype: str) -> None:
    value = (np.random.default_rng(1).normal(size=(3, 5)) * 100).astype(dtype)
    back = codec.decode(codec.encode(value))
    assert back.dtype == value.dtype and back.shape == value.shape and np.array_equal(back, value)
    assert back.flags.writeable


def test_a_value_that_is_not_a_tensor_is_refused() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(b"\x80\x04pickle")
    blob = codec.encode(np.zeros(4))
    with pytest.raises(codec.CodecError, match="body has"):
        codec.decode(blob[:-1])


def test_commit_applies_once_and_only_from_the_expected_position(stack) -> None:
    store = stack.services.tensor_store
    assert store.create_run("store-1", "{}", {"W1": np.ones((2, 2))})
    assert not store.create_run("store-1", "{}", {"W1": np.zeros((2, 2))}), "a second create must not overwrite"
    assert store.cursor("store-1") == -1
    assert store.commit("store-1", -1, 3, {"W1": np.full((2, 2), 7.0)})
    assert not store.commit("store-1", -1, 3, {"W1": np.full((2, 2), 9.0)}), "a duplicate commit is refused"
    cursor, cancel, tensors = store.read_step("store-1", ["W1", "absent"])
    assert cursor == 3 and not cancel and list(tensors) == ["W1"] and tensors["W1"][0, 0] == 7.0
    assert 0 < store.client.ttl("lnn:{store-1}:t:W1") <= store.ttl_s
    assert store.cursor("never-created") == NO_CURSOR


def test_a_step_reads_in_one_round_trip_and_commits_in_one(stack) -> None:
    store = stack.services.tensor_store
    store.create_run("store-2", "{}", {"W1": np.ones(3), "b1": np.ones(1)})
    before = store.traffic.round_trips
    store.read_step("store-2", ["W1", "b1"])
    assert store.traffic.round_trips == before + 1
    store.commit("store-2", -1, 0, {"W1": np.zeros(3), "b1": np.zeros(1)})
    assert store.traffic.round_trips == before + 2


def test_hand_off_claims_admit_one_sender_and_the_same_event_again(stack) -> None:
    store = stack.services.tensor_store
    assert store.claim_handoff("store-3", 5, "event-5", 30)
    assert not store.claim_handoff("store-3", 5, "event-4", 30), "another event must not send it again"
    assert store.claim_handoff("store-3", 5, "event-5", 30), "a redelivery of the same event may finish it"
    store.confirm_handoff("store-3", 5)
    assert not store.claim_handoff("store-3", 5, "event-5", 30), "once sent, never again"
